// SPDX-License-Identifier: Apache-2.0
#pragma once
// A layer is a read-only source of a tree. Two kinds sit behind this interface: a plain
// directory (DirLayer) and a committed layer of lamina's store (StoreLayer). The union code in
// UnionFs sees layers only through this class, so it never concatenates a path and never
// cares where the bytes live.

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lamina/base/error.h"
#include "lamina/base/sys.h"
#include "lamina/base/unique_fd.h"
#include "lamina/core/obj_ref.h"

namespace lamina::core {

class Layer {
 public:
  virtual ~Layer() = default;

  // What to call this layer in messages (its path).
  virtual const std::string& describe() const = 0;
  // The device that inode numbers of this layer's stat() results belong to.
  virtual dev_t dev() const = 0;

  virtual Result<ObjRef> root() const = 0;
  // One component, never "." or "..", never containing '/'. ENOENT when absent. Never
  // follows a symlink.
  virtual Result<ObjRef> lookup(const ObjRef& dir, const char* name) const = 0;
  // stat of dir/name without opening it (never follows a symlink). ENOENT when absent.
  virtual Result<struct stat> stat_at(const ObjRef& dir, const char* name) const = 0;
  // Cheap existence test of dir/name (no handle is opened).
  virtual Result<bool> contains(const ObjRef& dir, const char* name) const = 0;
  virtual Result<struct stat> stat(const ObjRef& obj) const = 0;
  virtual Result<std::string> readlink(const ObjRef& obj) const = 0;
  // A readable descriptor on a regular file or directory (flags: O_RDONLY plus O_DIRECTORY,
  // O_NOATIME, O_DIRECT ...).
  virtual Result<UniqueFd> open(const ObjRef& obj, int flags) const = 0;
  // Every entry of a directory except "." and "..".
  virtual Status list(const ObjRef& dir, const sys::DirentFn& fn) const = 0;

  // ENODATA when absent. With size 0 returns the size the value needs.
  virtual Result<size_t> getxattr(const ObjRef& obj, const char* name, void* buf,
                                  size_t size) const = 0;
  virtual Result<std::string> getxattr(const ObjRef& obj, const char* name) const = 0;
  // NUL-separated names.
  virtual Result<std::string> listxattr(const ObjRef& obj) const = 0;
  virtual Result<struct statvfs> statfs() const = 0;

  // A stable name for the object's inode, unique among all layers of a mount and the same for
  // every hard link of it: the key of its copy in WORKDIR/index (a single file name, no '/').
  // EOPNOTSUPP where the layer cannot name inodes.
  virtual Result<std::string> link_key(const ObjRef& obj) const = 0;
  // Every path ("/a/b", from the layer's root) naming the same inode as `obj`: the names of its
  // hard-link group in this layer. A store layer reads them from its manifest; a directory layer
  // has to search its tree, so callers keep this off any hot path (commit asks only for groups
  // the upper split).
  virtual Result<std::vector<std::string>> link_names(const ObjRef& obj) const = 0;
};

}  // namespace lamina::core
