// SPDX-License-Identifier: Apache-2.0
#pragma once
// The laminafs command line, compatible with fuse-overlayfs as containers-storage calls its
// mount program:  laminafs [-f] [-d] [-o OPTS]... MOUNTPOINT
// Parsing only: nothing here touches the filesystem (validation of paths is the daemon's).

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lamina/core/id_map.h"

namespace lamina::core {

enum class XattrPermissions { kOff = 0, kFuseOverlayfs = 1, kContainers = 2 };

struct MountOptions {
  std::string mountpoint;
  std::vector<std::string> lowerdirs;  // topmost first, as in overlayfs
  std::string upperdir;                // empty: read-only mount
  std::string workdir;
  bool read_only = false;  // "ro"
  bool foreground = false;
  bool debug = false;
  bool volatile_mode = false;  // "volatile": sync requests are no-ops, no durability owed
  bool fsync = true;           // "fsync=0" turns fsync/fsyncdir into no-ops
  bool acl = true;             // "noacl" turns POSIX ACLs off
  bool static_nlink = false;   // directories always show st_nlink 1
  bool metacopy = true;        // "metacopy=off": chmod & co. copy data too (kernel metacopy=off)
  bool passthrough = true;     // "passthrough=0": never hand file data to the kernel (FUSE
                               // passthrough; only in a build against libfuse >= 3.17)
  bool writeback = false;      // "writeback=1": the kernel's writeback cache (write errors
                               // then show at fsync/close, not at write; no passthrough)
  bool io_uring = false;       // "io_uring=1": requests through FUSE over io_uring (only in a
                               // build against libfuse >= 3.18 built with it)
  double timeout = 1000000.0;  // entry/attr cache timeout in seconds ("timeout=")
  XattrPermissions xattr_permissions = XattrPermissions::kOff;
  IdMap uid_map;
  IdMap gid_map;
  // Options handed to libfuse/the kernel untouched (allow_other, context="...", fsname=...).
  std::vector<std::string> fuse_options;
};

struct ParsedCommandLine {
  enum class Action { kMount, kHelp, kVersion };
  Action action = Action::kMount;
  MountOptions options;
};

// Parses argv (without argv[0]). On failure returns nullopt and sets *error to a message that
// names the offending argument.
std::optional<ParsedCommandLine> parse_command_line(const std::vector<std::string>& args,
                                                    std::string* error);

// Splits an -o string at commas. "\," is a literal comma, and commas inside double quotes
// (SELinux context="a:b:c0,c1") do not split; other backslash escapes are kept for the
// option's own parser. Empty items are dropped.
std::vector<std::string> split_options(std::string_view text);

// Splits a lowerdir value at ':' ("\:" is a literal colon, "\\" a backslash).
std::vector<std::string> split_lowerdirs(std::string_view text);

// The usage text for -h.
std::string usage_text(std::string_view program);

}  // namespace lamina::core
