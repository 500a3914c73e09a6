// SPDX-License-Identifier: Apache-2.0
// Directory descriptors under a budget: a union with far more cached directories than the
// budget allows works like one without a budget, and a directory whose descriptor was closed is
// opened again where it is now (moved in the upper) or not at all (removed).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "../test_util.h"
#include "lamina/core/obj_ref.h"
#include "lamina/core/union_fs.h"
#include "union_fixture.h"

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
