// SPDX-License-Identifier: Apache-2.0
// Rootless: laminafs mounted and used by an unprivileged user (through fusermount3) writes
// the forms a user may write -- user.overlay.* xattrs instead of trusted.overlay.* -- and
// reads them back.

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "integration/mount_helpers.h"
#include "integration/process.h"

namespace lamina::it {
namespace {

constexpr uid_t kUser = 65534;  // nobody

std::string xattr(const std::string& path, const char* name) {
  char buf[256];
  ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof buf);
  return n < 0 ? "<absent>" : std::string(buf, static_cast<size_t>(n));
}

// /dev/fuse is 0666 on a normal system; some containers make it 0600. Opened up for the
// test, put back afterwards.
class DevFuseOpen {
 public:
  DevFuseOpen() {
    struct stat st;
    if (::stat("/dev/fuse", &st) == 0) {
      mode_ = st.st_mode & 07777;
      if ((mode_ & 0006) != 0006) ::chmod("/dev/fuse", mode_ | 0666);
    }
  }
  ~DevFuseOpen() {
    if (mode_ != 0) ::chmod("/dev/fuse", mode_);
  }

 private:
  mode_t mode_ = 0;
};

}  // namespace

TEST_CASE("rootless: an unprivileged user mounts and writes user.overlay.* forms", "[rootless]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  REQUIRE(::chmod(tmp.path().c_str(), 0755) == 0);
  std::string lower = tmp.mkdir("lower");
  write_file(lower + "/gone", "g");
  write_file(tmp.mkdir("lower/d") + "/old", "o");
  write_file(tmp.mkdir("lower/e") + "/keep", "k");
  // A rootless user's layers are its own (containers-storage extracts them as that user).
  for (const char* p : {"lower", "lower/gone", "lower/d", "lower/d/old", "lower/e", "lower/e/keep"})
    REQUIRE(::lchown(tmp.sub(p).c_str(), kUser, kUser) == 0);
  for (const char* d : {"upper", "work", "mnt"}) {
    std::string p = tmp.mkdir(d);
    REQUIRE(::chown(p.c_str(), kUser, kUser) == 0);
  }
  DevFuseOpen dev;
  const std::string u = std::to_string(kUser);
  // The build may sit where the user cannot reach it (a clone under /root): run a copy.
  const std::string bin = tmp.sub("laminafs");
  {
    std::ifstream in(laminafs_bin(), std::ios::binary);
    std::ofstream out(bin, std::ios::binary);
    out << in.rdbuf();
    REQUIRE(out.good());
  }
  REQUIRE(::chmod(bin.c_str(), 0755) == 0);
  // Everything as the user: FUSE lets only the mounting user into the mount.
  std::string script = "set -e; cd '" + tmp.path() + "'; '" + bin +
                       "' -o lowerdir=lower,upperdir=upper,workdir=work mnt; "
                       "rm mnt/gone; rm -r mnt/d; mkdir mnt/d; echo new > mnt/d/n; "
                       "mv mnt/e mnt/e2; echo hi > mnt/f; "
                       "test ! -e mnt/gone; test \"$(ls mnt/d)\" = n; test -f mnt/e2/keep; "
                       "fusermount3 -u mnt; "
                       "'" +
                       bin +
                       "' -o lowerdir=lower,upperdir=upper,workdir=work mnt; "
                       "test ! -e mnt/gone; test \"$(ls mnt/d)\" = n; test -f mnt/e2/keep; "
                       "test \"$(cat mnt/f)\" = hi; fusermount3 -u mnt";
  auto r =
      run_process({"setpriv", "--reuid=" + u, "--regid=" + u, "--clear-groups", "sh", "-c", script},
                  std::chrono::seconds(60));
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.succeeded());
  if (is_mountpoint(tmp.sub("mnt"))) unmount_fuse(tmp.sub("mnt"));

  // What a user may write: no trusted.* xattrs; a whiteout (a char 0/0 device, which
  // unprivileged users may make since Linux 5.8, or ".wh.NAME").
  std::string upper = tmp.sub("upper");
  struct stat st;
  bool device =
      ::lstat((upper + "/gone").c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0;
  bool wh_file = ::lstat((upper + "/.wh.gone").c_str(), &st) == 0;
  CHECK((device || wh_file));
  CHECK(xattr(upper + "/d", "user.overlay.opaque") == "y");
  CHECK(xattr(upper + "/d", "trusted.overlay.opaque") == "<absent>");
  CHECK(xattr(upper + "/e2", "user.overlay.redirect") == "/e");
  REQUIRE(::lstat((upper + "/f").c_str(), &st) == 0);
  CHECK(st.st_uid == kUser);
}

}  // namespace lamina::it
