// SPDX-License-Identifier: Apache-2.0
// mount (to be written).
#include "commands.h"

namespace lamina::tool {
void add_mount(CLI::App&, Globals&, Action&) {}
}  // namespace lamina::tool
