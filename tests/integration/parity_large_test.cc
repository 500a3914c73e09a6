// SPDX-License-Identifier: Apache-2.0
// Scale: a directory of 100,000 entries, an 8 MiB file, a stack of 120 lowers.

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <set>

#include "integration/parity.h"
#include "integration/scenarios.h"

namespace lamina::it {
namespace {

// Offset of the first byte where a and b differ (or the shorter size), for messages.
size_t first_difference(const std::string& a, const std::string& b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return i;
  }
  return n;
}

std::string read_with_buffer(const std::string& path, size_t bufsize) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open failed: " + errno_name(errno);
  std::string out;
  std::vector<char> buf(bufsize);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      out = "read failed: " + errno_name(errno);
      break;
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

TEST_CASE("large: a merged directory of 100,000 entries lists completely", "[large]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  StackSpec stack(3);
  stack[0].many_files("big", "f", 70000);
  stack[1].many_files("big", "g", 31000);
  std::set<std::string> expected;
  for (uint64_t i = 0; i < 70000; ++i) expected.insert(many_name("f", i));
  for (uint64_t i = 0; i < 31000; ++i) expected.insert(many_name("g", i));
  for (uint64_t i = 0; i < 1000; ++i) {
    stack[1].whiteout("big/" + many_name("f", i * 70));
    expected.erase(many_name("f", i * 70));
  }
  stack[2].file("big/" + many_name("f", 70), "re-created");
  expected.insert(many_name("f", 70));
  stack[2].file("big/zz-top", "top");
  expected.insert("zz-top");
  REQUIRE(expected.size() == 100002);

  // Only laminafs: the expected names are known, and whiteouts as .wh.NAME files are the
  // costliest form to filter (1,000 extra names in the listing of layer 1).
  auto layers = materialize_stack(stack, tmp.sub("c"),
                                  constant_forms({WhiteoutForm::kWhFile, OpaqueForm::kWhOpq}));
  Mount m(tmp.mkdir("mnt"), StackPaths{layers, "", "", {}});
  INFO(m.describe());
  REQUIRE(m.ok());

  const std::string dir = m.path() + "/big";
  DIR* d = ::opendir(dir.c_str());
  REQUIRE(d != nullptr);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    struct dirent* de = ::readdir(d);
    if (de == nullptr) {
      INFO("readdir failed after " << names.size() << " entries: " << errno_name(errno));
      CHECK(errno == 0);
      break;
    }
    if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
    names.push_back(de->d_name);
  }
  ::closedir(d);
  CHECK(names.size() == expected.size());
  std::set<std::string> got(names.begin(), names.end());
  CHECK(got.size() == names.size());  // no duplicates
  std::vector<std::string> missing;
  std::vector<std::string> extra;
  std::set_difference(expected.begin(), expected.end(), got.begin(), got.end(),
                      std::back_inserter(missing));
  std::set_difference(got.begin(), got.end(), expected.begin(), expected.end(),
                      std::back_inserter(extra));
  INFO(missing.size() << " names missing, first: " << (missing.empty() ? "-" : missing.front())
                      << "; " << extra.size()
                      << " unexpected, first: " << (extra.empty() ? "-" : extra.front()));
  CHECK(missing.empty());
  CHECK(extra.empty());

  struct stat st;
  CHECK(::lstat((dir + "/" + many_name("f", 70)).c_str(), &st) == 0);
  CHECK(read_file(dir + "/" + many_name("f", 70)) == "re-created");
  CHECK(::lstat((dir + "/" + many_name("g", 30999)).c_str(), &st) == 0);
  CHECK(::lstat((dir + "/" + many_name("f", 69999)).c_str(), &st) == 0);
  errno = 0;
  CHECK(::lstat((dir + "/" + many_name("f", 140)).c_str(), &st) == -1);
  CHECK(errno == ENOENT);
  errno = 0;
  CHECK(::lstat((dir + "/.wh." + many_name("f", 140)).c_str(), &st) == -1);
  CHECK(errno == ENOENT);
}

TEST_CASE("large: an 8 MiB file reads back exactly", "[large]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  const uint64_t size = (8u << 20) + 12345;
  StackSpec stack(2);
  stack[0].big_file("blob", size, 7);
  stack[1].big_file("blob2", (3u << 20) + 1, 8);
  stack[1].file("small", "s");
  auto layers = materialize_stack(stack, tmp.sub("c"), constant_forms(kKernelForms));
  // The layer holding the big file is reached through a symlink.
  make_symlink(layers[1], tmp.sub("bottom-link"));
  Mount m(tmp.mkdir("mnt"), StackPaths{{layers[0], tmp.sub("bottom-link")}, "", "", {}});
  INFO(m.describe());
  REQUIRE(m.ok());

  const std::string expected = big_file_bytes(size, 7);
  const std::string path = m.path() + "/blob";
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_size) == size);

  for (size_t bufsize : {size_t{1} << 20, size_t{4097}, size_t{128} << 10}) {
    std::string got = read_with_buffer(path, bufsize);
    INFO("read() with a " << bufsize << "-byte buffer: got " << got.size() << " bytes of " << size
                          << ", first difference at offset " << first_difference(got, expected));
    CHECK(got.size() == expected.size());
    CHECK(fnv1a(got.data(), got.size()) == fnv1a(expected.data(), expected.size()));
  }

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  for (uint64_t off :
       {uint64_t{0}, uint64_t{1}, uint64_t{4095}, uint64_t{4096}, uint64_t{131071},
        (uint64_t{1} << 20) - 1, uint64_t{5} << 20, size - 100, size - 1, size, size + 100}) {
    char buf[1000];
    ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(off));
    uint64_t want = off >= size ? 0 : std::min<uint64_t>(sizeof buf, size - off);
    INFO("pread at offset " << off);
    REQUIRE(n == static_cast<ssize_t>(want));
    CHECK(std::memcmp(buf, expected.data() + std::min(off, size), want) == 0);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  REQUIRE(map != MAP_FAILED);
  CHECK(std::memcmp(map, expected.data(), size) == 0);
  ::munmap(map, size);
  ::close(fd);

  std::string expected2 = big_file_bytes((3u << 20) + 1, 8);
  std::string got2 = read_file(m.path() + "/blob2");
  CHECK(got2.size() == expected2.size());
  CHECK(got2 == expected2);
}

TEST_CASE("large: 120 lower layers match kernel overlayfs", "[large][parity]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  StackSpec stack(120);
  for (size_t i = 0; i < stack.size(); ++i) {
    stack[i].file(fmt::format("f{:03}", i), fmt::format("file of layer {}", i));
    stack[i].file("common", fmt::format("layer {} wins", i));
    stack[i].file(fmt::format("d/x{:03}", i), "x");
    if (i > 0 && i % 10 == 0) stack[i].whiteout(fmt::format("f{:03}", i - 1));
    if (i > 0 && i % 25 == 0) stack[i].whiteout(fmt::format("d/x{:03}", i - 3));
  }
  stack[60].opaque_dir("o");
  stack[60].file("o/from60", "60");
  stack[10].file("o/from10", "hidden by the opaque dir of layer 60");
  stack[119].file("o/from119", "119");
  run_parity(stack, mixed_forms(3, /*per_entry=*/false), ParityOptions{}, "120 lowers");
}

}  // namespace
}  // namespace lamina::it
