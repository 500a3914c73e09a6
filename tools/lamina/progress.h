// SPDX-License-Identifier: Apache-2.0
#pragma once
// A one-line progress bar on stderr, drawn only when stderr is a terminal (never in logs or
// pipes), at most ten times a second.

#include <chrono>
#include <cstdint>
#include <string>

namespace lamina::tool {

class Progress {
 public:
  // `label`: what is being done ("commit"). `enabled`: false for --quiet.
  Progress(std::string label, bool enabled);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(uint64_t done, uint64_t total);
  // Clears the line.
  void finish();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace lamina::tool
