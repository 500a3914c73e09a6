// SPDX-License-Identifier: Apache-2.0
#include "tree_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>

#include "bench_util.h"

namespace lamina::bench {
namespace {

constexpr size_t kBuf = 1 << 20;

struct Entry {
  std::string name;
  unsigned char type;
};

// Opens `name` below `dirfd` as a directory (never following a symlink) and reads all of it.
std::vector<Entry> read_dir(int fd, const std::string& what) {
  int dup_fd = static_cast<int>(check(::fcntl(fd, F_DUPFD_CLOEXEC, 0), "dup(" + what + ")"));
  DIR* d = ::fdopendir(dup_fd);
  if (d == nullptr) {
    int e = errno;
    ::close(dup_fd);
    throw BenchError{"fdopendir(" + what + ")", e};
  }
  std::vector<Entry> out;
  errno = 0;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") out.push_back({std::move(n), de->d_type});
    errno = 0;
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) throw BenchError{"readdir(" + what + ")", e};
  return out;
}

Fd open_dir(int dirfd, const std::string& name) {
  return open_at(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

bool is_dir(int dirfd, const Entry& e) {
  if (e.type != DT_UNKNOWN) return e.type == DT_DIR;
  struct stat st {};
  check(::fstatat(dirfd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW), "fstatat(" + e.name + ")");
  return S_ISDIR(st.st_mode);
}

void stat_walk_in(int fd, const std::string& what, TreeCount& c) {
  for (const Entry& e : read_dir(fd, what)) {
    struct stat st {};
    check(::fstatat(fd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW), "fstatat(" + e.name + ")");
    if (S_ISDIR(st.st_mode)) {
      ++c.dirs;
      Fd sub = open_dir(fd, e.name);
      stat_walk_in(sub.get(), e.name, c);
    } else {
      ++c.files;
    }
  }
}

void lgetxattr_quiet(const std::string& path, const char* name) {
  char buf[256];
  if (::lgetxattr(path.c_str(), name, buf, sizeof buf) < 0 && errno != ENODATA &&
      errno != ENOTSUP && errno != ERANGE) {
    throw BenchError{"lgetxattr(" + path + ", " + name + ")", errno};
  }
}

void ls_lr_in(const std::string& path, TreeCount& c) {
  Fd fd = open_dir(AT_FDCWD, path);
  std::vector<std::string> subdirs;
  for (const Entry& e : read_dir(fd.get(), path)) {
    std::string p = path + "/" + e.name;
    struct stat st {};
    check(::lstat(p.c_str(), &st), "lstat(" + p + ")");
    lgetxattr_quiet(p, "security.selinux");
    lgetxattr_quiet(p, "system.posix_acl_access");
    if (S_ISDIR(st.st_mode)) {
      ++c.dirs;
      subdirs.push_back(std::move(p));
    } else {
      ++c.files;
    }
  }
  fd = Fd();
  for (const std::string& s : subdirs) ls_lr_in(s, c);
}

void rm_rf_in(int parent, const std::string& name, TreeCount& c) {
  {
    Fd fd = open_dir(parent, name);
    for (const Entry& e : read_dir(fd.get(), name)) {
      if (is_dir(fd.get(), e)) {
        rm_rf_in(fd.get(), e.name, c);
      } else {
        check(::unlinkat(fd.get(), e.name.c_str(), 0), "unlinkat(" + e.name + ")");
        ++c.files;
      }
    }
  }
  check(::unlinkat(parent, name.c_str(), AT_REMOVEDIR), "rmdir(" + name + ")");
  ++c.dirs;
}

void chmod_r_in(int parent, const std::string& name, unsigned fmode, unsigned dmode, TreeCount& c) {
  check(::fchmodat(parent, name.c_str(), dmode, 0), "fchmodat(" + name + ")");
  Fd fd = open_dir(parent, name);
  for (const Entry& e : read_dir(fd.get(), name)) {
    struct stat st {};
    check(::fstatat(fd.get(), e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW), "fstatat(" + e.name + ")");
    if (S_ISDIR(st.st_mode)) {
      ++c.dirs;
      chmod_r_in(fd.get(), e.name, fmode, dmode, c);
    } else if (!S_ISLNK(st.st_mode)) {
      ++c.files;
      check(::fchmodat(fd.get(), e.name.c_str(), fmode, 0), "fchmodat(" + e.name + ")");
    }
  }
}

void copy_file(int from_dir, int to_dir, const std::string& name, mode_t mode, TreeCount& c) {
  Fd in = open_at(from_dir, name, O_RDONLY | O_NOFOLLOW);
  Fd out = open_at(to_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode & 07777);
  bool use_cfr = true;
  static thread_local std::vector<char> buf(kBuf);
  for (;;) {
    ssize_t n;
    if (use_cfr) {
      n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr, kBuf, 0);
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
        use_cfr = false;
        continue;
      }
      check(n, "copy_file_range(" + name + ")");
    } else {
      n = check(::read(in.get(), buf.data(), kBuf), "read(" + name + ")");
      write_all(out.get(), buf.data(), static_cast<size_t>(n), "write(" + name + ")");
    }
    if (n == 0) break;
    c.bytes += static_cast<uint64_t>(n);
  }
}

void copy_tree_in(int from_parent, const std::string& from_name, int to_parent,
                  const std::string& to_name, TreeCount& c) {
  struct stat st {};
  check(::fstatat(from_parent, from_name.c_str(), &st, AT_SYMLINK_NOFOLLOW),
        "fstatat(" + from_name + ")");
  check(::mkdirat(to_parent, to_name.c_str(), st.st_mode & 07777), "mkdirat(" + to_name + ")");
  Fd from = open_dir(from_parent, from_name);
  Fd to = open_dir(to_parent, to_name);
  for (const Entry& e : read_dir(from.get(), from_name)) {
    struct stat est {};
    check(::fstatat(from.get(), e.name.c_str(), &est, AT_SYMLINK_NOFOLLOW),
          "fstatat(" + e.name + ")");
    if (S_ISDIR(est.st_mode)) {
      ++c.dirs;
      copy_tree_in(from.get(), e.name, to.get(), e.name, c);
    } else if (S_ISREG(est.st_mode)) {
      ++c.files;
      copy_file(from.get(), to.get(), e.name, est.st_mode, c);
    } else if (S_ISLNK(est.st_mode)) {
      ++c.files;
      char target[4096];
      ssize_t n = check(::readlinkat(from.get(), e.name.c_str(), target, sizeof target - 1),
                        "readlinkat(" + e.name + ")");
      target[n] = '\0';
      check(::symlinkat(target, to.get(), e.name.c_str()), "symlinkat(" + e.name + ")");
    }
  }
}

void warm_in(int fd, const std::string& what, std::vector<char>& buf, TreeCount& c) {
  for (const Entry& e : read_dir(fd, what)) {
    struct stat st {};
    check(::fstatat(fd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW), "fstatat(" + e.name + ")");
    if (S_ISDIR(st.st_mode)) {
      ++c.dirs;
      Fd sub = open_dir(fd, e.name);
      warm_in(sub.get(), e.name, buf, c);
    } else if (S_ISREG(st.st_mode)) {
      ++c.files;
      Fd f = open_at(fd, e.name, O_RDONLY | O_NOFOLLOW);
      ssize_t n;
      while ((n = check(::read(f.get(), buf.data(), buf.size()), "read(" + e.name + ")")) > 0) {
        c.bytes += static_cast<uint64_t>(n);
      }
    }
  }
}

void mkdir_p(const std::string& path) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), 0755) < 0 && errno != EEXIST) {
      throw BenchError{"mkdir(" + cur + ")", errno};
    }
  }
}

// Writes `size` bytes of the pattern, starting `skew` bytes into it, to a new file.
void write_file(int dirfd, const std::string& name, uint64_t size, const std::vector<char>& pat,
                size_t skew) {
  Fd f = open_at(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
  uint64_t left = size;
  size_t off = skew % pat.size();
  while (left > 0) {
    size_t n = std::min<uint64_t>(left, pat.size() - off);
    write_all(f.get(), pat.data() + off, n, "write(" + name + ")");
    left -= n;
    off = 0;
  }
}

}  // namespace

TreeCount stat_walk(int dirfd, const std::string& path) {
  TreeCount c;
  Fd fd = open_dir(dirfd, path);
  stat_walk_in(fd.get(), path, c);
  return c;
}

TreeCount ls_lr(const std::string& path) {
  TreeCount c;
  ls_lr_in(path, c);
  return c;
}

TreeCount rm_rf(int dirfd, const std::string& path) {
  TreeCount c;
  rm_rf_in(dirfd, path, c);
  --c.dirs;  // the start itself
  return c;
}

TreeCount chmod_r(int dirfd, const std::string& path, unsigned file_mode, unsigned dir_mode) {
  TreeCount c;
  chmod_r_in(dirfd, path, file_mode, dir_mode, c);
  return c;
}

TreeCount copy_tree(int dirfd, const std::string& from, const std::string& to) {
  auto split = [](const std::string& p) {
    auto slash = p.rfind('/');
    return slash == std::string::npos ? std::pair<std::string, std::string>{".", p}
                                      : std::pair{p.substr(0, slash), p.substr(slash + 1)};
  };
  auto [from_parent, from_name] = split(from);
  auto [to_parent, to_name] = split(to);
  TreeCount c;
  {
    Fd fp = open_dir(dirfd, from_parent);
    Fd tp = open_dir(dirfd, to_parent);
    copy_tree_in(fp.get(), from_name, tp.get(), to_name, c);
  }
  rm_rf(dirfd, from);
  return c;
}

TreeCount warm(const std::string& path) {
  TreeCount c;
  std::vector<char> buf(kBuf);
  Fd fd = open_dir(AT_FDCWD, path);
  warm_in(fd.get(), path, buf, c);
  return c;
}

TreeCount gen_tree(const std::string& dir, int top, int sub, int files, uint64_t size,
                   const std::string& prefix, uint64_t seed) {
  TreeCount c;
  mkdir_p(dir);
  std::vector<char> pat = pattern(kBuf, seed);
  Fd root = open_dir(AT_FDCWD, dir);
  char name[64];
  auto fill = [&](int leaf_fd) {
    for (int k = 0; k < files; ++k) {
      std::snprintf(name, sizeof name, "f%05d", k);
      write_file(leaf_fd, prefix + name, size, pat, c.files * 4099);
      ++c.files;
      c.bytes += size;
    }
  };
  auto make_dir = [&c](int parent, const std::string& n) {
    if (::mkdirat(parent, n.c_str(), 0755) == 0) {
      ++c.dirs;
    } else if (errno != EEXIST) {
      throw BenchError{"mkdirat(" + n + ")", errno};
    }
    return open_dir(parent, n);
  };
  for (int i = 0; i < top; ++i) {
    std::snprintf(name, sizeof name, "d%03d", i);
    Fd d = make_dir(root.get(), name);
    if (sub == 0) {
      fill(d.get());
      continue;
    }
    for (int j = 0; j < sub; ++j) {
      std::snprintf(name, sizeof name, "s%03d", j);
      Fd s = make_dir(d.get(), name);
      fill(s.get());
    }
  }
  return c;
}

TreeCount gen_files(const std::string& dir, const std::vector<uint64_t>& sizes, uint64_t seed) {
  TreeCount c;
  mkdir_p(dir);
  std::vector<char> pat = pattern(kBuf, seed);
  Fd root = open_dir(AT_FDCWD, dir);
  for (uint64_t s : sizes) {
    write_file(root.get(), "f_" + size_label(s), s, pat, 0);
    ++c.files;
    c.bytes += s;
  }
  return c;
}

}  // namespace lamina::bench
