// SPDX-License-Identifier: Apache-2.0
// Under load: LOAD_PROCS lamina_load processes (default 16) do mixed metadata and data work on
// one shared tree for LOAD_TIME seconds (default 30; `make load` runs 10 minutes), first on a
// plain directory, then on a laminafs mount whose lower layer holds the same initial tree.
//
// - Errors: racing on a shared tree fails calls legitimately (ENOENT, EEXIST, ENOTEMPTY, ...).
//   Every (operation, errno) the mount gives must also occur on the plain directory, except
//   for the races in kRaces (an errno and the operations it can come from here), which a plain
//   run of another length may simply not have hit.
// - Deadlock: lamina_load fails (exit 2, stacks of the stuck workers and of every daemon
//   thread on stderr) when a worker makes no progress for LOAD_STALL seconds (default 60).
// - Memory: the daemon's RSS is sampled every second; from the end of the warm-up (a quarter
//   of the run, at least 5 s) to the end it may grow by at most kRssSlackKib plus a tenth of
//   its size then. Why this bound: the daemon's own state is a function of the tree (about
//   250 names) and of what the kernel keeps looked up, both reached during the warm-up; what
//   remains is allocator noise (per-thread arenas, a request buffer per worker thread). A leak
//   of one node or handle per operation grows by tens of MiB within a minute at these rates.
//   Not asserted in sanitizer builds, whose allocator quarantines freed memory (RSS climbs by
//   design); the figures are printed there too.
// - The daemon exits 0 after the unmount (in sanitizer builds: no leak report).

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "integration/mount_helpers.h"
#include "soak/soak_support.h"

#ifndef LAMINA_SANITIZED
#define LAMINA_SANITIZED 0
#endif

namespace lamina::soak {
namespace {

using it::ForegroundDaemon;
using it::ProcResult;
using it::run_process;
using it::StackPaths;
using it::TempDir;

constexpr long kRssSlackKib = 16 * 1024;
// errno -> the operations of lamina_load that give it through a race alone ("*": all of them:
// a parent directory can vanish under any path).
const std::map<std::string, std::set<std::string>> kRaces = {
    {"ENOENT", {"*"}},
    {"EEXIST", {"mkdir", "link", "symlink"}},
    {"ENOTEMPTY", {"rmdir", "rename"}},
    {"ENOTDIR", {"rmdir", "rename"}},
    {"EISDIR", {"rmdir", "rename"}},
    {"ENODATA", {"xattr"}},
    // symlink(fK) at fK is a loop: everything that follows the last component.
    {"ELOOP", {"create", "write", "read", "truncate", "chmod"}},
};

bool is_race(const std::string& op, const std::string& err) {
  auto it = kRaces.find(err);
  return it != kRaces.end() && (it->second.count("*") || it->second.count(op));
}

struct Report {
  uint64_t total = 0;
  double seconds = 0;
  bool stall = false;
  std::map<std::pair<std::string, std::string>, uint64_t> errors;  // (op, errno) -> count
  std::vector<std::pair<double, long>> rss;                        // (second, KiB)
};

Report read_report(const std::string& path) {
  Report r;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string kind;
    f >> kind;
    if (kind == "total") {
      f >> r.total >> r.seconds;
    } else if (kind == "stall") {
      int s = 0;
      f >> s;
      r.stall = s != 0;
    } else if (kind == "error") {
      std::string op, err;
      uint64_t n = 0;
      f >> op >> err >> n;
      r.errors[{op, err}] = n;
    } else if (kind == "rss") {
      double t = 0;
      long kib = 0;
      f >> t >> kib;
      if (kib > 0) r.rss.emplace_back(t, kib);
    }
  }
  return r;
}

std::string describe_errors(const Report& r) {
  std::map<std::string, uint64_t> by_errno;
  for (const auto& [key, n] : r.errors) by_errno[key.second] += n;
  std::string s;
  for (const auto& [err, n] : by_errno) s += " " + err + "=" + std::to_string(n);
  return s.empty() ? " none" : s;
}

ProcResult load(const std::vector<std::string>& args, long seconds, long stall) {
  std::vector<std::string> argv{load_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, std::chrono::seconds(seconds + 2 * stall + 300));
}

TEST_CASE("load: 16 processes on one mount: only plain-dir errors, no stall, flat memory",
          "[load]") {
  extend_it_watchdog();
  LAMINA_REQUIRE_MOUNT_ENV();
  const long secs = env_long("LOAD_TIME", kDefaultLoadSeconds);
  const long procs = env_long("LOAD_PROCS", 16);
  const long stall = env_long("LOAD_STALL", 60);
  const long plain_secs = std::clamp(secs / 2, 5L, 120L);
  const uint64_t seed = seed_from_env("LOAD_SEED");
  TempDir tmp;
  const std::string lower = tmp.sub("lower"), plain = tmp.sub("plain"), upper = tmp.mkdir("upper"),
                    work = tmp.mkdir("work"), mnt = tmp.mkdir("mnt");
  REQUIRE(load({"prepare", "--dir", lower}, 0, 0).succeeded());
  REQUIRE(load({"prepare", "--dir", plain}, 0, 0).succeeded());

  const std::string common_procs = std::to_string(procs), common_seed = std::to_string(seed);
  ProcResult p = load({"run", "--dir", plain, "--procs", common_procs, "--duration",
                       std::to_string(plain_secs), "--seed", common_seed, "--report",
                       tmp.sub("plain.report"), "--stall", std::to_string(stall)},
                      plain_secs, stall);
  INFO("plain run: " << p.describe() << "\n" << p.out);
  REQUIRE(p.succeeded());
  const Report on_plain = read_report(tmp.sub("plain.report"));

  Report on_mount;
  {
    ForegroundDaemon daemon(mnt, StackPaths{{lower}, upper, work, {}});
    INFO("daemon: " << daemon.describe());
    REQUIRE(daemon.ok());
    ProcResult m =
        load({"run", "--dir", mnt, "--procs", common_procs, "--duration", std::to_string(secs),
              "--seed", common_seed, "--report", tmp.sub("mount.report"), "--stall",
              std::to_string(stall), "--daemon-pid", std::to_string(daemon.pid())},
             secs, stall);
    on_mount = read_report(tmp.sub("mount.report"));
    ProcResult d = daemon.unmount();
    INFO("mount run: " << m.describe() << "\n" << m.out);
    INFO("daemon after unmount: " << d.describe());
    CHECK(m.succeeded());
    CHECK_FALSE(on_mount.stall);
    CHECK(d.succeeded());
  }

  std::printf("load plain: %llu ops in %.0f s (%.0f ops/s), errors:%s\n",
              static_cast<unsigned long long>(on_plain.total), on_plain.seconds,
              on_plain.total / std::max(on_plain.seconds, 1.0), describe_errors(on_plain).c_str());
  std::printf("load mount: %llu ops in %.0f s (%.0f ops/s), errors:%s\n",
              static_cast<unsigned long long>(on_mount.total), on_mount.seconds,
              on_mount.total / std::max(on_mount.seconds, 1.0), describe_errors(on_mount).c_str());
  CHECK(on_mount.total > 0);
  std::printf("load errors by operation (plain / mount):\n");
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> table;
  for (const auto& [key, n] : on_plain.errors) table[key].first = n;
  for (const auto& [key, n] : on_mount.errors) table[key].second = n;
  for (const auto& [key, counts] : table) {
    std::printf("  %-8s %-10s %10llu %10llu\n", key.first.c_str(), key.second.c_str(),
                static_cast<unsigned long long>(counts.first),
                static_cast<unsigned long long>(counts.second));
  }

  // Errors: nothing the plain directory would not give.
  std::set<std::pair<std::string, std::string>> plain_pairs;
  for (const auto& [key, n] : on_plain.errors) plain_pairs.insert(key);
  std::string unexpected;
  for (const auto& [key, n] : on_mount.errors) {
    if (is_race(key.first, key.second) || plain_pairs.count(key)) continue;
    unexpected += " " + key.first + ":" + key.second + "x" + std::to_string(n);
  }
  INFO("(operation, errno) pairs on the mount but not on the plain directory:" << unexpected);
  CHECK(unexpected.empty());

  // Memory: flat after the warm-up.
  REQUIRE(on_mount.rss.size() >= 4);
  const double warm = std::max(5.0, on_mount.seconds / 4);
  long base = 0, peak = 0, last = on_mount.rss.back().second;
  for (const auto& [t, kib] : on_mount.rss) {
    if (t <= warm) base = kib;
    if (t > warm) peak = std::max(peak, kib);
  }
  if (base == 0) base = on_mount.rss.front().second;
  const long bound = base + kRssSlackKib + base / 10;
  std::printf(
      "load daemon RSS: start %ld KiB, after warm-up (%.0f s) %ld KiB, peak after %ld "
      "KiB, end %ld KiB; bound %ld KiB%s\n",
      on_mount.rss.front().second, warm, base, peak, last, bound,
      LAMINA_SANITIZED ? " (not asserted: sanitizer build)" : "");
  if (!LAMINA_SANITIZED) {
    INFO("daemon RSS grew from " << base << " KiB after the warm-up to " << peak << " KiB");
    CHECK(peak <= bound);
  }
}

}  // namespace
}  // namespace lamina::soak
