// SPDX-License-Identifier: Apache-2.0
// Concurrent writers and renamers on one union, without mounting: copy-ups of the same lower
// objects race, renames and creates interleave, and the result is what some serial order
// would give.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <set>
#include <thread>

#include "../test_util.h"
#include "lamina/base/sys.h"
#include "lamina/core/dir_layer.h"
#include "lamina/core/union_fs.h"
#include "union_fixture.h"

using lamina::core::Caller;
using lamina::core::DirLayer;
using lamina::core::Layer;
using lamina::core::Node;
using lamina::core::UnionConfig;
using lamina::core::UnionFs;
using lamina::test::TempDir;
namespace t = lamina::test;

namespace {

std::unique_ptr<UnionFs> make_union(const TempDir& tmp) { return t::make_writable_union(tmp); }

}  // namespace

TEST_CASE("racing copy-ups of one lower file copy it once, whole", "[core][concurrency]") {
  TempDir tmp;
  const std::string content(4 << 20, 'z');
  for (int i = 0; i < 8; ++i)
    t::write_file(tmp / ("lower/deep/dir/f" + std::to_string(i)), content);
  auto fs = make_union(tmp);
  Node* dir = *fs->lookup(*fs->lookup(fs->root(), "deep"), "dir");
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      for (int i = 0; i < 8; ++i) {
        auto n = fs->lookup(dir, "f" + std::to_string((i + th) % 8));
        if (!n) {
          ++failures;
          continue;
        }
        auto fd = fs->open(*n, O_WRONLY);
        if (!fd || ::pwrite(fd->get(), "T", 1, th) != 1) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  for (int i = 0; i < 8; ++i) {
    std::string got = t::read_file(tmp / ("upper/deep/dir/f" + std::to_string(i)));
    REQUIRE(got.size() == content.size());
    CHECK(got.substr(0, 4) == "TTTT");
    CHECK(got.substr(4) == content.substr(4));
  }
  std::set<std::string> leftovers;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path() / "work"))
    leftovers.insert(e.path().filename());
  CHECK(leftovers.empty());  // no temp file left behind
}

TEST_CASE("concurrent creators and renamers in shared directories", "[core][concurrency]") {
  TempDir tmp;
  for (int i = 0; i < 40; ++i) t::write_file(tmp / ("lower/a/l" + std::to_string(i)), "lower");
  t::make_dir(tmp / "lower/b");
  auto fs = make_union(tmp);
  Node* a = *fs->lookup(fs->root(), "a");
  Node* b = *fs->lookup(fs->root(), "b");
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      for (int i = th; i < 40; i += 4) {
        std::string lname = "l" + std::to_string(i);
        std::string nname = "n" + std::to_string(i);
        // Each thread owns its names: the kernel would serialize per directory, the union
        // must not need it for disjoint names.
        if (!fs->rename(a, lname, b, lname, 0).ok()) ++failures;
        auto made = fs->create(a, nname, 0644, O_WRONLY, Caller{});
        if (!made || ::write(made->second.get(), "new", 3) != 3) ++failures;
        if (!fs->rename(a, nname, b, nname + "-moved", 0).ok()) ++failures;
        if (i % 8 == 0 && !fs->unlink(b, lname).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  auto list = [&](Node* d) {
    std::set<std::string> out;
    auto entries = fs->list(d);
    REQUIRE(entries.ok());
    for (const auto& e : *entries) {
      if (e.name != "." && e.name != "..") out.insert(e.name);
    }
    return out;
  };
  CHECK(list(a).empty());
  std::set<std::string> want;
  for (int i = 0; i < 40; ++i) {
    if (i % 8 != 0) want.insert("l" + std::to_string(i));
    want.insert("n" + std::to_string(i) + "-moved");
  }
  CHECK(list(b) == want);
  CHECK(t::read_file(tmp / "upper/b/l1") == "lower");
  CHECK(t::read_file(tmp / "upper/b/n1-moved") == "new");
}
