// SPDX-License-Identifier: Apache-2.0
// The timed workloads. Each runs against one directory (a mount or a plain directory), times
// only the syscalls of the workload itself with CLOCK_MONOTONIC, and records its metrics
// (seconds) and notes (counts, flags) in a Result. Setup (opening files, warming caches,
// sizing files) happens outside the timed region unless the workload says otherwise.
#pragma once

#include <string>

#include "bench_util.h"

namespace lamina::bench {

struct Context {
  std::string root;  // the directory under test
  int root_fd;       // an open descriptor of it
  const Args& args;
};

using WorkloadFn = void (*)(const Context&, Result&);

// The workload called `name`, or nullptr.
WorkloadFn find_workload(const std::string& name);

// "name: one-line description" of every workload, for the usage text.
std::string workload_help();

}  // namespace lamina::bench
