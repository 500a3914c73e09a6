// SPDX-License-Identifier: Apache-2.0
// faultfs: a read-only pass-through FUSE filesystem over a source directory that fails reads
// of "bad blocks" with EIO, as a lower layer on a failing disk would. It stands in for a
// device-mapper error target (dm-error / dm-flakey), which needs a kernel with device-mapper:
// FUSE is there wherever the mount tests run.
//
//   faultfs SOURCE MOUNTPOINT [FUSE OPTIONS...]      (run with -f by the tests)
//
// A regular file whose name starts with "eio" has one bad block: bytes [4096, 8192). A read
// that touches it fails with EIO; the first block and everything after the bad one read
// normally. Files are opened direct_io, so every read reaches this process (no page cache
// can hide the fault, no cache drop needed). Everything else passes through unchanged.

#define FUSE_USE_VERSION 314
#include <dirent.h>
#include <fcntl.h>
#include <fuse.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr off_t kBadBegin = 4096;
constexpr off_t kBadEnd = 8192;

int g_source = -1;  // O_PATH descriptor of SOURCE, set before fuse_main

// FUSE paths are absolute ("/a/b"); relative to SOURCE for the *at() calls.
std::string rel(const char* path) {
  if (path[0] == '/' && path[1] == '\0') return ".";
  return path + 1;
}

bool is_bad_file(const char* path) {
  const char* slash = std::strrchr(path, '/');
  const char* base = slash ? slash + 1 : path;
  return std::strncmp(base, "eio", 3) == 0;
}

int ff_getattr(const char* path, struct stat* st, struct fuse_file_info* /*fi*/) {
  if (::fstatat(g_source, rel(path).c_str(), st, AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  return 0;
}

int ff_readlink(const char* path, char* buf, size_t size) {
  ssize_t n = ::readlinkat(g_source, rel(path).c_str(), buf, size - 1);
  if (n < 0) return -errno;
  buf[n] = '\0';
  return 0;
}

int ff_readdir(const char* path, void* buf, fuse_fill_dir_t fill, off_t /*off*/,
               struct fuse_file_info* /*fi*/, enum fuse_readdir_flags /*flags*/) {
  int fd = ::openat(g_source, rel(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  while (struct dirent* e = ::readdir(dir)) {
    struct stat st = {};
    st.st_ino = e->d_ino;
    st.st_mode = static_cast<mode_t>(DTTOIF(e->d_type));
    if (fill(buf, e->d_name, &st, 0, static_cast<fuse_fill_dir_flags>(0)) != 0) break;
  }
  ::closedir(dir);
  return 0;
}

int ff_open(const char* path, struct fuse_file_info* fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
  int fd = ::openat(g_source, rel(path).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  fi->fh = static_cast<uint64_t>(fd);
  fi->direct_io = 1;
  return 0;
}

int ff_read(const char* path, char* buf, size_t size, off_t off, struct fuse_file_info* fi) {
  if (is_bad_file(path) && off < kBadEnd && off + static_cast<off_t>(size) > kBadBegin) {
    return -EIO;
  }
  ssize_t n = ::pread(static_cast<int>(fi->fh), buf, size, off);
  return n < 0 ? -errno : static_cast<int>(n);
}

int ff_release(const char* /*path*/, struct fuse_file_info* fi) {
  ::close(static_cast<int>(fi->fh));
  return 0;
}

int ff_statfs(const char* /*path*/, struct statvfs* st) {
  return ::fstatvfs(g_source, st) == 0 ? 0 : -errno;
}

// No xattrs: a lower without them (laminafs must not need any).
int ff_getxattr(const char* /*path*/, const char* /*name*/, char* /*value*/, size_t /*size*/) {
  return -ENODATA;
}

int ff_listxattr(const char* /*path*/, char* /*list*/, size_t /*size*/) { return 0; }

void* ff_init(struct fuse_conn_info* /*conn*/, struct fuse_config* cfg) {
  cfg->use_ino = 1;
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: faultfs SOURCE MOUNTPOINT [FUSE OPTIONS...]\n");
    return 2;
  }
  g_source = ::open(argv[1], O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (g_source < 0) {
    std::fprintf(stderr, "faultfs: %s: %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  struct fuse_operations ops = {};
  ops.getattr = ff_getattr;
  ops.readlink = ff_readlink;
  ops.readdir = ff_readdir;
  ops.open = ff_open;
  ops.read = ff_read;
  ops.release = ff_release;
  ops.statfs = ff_statfs;
  ops.getxattr = ff_getxattr;
  ops.listxattr = ff_listxattr;
  ops.init = ff_init;
  std::vector<char*> args = {argv[0]};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  return fuse_main(static_cast<int>(args.size()), args.data(), &ops, nullptr);
}
