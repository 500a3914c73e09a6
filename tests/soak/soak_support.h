// SPDX-License-Identifier: Apache-2.0
#pragma once
// Settings shared by the soak and load tests: durations and sizes from the environment (ctest
// sets short ones, `make soak` / `make load` long ones), the seed, and the helper binaries.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#ifndef LAMINA_FSX_BIN
#define LAMINA_FSX_BIN "lamina_fsx"
#endif
#ifndef LAMINA_LOAD_BIN
#define LAMINA_LOAD_BIN "lamina_load"
#endif

namespace lamina::soak {

inline std::string fsx_bin() { return LAMINA_FSX_BIN; }
inline std::string load_bin() { return LAMINA_LOAD_BIN; }

// $name as a positive number, else `fallback`.
inline long env_long(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  long n = std::atol(v);
  return n > 0 ? n : fallback;
}

// $name (or $LAMINA_SEED) when set, else from the clock; printed so a run can be replayed.
inline uint64_t seed_from_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) v = std::getenv("LAMINA_SEED");
  uint64_t seed =
      v && *v ? std::strtoull(v, nullptr, 10)
              : static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) %
                    1000000007ull;
  std::printf("%s=%llu (set it to replay)\n", name, static_cast<unsigned long long>(seed));
  return seed;
}

constexpr long kDefaultSoakSeconds = 30;
constexpr long kDefaultLoadSeconds = 30;

// The integration watchdog (LAMINA_IT_TIMEOUT, default 600 s) must outlast every run of this
// binary together (soak, then load on a plain dir and on the mount). Call before the first
// mount, which starts the watchdog.
inline void extend_it_watchdog() {
  long need = env_long("SOAK_TIME", kDefaultSoakSeconds) +
              2 * env_long("LOAD_TIME", kDefaultLoadSeconds) + 900;
  if (env_long("LAMINA_IT_TIMEOUT", 600) < need) {
    ::setenv("LAMINA_IT_TIMEOUT", std::to_string(need).c_str(), 1);
  }
}

}  // namespace lamina::soak
