// SPDX-License-Identifier: Apache-2.0
#pragma once
// The laminafs daemon: validates the options against the filesystem, opens the layers,
// mounts, daemonizes once the mount is usable and serves requests until unmount or SIGTERM.

#include <memory>
#include <string>
#include <vector>

#include "lamina/core/layer.h"
#include "lamina/core/mount_options.h"

namespace lamina::fuse {

// Returns the process exit status. Every failure is reported on stderr, naming the problem.
// `extra_lowers` (topmost first) are layers the caller opened already (store layers of
// `lamina mount`); they go below options.lowerdirs, which may then be empty. `program` prefixes
// messages on stderr and names the daemon in syslog.
int run_daemon(const core::MountOptions& options,
               std::vector<std::unique_ptr<core::Layer>> extra_lowers = {},
               const char* program = "laminafs");

// Prints "laminafs version X" and the libfuse and kernel interface versions to stdout.
void print_version();

}  // namespace lamina::fuse
