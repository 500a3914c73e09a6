// SPDX-License-Identifier: Apache-2.0
// Inode numbers seen through laminafs: one per object (hard links share theirs), equal in
// readdir and stat, stable while mounted, one st_dev for the whole mount.

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "integration/parity.h"
#include "integration/scenarios.h"

namespace lamina::it {
namespace {

// For each path, the sorted list of every path with the same st_ino ("a b c"), i.e. the
// partition of the tree into objects.
std::map<std::string, std::string> ino_groups(const std::vector<Entry>& entries) {
  std::map<ino_t, std::vector<std::string>> by_ino;
  for (const auto& e : entries) {
    if (e.stat_ok) by_ino[e.st.st_ino].push_back(e.path);
  }
  std::map<std::string, std::string> groups;
  for (auto& [ino, paths] : by_ino) {
    std::sort(paths.begin(), paths.end());
    std::string joined;
    for (const auto& p : paths) joined += (joined.empty() ? "" : " ") + p;
    for (const auto& p : paths) groups[p] = joined;
  }
  return groups;
}

const Entry* find(const std::vector<Entry>& entries, const std::string& path) {
  for (const auto& e : entries) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

TEST_CASE("inodes: unique per object, shared by hard links, d_ino == st_ino, one st_dev",
          "[inode]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  StackSpec stack(5);
  add_scenarios(stack);
  add_random(stack, 77);
  ParityMounts mounts(tmp, stack, mixed_forms(5, /*per_entry=*/true), ParityOptions{});
  WalkOptions opts;
  opts.read_contents = false;
  auto lam = walk_tree(mounts.lamina_root(), opts);
  auto ker = walk_tree(mounts.kernel_root(), opts);
  REQUIRE(lam.size() > 100);

  SECTION("one st_dev for every entry") {
    std::set<std::string> bad;
    for (const auto& e : lam) {
      if (e.stat_ok && e.st.st_dev != lam.front().st.st_dev) bad.insert(e.path);
    }
    INFO(bad.size() << " entries on another st_dev than the root, first: "
                    << (bad.empty() ? "" : *bad.begin()));
    CHECK(bad.empty());
  }

  SECTION("readdir d_ino equals st_ino") {
    std::vector<std::string> bad;
    for (const auto& e : lam) {
      if (e.path == "." || !e.stat_ok) continue;
      if (e.d_ino != e.st.st_ino) {
        bad.push_back(fmt::format("{}: d_ino {} st_ino {}", e.path, e.d_ino, e.st.st_ino));
      }
    }
    INFO(bad.size() << " mismatches, first: " << (bad.empty() ? "" : bad.front()));
    CHECK(bad.empty());
  }

  SECTION("st_ino partitions the tree like kernel overlayfs: only hard links share") {
    auto lg = ino_groups(lam);
    auto kg = ino_groups(ker);
    std::vector<std::string> diffs;
    for (const auto& [path, group] : kg) {
      auto it = lg.find(path);
      std::string got = it == lg.end() ? "<missing>" : it->second;
      if (got != group) {
        diffs.push_back(fmt::format("{}: kernel shares st_ino with [{}], laminafs with [{}]", path,
                                    group, got));
      }
    }
    std::string report;
    for (size_t i = 0; i < diffs.size() && i < 20; ++i) report += "  " + diffs[i] + "\n";
    INFO(diffs.size() << " paths grouped differently:\n" << report);
    CHECK(diffs.empty());

    // Harness sanity: the kernel groups exactly the hard links of the scenarios.
    CHECK(kg["links/k1"] == "links/k1 links/k2");
    CHECK(kg["links/t1"] == "links/t1 links/t2");
  }

  SECTION("hard links: same st_ino, real st_nlink") {
    auto ino = [&](const std::string& p) {
      const Entry* e = find(lam, p);
      return e && e->stat_ok ? e->st.st_ino : 0;
    };
    auto nlink = [&](const std::string& p) {
      const Entry* e = find(lam, p);
      return e && e->stat_ok ? e->st.st_nlink : 0;
    };
    CHECK(ino("links/k1") != 0);
    CHECK(ino("links/k1") == ino("links/k2"));
    CHECK(nlink("links/k1") == 2);
    CHECK(ino("links/t1") == ino("links/t2"));
    CHECK(nlink("links/t2") == 2);
    // h1 has three names in its layer; one is deleted above and one replaced above.
    CHECK(nlink("links/h1") == 3);
    CHECK(ino("links/h1") != ino("links/h2"));
    CHECK(ino("links/k1") != ino("links/t1"));
  }

  SECTION("st_ino stays the same across stats while mounted") {
    auto again = walk_tree(mounts.lamina_root(), opts);
    std::vector<std::string> changed;
    std::map<std::string, ino_t> first;
    for (const auto& e : lam) first[e.path] = e.st.st_ino;
    for (const auto& e : again) {
      auto it = first.find(e.path);
      if (it != first.end() && it->second != e.st.st_ino) changed.push_back(e.path);
    }
    INFO(changed.size() << " entries changed st_ino, first: "
                        << (changed.empty() ? "" : changed.front()));
    CHECK(changed.empty());
    // fstat of an open file agrees with lstat of its name.
    const std::string f = mounts.lamina_root() + "/deep/a/b/c/common";
    int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat a, b;
    REQUIRE(::fstat(fd, &a) == 0);
    REQUIRE(::lstat(f.c_str(), &b) == 0);
    ::close(fd);
    CHECK(a.st_ino == b.st_ino);
    CHECK(a.st_dev == b.st_dev);
  }
}

}  // namespace
}  // namespace lamina::it
