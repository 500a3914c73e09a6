// SPDX-License-Identifier: Apache-2.0
// `lamina mount` through the kernel: an image of two layers made with the store API (not with
// `lamina commit`), mounted read-only, read-write over an upper dir, and with verify.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "integration/fs_util.h"
#include "integration/mount_helpers.h"
#include "integration/process.h"
#include "lamina/store/store.h"

namespace lamina::it {
namespace {

using store::Entry;
using store::EntryKind;

std::string lamina_bin() {
  if (const char* env = std::getenv("LAMINA_BIN"); env && *env) return env;
  return LAMINA_BIN;
}

// `lamina --root ROOT mount ARGS...`, waited for (it daemonizes once mounted); the destructor
// always unmounts.
class LaminaMount {
 public:
  LaminaMount(const std::string& root, const std::string& mountpoint,
              const std::vector<std::string>& args)
      : mountpoint_(mountpoint) {
    std::vector<std::string> argv = {lamina_bin(), "--root", root, "mount"};
    argv.insert(argv.end(), args.begin(), args.end());
    watchdog_track(mountpoint_);
    result_ = run_process(argv, std::chrono::seconds(30));
    mounted_ = is_mountpoint(mountpoint_);
  }
  ~LaminaMount() {
    unmount_fuse(mountpoint_);
    watchdog_untrack(mountpoint_);
  }
  LaminaMount(const LaminaMount&) = delete;
  LaminaMount& operator=(const LaminaMount&) = delete;

  bool ok() const { return result_.succeeded() && mounted_; }
  bool mounted() const { return mounted_; }
  const ProcResult& result() const { return result_; }

 private:
  std::string mountpoint_;
  ProcResult result_;
  bool mounted_ = false;
};

Entry entry(const std::string& path, EntryKind kind, uint32_t mode = 0755) {
  Entry e;
  e.path = path;
  e.kind = kind;
  e.mode = mode;
  e.mtime_sec = 1600000000;
  return e;
}

// TMP/store with image "test/img": a base layer and a layer above that deletes /old.
struct ImageStore {
  TempDir tmp;
  std::string root = tmp.sub("store");
  std::unique_ptr<store::Store> st;
  std::string tool_object;

  ImageStore() {
    std::string error;
    st = store::Store::open(root, true, &error);
    REQUIRE(st != nullptr);
    auto lock = st->lock_shared();
    REQUIRE(lock.ok());
    Entry etc = entry("/etc", EntryKind::kDir);
    Entry conf = file("/etc/conf", "setting=1\n", 0640);
    conf.uid = 7;
    conf.gid = 8;
    conf.xattrs = {{"user.k", "v"}};
    Entry tool = file("/bin/tool", "#!/bin/sh\necho tool\n", 0755);
    tool_object = tool.object;
    Entry tool2 = entry("/bin/tool2", EntryKind::kHardlink, 0);
    tool2.target = "/bin/tool";
    Entry link = entry("/link", EntryKind::kSymlink, 0777);
    link.target = "etc/conf";
    const std::string base =
        publish({entry("/", EntryKind::kDir), etc, conf, entry("/bin", EntryKind::kDir), tool,
                 tool2, link, file("/old", "old\n", 0644)});
    const std::string top =
        publish({entry("/", EntryKind::kDir), entry("/old", EntryKind::kWhiteout, 0),
                 file("/new", "new\n", 0600)});
    store::Image img;
    img.name = "test/img";
    img.layers = {base, top};
    REQUIRE(st->write_image(img, false).ok());
  }

  Entry file(const std::string& path, const std::string& content, uint32_t mode) {
    auto put = st->put_bytes(content);
    REQUIRE(put.ok());
    Entry e = entry(path, EntryKind::kFile, mode);
    e.size = content.size();
    e.object = put->name;
    return e;
  }

  std::string publish(std::vector<Entry> entries) {
    store::Manifest m;
    m.entries = std::move(entries);
    std::string error;
    REQUIRE(store::normalize(&m, &error));
    auto id = st->publish_layer(m, store::LayerInfo{});
    REQUIRE(id.ok());
    return *id;
  }
};

struct stat lstat_of(const std::string& path) {
  struct stat st;
  INFO(path);
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

// errno of open(path, flags), 0 on success.
int open_errno(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

// errno of reading the whole file, 0 on success.
int read_errno(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[4096];
  int err = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) err = errno;
    if (n <= 0) break;
  }
  ::close(fd);
  return err;
}

}  // namespace

TEST_CASE("lamina mount: a read-only image shows the layers merged", "[store][mount]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  ImageStore s;
  const std::string mnt = s.tmp.mkdir("mnt");
  LaminaMount m(s.root, mnt, {"test/img", mnt});
  INFO(m.result().describe());
  REQUIRE(m.ok());

  CHECK(read_file(mnt + "/etc/conf") == "setting=1\n");
  CHECK(read_file(mnt + "/link") == "setting=1\n");
  CHECK(read_file(mnt + "/new") == "new\n");
  CHECK(read_file(mnt + "/bin/tool2") == "#!/bin/sh\necho tool\n");
  auto conf = lstat_of(mnt + "/etc/conf");
  CHECK(conf.st_mode == (S_IFREG | 0640));
  CHECK(conf.st_uid == 7);
  CHECK(conf.st_gid == 8);
  CHECK(conf.st_size == 10);
  CHECK(conf.st_mtim.tv_sec == 1600000000);
  CHECK((lstat_of(mnt + "/new").st_mode & 07777) == 0600);
  auto link = lstat_of(mnt + "/link");
  CHECK(S_ISLNK(link.st_mode));
  char target[64];
  ssize_t n = ::readlink((mnt + "/link").c_str(), target, sizeof target);
  REQUIRE(n > 0);
  CHECK(std::string(target, static_cast<size_t>(n)) == "etc/conf");
  auto tool = lstat_of(mnt + "/bin/tool");
  auto tool2 = lstat_of(mnt + "/bin/tool2");
  CHECK(tool.st_ino == tool2.st_ino);
  CHECK(tool.st_nlink == 2);
  char v[16];
  n = ::lgetxattr((mnt + "/etc/conf").c_str(), "user.k", v, sizeof v);
  REQUIRE(n == 1);
  CHECK(v[0] == 'v');

  // The top layer's whiteout hides the base layer's file.
  struct stat st;
  CHECK(::lstat((mnt + "/old").c_str(), &st) == -1);
  CHECK(errno == ENOENT);

  // Read-only: every change is refused with EROFS.
  CHECK(open_errno(mnt + "/etc/conf", O_WRONLY) == EROFS);
  CHECK(open_errno(mnt + "/created", O_WRONLY | O_CREAT) == EROFS);
  CHECK(::mkdir((mnt + "/d").c_str(), 0755) == -1);
  CHECK(errno == EROFS);
  CHECK(::unlink((mnt + "/new").c_str()) == -1);
  CHECK(errno == EROFS);
}

TEST_CASE("lamina mount: --upper/--work writes into the upper dir", "[store][mount]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  ImageStore s;
  const std::string mnt = s.tmp.mkdir("mnt");
  const std::string upper = s.tmp.mkdir("upper");
  const std::string work = s.tmp.mkdir("work");
  LaminaMount m(s.root, mnt, {"test/img", mnt, "--upper", upper, "--work", work});
  INFO(m.result().describe());
  REQUIRE(m.ok());

  {
    int fd = ::open((mnt + "/etc/conf").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "more=2\n", 7) == 7);
    ::close(fd);
  }
  CHECK(read_file(mnt + "/etc/conf") == "setting=1\nmore=2\n");
  CHECK(read_file(upper + "/etc/conf") == "setting=1\nmore=2\n");
  CHECK((lstat_of(upper + "/etc/conf").st_mode & 07777) == 0640);
  write_file(mnt + "/made", "made here");
  CHECK(read_file(upper + "/made") == "made here");
  REQUIRE(::unlink((mnt + "/new").c_str()) == 0);
  auto wh = lstat_of(upper + "/new");
  CHECK(S_ISCHR(wh.st_mode));
  CHECK(wh.st_rdev == 0);
  // A hard link of the store copies up once; both names show the new bytes.
  {
    int fd = ::open((mnt + "/bin/tool").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "x", 1) == 1);
    ::close(fd);
  }
  CHECK(read_file(mnt + "/bin/tool2") == "x");
  CHECK(lstat_of(mnt + "/bin/tool").st_ino == lstat_of(mnt + "/bin/tool2").st_ino);
  // The store itself never changes.
  CHECK(read_file(s.root + "/" + store::Store::object_path(s.tool_object)) ==
        "#!/bin/sh\necho tool\n");
}

TEST_CASE("lamina mount: -o verify refuses a corrupted object with EIO", "[store][mount]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  ImageStore s;
  const std::string obj = s.root + "/" + store::Store::object_path(s.tool_object);
  REQUIRE(::chmod(obj.c_str(), 0644) == 0);
  {
    int fd = ::open(obj.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, "X", 1, 2) == 1);  // same size, other bytes
    ::close(fd);
  }
  const std::string mnt = s.tmp.mkdir("mnt");
  SECTION("-o verify") {
    LaminaMount m(s.root, mnt, {"-o", "verify", "test/img", mnt});
    INFO(m.result().describe());
    REQUIRE(m.ok());
    CHECK(read_errno(mnt + "/bin/tool") == EIO);
    CHECK(read_errno(mnt + "/bin/tool2") == EIO);
    CHECK(read_errno(mnt + "/etc/conf") == 0);
  }
  SECTION("--verify") {
    LaminaMount m(s.root, mnt, {"--verify", "test/img", mnt});
    INFO(m.result().describe());
    REQUIRE(m.ok());
    CHECK(read_errno(mnt + "/bin/tool") == EIO);
  }
  SECTION("without verify only the size is checked") {
    LaminaMount m(s.root, mnt, {"test/img", mnt});
    INFO(m.result().describe());
    REQUIRE(m.ok());
    CHECK(read_errno(mnt + "/bin/tool") == 0);
    REQUIRE(::truncate(obj.c_str(), 3) == 0);
    CHECK(read_errno(mnt + "/etc/conf") == 0);
    // A new open of the truncated object (no page cache kept for it yet) fails.
    CHECK(open_errno(mnt + "/bin/tool2", O_RDONLY) == EIO);
  }
}

TEST_CASE("lamina mount: errors are named and exit non-zero", "[store][mount]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  ImageStore s;
  const std::string mnt = s.tmp.mkdir("mnt");
  auto run = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {lamina_bin(), "--root", s.root, "mount"};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcResult r = run_process(argv);
    INFO(r.describe());
    CHECK_FALSE(r.succeeded());
    CHECK_FALSE(is_mountpoint(mnt));
    return r.err;
  };
  CHECK_THAT(run({"nope", mnt}), Catch::Contains("no image named 'nope' in store " + s.root));
  CHECK_THAT(run({"test/img", s.tmp.sub("missing")}), Catch::Contains("mountpoint"));
  CHECK_THAT(run({"test/img", mnt, "--upper", s.tmp.mkdir("u")}), Catch::Contains("--work"));
  CHECK_THAT(run({"test/img", mnt, "--upper", s.tmp.sub("nou"), "--work", s.tmp.mkdir("w")}),
             Catch::Contains("upper"));
  CHECK_THAT(run({"-o", "lowerdir=/x", "test/img", mnt}), Catch::Contains("lowerdir"));
}

}  // namespace lamina::it
