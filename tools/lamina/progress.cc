// SPDX-License-Identifier: Apache-2.0
#include "progress.h"

#include <unistd.h>

#include <cstdio>

#include "commands.h"

namespace lamina::tool {

Progress::Progress(std::string label, bool enabled)
    : label_(std::move(label)),
      enabled_(enabled && ::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { finish(); }

void Progress::update(uint64_t done, uint64_t total) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100) && done < total) return;
  last_ = now;
  drawn_ = true;
  const int width = 30;
  int filled = total == 0 ? width : static_cast<int>(width * (static_cast<double>(done) / total));
  if (filled > width) filled = width;
  double secs = std::chrono::duration<double>(now - start_).count();
  uint64_t rate = secs > 0.05 ? static_cast<uint64_t>(static_cast<double>(done) / secs) : 0;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r%s [%s] %s / %s  %s/s   ", label_.c_str(), bar.c_str(),
               human_bytes(done).c_str(), human_bytes(total).c_str(), human_bytes(rate).c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (!drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace lamina::tool
