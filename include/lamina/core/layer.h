// SPDX-License-Identifier: Apache-2.0
#pragma once
// A layer is a read-only source of a tree. Two kinds sit behind this interface: a plain
// directory (DirLayer) and, later, a committed layer of lamina's store. The union code in
// UnionFs sees layers only through this class, so it never concatenates a path and never
// cares where the bytes live.

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "lamina/base/error.h"
#include "lamina/base/sys.h"
#include "lamina/base/unique_fd.h"

namespace lamina::core {

// A handle on one object inside one layer. Directory layers hold an O_PATH descriptor;
// store layers will hold a manifest entry index.
struct ObjRef {
  UniqueFd fd;
  uint64_t entry = 0;
};

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
};

}  // namespace lamina::core
