// SPDX-License-Identifier: Apache-2.0
// commit, diff (to be written).
#include "commands.h"

namespace lamina::tool {
void add_commit(CLI::App&, Globals&, Action&) {}
}  // namespace lamina::tool
