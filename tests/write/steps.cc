// SPDX-License-Identifier: Apache-2.0
#include "write/steps.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "integration/fs_util.h"
#include "integration/tree_walker.h"

namespace lamina::wt {

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::runtime_error(fmt::format("{}: {}", what, it::errno_name(errno)));
}

}  // namespace

// ---- Ctx ---------------------------------------------------------------------------------

Ctx::~Ctx() { close_all(); }

int Ctx::fd(const std::string& name) const {
  auto it = fds.find(name);
  return it == fds.end() ? -1 : it->second;
}

void Ctx::close_all() {
  for (auto& [name, fd] : fds) ::close(fd);
  fds.clear();
}

// ---- results -----------------------------------------------------------------------------

std::string rc_str(long rc, int err) {
  if (rc >= 0) return std::to_string(rc);
  const char* name = strerrorname_np(err);
  return std::string("-1 ") + (name ? name : std::to_string(err));
}

std::string bytes_str(const std::string& s) {
  auto esc = [](const std::string& in) {
    std::string out;
    for (unsigned char c : in) {
      if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
        out.push_back(static_cast<char>(c));
      } else {
        out += fmt::format("\\x{:02x}", c);
      }
    }
    return out;
  };
  if (s.size() <= 64) return "\"" + esc(s) + "\"";
  return fmt::format("size={} fnv={:016x} head=\"{}\" tail=\"{}\"", s.size(),
                     it::fnv1a(s.data(), s.size()), esc(s.substr(0, 16)),
                     esc(s.substr(s.size() - 16)));
}

std::string stat_str(const struct stat& st) {
  char t = '?';
  if (S_ISREG(st.st_mode)) t = 'f';
  if (S_ISDIR(st.st_mode)) t = 'd';
  if (S_ISLNK(st.st_mode)) t = 'l';
  if (S_ISFIFO(st.st_mode)) t = 'p';
  if (S_ISCHR(st.st_mode)) t = 'c';
  if (S_ISBLK(st.st_mode)) t = 'b';
  if (S_ISSOCK(st.st_mode)) t = 's';
  std::string s = fmt::format("{} {:04o} {}:{}", t, st.st_mode & 07777, st.st_uid, st.st_gid);
  if (!S_ISDIR(st.st_mode)) s += fmt::format(" size={} nlink={}", st.st_size, st.st_nlink);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
    s += fmt::format(" rdev={}:{}", major(st.st_rdev), minor(st.st_rdev));
  return s;
}

namespace {

std::string errno_rc(long rc) { return rc_str(rc, errno); }

std::string read_all(int fd, std::string* out) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return rc_str(-1, errno);
    }
    if (n == 0) return "";
    out->append(buf, static_cast<size_t>(n));
  }
}

std::string flags_str(int flags) {
  std::string s;
  switch (flags & O_ACCMODE) {
    case O_RDONLY: s = "O_RDONLY"; break;
    case O_WRONLY: s = "O_WRONLY"; break;
    default: s = "O_RDWR"; break;
  }
  if (flags & O_CREAT) s += "|O_CREAT";
  if (flags & O_EXCL) s += "|O_EXCL";
  if (flags & O_TRUNC) s += "|O_TRUNC";
  if (flags & O_APPEND) s += "|O_APPEND";
  if (flags & O_DIRECTORY) s += "|O_DIRECTORY";
  if (flags & O_NOFOLLOW) s += "|O_NOFOLLOW";
  return s;
}

std::string rename_flags_str(unsigned flags) {
  if (flags == 0) return "0";
  std::string s;
  if (flags & RENAME_NOREPLACE) s += "NOREPLACE";
  if (flags & RENAME_EXCHANGE) s += std::string(s.empty() ? "" : "|") + "EXCHANGE";
  return s;
}

std::string ts_str(const struct timespec& t) {
  return fmt::format("{}.{:09}", static_cast<long long>(t.tv_sec), t.tv_nsec);
}

std::string ts_arg(const struct timespec& t) {
  if (t.tv_nsec == UTIME_NOW) return "UTIME_NOW";
  if (t.tv_nsec == UTIME_OMIT) return "UTIME_OMIT";
  return ts_str(t);
}

std::string time_vs(const struct timespec& now_t, const struct timespec& before) {
  if (now_t.tv_sec == before.tv_sec && now_t.tv_nsec == before.tv_nsec) return "same";
  struct timespec real;
  ::clock_gettime(CLOCK_REALTIME, &real);
  if (std::llabs(static_cast<long long>(real.tv_sec - now_t.tv_sec)) <= 10) return "changed(now)";
  return "changed(other:" + ts_str(now_t) + ")";
}

// Runs fn in a forked child; the child writes up to 512 bytes of report to a pipe and exits.
// Returns the report, or a description of how the child died.
std::string in_child(const std::function<void(int report_fd)>& fn) {
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) throw_errno("pipe2");
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::close(pfd[0]);
    fn(pfd[1]);
    ::_exit(0);
  }
  ::close(pfd[1]);
  std::string out;
  read_all(pfd[0], &out);
  ::close(pfd[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) out += fmt::format(" [child status {:#x}]", st);
  return out;
}

// Async-signal-safe formatting for the child side: "name=rc" or "name=-1 E..." appended.
void child_report(int fd, const char* name, long rc, int err) {
  char buf[128];
  int n;
  if (rc >= 0) {
    n = std::snprintf(buf, sizeof buf, "%s=%ld ", name, rc);
  } else {
    const char* en = strerrorname_np(err);
    n = std::snprintf(buf, sizeof buf, "%s=-1 %s ", name, en ? en : "?");
  }
  if (n > 0) {
    ssize_t ignored = ::write(fd, buf, static_cast<size_t>(n));
    (void)ignored;
  }
}

// Raw syscalls: they change only this (the child's only) thread. False (reported) on failure.
bool drop_to(int out, uid_t uid, gid_t gid) {
  long r = ::syscall(SYS_setgroups, 0, nullptr);
  if (r == 0) r = ::syscall(SYS_setresgid, gid, gid, gid);
  if (r == 0) r = ::syscall(SYS_setresuid, uid, uid, uid);
  if (r != 0) child_report(out, "setuid", -1, errno);
  return r == 0;
}

}  // namespace

namespace step {

Step custom(std::string desc, std::function<std::string(Ctx&)> fn) {
  return Step{std::move(desc), std::move(fn)};
}

Step remount() {
  return custom("(close all descriptors and remount)", [](Ctx& c) {
    c.close_all();
    if (c.on_remount) c.on_remount();
    return std::string("ok");
  });
}

Step open(std::string path, int flags, std::string fd_name, mode_t mode) {
  std::string desc =
      fmt::format("{} = open({}, {}, {:04o})", fd_name, path, flags_str(flags), mode);
  return custom(desc, [=](Ctx& c) {
    if (int old = c.fd(fd_name); old >= 0) {
      ::close(old);
      c.fds.erase(fd_name);
    }
    int fd = ::open(c.p(path).c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) return errno_rc(-1);
    c.fds[fd_name] = fd;
    return std::string("ok");
  });
}

Step close(std::string fd_name) {
  return custom("close(" + fd_name + ")", [=](Ctx& c) {
    int fd = c.fd(fd_name);
    c.fds.erase(fd_name);
    return errno_rc(::close(fd));
  });
}

Step pwrite(std::string fd_name, off_t off, std::string data) {
  return custom(fmt::format("pwrite({}, {}, off={})", fd_name, bytes_str(data), off), [=](Ctx& c) {
    return errno_rc(::pwrite(c.fd(fd_name), data.data(), data.size(), off));
  });
}

Step write(std::string fd_name, std::string data) {
  return custom(fmt::format("write({}, {})", fd_name, bytes_str(data)),
                [=](Ctx& c) { return errno_rc(::write(c.fd(fd_name), data.data(), data.size())); });
}

Step pread(std::string fd_name, off_t off, size_t len) {
  return custom(fmt::format("pread({}, len={}, off={})", fd_name, len, off), [=](Ctx& c) {
    std::string buf(len, '\0');
    ssize_t n = ::pread(c.fd(fd_name), buf.data(), len, off);
    if (n < 0) return errno_rc(-1);
    buf.resize(static_cast<size_t>(n));
    return bytes_str(buf);
  });
}

Step ftruncate(std::string fd_name, off_t size) {
  return custom(fmt::format("ftruncate({}, {})", fd_name, size),
                [=](Ctx& c) { return errno_rc(::ftruncate(c.fd(fd_name), size)); });
}

Step fsync(std::string fd_name) {
  return custom("fsync(" + fd_name + ")", [=](Ctx& c) { return errno_rc(::fsync(c.fd(fd_name))); });
}

Step fallocate(std::string fd_name, int mode, off_t off, off_t len) {
  return custom(fmt::format("fallocate({}, mode={:#x}, off={}, len={})", fd_name, mode, off, len),
                [=](Ctx& c) { return errno_rc(::fallocate(c.fd(fd_name), mode, off, len)); });
}

Step lseek(std::string fd_name, off_t off, int whence) {
  const char* w = whence == SEEK_DATA   ? "SEEK_DATA"
                  : whence == SEEK_HOLE ? "SEEK_HOLE"
                  : whence == SEEK_END  ? "SEEK_END"
                  : whence == SEEK_SET  ? "SEEK_SET"
                                        : "SEEK_CUR";
  return custom(fmt::format("lseek({}, {}, {})", fd_name, off, w),
                [=](Ctx& c) { return errno_rc(::lseek(c.fd(fd_name), off, whence)); });
}

Step copy_file_range(std::string in_fd, off_t in_off, std::string out_fd, off_t out_off,
                     size_t len) {
  return custom(
      fmt::format("copy_file_range({}@{} -> {}@{}, len={})", in_fd, in_off, out_fd, out_off, len),
      [=](Ctx& c) {
        loff_t i = in_off, o = out_off;
        ssize_t n = ::copy_file_range(c.fd(in_fd), &i, c.fd(out_fd), &o, len, 0);
        if (n < 0) return errno_rc(-1);
        return fmt::format("{} (in_off={} out_off={})", n, i, o);
      });
}

Step flock(std::string fd_name, int op) {
  std::string o = (op & LOCK_EX) ? "LOCK_EX" : (op & LOCK_SH) ? "LOCK_SH" : "LOCK_UN";
  if (op & LOCK_NB) o += "|LOCK_NB";
  return custom(fmt::format("flock({}, {})", fd_name, o),
                [=](Ctx& c) { return errno_rc(::flock(c.fd(fd_name), op)); });
}

Step fstat(std::string fd_name) {
  return custom("fstat(" + fd_name + ")", [=](Ctx& c) {
    struct stat st;
    if (::fstat(c.fd(fd_name), &st) != 0) return errno_rc(-1);
    return stat_str(st);
  });
}

Step cat(std::string path) {
  return custom("cat " + path, [=](Ctx& c) {
    int fd = ::open(c.p(path).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno_rc(-1);
    std::string data;
    std::string err = read_all(fd, &data);
    ::close(fd);
    return err.empty() ? bytes_str(data) : err;
  });
}

Step write_file(std::string path, std::string data, mode_t mode) {
  return custom(
      fmt::format("write_file({}, {}, {:04o})", path, bytes_str(data), mode), [=](Ctx& c) {
        int fd = ::open(c.p(path).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0) return "open " + errno_rc(-1);
        ssize_t n = ::write(fd, data.data(), data.size());
        std::string r = "write " + errno_rc(n);
        ::close(fd);
        return r;
      });
}

Step truncate(std::string path, off_t size) {
  return custom(fmt::format("truncate({}, {})", path, size),
                [=](Ctx& c) { return errno_rc(::truncate(c.p(path).c_str(), size)); });
}

Step stat(std::string path) {
  return custom("lstat " + path, [=](Ctx& c) {
    struct stat st;
    if (::lstat(c.p(path).c_str(), &st) != 0) return errno_rc(-1);
    return stat_str(st);
  });
}

Step list(std::string path) {
  return custom("ls " + (path.empty() ? std::string("/") : path), [=](Ctx& c) {
    DIR* d = ::opendir(c.p(path).c_str());
    if (!d) return errno_rc(-1);
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* de = ::readdir(d)) {
      if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, ".."))
        names.push_back(de->d_name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    std::string s = "[";
    for (size_t i = 0; i < names.size(); ++i) s += (i ? " " : "") + names[i];
    return s + "]";
  });
}

Step mkdir(std::string path, mode_t mode) {
  return custom(fmt::format("mkdir({}, {:04o})", path, mode),
                [=](Ctx& c) { return errno_rc(::mkdir(c.p(path).c_str(), mode)); });
}

Step rmdir(std::string path) {
  return custom("rmdir " + path, [=](Ctx& c) { return errno_rc(::rmdir(c.p(path).c_str())); });
}

Step unlink(std::string path) {
  return custom("unlink " + path, [=](Ctx& c) { return errno_rc(::unlink(c.p(path).c_str())); });
}

Step rename(std::string from, std::string to, unsigned flags) {
  return custom(
      fmt::format("renameat2({}, {}, {})", from, to, rename_flags_str(flags)), [=](Ctx& c) {
        return errno_rc(::renameat2(AT_FDCWD, c.p(from).c_str(), AT_FDCWD, c.p(to).c_str(), flags));
      });
}

Step link(std::string from, std::string to) {
  return custom(fmt::format("link({}, {})", from, to),
                [=](Ctx& c) { return errno_rc(::link(c.p(from).c_str(), c.p(to).c_str())); });
}

Step symlink(std::string target, std::string path) {
  return custom(fmt::format("symlink({} -> {})", path, target),
                [=](Ctx& c) { return errno_rc(::symlink(target.c_str(), c.p(path).c_str())); });
}

Step readlink(std::string path) {
  return custom("readlink " + path, [=](Ctx& c) {
    char buf[4096];
    ssize_t n = ::readlink(c.p(path).c_str(), buf, sizeof buf);
    if (n < 0) return errno_rc(-1);
    return bytes_str(std::string(buf, static_cast<size_t>(n)));
  });
}

Step mknod(std::string path, mode_t mode, dev_t dev) {
  return custom(fmt::format("mknod({}, {:06o}, {}:{})", path, mode, major(dev), minor(dev)),
                [=](Ctx& c) { return errno_rc(::mknod(c.p(path).c_str(), mode, dev)); });
}

Step chmod(std::string path, mode_t mode) {
  return custom(fmt::format("chmod({}, {:04o})", path, mode),
                [=](Ctx& c) { return errno_rc(::chmod(c.p(path).c_str(), mode)); });
}

Step lchown(std::string path, uid_t uid, gid_t gid) {
  return custom(
      fmt::format("lchown({}, {}, {})", path, static_cast<int>(uid), static_cast<int>(gid)),
      [=](Ctx& c) { return errno_rc(::lchown(c.p(path).c_str(), uid, gid)); });
}

Step utimens(std::string path, struct timespec atime, struct timespec mtime, int flags) {
  return custom(fmt::format("utimensat({}, atime={}, mtime={}{})", path, ts_arg(atime),
                            ts_arg(mtime), flags ? ", AT_SYMLINK_NOFOLLOW" : ""),
                [=](Ctx& c) {
                  const struct timespec t[2] = {atime, mtime};
                  return errno_rc(::utimensat(AT_FDCWD, c.p(path).c_str(), t, flags));
                });
}

Step utimens_null(std::string path) {
  return custom(fmt::format("utimensat({}, NULL)", path), [=](Ctx& c) {
    return errno_rc(::utimensat(AT_FDCWD, c.p(path).c_str(), nullptr, 0));
  });
}

Step times(std::string path) {
  return custom("times " + path, [=](Ctx& c) {
    struct stat st;
    if (::lstat(c.p(path).c_str(), &st) != 0) return errno_rc(-1);
    return "atime=" + ts_str(st.st_atim) + " mtime=" + ts_str(st.st_mtim);
  });
}

Step save_stat(std::string path) {
  return custom("save times of " + path, [=](Ctx& c) {
    struct stat st;
    if (::lstat(c.p(path).c_str(), &st) != 0) return errno_rc(-1);
    c.saved[path] = st;
    return std::string("ok");
  });
}

Step times_vs_saved(std::string path) {
  return custom("times of " + path + " vs saved", [=](Ctx& c) {
    struct stat st;
    if (::lstat(c.p(path).c_str(), &st) != 0) return errno_rc(-1);
    auto it = c.saved.find(path);
    if (it == c.saved.end()) return std::string("nothing saved");
    return "atime " + time_vs(st.st_atim, it->second.st_atim) + " mtime " +
           time_vs(st.st_mtim, it->second.st_mtim);
  });
}

Step setxattr(std::string path, std::string name, std::string value, int flags) {
  return custom(fmt::format("lsetxattr({}, {}, {}{})", path, name, bytes_str(value),
                            flags == XATTR_CREATE    ? ", XATTR_CREATE"
                            : flags == XATTR_REPLACE ? ", XATTR_REPLACE"
                                                     : ""),
                [=](Ctx& c) {
                  return errno_rc(::lsetxattr(c.p(path).c_str(), name.c_str(), value.data(),
                                              value.size(), flags));
                });
}

Step getxattr(std::string path, std::string name) {
  return custom(fmt::format("lgetxattr({}, {})", path, name), [=](Ctx& c) {
    char buf[4096];
    ssize_t n = ::lgetxattr(c.p(path).c_str(), name.c_str(), buf, sizeof buf);
    if (n < 0) return errno_rc(-1);
    return bytes_str(std::string(buf, static_cast<size_t>(n)));
  });
}

Step listxattr(std::string path) {
  return custom("llistxattr(user.*) " + path, [=](Ctx& c) {
    char buf[8192];
    ssize_t n = ::llistxattr(c.p(path).c_str(), buf, sizeof buf);
    if (n < 0) return errno_rc(-1);
    std::vector<std::string> names;
    for (ssize_t off = 0; off < n;) {
      std::string nm(buf + off);
      off += static_cast<ssize_t>(nm.size()) + 1;
      if (nm.rfind("user.", 0) == 0) names.push_back(nm);
    }
    std::sort(names.begin(), names.end());
    std::string s = "[";
    for (size_t i = 0; i < names.size(); ++i) s += (i ? " " : "") + names[i];
    return s + "]";
  });
}

Step removexattr(std::string path, std::string name) {
  return custom(fmt::format("lremovexattr({}, {})", path, name),
                [=](Ctx& c) { return errno_rc(::lremovexattr(c.p(path).c_str(), name.c_str())); });
}

Step as_user(uid_t uid, gid_t gid, std::vector<Step> steps) {
  std::string desc = fmt::format("as {}:{}:", uid, gid);
  for (const Step& st : steps) desc += " [" + st.desc + "]";
  return custom(desc, [=](Ctx& c) {
    return in_child([&](int out) {
      if (!drop_to(out, uid, gid)) return;
      for (const Step& st : steps) {
        std::string line = st.desc + "=" + st.run(c) + "; ";
        ssize_t ignored = ::write(out, line.data(), line.size());
        (void)ignored;
      }
    });
  });
}

Step child_write_as(uid_t uid, gid_t gid, std::string path, std::string data, bool truncate) {
  return custom(fmt::format("as {}:{}: open({}, O_WRONLY|{}) + write({}) + close", uid, gid, path,
                            truncate ? "O_TRUNC" : "O_APPEND", bytes_str(data)),
                [=](Ctx& c) {
                  const std::string full = c.p(path);
                  return in_child([&](int out) {
                    if (!drop_to(out, uid, gid)) return;
                    int fd = ::open(full.c_str(),
                                    O_WRONLY | (truncate ? O_TRUNC : O_APPEND) | O_CLOEXEC);
                    child_report(out, "open", fd < 0 ? -1 : 0, errno);
                    if (fd < 0) return;
                    ssize_t n = ::write(fd, data.data(), data.size());
                    child_report(out, "write", n, errno);
                    child_report(out, "close", ::close(fd), errno);
                  });
                });
}

Step posix_lock_conflict(std::string fd_name, std::string path) {
  return custom(
      fmt::format("fcntl locks: {} takes F_WRLCK; a child process tries {}", fd_name, path),
      [=](Ctx& c) {
        const std::string full = c.p(path);
        const pid_t me = ::getpid();
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        std::string s = "parent F_SETLK(W)=" + errno_rc(::fcntl(c.fd(fd_name), F_SETLK, &fl));
        auto try_lock = [&](int out) {
          int fd = ::open(full.c_str(), O_RDWR | O_CLOEXEC);
          if (fd < 0) {
            child_report(out, "open", -1, errno);
            return;
          }
          struct flock g {};
          g.l_type = F_WRLCK;
          g.l_whence = SEEK_SET;
          child_report(out, "F_SETLK", ::fcntl(fd, F_SETLK, &g), errno);
          struct flock q {};
          q.l_type = F_WRLCK;
          q.l_whence = SEEK_SET;
          int r = ::fcntl(fd, F_GETLK, &q);
          child_report(out, "F_GETLK", r, errno);
          if (r == 0) {
            child_report(out, "l_type_is_wrlck", q.l_type == F_WRLCK, 0);
            child_report(out, "l_pid_is_parent", q.l_pid == me, 0);
          }
          ::close(fd);
        };
        s += " | child: " + in_child(try_lock);
        fl.l_type = F_UNLCK;
        s += "| parent F_SETLK(UN)=" + errno_rc(::fcntl(c.fd(fd_name), F_SETLK, &fl));
        s += " | child: " + in_child(try_lock);
        return s;
      });
}

}  // namespace step

std::vector<std::string> run_lockstep(const std::vector<Step>& steps, Ctx& expected, Ctx& actual) {
  std::vector<std::string> reports;
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string a = steps[i].run(expected);
    std::string b = steps[i].run(actual);
    if (a != b) {
      reports.push_back(fmt::format("step {}: {}\n    {:<8}: {}\n    {:<8}: {}", i + 1,
                                    steps[i].desc, expected.label, a, actual.label, b));
    }
  }
  return reports;
}

}  // namespace lamina::wt
