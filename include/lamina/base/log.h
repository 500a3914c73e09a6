// SPDX-License-Identifier: Apache-2.0
#pragma once
// Minimal leveled logging to stderr (or syslog once the daemon has detached).

#include <fmt/format.h>

#include <string_view>

namespace lamina::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_level(Level level);
Level level();
// After daemonizing stderr is /dev/null: route messages to syslog instead.
void use_syslog(const char* ident);
// The program name that prefixes every stderr line ("laminafs", "lamina").
void set_program(const char* name);
void write(Level level, std::string_view msg);

template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::kError, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (level() >= Level::kWarn) write(Level::kWarn, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() >= Level::kInfo) write(Level::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() >= Level::kDebug) write(Level::kDebug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace lamina::log
