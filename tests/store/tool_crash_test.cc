// SPDX-License-Identifier: Apache-2.0
// Crash consistency of the lamina tool: `import`, `gc`, `restore` and `snapshot` are killed
// (SIGKILL) at random points of their run -- the window is the measured length of one whole
// run -- and then:
//  - `lamina fsck` calls the store clean;
//  - every image the store lists restores completely, to the tree it was made from;
//  - a rerun of the operation succeeds and gives the complete result;
//  - restore: DEST is absent or complete, never half.
// Seeded and replayable (LAMINA_SEED=N); LAMINA_CRASH_ITERATIONS=N kills each operation N
// times (CI: a few each). The kill loop is integration/kill_loop.h, shared with the daemon's
// crash tests and the commit one.

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "integration/kill_loop.h"
#include "store/store_support.h"
#include "write/write_support.h"

namespace lamina::st {
namespace {

namespace fs = std::filesystem;

constexpr int kCiIterations = 4;  // kills per operation in CI (x4 operations)

void run_ok(const std::string& root, const std::vector<std::string>& args) {
  auto r = lamina(root, args);
  INFO(fmt::format("lamina {}: {}", fmt::join(args, " "), r.describe()));
  REQUIRE(r.succeeded());
}

std::vector<std::string> tool(const std::string& root, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {lamina_bin(), "--root", root};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// A tree with every kind the store keeps, big enough that an operation takes a while.
void make_tree(const std::string& dir, unsigned files, size_t size, uint64_t salt) {
  for (unsigned i = 0; i < files; ++i) {
    const std::string sub = fmt::format("{}/d{}", dir, i % 16);
    fs::create_directories(sub);
    std::ofstream f(fmt::format("{}/f{}", sub, i), std::ios::binary);
    f << wt::pattern_bytes(size + i, salt * 100000 + i);
  }
  fs::create_symlink("d0/f0", dir + "/link");
  fs::create_hard_link(dir + "/d1/f1", dir + "/hard");
  fs::create_directories(dir + "/empty");
}

// The image's tree, restored into a fresh directory and compared with `expected`.
std::string restore_diff(const std::string& root, const std::string& image,
                         const std::string& expected, const std::string& scratch) {
  const std::string dest = scratch + "/check";
  fs::remove_all(dest);
  auto r = lamina(root, {"restore", image, dest, "-q"});
  if (!r.succeeded()) return "restore of " + image + " failed: " + r.describe();
  std::string d = wt::compare_trees(expected, dest, "source", image);
  fs::remove_all(dest);
  return d;
}

// fsck clean, and every listed image restores to its source (`sources`: image -> tree; an
// image not in it is a failure: nothing else may appear).
void check_store(const std::string& root, const std::map<std::string, std::string>& sources,
                 const std::string& scratch) {
  auto fsck = lamina(root, {"fsck"});
  INFO("fsck: " << fsck.out << fsck.err);
  REQUIRE(fsck.succeeded());
  auto list = lamina(root, {"images", "--json"});
  REQUIRE(list.succeeded());
  for (const auto& img : nlohmann::json::parse(list.out)) {
    const std::string name = img["name"].get<std::string>();
    INFO("image " << name);
    auto src = sources.find(name);
    REQUIRE(src != sources.end());
    std::string d = restore_diff(root, name, src->second, scratch);
    INFO(d);
    CHECK(d.empty());
  }
}

struct Counts {
  int killed = 0, finished = 0;
  // Counts the outcome; a run that finished on its own narrows the kill window to its length
  // (a warm cache makes later runs quicker than the probe).
  void add(const it::KillOutcome& o, std::chrono::microseconds* window) {
    ++(o.killed ? killed : finished);
    if (!o.killed && o.elapsed < *window) *window = o.elapsed;
  }
  void print(const char* what) const {
    std::printf("crash %s: %d killed, %d finished on their own\n", what, killed, finished);
  }
};

TEST_CASE("crash: kill -9 of `lamina import` at random points", "[store][crash][tool-crash]") {
  it::TempDir t;
  const std::string root = t.sub("store"), src = t.mkdir("src"), scratch = t.mkdir("scratch");
  make_tree(src, 120, 8 * 1024, 1);
  run_ok(root, {"commit", "-q", "--upper", src, "--tag", "base:1", "--timestamp", "1700000000"});
  const std::string layout = t.sub("layout");
  run_ok(root, {"export", "base:1", "--oci", layout + ":v1", "-q"});
  run_ok(root, {"rm", "base:1"});
  run_ok(root, {"gc"});
  std::mt19937_64 rng(it::crash_seed("import"));
  it::ProcResult probe;
  auto window = it::time_run(
      tool(root, {"import", "--oci", layout + ":v1", "--tag", "imp:probe", "-q"}), &probe);
  REQUIRE(probe.succeeded());
  run_ok(root, {"rm", "imp:probe"});
  run_ok(root, {"gc"});
  Counts counts;
  const int rounds = it::crash_iterations(kCiIterations);
  for (int i = 0; i < rounds; ++i) {
    const std::string tag = fmt::format("imp:{}", i);
    auto run = it::run_and_kill(tool(root, {"import", "--oci", layout + ":v1", "--tag", tag, "-q"}),
                                window, rng);
    counts.add(run, &window);
    INFO("round " << i << ", killed " << run.killed << " after " << run.delay.count() << " us");
    check_store(root, {{tag, src}}, scratch);
    run_ok(root, {"import", "--oci", layout + ":v1", "--tag", tag, "--force", "-q"});
    std::string d = restore_diff(root, tag, src, scratch);
    INFO(d);
    CHECK(d.empty());
    // Next round imports into an empty store again (else every object is there already).
    run_ok(root, {"rm", tag});
    run_ok(root, {"gc"});
  }
  counts.print("import");
  CHECK(counts.killed > 0);
}

TEST_CASE("crash: kill -9 of `lamina gc` at random points", "[store][crash][tool-crash]") {
  it::TempDir t;
  const std::string root = t.sub("store"), src = t.mkdir("src"), scratch = t.mkdir("scratch");
  make_tree(src, 60, 8 * 1024, 2);
  run_ok(root, {"commit", "-q", "--upper", src, "--tag", "keep:1"});
  // Garbage to sweep: a committed layer whose image is removed.
  auto make_garbage = [&](int n) {
    const std::string junk = t.sub(fmt::format("junk{}", n));
    make_tree(junk, 120, 8 * 1024, 100 + n);
    run_ok(root, {"commit", "-q", "--upper", junk, "--tag", "junk:1"});
    run_ok(root, {"rm", "junk:1"});
    fs::remove_all(junk);
  };
  make_garbage(-1);
  std::mt19937_64 rng(it::crash_seed("gc"));
  it::ProcResult probe;
  auto window = it::time_run(tool(root, {"gc"}), &probe);
  REQUIRE(probe.succeeded());
  Counts counts;
  const int rounds = it::crash_iterations(kCiIterations);
  for (int i = 0; i < rounds; ++i) {
    make_garbage(i);
    auto run = it::run_and_kill(tool(root, {"gc"}), window, rng);
    counts.add(run, &window);
    INFO("round " << i << ", killed " << run.killed << " after " << run.delay.count() << " us");
    check_store(root, {{"keep:1", src}}, scratch);
    run_ok(root, {"gc"});
    // The rerun swept everything: only the kept image's layer is left.
    auto layers = lamina(root, {"layers", "--json"});
    REQUIRE(layers.succeeded());
    CHECK(nlohmann::json::parse(layers.out).size() == 1);
  }
  counts.print("gc");
  CHECK(counts.killed > 0);
}

TEST_CASE("crash: kill -9 of `lamina restore` leaves DEST absent or complete",
          "[store][crash][tool-crash]") {
  it::TempDir t;
  const std::string root = t.sub("store"), src = t.mkdir("src"), scratch = t.mkdir("scratch");
  make_tree(src, 120, 8 * 1024, 3);
  run_ok(root, {"snapshot", src, "--tag", "vol", "-q"});
  std::mt19937_64 rng(it::crash_seed("restore"));
  it::ProcResult probe;
  const std::string out = t.mkdir("out");
  auto window = it::time_run(tool(root, {"restore", "vol:1", out + "/probe", "-q"}), &probe);
  REQUIRE(probe.succeeded());
  Counts counts;
  int absent = 0, complete = 0;
  const int rounds = it::crash_iterations(kCiIterations);
  for (int i = 0; i < rounds; ++i) {
    const std::string dest = fmt::format("{}/r{}", out, i);
    auto run = it::run_and_kill(tool(root, {"restore", "vol:1", dest, "-q"}), window, rng);
    counts.add(run, &window);
    INFO("round " << i << ", killed " << run.killed << " after " << run.delay.count() << " us");
    if (fs::exists(dest)) {
      ++complete;
      std::string d = wt::compare_trees(src, dest, "source", "restored (killed)");
      INFO(d);
      CHECK(d.empty());
    } else {
      ++absent;
      run_ok(root, {"restore", "vol:1", dest, "-q"});  // the rerun
      std::string d = wt::compare_trees(src, dest, "source", "restored (rerun)");
      INFO(d);
      CHECK(d.empty());
    }
    // Only DEST's own temp dir may be left beside it; nothing else under out/.
    for (const auto& e : fs::directory_iterator(out)) {
      const std::string name = e.path().filename();
      bool ok = name == "probe" || name.rfind("r", 0) == 0;
      CHECK(ok);
      if (name.find(".lamina-restore-") != std::string::npos) fs::remove_all(e.path());
    }
    fs::remove_all(dest);
  }
  check_store(root, {{"vol:1", src}}, scratch);
  counts.print("restore");
  std::printf("crash restore: DEST absent %d, complete %d\n", absent, complete);
  CHECK(counts.killed > 0);
}

TEST_CASE("crash: kill -9 of `lamina snapshot` at random points", "[store][crash][tool-crash]") {
  it::TempDir t;
  const std::string root = t.sub("store"), vol = t.mkdir("vol"), scratch = t.mkdir("scratch");
  make_tree(vol, 120, 8 * 1024, 4);
  run_ok(root, {"snapshot", vol, "--tag", "vol", "-q"});
  auto chain_length = [&] {
    auto r = lamina(root, {"snapshots", "vol", "--json"});
    REQUIRE(r.succeeded());
    return nlohmann::json::parse(r.out).size();
  };
  auto latest_equals_vol = [&](const char* when) {
    auto r = lamina(root, {"snapshots", "vol", "--json"});
    REQUIRE(r.succeeded());
    const std::string tag = nlohmann::json::parse(r.out).back()["tag"].get<std::string>();
    std::string d = restore_diff(root, "vol:" + tag, vol, scratch);
    INFO(when << ": " << d);
    CHECK(d.empty());
  };
  // Changes between snapshots: new and rewritten files, so each one stores new data.
  auto mutate = [&](int n) {
    std::ofstream(fmt::format("{}/new{}", vol, n), std::ios::binary)
        << wt::pattern_bytes(size_t{256} << 10, 7000 + n);
    for (int k = 0; k < 20; ++k) {
      std::ofstream(fmt::format("{}/d{}/f{}", vol, (n * 20 + k) % 120 % 16, (n * 20 + k) % 120),
                    std::ios::binary)
          << wt::pattern_bytes(10000 + k, 9000 + n * 100 + k);
    }
    if (n > 0) fs::remove(fmt::format("{}/new{}", vol, n - 1));
  };
  std::mt19937_64 rng(it::crash_seed("snapshot"));
  mutate(0);
  it::ProcResult probe;
  auto window = it::time_run(tool(root, {"snapshot", vol, "--tag", "vol", "-q"}), &probe);
  REQUIRE(probe.succeeded());
  Counts counts;
  const int rounds = it::crash_iterations(kCiIterations);
  for (int i = 0; i < rounds; ++i) {
    mutate(i + 1);
    const size_t before = chain_length();
    auto run = it::run_and_kill(tool(root, {"snapshot", vol, "--tag", "vol", "-q"}), window, rng);
    counts.add(run, &window);
    INFO("round " << i << ", killed " << run.killed << " after " << run.delay.count() << " us");
    auto fsck = lamina(root, {"fsck"});
    INFO("fsck: " << fsck.out << fsck.err);
    REQUIRE(fsck.succeeded());
    const size_t after = chain_length();
    CHECK((after == before || after == before + 1));
    if (after == before + 1) latest_equals_vol("the killed snapshot completed");
    run_ok(root, {"snapshot", vol, "--tag", "vol", "-q"});  // the rerun
    CHECK(chain_length() >= before + 1);
    latest_equals_vol("after the rerun");
  }
  counts.print("snapshot");
  CHECK(counts.killed > 0);
}

}  // namespace
}  // namespace lamina::st
