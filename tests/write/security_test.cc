// SPDX-License-Identifier: Apache-2.0
// Security: no layer content can make the daemon touch a file outside the layers (symlinks in
// lowers and uppers, absolute and relative; symlinked parents planted while mounted; overlay
// redirects leading out; a symlink at the work dir), and `allow_other` only when asked.
//
// The outside targets are canaries: a file and a directory whose atime is set far in the past
// (relatime updates it on the first read) and a fifo (a daemon that opened it would block until
// the watchdog fires). Paths go through the mount with the calls that act on a link itself
// (lstat, readlink, lchown, rename, unlink, copy-up), and the relative targets are chosen to
// resolve outside only from inside a layer: from the mount they name nothing.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "integration/fs_util.h"
#include "integration/mount_helpers.h"
#include "write/steps.h"

namespace lamina::wt {
namespace {

using it::Mount;
using it::StackPaths;
using it::TempDir;

constexpr time_t kOld = 946684800;  // 2000-01-01: relatime moves an atime this old on any read

struct stat lstat_of(const std::string& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st;
}

void set_old_times(const std::string& p) {
  const struct timespec t[2] = {{kOld, 0}, {kOld, 0}};
  REQUIRE(::utimensat(AT_FDCWD, p.c_str(), t, AT_SYMLINK_NOFOLLOW) == 0);
}

// Files outside every layer that no operation through the mount may read or change.
class Canary {
 public:
  explicit Canary(const TempDir& t) : dir_(t.mkdir("outside/dir")) {
    file_ = t.sub("outside/secret");
    fifo_ = t.sub("outside/fifo");
    it::write_file(file_, "secret\n");
    it::write_file(dir_ + "/keep", "keep\n");
    REQUIRE(::mkfifo(fifo_.c_str(), 0666) == 0);
    for (const auto& p : {file_, dir_, fifo_}) set_old_times(p);
  }
  const std::string& file() const { return file_; }
  const std::string& dir() const { return dir_; }
  const std::string& fifo() const { return fifo_; }

  // Empty when untouched, else what changed.
  std::string changes() const {
    std::string out;
    for (const auto& p : {file_, dir_, fifo_}) {
      struct stat st = lstat_of(p);
      if (st.st_atim.tv_sec != kOld) out += p + ": read (atime moved)\n";
      if (st.st_mtim.tv_sec != kOld) out += p + ": written (mtime moved)\n";
    }
    if (it::read_file(file_) != "secret\n") out += file_ + ": content changed\n";
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      names.push_back(e.path().filename());
    if (names != std::vector<std::string>{"keep"}) out += dir_ + ": entries changed\n";
    for (const auto& p : {file_, dir_}) set_old_times(p);  // reading them above moved atime
    return out;
  }

 private:
  std::string dir_, file_, fifo_;
};

int rc(int r) { return r < 0 ? -errno : r; }

TEST_CASE("security: the canary notices a read (the detector works)", "[security]") {
  TempDir t;
  Canary c(t);
  CHECK(c.changes().empty());
  (void)it::read_file(c.file());
  CHECK_FALSE(c.changes().empty());
}

TEST_CASE("security: symlinks in lowers and uppers never lead the daemon outside", "[security]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir t;
  Canary c(t);
  // Layers at depth 2 ("../../outside/x" leaves them); the mount at depth 4, where it does not.
  const std::string lower = t.mkdir("ly/lower"), upper = t.mkdir("ly/upper");
  const std::string work = t.mkdir("ly/work"), mnt = t.mkdir("m/a/b/mnt");
  for (const std::string& dir : {lower, upper}) {
    const std::string tag = dir == lower ? "l" : "u";
    it::make_symlink(c.file(), dir + "/" + tag + "_abs");
    it::make_symlink("../../outside/secret", dir + "/" + tag + "_rel");
    it::make_symlink(c.dir(), dir + "/" + tag + "_dir");
    it::make_symlink("../../outside/dir", dir + "/" + tag + "_reldir");
    it::make_symlink("../../outside/fifo", dir + "/" + tag + "_fifo");
  }
  it::make_dirs(lower + "/pd");
  it::write_file(lower + "/pd/f", "lower f\n");
  it::make_dirs(lower + "/wd");
  it::write_file(lower + "/wd/x", "x\n");
  Mount m(mnt, StackPaths{{lower}, upper, work, {}});
  REQUIRE(m.ok());
  std::vector<std::string> links;
  for (const char* tag : {"l", "u"}) {
    for (const char* kind : {"_abs", "_rel", "_dir", "_reldir", "_fifo"})
      links.push_back(std::string(tag) + kind);
  }
  SECTION("acting on the links themselves") {
    for (const auto& name : links) {
      INFO(name);
      const std::string p = mnt + "/" + name;
      CHECK(S_ISLNK(lstat_of(p).st_mode));
      char buf[256];
      CHECK(::readlink(p.c_str(), buf, sizeof buf) > 0);
      CHECK(rc(::lchown(p.c_str(), 1000, 1000)) == 0);  // copy-up of a lower link
      const struct timespec times[2] = {{1, 0}, {2, 0}};
      CHECK(rc(::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW)) == 0);
      CHECK(rc(::lsetxattr(p.c_str(), "trusted.test", "v", 1, 0)) == 0);
      CHECK(rc(::link(p.c_str(), (p + ".hl").c_str())) == 0);
      CHECK(rc(::rename(p.c_str(), (p + ".mv").c_str())) == 0);
      CHECK(rc(::unlink((p + ".mv").c_str())) == 0);
      CHECK(rc(::unlink((p + ".hl").c_str())) == 0);
    }
    // The relative ones resolve to nothing from the mount.
    CHECK(rc(::open((mnt + "/l_reldir/keep").c_str(), O_RDONLY)) == -ENOENT);
    CHECK(c.changes().empty());
  }
  SECTION("a symlink planted in the upper as the parent of a copy-up or a whiteout") {
    // Looked up as lower directories first, then replaced in the upper behind the daemon's back.
    REQUIRE(it::read_file(mnt + "/pd/f") == "lower f\n");
    REQUIRE(std::filesystem::exists(mnt + "/wd/x"));
    it::make_symlink(c.dir(), upper + "/pd");
    it::make_symlink("../../outside/dir", upper + "/wd");
    int fd = ::open((mnt + "/pd/f").c_str(), O_WRONLY | O_APPEND);
    if (fd >= 0) {
      ::close(fd);
      FAIL_CHECK("copy-up below a planted upper symlink succeeded");
    }
    CHECK(rc(::unlink((mnt + "/wd/x").c_str())) < 0);  // its whiteout would go into the link
    CHECK(rc(::mkdir((mnt + "/wd/new").c_str(), 0755)) < 0);
    INFO(c.changes());
    CHECK(c.changes().empty());
    CHECK(std::filesystem::is_symlink(upper + "/pd"));
  }
}

TEST_CASE("security: overlay redirects never lead outside the lower layers", "[security]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir t;
  Canary c(t);
  const std::string lower = t.mkdir("ly/lower"), upper = t.mkdir("ly/upper");
  const std::string work = t.mkdir("ly/work"), mnt = t.mkdir("m/a/b/mnt");
  it::make_dirs(lower + "/real");
  it::write_file(lower + "/real/inside", "inside\n");
  it::make_symlink(c.dir(), lower + "/ldir");
  it::make_symlink("../../outside/dir", lower + "/lrel");
  const std::vector<std::string> redirects = {
      "../../outside/dir", "/../../outside/dir", c.dir(), "/ldir", "lrel", "/ldir/keep", "/real",
  };
  for (size_t i = 0; i < redirects.size(); ++i) {
    const std::string d = upper + "/r" + std::to_string(i);
    it::make_dirs(d);
    it::write_file(d + "/own", "own\n");
    REQUIRE(::setxattr(d.c_str(), "trusted.overlay.redirect", redirects[i].data(),
                       redirects[i].size(), 0) == 0);
  }
  // A metacopy file whose data the redirect says lives outside.
  it::write_file(upper + "/meta", "");
  REQUIRE(::truncate((upper + "/meta").c_str(), 7) == 0);
  REQUIRE(::setxattr((upper + "/meta").c_str(), "trusted.overlay.metacopy", "", 0, 0) == 0);
  const std::string meta_redirect = "../../outside/secret";
  REQUIRE(::setxattr((upper + "/meta").c_str(), "trusted.overlay.redirect", meta_redirect.data(),
                     meta_redirect.size(), 0) == 0);
  Mount m(mnt, StackPaths{{lower}, upper, work, {}});
  REQUIRE(m.ok());
  for (size_t i = 0; i < redirects.size(); ++i) {
    INFO("redirect " << redirects[i]);
    const std::string d = mnt + "/r" + std::to_string(i);
    std::vector<std::string> names;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(d, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
      names.push_back(it->path().filename());
    std::sort(names.begin(), names.end());
    if (redirects[i] == "/real") {
      CHECK(names == std::vector<std::string>{"inside", "own"});  // the control: it merges
    } else if (redirects[i].find("..") != std::string::npos) {
      // Refused (EIO) or the upper's own entries only; never the outside directory's.
      CHECK(std::find(names.begin(), names.end(), "keep") == names.end());
    } else {
      // Leads to no lower directory (a host path, a symlink, a path through one): the
      // directory is the upper's alone, and lists fine.
      INFO(ec.message());
      CHECK(names == std::vector<std::string>{"own"});
    }
  }
  int fd = ::open((mnt + "/meta").c_str(), O_RDONLY);
  if (fd >= 0) {
    char buf[16];
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    CHECK(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0) != "secret\n");
  }
  INFO(c.changes());
  CHECK(c.changes().empty());
}

TEST_CASE("security: a symlink at WORKDIR/work or WORKDIR/index is never followed", "[security]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir t;
  Canary c(t);
  const std::string lower = t.mkdir("lower"), upper = t.mkdir("upper");
  it::write_file(lower + "/hl", "linked\n");
  REQUIRE(::link((lower + "/hl").c_str(), (lower + "/hl2").c_str()) == 0);
  SECTION("work") {
    const std::string work = t.mkdir("work");
    it::make_symlink(c.dir(), work + "/work");  // the mount empties work/: not this
    Mount m(t.mkdir("mnt"), StackPaths{{lower}, upper, work, {}});
    CHECK_FALSE(m.ok());
    CHECK_THAT(m.result().err, Catch::Contains("work"));
  }
  SECTION("index") {
    const std::string work = t.mkdir("work");
    it::make_symlink(c.dir(), work + "/index");
    Mount m(t.mkdir("mnt"), StackPaths{{lower}, upper, work, {}});
    REQUIRE(m.ok());
    // Copy-up of a hard link is where the index is written.
    it::write_file(t.sub("mnt/hl"), "changed\n");
    CHECK(it::read_file(t.sub("mnt/hl")) == "changed\n");
  }
  INFO(c.changes());
  CHECK(c.changes().empty());
}

bool mount_has_option(const std::string& mnt, const std::string& opt) {
  std::ifstream f("/proc/mounts");
  std::string dev, dir, type, opts, a, b;
  while (f >> dev >> dir >> type >> opts >> a >> b) {
    if (dir != mnt) continue;
    return ("," + opts + ",").find("," + opt + ",") != std::string::npos;
  }
  return false;
}

// stat(2) of path by uid 65534 in a child: 0 or -errno.
int stat_as_nobody(const std::string& path) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(100);
    struct stat st;
    ::_exit(::stat(path.c_str(), &st) == 0 ? 0 : errno);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? -WEXITSTATUS(status) : -1000;
}

TEST_CASE("security: allow_other only when asked; default_permissions always", "[security]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir t;
  const std::string lower = t.mkdir("lower"), upper = t.mkdir("upper"), work = t.mkdir("work");
  it::write_file(lower + "/f", "f\n");
  {
    Mount m(t.mkdir("plain"), StackPaths{{lower}, upper, work, {}});
    REQUIRE(m.ok());
    CHECK(mount_has_option(m.path(), "default_permissions"));
    CHECK_FALSE(mount_has_option(m.path(), "allow_other"));
    CHECK(stat_as_nobody(m.path() + "/f") == -EACCES);  // FUSE refuses other users
  }
  {
    Mount m(t.mkdir("other"), StackPaths{{lower}, upper, work, {"allow_other"}});
    REQUIRE(m.ok());
    CHECK(mount_has_option(m.path(), "default_permissions"));
    CHECK(mount_has_option(m.path(), "allow_other"));
    CHECK(stat_as_nobody(m.path() + "/f") == 0);
  }
}

TEST_CASE("security: overlay xattrs are refused to an unprivileged owner too", "[security]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir t;
  const std::string lower = t.mkdir("lower"), upper = t.mkdir("upper"), work = t.mkdir("work");
  it::make_dirs(lower + "/d");
  REQUIRE(::chown((lower + "/d").c_str(), 1000, 1000) == 0);
  REQUIRE(::setxattr((lower + "/d").c_str(), "user.overlay.opaque", "y", 1, 0) == 0);
  Mount m(t.mkdir("mnt"), StackPaths{{lower}, upper, work, {"allow_other"}});
  REQUIRE(m.ok());
  Ctx mnt(m.path(), "laminafs");
  // As the directory's owner, user.* xattrs are allowed on a plain directory: the overlay ones
  // are still refused (set/remove EPERM), invisible (get ENODATA) and unlisted.
  std::string got = step::as_user(1000, 1000,
                                  {step::setxattr("d", "user.overlay.opaque", "y"),
                                   step::setxattr("d", "user.overlay.redirect", "/x"),
                                   step::setxattr("d", "trusted.overlay.opaque", "y"),
                                   step::removexattr("d", "user.overlay.opaque"),
                                   step::getxattr("d", "user.overlay.opaque"),
                                   step::setxattr("d", "user.mine", "1"),
                                   step::getxattr("d", "user.mine"), step::listxattr("d")})
                        .run(mnt);
  CHECK_THAT(got, Catch::Contains("user.overlay.opaque, \"y\")=-1 EPERM"));
  CHECK_THAT(got, Catch::Contains("user.overlay.redirect, \"/x\")=-1 EPERM"));
  CHECK_THAT(got, Catch::Contains("trusted.overlay.opaque, \"y\")=-1 EPERM"));
  CHECK_THAT(got, Catch::Contains("lremovexattr(d, user.overlay.opaque)=-1 EPERM"));
  CHECK_THAT(got, Catch::Contains("user.overlay.opaque)=-1 ENODATA"));
  CHECK_THAT(got, Catch::Contains("=[user.mine]"));
  CHECK_THAT(got, Catch::Contains("user.mine, \"1\")=0"));
  INFO(got);
  CHECK(got.find("overlay.opaque)=\"y\"") == std::string::npos);
}

}  // namespace
}  // namespace lamina::wt
