// SPDX-License-Identifier: Apache-2.0
#pragma once
// Child processes for the integration tests: output captured in files, waits with a timeout,
// never a leftover child.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace lamina::it {

// Result of a finished child process.
struct ProcResult {
  int status = -1;         // waitpid status
  bool timed_out = false;  // killed by us after the timeout
  std::string out;         // stdout
  std::string err;         // stderr

  bool exited() const;
  int exit_code() const;  // -1 unless exited()
  bool succeeded() const { return exited() && exit_code() == 0; }
  std::string describe() const;  // "exit 1" / "signal 9" / "timed out", plus stderr
};

// A child process whose stdout/stderr go to files (never pipes: a daemonized grandchild may
// keep them open). The destructor kills (SIGKILL) and reaps it if it is still running.
class Child {
 public:
  // Starts argv[0] (looked up in PATH) in `cwd` (empty: ours).
  explicit Child(const std::vector<std::string>& argv, const std::string& cwd = "");
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !status_; }
  // Waits up to `timeout` for the child to exit; the waitpid status, or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  void kill_and_reap();
  // Output so far (complete once the child exited).
  ProcResult result() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  bool killed_ = false;
  std::string out_path_;
  std::string err_path_;
};

// Runs argv to completion (killed after `timeout`).
ProcResult run_process(const std::vector<std::string>& argv,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30),
                       const std::string& cwd = "");

}  // namespace lamina::it
