// SPDX-License-Identifier: Apache-2.0
// Directory descriptors under a budget: a union with far more cached directories than the
// budget allows works like one without a budget, and a directory whose descriptor was closed is
// opened again where it is now (moved in the upper) or not at all (removed).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../test_util.h"
#include "lamina/core/obj_ref.h"
#include "lamina/core/union_fs.h"
#include "union_fixture.h"

using lamina::Status;
using lamina::core::Caller;
using lamina::core::DescriptorBudget;
using lamina::core::Node;
using lamina::core::UnionFs;
using lamina::test::TempDir;
namespace t = lamina::test;

namespace {

// Sets a small budget for one test and puts the old one back.
struct SmallBudget {
  explicit SmallBudget(size_t n) : old(DescriptorBudget::limit()) {
    DescriptorBudget::set_limit(n);
  }
  ~SmallBudget() { DescriptorBudget::set_limit(old); }
  size_t old;
};

long open_fds() {
  return std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                       std::filesystem::directory_iterator());
}

Node* child(UnionFs& fs, Node* dir, const std::string& name) {
  auto n = fs.lookup(dir, name);
  return n ? *n : nullptr;
}

// Twenty lower directories, l0..l19, to crowd the budget with.
constexpr int kCrowd = 20;
void make_crowd(const TempDir& tmp) {
  for (int i = 0; i < kCrowd; ++i) t::write_file(tmp / ("lower/l" + std::to_string(i) + "/f"), "x");
}
// Looks them all up (the budget closes older descriptors), then closes every unused one.
void crowd_out(UnionFs& fs) {
  for (int i = 0; i < kCrowd; ++i) REQUIRE(t::walk(fs, "l" + std::to_string(i)) != nullptr);
  DescriptorBudget::shed();
}

std::string read_node(UnionFs& fs, Node* n) {
  auto fd = fs.open(n, O_RDONLY);
  if (!fd) return "<" + fd.error().message() + ">";
  char buf[256];
  ssize_t r = ::pread(fd->get(), buf, sizeof buf, 0);
  return r < 0 ? "<read>" : std::string(buf, static_cast<size_t>(r));
}

}  // namespace

TEST_CASE("regression: more cached directories than descriptors (RLIMIT_NOFILE)", "[core][fds]") {
  // find(1) over a lower of 20,040 directories failed with EMFILE near the end: every cached
  // directory node held one descriptor per layer. Now they share a budget.
  constexpr int kDirs = 400;
  constexpr size_t kBudget = 16;
  SmallBudget budget(kBudget);
  TempDir tmp;
  for (int i = 0; i < kDirs; ++i) {
    t::write_file(tmp / ("lower/d" + std::to_string(i) + "/sub/f"), "lower " + std::to_string(i));
  }
  t::write_file(tmp / "upper/d7/sub/up", "upper 7");  // some directories merge two layers
  t::write_file(tmp / "upper/d300/sub/up", "upper 300");
  auto fs = t::make_writable_union(tmp);
  const long before = open_fds();

  std::vector<Node*> subs;
  for (int i = 0; i < kDirs; ++i) {
    Node* d = child(*fs, fs->root(), "d" + std::to_string(i));
    REQUIRE(d != nullptr);
    Node* sub = child(*fs, d, "sub");
    REQUIRE(sub != nullptr);
    subs.push_back(sub);
  }
  // Every node is still cached, but only the budget's worth of descriptors is open.
  CHECK(fs->node_count() >= 2 * kDirs);
  CHECK(DescriptorBudget::open_count() <= kBudget);
  CHECK(open_fds() - before <= static_cast<long>(kBudget) + 2);

  // All of them still work, in any order: lookups, listings, reads, attributes.
  for (int i = kDirs - 1; i >= 0; --i) {
    INFO("d" << i);
    Node* f = child(*fs, subs[i], "f");
    REQUIRE(f != nullptr);
    CHECK(read_node(*fs, f) == "lower " + std::to_string(i));
    auto list = fs->list(subs[i]);
    REQUIRE(list.ok());
    CHECK(list->size() == (i == 7 || i == 300 ? 4u : 3u));
    CHECK(fs->getattr(subs[i]).ok());
  }
  // Writes into directories whose descriptors were closed: copy-up of the parents, creates.
  Caller me{::getuid(), ::getgid(), 022};
  for (int i = 0; i < kDirs; i += 37) {
    auto made = fs->create(subs[i], "new", S_IFREG | 0644, O_WRONLY, me);
    REQUIRE(made.ok());
    REQUIRE(::write(made->second.get(), "n", 1) == 1);
    CHECK(t::read_file(tmp / ("upper/d" + std::to_string(i) + "/sub/new")) == "n");
  }
  CHECK(DescriptorBudget::open_count() <= kBudget);
}

TEST_CASE("a directory moved in the upper is opened again where it is now", "[core][fds]") {
  SmallBudget budget(4);
  TempDir tmp;
  make_crowd(tmp);
  t::write_file(tmp / "lower/moving/f", "lower file");
  t::make_dir(tmp / "upper/target");
  auto fs = t::make_writable_union(tmp);
  Caller me{::getuid(), ::getgid(), 022};

  Node* moving = t::walk(*fs, "moving");
  Node* target = t::walk(*fs, "target");
  REQUIRE(moving != nullptr);
  REQUIRE(target != nullptr);
  REQUIRE(fs->mkdir(moving, "inner", S_IFDIR | 0755, me).ok());  // copies `moving` up
  Node* inner = child(*fs, moving, "inner");
  REQUIRE(inner != nullptr);

  REQUIRE(fs->rename(fs->root(), "moving", target, "moved", 0).ok());
  // Fill the budget with other directories: `moving` and `inner` lose their descriptors.
  crowd_out(*fs);

  // Through the nodes cached before the move: the new place, not the old name.
  auto made = fs->create(inner, "g", S_IFREG | 0644, O_WRONLY, me);
  REQUIRE(made.ok());
  CHECK(t::read_file(tmp / "upper/target/moved/inner/g") == "");
  Node* f = child(*fs, moving, "f");
  REQUIRE(f != nullptr);
  CHECK(read_node(*fs, f) == "lower file");  // through the redirect
  CHECK(t::names(*fs, "target/moved") == std::set<std::string>{"f", "inner"});

  // Exchanged directories swap places, their descriptors closed afterwards.
  REQUIRE(fs->mkdir(fs->root(), "other", S_IFDIR | 0755, me).ok());
  Node* other = t::walk(*fs, "other");
  REQUIRE(other != nullptr);
  REQUIRE(fs->rename(target, "moved", fs->root(), "other", RENAME_EXCHANGE).ok());
  DescriptorBudget::shed();
  REQUIRE(fs->mkdir(other, "in-other", S_IFDIR | 0755, me).ok());
  REQUIRE(fs->mkdir(inner, "in-inner", S_IFDIR | 0755, me).ok());
  struct stat st;
  CHECK(::lstat((tmp / "upper/target/moved/in-other").c_str(), &st) == 0);
  CHECK(::lstat((tmp / "upper/other/inner/in-inner").c_str(), &st) == 0);
}

TEST_CASE("a removed directory is never opened again by its old name", "[core][fds]") {
  SmallBudget budget(4);
  TempDir tmp;
  make_crowd(tmp);
  t::make_dir(tmp / "upper/gone");
  t::make_dir(tmp / "upper/replaced");
  t::make_dir(tmp / "upper/src/content");
  auto fs = t::make_writable_union(tmp);
  Caller me{::getuid(), ::getgid(), 022};

  Node* gone = t::walk(*fs, "gone");
  Node* replaced = t::walk(*fs, "replaced");
  REQUIRE(gone != nullptr);
  REQUIRE(replaced != nullptr);
  REQUIRE(fs->rmdir(fs->root(), "gone").ok());
  REQUIRE(fs->mkdir(fs->root(), "gone", S_IFDIR | 0755, me).ok());
  REQUIRE(fs->rename(fs->root(), "src", fs->root(), "replaced", 0).ok());
  crowd_out(*fs);

  // The old nodes still name the removed directories (a process may sit in one): reading one
  // says ENOENT as a removed directory does (not ESTALE: its descriptor was held), and nothing
  // lands in the new ones.
  auto left = fs->list(gone);
  REQUIRE_FALSE(left.ok());
  CHECK(left.code() == ENOENT);
  CHECK(fs->getattr(replaced).ok());
  auto in_gone = fs->mkdir(gone, "x", S_IFDIR | 0755, me);
  CHECK_FALSE(in_gone.ok());
  auto in_replaced = fs->mkdir(replaced, "x", S_IFDIR | 0755, me);
  CHECK_FALSE(in_replaced.ok());
  CHECK(t::names(*fs, "gone").empty());
  CHECK(t::names(*fs, "replaced") == std::set<std::string>{"content"});
}

TEST_CASE("threads reopening, sweeping and moving directories under a tiny budget", "[core][fds]") {
  // Four threads look up, read and create in 40 directories while a fifth renames one upper
  // directory back and forth and sheds the budget: every operation through a cached node must
  // succeed (the moved one included: it is reopened where it is now), whatever closes when.
  SmallBudget budget(3);
  TempDir tmp;
  constexpr int kDirs = 40;
  for (int i = 0; i < kDirs; ++i) {
    t::write_file(tmp / ("lower/d" + std::to_string(i) + "/f"), "lower " + std::to_string(i));
  }
  t::write_file(tmp / "upper/a/moving/f", "moving");
  t::make_dir(tmp / "upper/b");
  auto fs = t::make_writable_union(tmp);
  std::vector<Node*> dirs;
  for (int i = 0; i < kDirs; ++i) {
    Node* d = t::walk(*fs, "d" + std::to_string(i));
    REQUIRE(d != nullptr);
    dirs.push_back(d);
  }
  Node* moving = t::walk(*fs, "a/moving");
  Node* a = t::walk(*fs, "a");
  Node* b = t::walk(*fs, "b");
  REQUIRE(moving != nullptr);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);

  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::mutex first_mu;
  std::string first;  // GUARDED_BY(first_mu)
  auto fail = [&](const std::string& what) {
    if (failures.fetch_add(1) == 0) {
      std::lock_guard lock(first_mu);
      first = what;
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      Caller me{::getuid(), ::getgid(), 022};
      for (int round = 0; round < 150 && failures == 0; ++round) {
        const int i = (round * 7 + w * 11) % kDirs;
        Node* f = child(*fs, dirs[i], "f");
        if (f == nullptr || read_node(*fs, f) != "lower " + std::to_string(i)) {
          fail("read d" + std::to_string(i) + "/f");
        }
        const std::string name = "w" + std::to_string(w) + "-" + std::to_string(round);
        auto made = fs->create(moving, name, S_IFREG | 0644, O_WRONLY, me);
        if (!made) fail("create in moving: " + made.error().message());
        if (f) fs->forget(f, 1);
        if (made) fs->forget(made->first, 1);
      }
    });
  }
  threads.emplace_back([&] {
    for (int n = 0; !stop && failures == 0; ++n) {
      Status s = n % 2 == 0 ? fs->rename(a, "moving", b, "moving", 0)
                            : fs->rename(b, "moving", a, "moving", 0);
      if (!s) fail("rename: " + s.error().message());
      DescriptorBudget::shed();
    }
  });
  for (size_t i = 0; i + 1 < threads.size(); ++i) threads[i].join();
  stop = true;
  threads.back().join();
  INFO(first);
  CHECK(failures == 0);
  // Every file made through the moving directory's node is in it, wherever it is now.
  const bool in_a = t::walk(*fs, "a/moving") != nullptr;
  std::set<std::string> names = t::names(*fs, in_a ? "a/moving" : "b/moving");
  CHECK(names.size() == 1 + 4 * 150);
  CHECK(DescriptorBudget::open_count() <= 3);
}
