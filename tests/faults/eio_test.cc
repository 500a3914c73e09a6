// SPDX-License-Identifier: Apache-2.0
// EIO from a lower layer: the lower is faultfs (see faultfs.cc), where files named eio* have
// a bad block. A read of it must reach the caller as EIO; a copy-up of that file must fail
// with EIO and leave nothing; the daemon serves every other file as before.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "faults/fault_support.h"

namespace lamina::ft {
namespace {

const std::string kGood = "good data\n";

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

// errno of reading `len` bytes at `off` into *out (EBADMSG: fewer bytes than asked).
int pread_data(const std::string& path, off_t off, size_t len, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  out->assign(len, '\0');
  ssize_t n = ::pread(fd, out->data(), len, off);
  int err = n < 0 ? errno : 0;
  ::close(fd);
  if (err == 0 && static_cast<size_t>(n) != len) err = EBADMSG;
  return err;
}

int pread_errno(const std::string& path, off_t off, size_t len) {
  std::string ignored;
  return pread_data(path, off, len, &ignored);
}

}  // namespace

TEST_CASE("EIO: a bad block of a lower file reaches the caller; the daemon lives on",
          "[faults][eio]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir tmp;
  const std::string src = tmp.mkdir("src");
  it::write_file(src + "/eio.bin", pattern(16 * 1024));
  it::make_dirs(src + "/dir");
  it::write_file(src + "/dir/eio-meta.bin", pattern(16 * 1024));
  it::write_file(src + "/good.txt", kGood);
  it::write_file(src + "/dir/good.txt", kGood);
  FaultLower lower(src, tmp.mkdir("faulty"));
  INFO("faultfs: " << lower.describe());
  REQUIRE(lower.ok());
  // The injection works below laminafs: reading the bad block of faultfs itself fails.
  REQUIRE(pread_errno(lower.path() + "/eio.bin", kBadBegin, 4096) == EIO);
  REQUIRE(pread_errno(lower.path() + "/good.txt", 0, kGood.size()) == 0);

  it::StackPaths paths{{lower.path()}, tmp.mkdir("upper"), tmp.mkdir("work"), {}};
  const std::string mnt = tmp.mkdir("mnt");
  it::ForegroundDaemon daemon(mnt, paths);
  INFO("laminafs -f: " << daemon.describe());
  REQUIRE(daemon.ok());
  drop_caches(3);

  SECTION("reads") {
    // The first block is good (its readahead runs into the bad one).
    std::string head;
    CHECK(pread_data(mnt + "/eio.bin", 0, 100, &head) == 0);
    CHECK(head == pattern(100));
    CHECK(read_all(mnt + "/eio.bin") == EIO);
    CHECK(pread_errno(mnt + "/eio.bin", kBadBegin, 4096) == EIO);
    // Regression: the bytes before the bad block used to come back as a short read, which the
    // kernel takes for the end of the file: it cut the file there and served zeros (or EOF)
    // for the rest. The blocks after the bad one must read as they are.
    std::string tail;
    CHECK(pread_data(mnt + "/eio.bin", kBadEnd, 4096, &tail) == 0);
    CHECK(tail == pattern(16 * 1024).substr(kBadEnd, 4096));
    struct stat st;
    REQUIRE(::stat((mnt + "/eio.bin").c_str(), &st) == 0);
    CHECK(st.st_size == 16 * 1024);
    // Again, past every cache: no failure turned into data.
    drop_caches(3);
    CHECK(pread_errno(mnt + "/eio.bin", kBadBegin + 100, 10) == EIO);
    CHECK(read_all(mnt + "/eio.bin") == EIO);
  }
  SECTION("copy-up of data") {
    CHECK(write_path(mnt + "/eio.bin", O_WRONLY | O_APPEND, "more") == EIO);
    CHECK(work_leftovers(paths.work).empty());
    CHECK(list_dir(paths.upper).empty());
    struct stat st;
    REQUIRE(::stat((mnt + "/eio.bin").c_str(), &st) == 0);
    CHECK(st.st_size == 16 * 1024);
    // Truncating to zero needs no data from below: it works.
    CHECK(write_path(mnt + "/eio.bin", O_WRONLY | O_TRUNC, "new") == 0);
    CHECK(it::read_file(mnt + "/eio.bin") == "new");
  }
  SECTION("copy-up of metadata, then of data") {
    // chmod copies metadata only (metacopy): no data read, so it works.
    CHECK(errno_of(::chmod((mnt + "/dir/eio-meta.bin").c_str(), 0600)) == 0);
    CHECK(write_path(mnt + "/dir/eio-meta.bin", O_WRONLY | O_APPEND, "more") == EIO);
    CHECK(work_leftovers(paths.work).empty());
    struct stat st;
    REQUIRE(::stat((mnt + "/dir/eio-meta.bin").c_str(), &st) == 0);
    CHECK(st.st_size == 16 * 1024);
    CHECK((st.st_mode & 07777) == 0600);
    drop_caches(3);
    CHECK(read_all(mnt + "/dir/eio-meta.bin") == EIO);
  }
  // In every case: the daemon is alive and serves the other files, reads and copy-ups.
  CHECK_FALSE(daemon.wait_exit(std::chrono::milliseconds(0)));
  CHECK(it::read_file(mnt + "/good.txt") == kGood);
  CHECK(it::read_file(mnt + "/dir/good.txt") == kGood);
  CHECK(write_path(mnt + "/dir/good.txt", O_WRONLY | O_APPEND, "more\n") == 0);
  CHECK(it::read_file(mnt + "/dir/good.txt") == kGood + "more\n");
  CHECK(list_dir(mnt) == std::vector<std::string>{"dir", "eio.bin", "good.txt"});
}

}  // namespace lamina::ft
