// SPDX-License-Identifier: Apache-2.0
// Directory offsets through laminafs: telldir/seekdir/rewinddir on a merged directory must
// resume exactly where they left off.

#include <dirent.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "integration/parity.h"
#include "integration/scenarios.h"

namespace lamina::it {
namespace {

struct Named {
  std::string name;
  ino_t ino;
};

// Reads up to `limit` entries (all when 0) from d.
std::vector<Named> read_some(DIR* d, size_t limit = 0) {
  std::vector<Named> out;
  while (limit == 0 || out.size() < limit) {
    errno = 0;
    struct dirent* de = ::readdir(d);
    if (de == nullptr) {
      if (errno != 0) FAIL_CHECK("readdir: " << errno_name(errno));
      break;
    }
    if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
    out.push_back({de->d_name, de->d_ino});
  }
  return out;
}

std::vector<std::string> names_of(const std::vector<Named>& v) {
  std::vector<std::string> out;
  out.reserve(v.size());
  for (const auto& n : v) out.push_back(n.name);
  return out;
}

std::string show(const std::vector<std::string>& v, size_t n = 5) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < n; ++i) s += (i ? ", " : "") + v[i];
  return s + (v.size() > n ? ", ..." : "");
}

TEST_CASE("readdir: telldir/seekdir/rewinddir on a merged directory of ~2,000 entries",
          "[readdir]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  StackSpec stack(3);
  // "." and ".." are left out of the comparisons: POSIX lets a filesystem omit them.
  std::set<std::string> expected;
  stack[0].many_files("d", "a", 1200);
  for (uint64_t i = 0; i < 1200; ++i) expected.insert(many_name("a", i));
  stack[1].many_files("d", "b", 700);
  for (uint64_t i = 0; i < 700; ++i) expected.insert(many_name("b", i));
  for (uint64_t i = 0; i < 100; ++i) {
    stack[1].whiteout("d/" + many_name("a", i * 12));
    expected.erase(many_name("a", i * 12));
  }
  stack[2].many_files("d", "c", 200);
  for (uint64_t i = 0; i < 200; ++i) expected.insert(many_name("c", i));
  stack[2].file("d/" + many_name("a", 12), "re-created");
  expected.insert(many_name("a", 12));
  stack[2].dir("d/subdir");
  expected.insert("subdir");

  auto layers = materialize_stack(stack, tmp.sub("c"), mixed_forms(9, /*per_entry=*/true));
  Mount m(tmp.mkdir("mnt"), StackPaths{layers, "", "", {}});
  INFO(m.describe());
  REQUIRE(m.ok());
  const std::string dir = m.path() + "/d";

  DIR* d = ::opendir(dir.c_str());
  REQUIRE(d != nullptr);
  auto first = read_some(d, 1000);
  REQUIRE(first.size() == 1000);
  long pos = ::telldir(d);
  auto rest = read_some(d);
  ::seekdir(d, pos);
  auto rest_again = read_some(d);
  {
    auto a = names_of(rest);
    auto b = names_of(rest_again);
    INFO("after seekdir(telldir()) at entry 1000: first read gave "
         << a.size() << " entries [" << show(a) << "], re-read " << b.size() << " [" << show(b)
         << "]");
    CHECK(a == b);
  }

  std::vector<std::string> all = names_of(first);
  for (const auto& n : rest) all.push_back(n.name);
  std::set<std::string> got(all.begin(), all.end());
  CHECK(got.size() == all.size());  // no name twice
  CHECK(got == expected);

  ::rewinddir(d);
  auto again = names_of(read_some(d));
  CHECK(again == all);

  // Positions taken every 97 entries, visited again in random order.
  ::rewinddir(d);
  std::vector<std::pair<long, std::string>> marks;
  for (size_t i = 0;; ++i) {
    long here = ::telldir(d);
    errno = 0;
    struct dirent* de = ::readdir(d);
    if (de == nullptr) break;
    if (i % 97 == 0 && std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0) {
      marks.push_back({here, de->d_name});
    }
  }
  std::shuffle(marks.begin(), marks.end(), std::mt19937(42));
  for (const auto& [where, name] : marks) {
    ::seekdir(d, where);
    struct dirent* de = ::readdir(d);
    INFO("seekdir to the position of " << name);
    REQUIRE(de != nullptr);
    CHECK(std::string(de->d_name) == name);
  }
  ::closedir(d);

  // Two streams on the same directory, read alternately, each see everything once.
  DIR* d1 = ::opendir(dir.c_str());
  DIR* d2 = ::opendir(dir.c_str());
  REQUIRE(d1 != nullptr);
  REQUIRE(d2 != nullptr);
  std::vector<std::string> s1;
  std::vector<std::string> s2;
  for (bool more1 = true, more2 = true; more1 || more2;) {
    if (more1) {
      auto part = names_of(read_some(d1, 150));
      more1 = part.size() == 150;
      s1.insert(s1.end(), part.begin(), part.end());
    }
    if (more2) {
      auto part = names_of(read_some(d2, 61));
      more2 = part.size() == 61;
      s2.insert(s2.end(), part.begin(), part.end());
    }
  }
  ::closedir(d1);
  ::closedir(d2);
  CHECK(std::set<std::string>(s1.begin(), s1.end()) == expected);
  CHECK(std::set<std::string>(s2.begin(), s2.end()) == expected);
  CHECK(s1.size() == expected.size());
  CHECK(s2.size() == expected.size());

  // d_ino from readdir is the st_ino of the name.
  std::vector<std::string> bad;
  for (const auto& n : first) {
    struct stat st;
    if (::lstat((dir + "/" + n.name).c_str(), &st) != 0) {
      bad.push_back(n.name + ": lstat " + errno_name(errno));
    } else if (st.st_ino != n.ino) {
      bad.push_back(fmt::format("{}: d_ino {} st_ino {}", n.name, n.ino, st.st_ino));
    }
  }
  INFO(bad.size() << " problems, first: " << (bad.empty() ? "" : bad.front()));
  CHECK(bad.empty());
}

TEST_CASE("readdir: many threads opening, reading and closing directories at once",
          "[readdir][concurrency]") {
  // Regression: the daemon once replied to READDIR while holding the handle's lock, and the
  // RELEASEDIR that followed on another thread freed the handle under it (heap corruption,
  // the daemon died within a few hundred readdirs).
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  StackSpec stack(2);
  for (int d = 0; d < 8; ++d) {
    stack[0].many_files(fmt::format("d{}", d), "a", 40);
    stack[1].many_files(fmt::format("d{}", d), "b", 40);
  }
  auto layers = materialize_stack(stack, tmp.sub("c"), constant_forms(kKernelForms));
  Mount m(tmp.mkdir("mnt"), StackPaths{layers, "", "", {}});
  INFO(m.describe());
  REQUIRE(m.ok());

  std::atomic<int> failures{0};
  std::atomic<int> first_errno{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 400 && failures == 0; ++i) {
        std::string dir = m.path() + fmt::format("/d{}", (t + i) % 8);
        DIR* d = ::opendir(dir.c_str());
        if (d == nullptr) {
          first_errno = errno;
          ++failures;
          return;
        }
        size_t n = 0;
        for (;;) {
          errno = 0;
          struct dirent* de = ::readdir(d);
          if (de == nullptr) break;
          if (std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0) ++n;
        }
        int err = errno;
        ::closedir(d);
        if (err != 0 || n != 80) {
          first_errno = err;
          ++failures;
          return;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  INFO("first failure: " << (first_errno ? errno_name(first_errno) : "wrong entry count"));
  CHECK(failures == 0);
  struct stat st;
  INFO("the daemon must still answer after the run");
  CHECK(::stat((m.path() + "/d0").c_str(), &st) == 0);
}

}  // namespace
}  // namespace lamina::it
