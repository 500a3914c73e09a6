// SPDX-License-Identifier: Apache-2.0
// gc, fsck (to be written).
#include "commands.h"

namespace lamina::tool {
void add_maintenance(CLI::App&, Globals&, Action&) {}
}  // namespace lamina::tool
