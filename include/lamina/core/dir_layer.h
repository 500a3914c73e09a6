// SPDX-License-Identifier: Apache-2.0
#pragma once
// A layer that is a plain directory, opened once. Every access is an *at() call relative to
// an O_PATH descriptor with O_NOFOLLOW: nothing inside the layer (a symlink, "..") can make
// lamina touch a file outside it.

#include <memory>

#include "lamina/core/layer.h"

namespace lamina::core {

class DirLayer final : public Layer {
 public:
  // Opens `path` (symlinks in `path` itself are followed: container tools pass symlinks to
  // layer directories). ENOTDIR if it is not a directory.
  static Result<std::unique_ptr<DirLayer>> open(const std::string& path);

  const std::string& describe() const override { return path_; }
  dev_t dev() const override { return dev_; }
  // The O_PATH descriptor of the layer's root.
  int root_fd() const { return root_.get(); }

  Result<ObjRef> root() const override;
  Result<ObjRef> lookup(const ObjRef& dir, const char* name) const override;
  Result<struct stat> stat_at(const ObjRef& dir, const char* name) const override;
  Result<bool> contains(const ObjRef& dir, const char* name) const override;
  Result<struct stat> stat(const ObjRef& obj) const override;
  Result<std::string> readlink(const ObjRef& obj) const override;
  Result<UniqueFd> open(const ObjRef& obj, int flags) const override;
  Status list(const ObjRef& dir, const sys::DirentFn& fn) const override;
  Result<size_t> getxattr(const ObjRef& obj, const char* name, void* buf,
                          size_t size) const override;
  Result<std::string> getxattr(const ObjRef& obj, const char* name) const override;
  Result<std::string> listxattr(const ObjRef& obj) const override;
  Result<struct statvfs> statfs() const override;
  // The file handle (name_to_handle_at) in hex.
  Result<std::string> link_key(const ObjRef& obj) const override;
  Result<std::vector<std::string>> link_names(const ObjRef& obj) const override;

 private:
  DirLayer(std::string path, UniqueFd root, dev_t dev)
      : path_(std::move(path)), root_(std::move(root)), dev_(dev) {}

  std::string path_;
  UniqueFd root_;
  dev_t dev_;
};

}  // namespace lamina::core
