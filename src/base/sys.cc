// SPDX-License-Identifier: Apache-2.0
#include "lamina/base/sys.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace lamina::sys {
namespace {

template <class F>
auto retry(F f) {
  decltype(f()) r;
  do {
    r = f();
  } while (r < 0 && errno == EINTR);
  return r;
}

struct LinuxDirent64 {
  ino64_t d_ino;
  off64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

}  // namespace

std::string proc_fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Result<UniqueFd> openat(int dirfd, const char* name, int flags, mode_t mode) {
  int fd = retry([&] { return ::openat(dirfd, name, flags | O_CLOEXEC, mode); });
  if (fd < 0) return errno_error("openat");
  return UniqueFd(fd);
}

Result<UniqueFd> open_path(int dirfd, const char* name) {
  return openat(dirfd, name, O_PATH | O_NOFOLLOW);
}

Result<UniqueFd> reopen(int path_fd, int flags) {
  std::string p = proc_fd_path(path_fd);
  // No O_NOFOLLOW here: /proc/self/fd/N is itself a (magic) link. It resolves to the object
  // the fd holds, never to a path, so nothing in a layer can redirect it; callers reopen only
  // regular files and directories.
  int fd = retry([&] { return ::open(p.c_str(), flags | O_CLOEXEC); });
  if (fd < 0) return errno_error("open(/proc/self/fd)");
  return UniqueFd(fd);
}

Result<struct stat> fstat(int fd) {
  struct stat st;
  if (retry([&] { return ::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW); }) < 0)
    return errno_error("fstat");
  return st;
}

Result<struct stat> fstatat(int dirfd, const char* name) {
  struct stat st;
  if (retry([&] { return ::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW); }) < 0)
    return errno_error("fstatat");
  return st;
}

Result<bool> exists_at(int dirfd, const char* name) {
  if (retry([&] { return ::faccessat(dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW); }) == 0) return true;
  if (errno == ENOENT || errno == ENOTDIR) return false;
  return errno_error("faccessat");
}

Result<std::string> readlinkat(int dirfd, const char* name) {
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = retry([&] { return ::readlinkat(dirfd, name, buf.data(), buf.size()); });
    if (n < 0) return errno_error("readlinkat");
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);
  }
}

// An O_PATH fd cannot be passed to fgetxattr(); the /proc/self/fd magic link names the very
// object the fd holds (it is not re-resolved by path), so getxattr() on it is safe and does
// not follow a symlink held by the fd.
Result<size_t> fgetxattr(int fd, const char* name, void* buf, size_t size) {
  std::string p = proc_fd_path(fd);
  ssize_t n = retry([&] { return ::getxattr(p.c_str(), name, buf, size); });
  if (n < 0) return errno_error("getxattr");
  return static_cast<size_t>(n);
}

Result<std::string> fgetxattr(int fd, const char* name) {
  std::string p = proc_fd_path(fd);
  std::string out;
  for (;;) {
    ssize_t n = retry([&] { return ::getxattr(p.c_str(), name, nullptr, 0); });
    if (n < 0) return errno_error("getxattr");
    out.resize(static_cast<size_t>(n));
    n = retry([&] { return ::getxattr(p.c_str(), name, out.data(), out.size()); });
    if (n >= 0) {
      out.resize(static_cast<size_t>(n));
      return out;
    }
    if (errno != ERANGE) return errno_error("getxattr");
  }
}

Result<size_t> flistxattr(int fd, char* buf, size_t size) {
  std::string p = proc_fd_path(fd);
  ssize_t n = retry([&] { return ::listxattr(p.c_str(), buf, size); });
  if (n < 0) return errno_error("listxattr");
  return static_cast<size_t>(n);
}

Result<std::string> flistxattr(int fd) {
  std::string p = proc_fd_path(fd);
  std::string out;
  for (;;) {
    ssize_t n = retry([&] { return ::listxattr(p.c_str(), nullptr, 0); });
    if (n < 0) return errno_error("listxattr");
    out.resize(static_cast<size_t>(n));
    n = retry([&] { return ::listxattr(p.c_str(), out.data(), out.size()); });
    if (n >= 0) {
      out.resize(static_cast<size_t>(n));
      return out;
    }
    if (errno != ERANGE) return errno_error("listxattr");
  }
}

Status read_dir(int dir_fd, const DirentFn& fn) {
  auto fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY);
  if (!fd) return Error{fd.code(), "open(dir)"};
  std::vector<char> buf(64 * 1024);
  for (;;) {
    long n = retry([&] { return ::syscall(SYS_getdents64, fd->get(), buf.data(), buf.size()); });
    if (n < 0) return errno_error("getdents64");
    if (n == 0) return {};
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<LinuxDirent64*>(buf.data() + off);
      off += d->d_reclen;
      std::string_view name(d->d_name);
      if (name == "." || name == "..") continue;
      if (Status s = fn(name, d->d_type, d->d_ino); !s) return s;
    }
  }
}

}  // namespace lamina::sys
