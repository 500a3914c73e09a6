// SPDX-License-Identifier: Apache-2.0
// push, pull (to be written).
#include "commands.h"

namespace lamina::tool {
void add_registry(CLI::App&, Globals&, Action&) {}
}  // namespace lamina::tool
