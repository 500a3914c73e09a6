// SPDX-License-Identifier: Apache-2.0
#pragma once
// The kill loop shared by the crash tests (the daemon's and the lamina tool's): one seed per
// run, printed so a failure replays (LAMINA_SEED=N), an iteration count that CI keeps small and
// a long local run raises (LAMINA_CRASH_ITERATIONS=N), and SIGKILL of a child at a random point
// of a time window.

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "integration/process.h"

namespace lamina::it {

// $LAMINA_SEED, else one from the clock. Printed as "crash WHAT: seed N (replay: ...)".
uint64_t crash_seed(const std::string& what);

// $LAMINA_CRASH_ITERATIONS when set (> 0), else `ci_default`.
int crash_iterations(int ci_default);

// What happened to one child of run_and_kill.
struct KillOutcome {
  bool killed = false;  // SIGKILL landed while it ran (else it finished first)
  std::chrono::microseconds delay{0};
  std::chrono::microseconds elapsed{0};  // until the kill, or until its exit was seen
  ProcResult result;
};

// Starts argv, waits a delay drawn uniformly from [0, window] and SIGKILLs it unless it already
// exited (watched every half millisecond), then reaps it (a child that exited on its own has
// its full result).
KillOutcome run_and_kill(const std::vector<std::string>& argv, std::chrono::microseconds window,
                         std::mt19937_64& rng);

// Wall time of running argv to completion; `result` gets the outcome.
std::chrono::microseconds time_run(const std::vector<std::string>& argv, ProcResult* result);

}  // namespace lamina::it
