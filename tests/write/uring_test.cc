// SPDX-License-Identifier: Apache-2.0
// FUSE over io_uring (-o io_uring=1; a build against libfuse >= 3.18 built with it,
// LAMINA_LIBFUSE_SOURCE=ON). What each build must do:
//  - without it built in: the option is refused at mount with a message naming it;
//  - built in, the kernel offering it (fuse module parameter enable_uring=Y): the daemon
//    answers through rings (io_uring descriptors in the daemon) and the mount works;
//  - built in, the kernel not offering it: the mount works through /dev/fuse and says why.
// The whole write suite also runs with LAMINA_IT_OPTIONS=io_uring=1 (ctest write-uring in the
// passthrough build, after make test-passthrough set enable_uring=Y).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "integration/fs_util.h"
#include "integration/mount_helpers.h"
#include "integration/process.h"

namespace lamina::it {
namespace {

bool kernel_offers_uring() {
  std::string v;
  try {
    v = read_file("/sys/module/fuse/parameters/enable_uring");
  } catch (const std::exception&) {
    return false;  // a kernel without CONFIG_FUSE_IO_URING
  }
  return !v.empty() && v[0] == 'Y';
}

// How many io_uring instances the process holds (anon_inode:[io_uring] descriptors).
int uring_fds(pid_t pid) {
  int n = 0;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    char target[256];
    ssize_t len = ::readlink(entry.path().c_str(), target, sizeof target - 1);
    if (len > 0 && std::string(target, static_cast<size_t>(len)) == "anon_inode:[io_uring]") ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("io_uring=1: rings when built in and offered, else a clear answer", "[uring]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  const std::string lower = tmp.mkdir("lower");
  write_file(lower + "/f", "lower\n");
  StackPaths paths{{lower}, tmp.mkdir("upper"), tmp.mkdir("work"), {"io_uring=1"}};
  const std::string mnt = tmp.mkdir("mnt");

  if (!laminafs_built_with("FUSE over io_uring")) {
    Mount m(mnt, paths);
    INFO(m.describe());
    CHECK_FALSE(m.ok());
    CHECK(m.result().exit_code() != 0);
    CHECK(m.result().err.find("io_uring=1") != std::string::npos);
    CHECK(m.result().err.find("libfuse >= 3.18") != std::string::npos);
    return;
  }
  ForegroundDaemon d(mnt, paths);
  INFO("laminafs -f: " << d.describe());
  REQUIRE(d.ok());
  // The mount works either way: a write (copy-up), a create, reads, a rename, an unlink.
  {
    int fd = ::open((mnt + "/f").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "more\n", 5) == 5);
    ::close(fd);
  }
  write_file(mnt + "/new", "new\n");
  CHECK(read_file(mnt + "/f") == "lower\nmore\n");
  CHECK(read_file(tmp.path() + "/upper/f") == "lower\nmore\n");
  REQUIRE(::rename((mnt + "/new").c_str(), (mnt + "/renamed").c_str()) == 0);
  CHECK(read_file(mnt + "/renamed") == "new\n");
  REQUIRE(::unlink((mnt + "/renamed").c_str()) == 0);
  struct stat st;
  CHECK(::lstat((mnt + "/renamed").c_str(), &st) != 0);

  const int rings = uring_fds(d.pid());
  INFO("io_uring descriptors in the daemon: " << rings);
  if (kernel_offers_uring()) {
    CHECK(rings >= 1);
  } else {
    CHECK(rings == 0);
  }
  ProcResult r = d.unmount();
  INFO(r.describe());
  CHECK(r.exit_code() == 0);
  if (!kernel_offers_uring()) CHECK(r.err.find("enable_uring") != std::string::npos);
}

}  // namespace lamina::it
