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
#include <thread>
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
    }
    CHECK(write_path(m(fmt::format("new{}", round)), O_CREAT | O_WRONLY | O_TRUNC, "new\n") == 0);
    CHECK(it::read_file(m(fmt::format("new{}", round))) == "new\n");
    CHECK(write_path(m(fmt::format("a{}", round)), O_WRONLY | O_APPEND, "more\n") == 0);  // copy-up
    CHECK(it::read_file(m(fmt::format("a{}", round))) == "data\nmore\n");

    // No descriptor leaks: one per failed open (over a hundred a round) would have used up
    // the limit by now. What stays is the budget of directory descriptors (half the limit).
    // RELEASE and FORGET reach the daemon after close() and drop_caches return: give a busy
    // machine some seconds.
    drop_caches(2);
    const size_t bound = static_cast<size_t>(kLimit / 2) + 8;
    size_t now = fd_count(daemon.pid());
    for (int i = 0; i < 100 && now > bound; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      now = fd_count(daemon.pid());
    }
    INFO("daemon descriptors: " << now << " of " << kLimit);
    CHECK(now <= bound);
  }
  CHECK_FALSE(daemon.wait_exit(std::chrono::milliseconds(0)));
}

TEST_CASE("regression: a tree with more directories than descriptors walks whole", "[faults][fd]") {
  // find(1) over a lower of 20,040 directories with RLIMIT_NOFILE 20,000 printed "Too many
  // open files" for the last few hundred: each cached directory node held a descriptor per
  // layer. Here 1,200 directories in two layers, 128 descriptors, no cache dropping.
  LAMINA_REQUIRE_MOUNT_ENV();
  constexpr int kTreeDirs = 1200;
  it::TempDir tmp;
  const std::string lower = tmp.mkdir("lower");
  const std::string upper = tmp.mkdir("upper");
  for (int i = 0; i < kTreeDirs; ++i) {
    it::make_dirs(fmt::format("{}/t{}/d{}", lower, i % 30, i));
    it::write_file(fmt::format("{}/t{}/d{}/f", lower, i % 30, i), fmt::format("{}\n", i));
    if (i % 3 == 0) it::make_dirs(fmt::format("{}/t{}/d{}", upper, i % 30, i));  // merged
  }
  it::StackPaths paths{{lower}, upper, tmp.mkdir("work"), {}};
  const std::string mnt = tmp.mkdir("mnt");
  it::ForegroundDaemon daemon(mnt, paths, {"prlimit", "--nofile=128:128"});
  INFO("laminafs -f: " << daemon.describe());
  REQUIRE(daemon.ok());

  for (int pass = 0; pass < 2; ++pass) {
    INFO("pass " << pass);
    int dirs = 0, files = 0;
    std::set<int> errors;
    for (int t = 0; t < 30; ++t) {
      const std::string top = fmt::format("{}/t{}", mnt, t);
      for (const std::string& d : list_dir(top)) {
        ++dirs;
        for (const std::string& f : list_dir(top + "/" + d)) {
          struct stat st;
          if (f != "f") continue;  // the files made by the pass before
          if (::stat((top + "/" + d + "/" + f).c_str(), &st) == 0) {
            ++files;
          } else {
            errors.insert(errno);
          }
        }
      }
    }
    for (int err : errors) {
      INFO("stat failed with " << it::errno_name(err));
      CHECK(err == 0);
    }
    CHECK(dirs == kTreeDirs);
    CHECK(files == kTreeDirs);
    // And writes deep in it: copy-ups of their parents, creates.
    for (int i = pass; i < kTreeDirs; i += 97) {
      const std::string d = fmt::format("{}/t{}/d{}", mnt, i % 30, i);
      CHECK(write_path(d + "/f", O_WRONLY | O_APPEND, "more\n") == 0);
      CHECK(it::read_file(d + "/f") == fmt::format("{}\nmore\n", i));
      CHECK(write_path(d + "/new", O_CREAT | O_WRONLY | O_TRUNC, "new\n") == 0);
    }
    INFO("daemon descriptors: " << fd_count(daemon.pid()));
    CHECK(fd_count(daemon.pid()) <= 128u);
  }
  CHECK_FALSE(daemon.wait_exit(std::chrono::milliseconds(0)));
}

}  // namespace lamina::ft
