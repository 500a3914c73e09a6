// SPDX-License-Identifier: Apache-2.0
#pragma once
// What every FUSE op reaches through fuse_req_userdata(). Private to src/fuse.

#include <memory>

#include "lamina/core/union_fs.h"

namespace lamina::fuse {

struct DaemonState {
  std::unique_ptr<core::UnionFs> fs;
  double timeout = 1.0;  // entry and attribute cache timeout, seconds
  bool acl = true;       // ask the kernel for POSIX ACL handling
};

}  // namespace lamina::fuse
