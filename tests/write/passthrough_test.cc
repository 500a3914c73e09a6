// SPDX-License-Identifier: Apache-2.0
// FUSE passthrough (a build against libfuse >= 3.17, LAMINA_LIBFUSE_SOURCE=ON, which builds 3.18):
// the data of upper files goes between the kernel and the upper file without the daemon, and the
// kernel's rule that one inode's open files are all passthrough or all not never shows as an error.
//
// How passthrough is told apart from the normal path: a descriptor that has read a page keeps
// it in the FUSE page cache on the normal path, so a change made to the upper file behind the
// mount's back stays invisible through that descriptor; with passthrough the read goes to the
// upper file and sees the change.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <string>

#include "integration/fs_util.h"
#include "integration/mount_helpers.h"
#include "integration/process.h"
#include "lamina/base/unique_fd.h"

namespace lamina::it {
namespace {

UniqueFd open_or_fail(const std::string& path, int flags, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  INFO(path << ": " << std::strerror(errno));
  REQUIRE(fd >= 0);
  return UniqueFd(fd);
}

std::string pread_string(int fd, size_t n, off_t off) {
  std::string buf(n, '\0');
  ssize_t got = ::pread(fd, buf.data(), n, off);
  INFO(std::strerror(errno));
  REQUIRE(got >= 0);
  buf.resize(static_cast<size_t>(got));
  return buf;
}

void pwrite_all(int fd, const std::string& data, off_t off) {
  ssize_t n = ::pwrite(fd, data.data(), data.size(), off);
  INFO(std::strerror(errno));
  REQUIRE(n == static_cast<ssize_t>(data.size()));
}

// What an open descriptor of mnt/NAME reads after the upper file changed behind its back:
// true when it sees the change (passthrough).
bool reads_through_to_upper(const std::string& mnt, const std::string& upper,
                            const std::string& name) {
  const std::string a(4096, 'a'), b(4096, 'b');
  write_file(mnt + "/" + name, a);
  UniqueFd fd = open_or_fail(mnt + "/" + name, O_RDONLY);
  REQUIRE(pread_string(fd.get(), 4096, 0) == a);
  {
    UniqueFd direct = open_or_fail(upper + "/" + name, O_WRONLY);
    pwrite_all(direct.get(), b, 0);
  }
  std::string now = pread_string(fd.get(), 4096, 0);
  REQUIRE((now == a || now == b));
  return now == b;
}

struct PassStack {
  TempDir tmp;
  std::string lower = tmp.mkdir("lower");
  std::string upper = tmp.mkdir("upper");
  std::string work = tmp.mkdir("work");
  std::string mnt = tmp.mkdir("mnt");
  StackPaths paths(std::vector<std::string> extra = {}) const {
    return StackPaths{{lower}, upper, work, std::move(extra)};
  }
};

}  // namespace

TEST_CASE("passthrough: upper files' data bypasses the daemon when built in", "[passthrough]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  const bool built_in = laminafs_built_with("FUSE passthrough");
  PassStack s;
  SECTION("default: on when built in (root has CAP_SYS_ADMIN)") {
    Mount m(s.mnt, s.paths());
    REQUIRE(m.ok());
    CHECK(reads_through_to_upper(s.mnt, s.upper, "f") == built_in);
  }
  SECTION("-o passthrough=0 turns it off") {
    Mount m(s.mnt, s.paths({"passthrough=0"}));
    REQUIRE(m.ok());
    CHECK_FALSE(reads_through_to_upper(s.mnt, s.upper, "f"));
  }
}

TEST_CASE("passthrough: opens of one inode never mix modes into an error", "[passthrough]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  PassStack s;
  const std::string old_data(8192, 'o');
  write_file(s.lower + "/lowerfile", old_data);
  Mount m(s.mnt, s.paths());
  REQUIRE(m.ok());
  const std::string f = s.mnt + "/lowerfile";

  SECTION("a write open (copy-up) while the lower file is open read-only") {
    UniqueFd ro = open_or_fail(f, O_RDONLY);
    REQUIRE(pread_string(ro.get(), 8192, 0) == old_data);
    UniqueFd rw = open_or_fail(f, O_RDWR);
    pwrite_all(rw.get(), "NEW", 0);
    // The read-only descriptor follows the copy-up (as on kernel overlayfs since 4.19).
    CHECK(pread_string(ro.get(), 3, 0) == "NEW");
    UniqueFd ro2 = open_or_fail(f, O_RDONLY);
    CHECK(pread_string(ro2.get(), 3, 0) == "NEW");
  }
  SECTION("opens after every earlier one was closed start afresh") {
    { UniqueFd ro = open_or_fail(f, O_RDONLY); }
    {
      UniqueFd rw = open_or_fail(f, O_RDWR);
      pwrite_all(rw.get(), "one", 0);
    }
    UniqueFd a = open_or_fail(f, O_RDWR);
    UniqueFd b = open_or_fail(f, O_RDONLY);
    pwrite_all(a.get(), "two", 0);
    CHECK(pread_string(b.get(), 3, 0) == "two");
    CHECK(read_file(s.upper + "/lowerfile").substr(0, 3) == "two");
  }
  // Regression: the daemon's descriptor had O_APPEND, so the write-back of a shared mapping of
  // an O_APPEND file went to its end ("hello world", size 8192) instead of to its pages.
  SECTION("size, append, truncate and mmap on a new file agree with the upper") {
    const std::string n = s.mnt + "/new";
    UniqueFd w = open_or_fail(n, O_RDWR | O_CREAT | O_APPEND);
    REQUIRE(::write(w.get(), "hello ", 6) == 6);
    REQUIRE(::write(w.get(), "world", 5) == 5);
    struct stat st;
    REQUIRE(::fstat(w.get(), &st) == 0);
    CHECK(st.st_size == 11);
    REQUIRE(::stat(n.c_str(), &st) == 0);
    CHECK(st.st_size == 11);
    REQUIRE(::ftruncate(w.get(), 4096) == 0);
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, w.get(), 0);
    REQUIRE(p != MAP_FAILED);
    static_cast<char*>(p)[0] = 'H';
    REQUIRE(::msync(p, 4096, MS_SYNC) == 0);
    REQUIRE(::munmap(p, 4096) == 0);
    UniqueFd r = open_or_fail(n, O_RDONLY);
    CHECK(pread_string(r.get(), 11, 0) == "Hello world");
    CHECK(read_file(s.upper + "/new").substr(0, 11) == "Hello world");
    REQUIRE(::stat((s.upper + "/new").c_str(), &st) == 0);
    CHECK(st.st_size == 4096);
  }
}

}  // namespace lamina::it
