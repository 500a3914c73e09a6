// SPDX-License-Identifier: Apache-2.0
#include "lamina/base/sys.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
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

// The f*() call on a descriptor opened for I/O; an O_PATH descriptor, which those calls refuse
// (EBADF), goes through its /proc magic link, which names the same object (a symlink held by
// the fd included: the link itself is not followed further).
namespace {

template <typename FdCall, typename PathCall>
ssize_t at_fd(int fd, FdCall fd_call, PathCall path_call) {
  ssize_t r = retry([&] { return static_cast<ssize_t>(fd_call()); });
  if (r >= 0 || errno != EBADF) return r;
  std::string p = proc_fd_path(fd);
  return retry([&] { return static_cast<ssize_t>(path_call(p.c_str())); });
}

}  // namespace

Result<UniqueFd> openat(int dirfd, const char* name, int flags, mode_t mode) {
  int fd = retry([&] { return ::openat(dirfd, name, flags | O_CLOEXEC, mode); });
  if (fd < 0) return errno_error("openat");
  return UniqueFd(fd);
}

namespace {

// openat_beneath for kernels without openat2: every directory on the way opened alone, with
// O_NOFOLLOW, from the one before; ".." and absolute paths refused as RESOLVE_BENEATH would.
Result<UniqueFd> walk_beneath(int dirfd, std::string_view path, int flags, mode_t mode) {
  if (path.empty()) return Error{ENOENT, "openat(beneath)"};
  if (path.front() == '/') return Error{EXDEV, "openat(beneath)"};
  UniqueFd cur;
  int at = dirfd;
  for (;;) {
    size_t slash = path.find('/');
    std::string comp(path.substr(0, slash));
    if (comp == "..") return Error{EXDEV, "openat(beneath)"};
    if (slash == std::string_view::npos) {
      return openat(at, comp.c_str(), flags | O_NOFOLLOW, mode);
    }
    path.remove_prefix(slash + 1);
    if (comp.empty() || comp == ".") continue;
    auto next = openat(at, comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!next) return next.code() == ENOTDIR ? Error{ELOOP, "openat(beneath)"} : next.error();
    cur = std::move(*next);
    at = cur.get();
  }
}

}  // namespace

Result<UniqueFd> openat_beneath(int dirfd, const char* path, int flags, mode_t mode) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = retry([&] { return ::syscall(SYS_openat2, dirfd, path, &how, sizeof how); });
  if (fd >= 0) return UniqueFd(static_cast<int>(fd));
  if (errno == ENOSYS) return walk_beneath(dirfd, path, flags, mode);
  return errno_error("openat2");
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

Result<UniqueFd> dup(int fd) {
  int r = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (r < 0) return errno_error("dup");
  return UniqueFd(r);
}

Result<struct stat> fstat(int fd) {
  struct stat st;
  if (retry([&] { return ::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW); }) < 0)
    return errno_error("fstat");
  return st;
}

Result<struct statvfs> fstatvfs(int fd) {
  struct statvfs sv;
  if (retry([&] { return ::fstatvfs(fd, &sv); }) < 0) return errno_error("fstatvfs");
  return sv;
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

// O_PATH fds go through the /proc/self/fd magic link (at_fd): it names the very object the fd
// holds (it is not re-resolved by path), so getxattr() on it is safe and does not follow a
// symlink held by the fd.
Result<size_t> fgetxattr(int fd, const char* name, void* buf, size_t size) {
  ssize_t n = at_fd(
      fd, [&] { return ::fgetxattr(fd, name, buf, size); },
      [&](const char* p) { return ::getxattr(p, name, buf, size); });
  if (n < 0) return errno_error("getxattr");
  return static_cast<size_t>(n);
}

Result<size_t> flistxattr(int fd, char* buf, size_t size) {
  ssize_t n = at_fd(
      fd, [&] { return ::flistxattr(fd, buf, size); },
      [&](const char* p) { return ::listxattr(p, buf, size); });
  if (n < 0) return errno_error("listxattr");
  return static_cast<size_t>(n);
}

namespace {

// A whole value or list: most are small, so one call into a stack buffer, and the size query
// and a second call only for one that is not (again if it grew in between).
template <typename Get>
Result<std::string> whole(Get get, const char* what) {
  char small[1024];
  auto first = get(small, sizeof small);
  if (first) return std::string(small, *first);
  if (first.code() != ERANGE) return Error{first.code(), what};
  std::string out;
  for (;;) {
    auto n = get(nullptr, 0);
    if (!n) return n.error();
    out.resize(*n);
    n = get(out.data(), out.size());
    if (n) {
      out.resize(*n);
      return out;
    }
    if (n.code() != ERANGE) return n.error();
  }
}

}  // namespace

namespace {

// "/proc/self/fd/N/name", or "/proc/self/fd/N" for "" (then not followed beyond the magic link,
// which names the object itself); EINVAL for a name that is not one component.
Result<std::string> proc_at_path(int dirfd, const char* name) {
  std::string p = proc_fd_path(dirfd);
  if (name[0] == '\0') return p;
  std::string_view n(name);
  if (n == "." || n == ".." || n.find('/') != std::string_view::npos) {
    return Error{EINVAL, "xattr path"};
  }
  return p + "/" + name;
}

}  // namespace

Result<size_t> getxattr_at(int dirfd, const char* name, const char* attr, void* buf, size_t size) {
  auto p = proc_at_path(dirfd, name);
  if (!p) return p.error();
  ssize_t n = retry([&] {
    return name[0] == '\0' ? ::getxattr(p->c_str(), attr, buf, size)
                           : ::lgetxattr(p->c_str(), attr, buf, size);
  });
  if (n < 0) return errno_error("getxattr");
  return static_cast<size_t>(n);
}

Result<std::string> getxattr_at(int dirfd, const char* name, const char* attr) {
  return whole([&](char* buf, size_t size) { return getxattr_at(dirfd, name, attr, buf, size); },
               "getxattr");
}

Result<std::string> listxattr_at(int dirfd, const char* name) {
  auto p = proc_at_path(dirfd, name);
  if (!p) return p.error();
  auto list = [&](char* buf, size_t size) -> Result<size_t> {
    ssize_t n = retry([&] {
      return name[0] == '\0' ? ::listxattr(p->c_str(), buf, size)
                             : ::llistxattr(p->c_str(), buf, size);
    });
    if (n < 0) return errno_error("listxattr");
    return static_cast<size_t>(n);
  };
  return whole(list, "listxattr");
}

Result<std::string> fgetxattr(int fd, const char* name) {
  return whole([&](char* buf, size_t size) { return fgetxattr(fd, name, buf, size); }, "getxattr");
}

Result<std::string> flistxattr(int fd) {
  return whole([&](char* buf, size_t size) { return flistxattr(fd, buf, size); }, "listxattr");
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

Status mkdirat(int dirfd, const char* name, mode_t mode) {
  if (::mkdirat(dirfd, name, mode) < 0) return errno_error("mkdirat");
  return {};
}

Status mknodat(int dirfd, const char* name, mode_t mode, dev_t dev) {
  if (::mknodat(dirfd, name, mode, dev) < 0) return errno_error("mknodat");
  return {};
}

Status symlinkat(const char* target, int dirfd, const char* name) {
  if (::symlinkat(target, dirfd, name) < 0) return errno_error("symlinkat");
  return {};
}

Status linkat(int olddirfd, const char* oldname, int newdirfd, const char* newname, int flags) {
  if (::linkat(olddirfd, oldname, newdirfd, newname, flags) < 0) return errno_error("linkat");
  return {};
}

Status unlinkat(int dirfd, const char* name, int flags) {
  if (::unlinkat(dirfd, name, flags) < 0) return errno_error("unlinkat");
  return {};
}

Status renameat2(int olddirfd, const char* oldname, int newdirfd, const char* newname,
                 unsigned flags) {
  if (::renameat2(olddirfd, oldname, newdirfd, newname, flags) < 0) return errno_error("renameat2");
  return {};
}

Status fchownat(int dirfd, const char* name, uid_t uid, gid_t gid) {
  int flags = AT_SYMLINK_NOFOLLOW | (name[0] == '\0' ? AT_EMPTY_PATH : 0);
  if (::fchownat(dirfd, name, uid, gid, flags) < 0) return errno_error("fchownat");
  return {};
}

Status fchmod_path(int fd, mode_t mode) {
  if (at_fd(
          fd, [&] { return ::fchmod(fd, mode); }, [&](const char* p) { return ::chmod(p, mode); }) <
      0) {
    return errno_error("chmod");
  }
  return {};
}

Status utimensat(int dirfd, const char* name, const struct timespec times[2]) {
  int flags = AT_SYMLINK_NOFOLLOW;
  if (name[0] == '\0') {
    // The object behind an fd (O_PATH included, symlinks too). Kernels without AT_EMPTY_PATH
    // for utimensat get the magic link, which works for everything but symlinks.
    if (::utimensat(dirfd, "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0) return {};
    if (errno != EINVAL && errno != ENOENT) return errno_error("utimensat");
    std::string p = proc_fd_path(dirfd);
    if (::utimensat(AT_FDCWD, p.c_str(), times, 0) < 0) return errno_error("utimensat");
    return {};
  }
  if (::utimensat(dirfd, name, times, flags) < 0) return errno_error("utimensat");
  return {};
}

Status fsetxattr(int fd, const char* name, const void* value, size_t size, int flags) {
  if (at_fd(
          fd, [&] { return ::fsetxattr(fd, name, value, size, flags); },
          [&](const char* p) { return ::setxattr(p, name, value, size, flags); }) < 0) {
    return errno_error("setxattr");
  }
  return {};
}

Status fremovexattr(int fd, const char* name) {
  if (at_fd(
          fd, [&] { return ::fremovexattr(fd, name); },
          [&](const char* p) { return ::removexattr(p, name); }) < 0) {
    return errno_error("removexattr");
  }
  return {};
}

Status fsync(int fd) {
  if (retry([&] { return ::fsync(fd); }) < 0) return errno_error("fsync");
  return {};
}

Status fdatasync(int fd) {
  if (retry([&] { return ::fdatasync(fd); }) < 0) return errno_error("fdatasync");
  return {};
}

Status syncfs(int fd) {
  if (retry([&] { return ::syncfs(fd); }) < 0) return errno_error("syncfs");
  return {};
}

Status flock(int fd, int operation) {
  if (retry([&] { return ::flock(fd, operation); }) < 0) return errno_error("flock");
  return {};
}

Result<size_t> pread_full(int fd, void* buf, size_t size, off_t offset) {
  size_t done = 0;
  auto* p = static_cast<char*>(buf);
  while (done < size) {
    ssize_t n = retry([&] { return ::pread(fd, p + done, size - done, offset + done); });
    if (n < 0) return errno_error("pread");
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Status pwrite_full(int fd, const void* buf, size_t size, off_t offset) {
  size_t done = 0;
  const auto* p = static_cast<const char*>(buf);
  while (done < size) {
    ssize_t n = retry([&] { return ::pwrite(fd, p + done, size - done, offset + done); });
    if (n < 0) return errno_error("pwrite");
    done += static_cast<size_t>(n);
  }
  return {};
}

Status for_each_chunk(int fd, const std::function<void(const char*, size_t)>& fn) {
  std::vector<char> buf(1 << 20);
  for (off_t off = 0;;) {
    auto n = pread_full(fd, buf.data(), buf.size(), off);
    if (!n) return n.error();
    if (*n == 0) return {};
    fn(buf.data(), *n);
    off += static_cast<off_t>(*n);
  }
}

Result<std::string> read_file(int dirfd, const char* name) {
  // O_NONBLOCK: a fifo in place of the file must not block (regular files ignore it).
  auto fd = openat_beneath(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!fd) return fd.error();
  std::string out;
  char buf[65536];
  for (;;) {
    auto n = pread_full(fd->get(), buf, sizeof buf, static_cast<off_t>(out.size()));
    if (!n) return n.error();
    out.append(buf, *n);
    if (*n < sizeof buf) break;
  }
  return out;
}

Status write_all(int fd, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = retry([&] { return ::write(fd, data.data() + done, data.size() - done); });
    if (n < 0) return errno_error("write");
    done += static_cast<size_t>(n);
  }
  return {};
}

Status ftruncate(int fd, off_t length) {
  if (retry([&] { return ::ftruncate(fd, length); }) < 0) return errno_error("ftruncate");
  return {};
}

Result<std::string> handle_name(int fd) {
  std::vector<unsigned char> buf(sizeof(struct file_handle) + MAX_HANDLE_SZ);
  auto* fh = reinterpret_cast<struct file_handle*>(buf.data());
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) < 0)
    return errno_error("name_to_handle_at");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = std::to_string(fh->handle_type) + "-";
  const unsigned char* bytes = buf.data() + sizeof(struct file_handle);
  for (unsigned i = 0; i < fh->handle_bytes; ++i) {
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 15];
  }
  return out;
}

Status fallocate(int fd, int mode, off_t offset, off_t length) {
  if (retry([&] { return ::fallocate(fd, mode, offset, length); }) < 0)
    return errno_error("fallocate");
  return {};
}

Result<off_t> lseek(int fd, off_t offset, int whence) {
  off_t r = ::lseek(fd, offset, whence);
  if (r < 0) return errno_error("lseek");
  return r;
}

Result<size_t> copy_file_range(int in, off_t* in_off, int out, off_t* out_off, size_t len,
                               unsigned flags) {
  loff_t i = *in_off, o = *out_off;
  ssize_t n = retry([&] { return ::copy_file_range(in, &i, out, &o, len, flags); });
  if (n < 0) return errno_error("copy_file_range");
  *in_off = i;
  *out_off = o;
  return static_cast<size_t>(n);
}

namespace {

Status copy_range(int src, int dst, off_t start, off_t end, bool* use_cfr) {
  off_t pos = start;
  while (pos < end && *use_cfr) {
    loff_t in = pos, out = pos;
    ssize_t n = ::copy_file_range(src, &in, dst, &out, static_cast<size_t>(end - pos), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS) {
        *use_cfr = false;
        break;
      }
      return errno_error("copy_file_range");
    }
    if (n == 0) return {};  // source shrank
    pos += n;
  }
  std::vector<char> buf(1 << 20);
  while (pos < end) {
    ssize_t n = retry([&] {
      return ::pread(src, buf.data(), std::min<size_t>(buf.size(), static_cast<size_t>(end - pos)),
                     pos);
    });
    if (n < 0) return errno_error("pread");
    if (n == 0) return {};
    for (ssize_t done = 0; done < n;) {
      ssize_t w = retry([&] { return ::pwrite(dst, buf.data() + done, n - done, pos + done); });
      if (w < 0) return errno_error("pwrite");
      done += w;
    }
    pos += n;
  }
  return {};
}

}  // namespace

Status copy_data(int src, int dst, off_t size) {
  if (size == 0) return {};
  if (::ioctl(dst, FICLONE, src) == 0) return {};
  bool use_cfr = true;
  // Copy only the data extents; the final ftruncate gives the file its size and any trailing
  // hole.
  off_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(src, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      if (errno == EINVAL || errno == EOPNOTSUPP) {
        data = pos;  // no hole support: copy everything
      } else {
        return errno_error("lseek(SEEK_DATA)");
      }
    }
    off_t hole = ::lseek(src, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    if (hole > size) hole = size;
    if (Status s = copy_range(src, dst, data, hole, &use_cfr); !s) return s;
    pos = hole;
  }
  return ftruncate(dst, size);
}

}  // namespace lamina::sys
