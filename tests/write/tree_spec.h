// SPDX-License-Identifier: Apache-2.0
#pragma once
// An initial tree spread over the layers of a stack (two lowers and an upper, in kernel
// overlayfs's format), materialized twice from one description: as the layer directories for
// the mount, and as the merged view in a plain directory, the POSIX reference.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lamina::wt {

using Xattrs = std::vector<std::pair<std::string, std::string>>;

// ---- initial trees ----------------------------------------------------------------------

// Layer bits, bottom to top. kL1 is the topmost lower (first in lowerdir=).
enum LayerBit : unsigned { kL2 = 1u, kL1 = 2u, kUp = 4u };

struct Item {
  enum Kind { kDir, kFile, kSparse, kSymlink, kHardlink, kFifo, kWhiteout, kOpaque };
  Kind kind = kFile;
  std::string path;
  std::string data;  // content, symlink target, hard link source
  mode_t mode = 0644;
  uid_t uid = 0;
  gid_t gid = 0;
  Xattrs xattrs;
  unsigned layers = 0;
  off_t size = 0;                                      // kSparse
  std::vector<std::pair<off_t, std::string>> extents;  // kSparse: data written at offsets
};

class TreeSpec {
 public:
  // A directory in every layer of `layers` (same metadata in each, so the merged view's
  // attributes do not depend on which layer is on top).
  TreeSpec& dir(std::string path, unsigned layers, mode_t mode = 0755, uid_t uid = 0, gid_t gid = 0,
                Xattrs xattrs = {});
  TreeSpec& file(std::string path, std::string content, unsigned layers, mode_t mode = 0644,
                 uid_t uid = 0, gid_t gid = 0, Xattrs xattrs = {});
  TreeSpec& sparse(std::string path, unsigned layers, off_t size,
                   std::vector<std::pair<off_t, std::string>> extents);
  TreeSpec& symlink(std::string path, std::string target, unsigned layers);
  // `path` becomes another name of `existing` in each layer of `layers`.
  TreeSpec& hardlink(std::string path, std::string existing, unsigned layers);
  TreeSpec& fifo(std::string path, unsigned layers, mode_t mode = 0644);
  // A char 0/0 whiteout (as root) deleting `path` of the layers below.
  TreeSpec& whiteout(std::string path, unsigned layers = kUp);
  // Marks a directory of `layers` opaque (trusted.overlay.opaque=y); declare it with dir() too.
  TreeSpec& opaque(std::string path, unsigned layers = kUp);

  // Writes the part of the tree that lives in `layer` (one bit) below `root`.
  void build_layer(const std::string& root, LayerBit layer) const;
  // Writes the merged view (layers applied bottom-up, upper objects replacing lower ones,
  // whiteouts deleting, opaque directories emptied) below `root`: the POSIX reference.
  void build_merged(const std::string& root) const;

  const std::vector<Item>& items() const { return items_; }

 private:
  void apply(const std::string& root, const Item& item, bool merged) const;
  void make_parents(const std::string& root, const std::string& rel) const;
  std::vector<Item> items_;
};

// A big pseudo-random but reproducible byte string.
std::string pattern_bytes(size_t size, uint64_t seed);

}  // namespace lamina::wt
