// SPDX-License-Identifier: Apache-2.0
// images, layers, inspect, tag, rm (to be written).
#include "commands.h"

namespace lamina::tool {
void add_images(CLI::App&, Globals&, Action&) {}
}  // namespace lamina::tool
