// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: the laminafs command line (core/mount_options.h). The input is argv,
// one argument per line ("-o", "lowerdir=/a:/b,upperdir=/u,workdir=/w", "/mnt"); the -o and
// lowerdir splitters also get the whole input as one string.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lamina/core/mount_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> args;
  for (size_t pos = 0; pos <= text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    args.emplace_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  std::string error;
  auto parsed = lamina::core::parse_command_line(args, &error);
  // A refusal always says why.
  if (!parsed && error.empty()) __builtin_trap();
  (void)lamina::core::split_options(text);
  (void)lamina::core::split_lowerdirs(text);
  return 0;
}
