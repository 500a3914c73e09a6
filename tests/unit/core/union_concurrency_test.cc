// SPDX-License-Identifier: Apache-2.0
// Concurrent writers and renamers on one union, without mounting: copy-ups of the same lower
// objects race, renames and creates interleave, and the result is what some serial order
// would give.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <set>
#include <thread>

#include "../test_util.h"
#include "lamina/base/sys.h"
#include "lamina/core/dir_layer.h"
#include "lamina/core/union_fs.h"
#include "union_fixture.h"

using lamina::Status;
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

// Found by the load test (tests/soak): an open for writing copies a lower file up while another
// process unlinks the same name (the kernel does not serialize the two). Before the fix the
// unlink could run between the copy-up's publishing rename and the node learning its upper
// part: the unlink did not find the node to pin it, replaced the new upper file with a
// whiteout, and the node went on naming that whiteout -- its next open failed with ENXIO (it
// opened the whiteout device), or the unlink failed with EEXIST. Now either order is a serial
// one: the open gets the file (which then goes away), or fails with ENOENT.
TEST_CASE("a copy-up racing an unlink of the same name: the node never names the whiteout",
          "[core][concurrency]") {
  TempDir tmp;
  constexpr int kFiles = 300;
  for (int i = 0; i < kFiles; ++i) t::write_file(tmp / ("lower/d/f" + std::to_string(i)), "data");
  auto fs = make_union(tmp);
  Node* dir = *fs->lookup(fs->root(), "d");
  std::vector<Node*> nodes;  // held like the kernel holds them
  for (int i = 0; i < kFiles; ++i) nodes.push_back(*fs->lookup(dir, "f" + std::to_string(i)));
  std::atomic<int> next_open{0}, next_unlink{0};
  std::vector<std::string> bad;
  std::mutex bad_mu;
  auto note = [&](const std::string& what) {
    std::lock_guard lock(bad_mu);
    bad.push_back(what);
  };
  std::thread opener([&] {
    for (int i = 0; i < kFiles; ++i) {
      while (next_unlink.load() < i) {
      }
      next_open = i + 1;
      auto fd = fs->open(nodes[i], O_WRONLY);
      if (!fd && fd.code() != ENOENT)
        note("open f" + std::to_string(i) + ": " + fd.error().message());
    }
  });
  std::thread unlinker([&] {
    for (int i = 0; i < kFiles; ++i) {
      next_unlink = i;
      while (next_open.load() < i) {
      }
      Status s = fs->unlink(dir, "f" + std::to_string(i));
      if (!s) note("unlink f" + std::to_string(i) + ": " + s.error().message());
    }
    next_unlink = kFiles;
  });
  opener.join();
  unlinker.join();
  for (int i = 0; i < kFiles; ++i) {
    // The unlinked file stays usable through the node, as an open file would on a plain
    // filesystem: a regular file, never the whiteout that now sits at its name.
    auto st = fs->getattr(nodes[i]);
    if (st && !S_ISREG(st->st_mode))
      note("f" + std::to_string(i) + " shows mode " + std::to_string(st->st_mode));
    auto fd = fs->open(nodes[i], O_RDONLY);
    if (!fd && fd.code() != ENOENT)
      note("reopen f" + std::to_string(i) + ": " + fd.error().message());
  }
  std::string shown;
  for (size_t i = 0; i < bad.size() && i < 8; ++i) shown += "\n  " + bad[i];
  INFO(bad.size() << " problems, the first:" << shown);
  CHECK(bad.empty());
  auto entries = fs->list(dir);
  REQUIRE(entries.ok());
  CHECK(entries->size() == 2);  // "." and "..": every name is gone
}

// Also found by the load test: a renamed file's node is re-pointed to its new name just after
// the rename, and the kernel lets an open or getattr of the same file run meanwhile. Before the
// fix those read the old name in that window: ENOENT, ENXIO (the whiteout the rename left), or
// another file. Now they check the object they reached is the node's and read again.
TEST_CASE("open and getattr racing renames of the same file reach that file",
          "[core][concurrency]") {
  TempDir tmp;
  t::write_file(tmp / "lower/d/a", "lower data");
  auto fs = make_union(tmp);
  Node* dir = *fs->lookup(fs->root(), "d");
  Node* file = *fs->lookup(dir, "a");
  REQUIRE(fs->open(file, O_WRONLY).ok());  // copied up: the renames leave whiteouts behind
  const uint64_t ino = file->ino;
  std::atomic<bool> done{false};
  std::vector<std::string> bad;
  std::thread renamer([&] {
    for (int i = 0; i < 2000; ++i) {
      Status s = fs->rename(dir, i % 2 ? "b" : "a", dir, i % 2 ? "a" : "b", 0);
      if (!s) bad.push_back("rename: " + s.error().message());
    }
    done = true;
  });
  int reads = 0;
  while (!done && bad.size() < 10) {
    ++reads;
    auto st = fs->getattr(file);
    if (!st) {
      bad.push_back("getattr: " + st.error().message());
    } else if (!S_ISREG(st->st_mode) || st->st_ino != ino) {
      bad.push_back("getattr: mode " + std::to_string(st->st_mode));
    }
    auto fd = fs->open(file, O_RDONLY);
    if (!fd) {
      bad.push_back("open: " + fd.error().message());
    } else {
      char buf[16] = {};
      ssize_t n = ::pread(fd->get(), buf, sizeof buf, 0);
      if (n != 10 || std::string(buf, 10) != "lower data") {
        bad.push_back("read " + std::to_string(n) + " bytes: " + std::string(buf, n > 0 ? n : 0));
      }
    }
  }
  renamer.join();
  std::string shown;
  for (size_t i = 0; i < bad.size() && i < 8; ++i) shown += "\n  " + bad[i];
  INFO(reads << " reads, " << bad.size() << " problems, the first:" << shown);
  CHECK(bad.empty());
}
