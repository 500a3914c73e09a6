// SPDX-License-Identifier: Apache-2.0
#pragma once
// The libfuse low-level operation table. Private to src/fuse.

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

namespace lamina::fuse {

const fuse_lowlevel_ops& operations();

}  // namespace lamina::fuse
