// SPDX-License-Identifier: Apache-2.0
#include "lamina/base/log.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <string>

namespace lamina::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kWarn)};
std::atomic<bool> g_syslog{false};
std::atomic<const char*> g_program{"lamina"};
}  // namespace

void set_level(Level l) { g_level = static_cast<int>(l); }
Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

void set_program(const char* name) { g_program = name; }

void use_syslog(const char* ident) {
  openlog(ident, LOG_PID, LOG_DAEMON);
  g_syslog = true;
}

void write(Level l, std::string_view msg) {
  static constexpr const char* kNames[] = {"error", "warning", "info", "debug"};
  if (g_syslog) {
    static constexpr int kPrio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    syslog(kPrio[static_cast<int>(l)], "%.*s", static_cast<int>(msg.size()), msg.data());
    return;
  }
  std::string line =
      fmt::format("{}: {}: {}\n", g_program.load(), kNames[static_cast<int>(l)], msg);
  (void)!::write(STDERR_FILENO, line.data(), line.size());  // one write: lines never interleave
}

}  // namespace lamina::log
