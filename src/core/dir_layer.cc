// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/dir_layer.h"

#include <fcntl.h>
#include <unistd.h>

namespace lamina::core {

Result<std::unique_ptr<DirLayer>> DirLayer::open(const std::string& path) {
  auto fd = sys::openat(AT_FDCWD, path.c_str(), O_PATH | O_DIRECTORY);
  if (!fd) return Error{fd.code(), "open layer"};
  auto st = sys::fstat(fd->get());
  if (!st) return st.error();
  return std::unique_ptr<DirLayer>(new DirLayer(path, std::move(*fd), st->st_dev));
}

Result<ObjRef> DirLayer::root() const {
  auto fd = sys::openat(root_.get(), ".", O_PATH | O_DIRECTORY);
  if (!fd) return fd.error();
  return ObjRef(std::move(*fd));
}

Result<ObjRef> DirLayer::lookup(const ObjRef& dir, const char* name) const {
  auto fd = sys::open_path(dir.fd.get(), name);
  if (!fd) return fd.error();
  return ObjRef(std::move(*fd));
}

Result<struct stat> DirLayer::stat_at(const ObjRef& dir, const char* name) const {
  return sys::fstatat(dir.fd.get(), name);
}

Result<bool> DirLayer::contains(const ObjRef& dir, const char* name) const {
  return sys::exists_at(dir.fd.get(), name);
}

Result<struct stat> DirLayer::stat(const ObjRef& obj) const {
  if (obj.named()) return sys::fstatat(obj.dir->fd.get(), obj.name.c_str());
  return sys::fstat(obj.fd.get());
}

Result<std::string> DirLayer::readlink(const ObjRef& obj) const {
  if (obj.named()) return sys::readlinkat(obj.dir->fd.get(), obj.name.c_str());
  return sys::readlinkat(obj.fd.get(), "");
}

Result<UniqueFd> DirLayer::open(const ObjRef& obj, int flags) const {
  if (obj.named()) return sys::openat(obj.dir->fd.get(), obj.name.c_str(), flags | O_NOFOLLOW);
  return sys::reopen(obj.fd.get(), flags);
}

Status DirLayer::list(const ObjRef& dir, const sys::DirentFn& fn) const {
  return sys::read_dir(dir.fd.get(), fn);
}

// Xattrs go by the object's directory and name (or its own descriptor): no open per call.
Result<size_t> DirLayer::getxattr(const ObjRef& obj, const char* name, void* buf,
                                  size_t size) const {
  if (obj.named()) return sys::getxattr_at(obj.dir->fd.get(), obj.name.c_str(), name, buf, size);
  return sys::getxattr_at(obj.fd.get(), "", name, buf, size);
}

Result<std::string> DirLayer::getxattr(const ObjRef& obj, const char* name) const {
  if (obj.named()) return sys::getxattr_at(obj.dir->fd.get(), obj.name.c_str(), name);
  return sys::getxattr_at(obj.fd.get(), "", name);
}

Result<std::string> DirLayer::listxattr(const ObjRef& obj) const {
  if (obj.named()) return sys::listxattr_at(obj.dir->fd.get(), obj.name.c_str());
  return sys::listxattr_at(obj.fd.get(), "");
}

namespace {

// Depth-first search below dir_fd (named `path`) for names of inode `ino`; stops once `want`
// names are found. Never follows a symlink, never leaves the layer's filesystem.
Status find_names(int dir_fd, const std::string& path, dev_t dev, ino_t ino, nlink_t want,
                  std::vector<std::string>* out) {
  std::vector<std::string> subdirs;
  Status s = sys::read_dir(dir_fd, [&](std::string_view name, unsigned char type, ino_t d_ino) {
    std::string child = (path == "/" ? "/" : path + "/") + std::string(name);
    if (type == DT_DIR) {
      subdirs.push_back(std::string(name));
    } else if (d_ino == ino && (type == DT_REG || type == DT_UNKNOWN)) {
      auto st = sys::fstatat(dir_fd, std::string(name).c_str());
      if (st && st->st_dev == dev && st->st_ino == ino) out->push_back(child);
    }
    return Status{};
  });
  if (!s) return s;
  for (const auto& name : subdirs) {
    if (out->size() >= want) break;
    auto sub = sys::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!sub) continue;  // unreadable or gone: not part of the search
    auto st = sys::fstat(sub->get());
    if (!st || st->st_dev != dev) continue;
    std::string child = path == "/" ? "/" : path + "/";
    child += name;
    if (Status f = find_names(sub->get(), child, dev, ino, want, out); !f) {
      return f;
    }
  }
  return {};
}

}  // namespace

Result<std::vector<std::string>> DirLayer::link_names(const ObjRef& obj) const {
  auto st = stat(obj);
  if (!st) return st.error();
  std::vector<std::string> out;
  auto root = sys::openat(root_.get(), ".", O_RDONLY | O_DIRECTORY);
  if (!root) return root.error();
  if (Status s = find_names(root->get(), "/", st->st_dev, st->st_ino, st->st_nlink, &out); !s) {
    return s.error();
  }
  return out;
}

Result<struct statvfs> DirLayer::statfs() const { return sys::fstatvfs(root_.get()); }

Result<std::string> DirLayer::link_key(const ObjRef& obj) const {
  PathFd fd(obj);
  if (!fd.ok()) return fd.error();
  return sys::handle_name(fd.get());
}

}  // namespace lamina::core
