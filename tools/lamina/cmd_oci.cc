// SPDX-License-Identifier: Apache-2.0
// export, import (to be written).
#include "commands.h"

namespace lamina::tool {
void add_oci(CLI::App&, Globals&, Action&) {}
}  // namespace lamina::tool
