// SPDX-License-Identifier: Apache-2.0
#include "integration/kill_loop.h"

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace lamina::it {

uint64_t crash_seed(const std::string& what) {
  uint64_t seed = 0;
  if (const char* v = std::getenv("LAMINA_SEED"); v && *v) {
    seed = std::strtoull(v, nullptr, 10);
  } else {
    seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) %
           1000000007ull;
  }
  std::printf("crash %s: seed %llu (replay: LAMINA_SEED=%llu)\n", what.c_str(),
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  return seed;
}

int crash_iterations(int ci_default) {
  if (const char* v = std::getenv("LAMINA_CRASH_ITERATIONS"); v && *v) {
    int n = std::atoi(v);
    if (n > 0) return n;
  }
  return ci_default;
}

KillOutcome run_and_kill(const std::vector<std::string>& argv, std::chrono::microseconds window,
                         std::mt19937_64& rng) {
  KillOutcome o;
  o.delay = std::chrono::microseconds(
      std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(window.count(), 0))(rng));
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + o.delay;
  Child child(argv);
  // Short naps until the kill point, so a child that exits first is seen (nearly) when it does.
  for (;;) {
    if (child.wait(std::chrono::milliseconds(0))) {
      o.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now() - start);
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      ::kill(child.pid(), SIGKILL);
      o.killed = true;
      o.elapsed = o.delay;
      break;
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        deadline - now, std::chrono::microseconds(500)));
  }
  child.wait(std::chrono::seconds(60));
  o.result = child.result();
  return o;
}

std::chrono::microseconds time_run(const std::vector<std::string>& argv, ProcResult* result) {
  auto t0 = std::chrono::steady_clock::now();
  *result = run_process(argv, std::chrono::seconds(300));
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               t0);
}

}  // namespace lamina::it
