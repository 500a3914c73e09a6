// SPDX-License-Identifier: Apache-2.0
#pragma once
// Every raw syscall lamina makes on layer content goes through here: descriptors get
// O_CLOEXEC, EINTR is retried, failures come back as Error with the step named.

#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>

#include "lamina/base/error.h"
#include "lamina/base/unique_fd.h"

namespace lamina::sys {

// openat() with O_CLOEXEC added.
Result<UniqueFd> openat(int dirfd, const char* name, int flags, mode_t mode = 0);
// O_PATH|O_NOFOLLOW handle on dirfd/name: never follows a symlink in the last component.
Result<UniqueFd> open_path(int dirfd, const char* name);
// Opens a new description of the object behind an O_PATH fd (through /proc/self/fd).
Result<UniqueFd> reopen(int path_fd, int flags);

Result<struct stat> fstat(int fd);                         // works on O_PATH fds
Result<struct stat> fstatat(int dirfd, const char* name);  // AT_SYMLINK_NOFOLLOW
// True if dirfd/name exists (does not follow a final symlink).
Result<bool> exists_at(int dirfd, const char* name);

Result<std::string> readlinkat(int dirfd, const char* name);

// Extended attributes of the object behind any fd (O_PATH included), never following
// a symlink beyond it. getxattr returns the value size; ENODATA when absent.
Result<size_t> fgetxattr(int fd, const char* name, void* buf, size_t size);
Result<std::string> fgetxattr(int fd, const char* name);  // whole value
Result<size_t> flistxattr(int fd, char* buf, size_t size);
Result<std::string> flistxattr(int fd);  // whole NUL-separated list

// Calls fn(name, d_type, d_ino) for each entry of the directory behind dir_fd (any fd to it),
// skipping "." and "..". Stops and returns the error if fn returns one.
using DirentFn = std::function<Status(std::string_view name, unsigned char type, ino_t ino)>;
Status read_dir(int dir_fd, const DirentFn& fn);

// The path of an fd, as /proc/self/fd/N.
std::string proc_fd_path(int fd);

}  // namespace lamina::sys
