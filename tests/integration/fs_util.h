// SPDX-License-Identifier: Apache-2.0
#pragma once
// Small filesystem utilities for the integration tests. They throw std::runtime_error naming
// the path and the errno on failure.

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace lamina::it {

std::string errno_name(int err);                         // "EROFS (Read-only file system)"
[[noreturn]] void throw_errno(const std::string& what);  // what: errno_name(errno)

void write_file(const std::string& path, std::string_view content, mode_t mode = 0644);
std::string read_file(const std::string& path);
void make_dirs(const std::string& path, mode_t mode = 0755);  // mkdir -p
void make_symlink(const std::string& target, const std::string& path);
// rm -rf that never crosses into another mounted filesystem.
void remove_tree(const std::string& path);
// path without trailing slashes.
std::string strip_slash(std::string path);

// One line of /proc/self/mountinfo, octal escapes decoded.
struct MountInfo {
  std::string point;
  std::string fstype;
  std::string source;  // the device or the fsname ("/dev/loop3", "lamina")
};
std::vector<MountInfo> read_mountinfo();
// True if `path` is the mount point of some mount in /proc/self/mountinfo.
bool is_mountpoint(const std::string& path);

}  // namespace lamina::it
