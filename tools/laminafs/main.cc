// SPDX-License-Identifier: Apache-2.0
// laminafs: the union filesystem daemon. See README.md for the command line.

#include <cstdio>
#include <string>
#include <vector>

#include "lamina/core/mount_options.h"
#include "lamina/fuse/daemon.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string error;
  auto parsed = lamina::core::parse_command_line(args, &error);
  if (!parsed) {
    std::fprintf(stderr, "laminafs: %s\n(try 'laminafs --help')\n", error.c_str());
    return 1;
  }
  switch (parsed->action) {
    case lamina::core::ParsedCommandLine::Action::kHelp:
      std::fputs(lamina::core::usage_text("laminafs").c_str(), stdout);
      return 0;
    case lamina::core::ParsedCommandLine::Action::kVersion: lamina::fuse::print_version(); return 0;
    case lamina::core::ParsedCommandLine::Action::kMount: break;
  }
  return lamina::fuse::run_daemon(parsed->options);
}
