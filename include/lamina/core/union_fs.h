// SPDX-License-Identifier: Apache-2.0
#pragma once
// The merged view of a stack of layers, with kernel overlayfs's semantics, and no FUSE in
// sight: the fuse adapter turns requests into calls here and results into replies.
//
// Nodes. A Node is what the kernel knows as an inode (fuse_ino_t). It holds, for each layer
// that contributes to it, an ObjRef (O_PATH fd) -- never a path string. A non-directory has
// exactly one (the topmost object of that name); a directory has every same-named directory
// from the topmost one down to the first opaque one. Nodes are shared by everyone who looks
// up the same object (hard links in a lower resolve to one node) and live until the kernel
// forgets them (lookup counting, as in libfuse's passthrough_hp).
//
// Identity. st_ino comes from InodeMap: the topmost object's number, except for a merged
// directory with an upper part, which shows its topmost lower part's number (as kernel
// overlayfs does, so the number stays put when copy-up adds the upper part).
//
// Locking. table_mu_ guards the node table and every Node::nlookup transition to or from 0.
// A node's stack is immutable once the node is published, so the read path takes no lock
// beyond table_mu_ for the lookup-table insert.

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lamina/base/error.h"
#include "lamina/core/id_map.h"
#include "lamina/core/inode_map.h"
#include "lamina/core/layer.h"
#include "lamina/core/mount_options.h"

namespace lamina::core {

struct Node {
  struct Part {
    uint32_t layer;           // index into UnionFs::layers(): 0 is the top of the stack
    bool xwhiteouts = false;  // directory may hold xattr whiteouts
    ObjRef obj;
  };

  mode_t type = 0;          // S_IFMT bits
  uint64_t ino = 0;         // st_ino shown
  uint64_t parent_ino = 0;  // st_ino of the parent directory (for "..")
  uint64_t generation = 0;
  dev_t key_dev = 0;  // identity of the topmost object, the node table key
  ino_t key_ino = 0;
  std::vector<Part> parts;  // topmost first; immutable once published
  uint64_t nlookup = 0;     // GUARDED_BY(UnionFs::table_mu_)

  bool is_dir() const { return S_ISDIR(type); }
  const Part& top() const { return parts.front(); }
};

// One entry of a directory listing. Offsets into a listing are stable indexes.
struct DirEntry {
  std::string name;
  uint64_t ino;
  mode_t type;  // S_IFMT bits
};

// What UnionFs needs from the mount options.
struct UnionConfig {
  bool has_upper = false;
  bool read_only = true;
  bool acl = true;
  bool static_nlink = false;
  XattrPermissions xattr_permissions = XattrPermissions::kOff;
  IdMap uid_map;
  IdMap gid_map;

  static UnionConfig from(const MountOptions& o);
};

class UnionFs {
 public:
  static constexpr uint64_t kRootId = 1;  // the node id of the root (FUSE_ROOT_ID)

  // `layers`: topmost first; layers[0] is the upper when config.has_upper.
  static Result<std::unique_ptr<UnionFs>> create(std::vector<std::unique_ptr<Layer>> layers,
                                                 UnionConfig config);
  ~UnionFs();
  UnionFs(const UnionFs&) = delete;
  UnionFs& operator=(const UnionFs&) = delete;

  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  const UnionConfig& config() const { return config_; }

  // Node ids as the kernel sees them. A node id is valid from the lookup that returned it
  // until forget() drops its count to 0.
  Node* node(uint64_t id) { return id == kRootId ? root_.get() : reinterpret_cast<Node*>(id); }
  uint64_t id_of(const Node* n) const {
    return n == root_.get() ? kRootId : reinterpret_cast<uint64_t>(n);
  }
  Node* root() { return root_.get(); }

  // Resolves parent/name and counts one lookup on the result. ENOENT for absent, whited-out
  // and reserved (".wh.*") names; ENOTDIR if parent is not a directory.
  Result<Node*> lookup(Node* parent, std::string_view name);
  // Drops n lookups; frees the node when none remain.
  void forget(Node* node, uint64_t n);

  // Attributes as the mount shows them (ino, nlink, owners mapped).
  Result<struct stat> getattr(const Node* node) const;
  Result<std::string> readlink(const Node* node) const;
  // A descriptor to read from. EROFS for any write access (the write path is not built yet).
  Result<UniqueFd> open(const Node* node, int flags) const;
  // True when the node's data can never change under the kernel's page cache.
  bool immutable_data(const Node* node) const;
  // The merged listing, with "." and ".." first.
  Result<std::vector<DirEntry>> list(const Node* dir) const;
  // getxattr semantics: size 0 returns the needed size; ERANGE if buf is too small.
  Result<size_t> getxattr(const Node* node, const char* name, void* buf, size_t size) const;
  Result<size_t> listxattr(const Node* node, char* buf, size_t size) const;
  Result<struct statvfs> statfs() const;
  // access(2) against the attributes the mount shows.
  Status access(const Node* node, int mask, uid_t uid, gid_t gid,
                const std::vector<gid_t>& groups) const;

  size_t node_count() const;

 private:
  UnionFs(std::vector<std::unique_ptr<Layer>> layers, UnionConfig config);

  // The parts of parent/name (empty when absent).
  Result<std::vector<Node::Part>> resolve(const Node& parent, const char* name) const;
  uint64_t ino_of(const std::vector<Node::Part>& parts, mode_t type) const;
  void apply_owner_overrides(const Node& node, struct stat* st) const;
  const char* override_xattr() const;
  bool hidden_xattr(std::string_view name) const;

  std::vector<std::unique_ptr<Layer>> layers_;
  UnionConfig config_;
  mutable InodeMap inodes_;
  std::unique_ptr<Node> root_;

  struct KeyHash {
    size_t operator()(const std::pair<dev_t, ino_t>& k) const {
      return std::hash<uint64_t>()(k.second * 0x9E3779B97F4A7C15ULL ^ k.first);
    }
  };
  mutable std::mutex table_mu_;  // lock order: the only lock in UnionFs
  std::unordered_map<std::pair<dev_t, ino_t>, Node*, KeyHash> table_;  // GUARDED_BY(table_mu_)
  std::atomic<uint64_t> generation_{1};
};

}  // namespace lamina::core
