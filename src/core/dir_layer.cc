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

Result<size_t> DirLayer::getxattr(const ObjRef& obj, const char* name, void* buf,
                                  size_t size) const {
  PathFd fd(obj);
  if (!fd.ok()) return fd.error();
  return sys::fgetxattr(fd.get(), name, buf, size);
}

Result<std::string> DirLayer::getxattr(const ObjRef& obj, const char* name) const {
  PathFd fd(obj);
  if (!fd.ok()) return fd.error();
  return sys::fgetxattr(fd.get(), name);
}

Result<std::string> DirLayer::listxattr(const ObjRef& obj) const {
  PathFd fd(obj);
  if (!fd.ok()) return fd.error();
  return sys::flistxattr(fd.get());
}

Result<struct statvfs> DirLayer::statfs() const { return sys::fstatvfs(root_.get()); }

Result<std::string> DirLayer::link_key(const ObjRef& obj) const {
  PathFd fd(obj);
  if (!fd.ok()) return fd.error();
  return sys::handle_name(fd.get());
}

}  // namespace lamina::core
