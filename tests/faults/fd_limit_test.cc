// SPDX-License-Identifier: Apache-2.0
// Descriptor exhaustion: laminafs runs with RLIMIT_NOFILE 64 (soft and hard, set by prlimit
// before exec) while the test opens many files and looks up many directories through the
// mount. Opens and lookups past the limit must fail with an error the caller can handle
// (EMFILE/ENFILE), never crash or hang the daemon; once the files are closed -- and the
// kernel has forgotten the directories, so their cached O_PATH descriptors are released --
// everything works again, and repeated rounds leak no descriptor.

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <vector>

#include "faults/fault_support.h"

namespace lamina::ft {
namespace {

constexpr int kLimit = 64;
constexpr int kFiles = 150;
constexpr int kDirs = 150;

size_t fd_count(pid_t pid) { return list_dir(fmt::format("/proc/{}/fd", pid)).size(); }

bool is_fd_error(int err) { return err == EMFILE || err == ENFILE; }

}  // namespace

TEST_CASE("EMFILE: the daemon out of descriptors answers errors and recovers", "[faults][fd]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir tmp;
  const std::string lower = tmp.mkdir("lower");
  for (int i = 0; i < kFiles; ++i) it::write_file(fmt::format("{}/f{}", lower, i), "data\n");
  for (int i = 0; i < kDirs; ++i) it::make_dirs(fmt::format("{}/d{}/sub", lower, i));
  for (int i = 0; i < 3; ++i) it::write_file(fmt::format("{}/a{}", lower, i), "data\n");
  it::StackPaths paths{{lower}, tmp.mkdir("upper"), tmp.mkdir("work"), {}};
  const std::string mnt = tmp.mkdir("mnt");
  it::ForegroundDaemon daemon(mnt, paths,
                              {"prlimit", fmt::format("--nofile={}:{}", kLimit, kLimit)});
  INFO("laminafs -f: " << daemon.describe());
  REQUIRE(daemon.ok());
  auto m = [&](const std::string& rel) { return mnt + "/" + rel; };

  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    // Many open files at once: each holds a descriptor in the daemon.
    std::vector<int> open_fds;
    std::set<int> errors;
    for (int i = 0; i < kFiles; ++i) {
      int fd = ::open(m(fmt::format("f{}", i)).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        open_fds.push_back(fd);
      } else {
        errors.insert(errno);
      }
    }
    INFO("opened " << open_fds.size() << " of " << kFiles);
    CHECK(open_fds.size() < static_cast<size_t>(kFiles));
    CHECK(!open_fds.empty());
    for (int err : errors) {
      INFO("open failed with " << it::errno_name(err));
      CHECK(is_fd_error(err));
    }
    // Out of descriptors: lookups of new directories, creates and copy-ups fail cleanly too.
    std::set<int> other_errors;
    for (int i = 0; i < kDirs; ++i) {
      struct stat st;
      if (::stat(m(fmt::format("d{}/sub", i)).c_str(), &st) != 0) other_errors.insert(errno);
    }
    int cr = write_path(m(fmt::format("new{}", round)), O_CREAT | O_WRONLY, "x");
    if (cr != 0) other_errors.insert(cr);
    for (int err : other_errors) {
      INFO("lookup/create failed with " << it::errno_name(err));
      CHECK(is_fd_error(err));
    }
    REQUIRE_FALSE(daemon.wait_exit(std::chrono::milliseconds(0)));
    REQUIRE(mount_alive(mnt));

    // Close everything and let the kernel forget what it looked up: all works again.
    for (int fd : open_fds) ::close(fd);
    drop_caches(2);
    for (int i = 0; i < kFiles; ++i) {
      INFO("f" << i);
      CHECK(it::read_file(m(fmt::format("f{}", i))) == "data\n");
    }
    drop_caches(2);
    for (int i = 0; i < kDirs; ++i) {
      struct stat st;
      INFO("d" << i << "/sub");
      CHECK(errno_of(::stat(m(fmt::format("d{}/sub", i)).c_str(), &st)) == 0);
      if (i % 10 == 9) drop_caches(2);  // two descriptors a directory: stay under the limit
    }
    CHECK(write_path(m(fmt::format("new{}", round)), O_CREAT | O_WRONLY | O_TRUNC, "new\n") == 0);
    CHECK(it::read_file(m(fmt::format("new{}", round))) == "new\n");
    CHECK(write_path(m(fmt::format("a{}", round)), O_WRONLY | O_APPEND, "more\n") == 0);  // copy-up
    CHECK(it::read_file(m(fmt::format("a{}", round))) == "data\nmore\n");

    // No descriptor leaks: one per failed open (over a hundred a round) would have used up
    // the limit by now. What stays is the cached directories the kernel has not forgotten.
    drop_caches(2);
    size_t now = fd_count(daemon.pid());
    INFO("daemon descriptors: " << now << " of " << kLimit);
    CHECK(now <= static_cast<size_t>(kLimit / 2));
  }
  CHECK_FALSE(daemon.wait_exit(std::chrono::milliseconds(0)));
}

}  // namespace lamina::ft
