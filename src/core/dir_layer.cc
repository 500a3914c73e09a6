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
  PathFd d(dir);
  if (!d.ok()) return d.error();
  auto fd = open_path_shedding(d.get(), name);
  if (!fd) return fd.error();
  return ObjRef(std::move(*fd));
}

Result<struct stat> DirLayer::stat_at(const ObjRef& dir, const char* name) const {
  PathFd d(dir);
  if (!d.ok()) return d.error();
  return sys::fstatat(d.get(), name);
}

Result<bool> DirLayer::contains(const ObjRef& dir, const char* name) const {
  PathFd d(dir);
  if (!d.ok()) return d.error();
  return sys::exists_at(d.get(), name);
}

// A named object goes by its directory's descriptor and its name; the others by their own.
// Either way no descriptor is opened for the call.
namespace {
struct At {
  explicit At(const ObjRef& obj)
      : fd(obj.named() ? *obj.dir : obj), name(obj.named() ? obj.name.c_str() : "") {}
  PathFd fd;
  const char* name;
};
}  // namespace

Result<struct stat> DirLayer::stat(const ObjRef& obj) const {
  At at(obj);
  if (!at.fd.ok()) return at.fd.error();
  if (obj.named()) return sys::fstatat(at.fd.get(), at.name);
  return sys::fstat(at.fd.get());
}

Result<std::string> DirLayer::readlink(const ObjRef& obj) const {
  At at(obj);
  if (!at.fd.ok()) return at.fd.error();
  return sys::readlinkat(at.fd.get(), at.name);
}

Result<UniqueFd> DirLayer::open(const ObjRef& obj, int flags) const {
  At at(obj);
  if (!at.fd.ok()) return at.fd.error();
  auto once = [&]() -> Result<UniqueFd> {
    if (obj.named()) return sys::openat(at.fd.get(), at.name, flags | O_NOFOLLOW);
    return sys::reopen(at.fd.get(), flags);
  };
  auto fd = once();
  if (!fd && (fd.code() == EMFILE || fd.code() == ENFILE)) {
    DescriptorBudget::shed();
    fd = once();
  }
  return fd;
}

Status DirLayer::list(const ObjRef& dir, const sys::DirentFn& fn) const {
  PathFd d(dir);
  if (!d.ok()) return d.error();
  return sys::read_dir(d.get(), fn);
}

// Xattrs go by the object's directory and name (or its own descriptor): no open per call.
Result<size_t> DirLayer::getxattr(const ObjRef& obj, const char* name, void* buf,
                                  size_t size) const {
  At at(obj);
  if (!at.fd.ok()) return at.fd.error();
  return sys::getxattr_at(at.fd.get(), at.name, name, buf, size);
}

Result<std::string> DirLayer::getxattr(const ObjRef& obj, const char* name) const {
  At at(obj);
  if (!at.fd.ok()) return at.fd.error();
  return sys::getxattr_at(at.fd.get(), at.name, name);
}

Result<std::string> DirLayer::listxattr(const ObjRef& obj) const {
  At at(obj);
  if (!at.fd.ok()) return at.fd.error();
  return sys::listxattr_at(at.fd.get(), at.name);
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
