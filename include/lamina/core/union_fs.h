// SPDX-License-Identifier: Apache-2.0
#pragma once
// The merged view of a stack of layers, with kernel overlayfs's semantics, and no FUSE in
// sight: the fuse adapter turns requests into calls here and results into replies.
//
// Nodes. A Node is what the kernel knows as an inode (fuse_ino_t). It holds, for each layer
// that contributes to it, an ObjRef (O_PATH fd) -- never a path string. A non-directory has
// exactly one part (the topmost object of its name); a directory has every same-named
// directory from the topmost one down to the first opaque one. Nodes are shared by everyone
// who looks up the same object (hard links in a layer resolve to one node) and live until the
// kernel forgets them (lookup counting, as in libfuse's passthrough_hp) and no child names
// them as parent.
//
// Identity. st_ino comes from InodeMap: the topmost object's number, except for a merged
// directory with an upper part, which shows its topmost lower part's number (as kernel
// overlayfs does, so the number stays put when copy-up adds the upper part). A node keeps its
// number for its whole life, copy-up included.
//
// Writes (union_write.cc, copy_up.cc). Every change lands in the upper layer (layers[0]).
// A node's part list is replaced, never edited: readers copy the shared_ptr under the node's
// mutex and then use the list without any lock.
//
// Locks, in order (a thread only takes a lock listed after the ones it holds):
//   name_mu_         one of kNameLocks recursive stripes, chosen by name: serializes the copy-up
//                    of a non-directory with unlink and rename of its name, which the kernel
//                    does not (an open for writing holds no directory lock). Rename takes the
//                    stripes of both names at once (std::scoped_lock), everyone else one.
//   Node::copy_mu    serializes copy-up of one node; a child's is taken before its parent's
//   Node::mu         guards parts_, parent_, name_, removed_ (leaf, never held across I/O)
//   table_mu_        guards the node tables and every Node::nlookup (leaf)
//   whiteout_mu_     guards the shared whiteout (leaf; held over one link or mknod)

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
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

struct Part {
  uint32_t layer = 0;       // index into UnionFs::layers(): 0 is the top of the stack
  bool xwhiteouts = false;  // directory may hold xattr whiteouts
  bool indexed = false;     // a lower hard link's copy, found in the index: no upper name yet
  std::shared_ptr<const ObjRef> obj;
  uint64_t ino = 0;     // non-directory: the st_ino recorded at copy-up (0: none)
  bool impure = false;  // directory: holds copied-up entries whose st_ino is recorded
};
using PartList = std::vector<Part>;

class Node : public std::enable_shared_from_this<Node> {
 public:
  mode_t type = 0;  // S_IFMT bits; a node never changes type
  uint64_t ino = 0;
  uint64_t generation = 0;

  bool is_dir() const { return S_ISDIR(type); }

  std::shared_ptr<const PartList> parts() const {
    std::lock_guard lock(mu_);
    return parts_;
  }
  std::shared_ptr<Node> parent() const {
    std::lock_guard lock(mu_);
    return parent_;
  }
  std::string name() const {
    std::lock_guard lock(mu_);
    return name_;
  }

 private:
  friend class UnionFs;
  mutable std::mutex mu_;
  std::shared_ptr<const PartList> parts_;  // GUARDED_BY(mu_)
  std::shared_ptr<Node> parent_;           // GUARDED_BY(mu_); null for the root
  std::string name_;                       // GUARDED_BY(mu_); the last name it was seen by
  bool removed_ = false;                   // GUARDED_BY(mu_); unlinked or rmdir'ed

  std::mutex copy_mu_;  // held while copying this node up
  // Copied up, and its name in the upper parent not yet made durable: the next fsync of it
  // (or of something below it) fsyncs the parent too. Copy-ups leave that to fsync, as kernel
  // overlayfs does, and fsync only the data they copy before publishing it.
  std::atomic<bool> unsynced_name_{false};
  // The upper directory object this directory node last marked overlay.impure (a copy-up
  // marks the parent; once per directory is enough). GUARDED_BY(mu_).
  std::weak_ptr<const ObjRef> impure_dir_;

  dev_t key_dev_ = 0;  // GUARDED_BY(UnionFs::table_mu_): identity of the topmost object
  ino_t key_ino_ = 0;
  uint64_t nlookup_ = 0;  // GUARDED_BY(UnionFs::table_mu_)
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
  bool fsync = true;     // false with fsync=0 or volatile: no durability owed
  bool metacopy = true;  // metadata-only copy-ups (overlay.metacopy)
  XattrPermissions xattr_permissions = XattrPermissions::kOff;
  IdMap uid_map;
  IdMap gid_map;

  static UnionConfig from(const MountOptions& o);
};

// Who asks (the FUSE request's context), for owners of new objects and permission checks.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t umask = 0;
};

// What setattr changes; fields not flagged are ignored.
struct SetAttr {
  enum : unsigned {
    kMode = 1,
    kUid = 2,
    kGid = 4,
    kSize = 8,
    kAtime = 16,
    kMtime = 32,
    kAtimeNow = 64,
    kMtimeNow = 128,
    kCtime = 256,
  };
  unsigned valid = 0;
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  off_t size = 0;
  struct timespec atime {};
  struct timespec mtime {};
};

class UnionFs {
 public:
  static constexpr uint64_t kRootId = 1;  // the node id of the root (FUSE_ROOT_ID)

  // `layers`: topmost first; layers[0] is the upper when config.has_upper, and then
  // `work_fd` is an O_PATH descriptor of the work directory (on the upper's filesystem).
  static Result<std::unique_ptr<UnionFs>> create(std::vector<std::unique_ptr<Layer>> layers,
                                                 UnionConfig config, UniqueFd work_fd = {});
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

  // ---- read path (union_fs.cc) ----

  // Resolves parent/name and counts one lookup on the result. ENOENT for absent, whited-out
  // and reserved (".wh.*") names; ENOTDIR if parent is not a directory.
  Result<Node*> lookup(Node* parent, std::string_view name);
  // Drops n lookups; frees the node when none remain.
  void forget(Node* node, uint64_t n);

  // Attributes as the mount shows them (ino, nlink, owners mapped).
  // `fd`: an open descriptor of the node, if the kernel gave one (fstat).
  Result<struct stat> getattr(const Node* node, int fd = -1) const;
  Result<std::string> readlink(const Node* node) const;
  // A descriptor for I/O. A write access copies the file up first (EROFS on a read-only
  // mount); O_TRUNC truncates.
  Result<UniqueFd> open(Node* node, int flags);
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

  // ---- write path (union_write.cc) ----
  // Each returns EROFS on a read-only mount. New nodes come back with one lookup counted.

  Result<Node*> mknod(Node* parent, std::string_view name, mode_t mode, dev_t rdev,
                      const Caller& caller);
  Result<Node*> mkdir(Node* parent, std::string_view name, mode_t mode, const Caller& caller);
  Result<Node*> symlink(Node* parent, std::string_view name, const std::string& target,
                        const Caller& caller);
  // Creates and opens a regular file (O_EXCL honoured); returns the node and the descriptor.
  Result<std::pair<Node*, UniqueFd>> create(Node* parent, std::string_view name, mode_t mode,
                                            int flags, const Caller& caller);
  Result<Node*> link(Node* node, Node* new_parent, std::string_view new_name);
  Status unlink(Node* parent, std::string_view name);
  Status rmdir(Node* parent, std::string_view name);
  // flags: RENAME_NOREPLACE, RENAME_EXCHANGE.
  Status rename(Node* parent, std::string_view name, Node* new_parent, std::string_view new_name,
                unsigned flags);
  // `fd`: the open descriptor when the kernel gave one (ftruncate on an open file).
  Result<struct stat> setattr(Node* node, const SetAttr& attr, int fd);
  Status setxattr(Node* node, const char* name, const void* value, size_t size, int flags);
  Status removexattr(Node* node, const char* name);
  // fsync/fsyncdir honouring fsync=0 and volatile.
  Status sync(Node* node, int fd, bool datasync);

 private:
  UnionFs(std::vector<std::unique_ptr<Layer>> layers, UnionConfig config, UniqueFd work_fd);

  bool is_upper(const Part& p) const { return config_.has_upper && p.layer == 0; }
  // The object has its own name in the upper (an index entry alone does not count).
  bool has_upper_name(const Part& p) const { return is_upper(p) && !p.indexed; }
  // copy_up.cc: hard links of a lower file share one upper inode through the index.
  Result<std::string> index_key(const Part& lower) const;
  // Gives parent/name, resolved to an index entry, its own upper link.
  Status link_up_name(Node* parent, const std::string& name, const Part& indexed);
  Status adjust_nlink(int fd, int delta);
  // The parts of parent/name (empty when absent). `skip_upper` resolves below the upper only.
  // `attempt`: how many times the name changed under a resolve already (it starts over).
  Result<PartList> resolve(const PartList& parent, const char* name, bool skip_upper,
                           int attempt = 0) const;
  // The lower parts a redirected upper directory stands for.
  Result<PartList> resolve_redirect(const PartList& parent, const std::string& redirect) const;
  Result<std::vector<DirEntry>> list_parts(const PartList& parts, uint64_t self_ino,
                                           uint64_t parent_ino) const;
  uint64_t ino_of(const PartList& parts, mode_t type) const;
  void apply_owner_overrides(const PartList& parts, struct stat* st) const;
  const char* override_xattr() const;
  bool hidden_xattr(std::string_view name) const;
  // Publishes a node for `parts` under parent/name (or finds the live one for the same
  // object) and counts one lookup.
  Result<Node*> publish(Node* parent, const std::string& name, PartList parts);
  std::shared_ptr<Node> shared(Node* n);

  // copy_up.cc
  // The upper directory descriptor of a directory node, copying it (and its parents) up.
  Status sync_copied_up_names(Node* node);
  Result<std::shared_ptr<const ObjRef>> upper_dir(Node* dir);
  // Copies a node up (parents first) unless it is already in the upper. With data=false a
  // regular file gets a metadata-only copy (overlay.metacopy) whose data stays below; with
  // data=true a metacopy gets its data too.
  // With `mode`, a copy made here gets that mode instead of the lower one (a chmod folded
  // into its copy-up) and *mode_set says so.
  Status copy_up(Node* node, bool data = true, std::optional<mode_t> mode = std::nullopt,
                 bool* mode_set = nullptr);
  Status copy_up_data(Node* node);
  // Sets overlay.impure on dir's upper directory `up` unless this node did already.
  Status mark_impure(Node* dir, const std::shared_ptr<const ObjRef>& up);
  Status truncate_metacopy(Node* node);
  // Replaces the node's parts by `parts` and re-keys it in the node table.
  void set_parts(Node* node, PartList parts);
  std::string temp_name();
  Result<bool> exists_below(Node* parent, const std::string& name);
  // union_write.cc
  Result<Node*> make_object(Node* parent, std::string_view name, mode_t mode, dev_t rdev,
                            const std::string& target, const Caller& caller, UniqueFd* out_fd,
                            int flags);
  // Moves work/tmp to dir/name in place of the whiteout there.
  Status replace_whiteout(const std::string& tmp, int dir_fd, const std::string& name, bool is_dir);
  // Makes a whiteout at dir_fd/name (a char 0/0 device, or ".wh.NAME" on a rootless upper).
  // Devices are hard links to one shared inode in the work dir, as kernel overlayfs makes
  // them: a link allocates no inode, which is most of the cost of a whiteout.
  Status make_whiteout(int dir_fd, const std::string& name);
  // Removes parent/name (whose parts are `parts`), leaving a whiteout if something is below.
  Status remove_name(Node* parent, const std::string& name, const PartList& parts, bool is_dir);
  // After the last name of a lower object went: its live node shows st_nlink 0.
  void mark_removed(const Part& part, const struct stat& st);
  Result<std::string> lower_path(Node* dir);
  Status prepare_moved_dir(Node* dir, bool target_has_below);
  // Gives the live node of an upper object named by `part` a descriptor before the name goes.
  void pin(const Part& part);
  // After a rename: the node now lives at new_parent/new_name.
  void moved(Node* node, Node* new_parent, const std::string& new_name);
  Status rename_nodes(Node* parent, const std::string& from, Node* src, Node* new_parent,
                      const std::string& to, Node* dst, unsigned flags);

  std::vector<std::unique_ptr<Layer>> layers_;
  UnionConfig config_;
  UniqueFd work_fd_;
  UniqueFd index_fd_;  // invalid: no index (a lower without file handles, or read-only)
  mutable InodeMap inodes_;
  std::shared_ptr<Node> root_;
  std::shared_ptr<const PartList> root_parts_;  // the root's parts at mount (never change)
  std::atomic<uint64_t> temp_counter_{0};
  bool whiteout_devices_ = true;  // char 0/0 whiteouts (false: ".wh.NAME")
  std::mutex whiteout_mu_;
  std::string shared_whiteout_;  // GUARDED_BY(whiteout_mu_): its name in the work dir, or empty
  bool share_whiteouts_ = true;  // GUARDED_BY(whiteout_mu_): false once the upper refused a link
 public:
  // How the upper is written, found out by the daemon at mount: rootless mounts cannot mknod
  // (whiteouts become ".wh.NAME" files) nor write trusted.* xattrs (user.overlay.* instead).
  // WORKDIR/index: where copies of lower hard links wait for their other names.
  void set_index_dir(UniqueFd fd) { index_fd_ = std::move(fd); }
  void set_upper_format(bool whiteout_devices, bool trusted_xattrs) {
    whiteout_devices_ = whiteout_devices;
    xattr_prefix_ = trusted_xattrs ? "trusted.overlay." : "user.overlay.";
  }

 private:
  const char* xattr_prefix_ = "trusted.overlay.";

  struct KeyHash {
    size_t operator()(const std::pair<dev_t, ino_t>& k) const {
      return std::hash<uint64_t>()(k.second * 0x9E3779B97F4A7C15ULL ^ k.first);
    }
  };
  // Different names may share a stripe, which only costs a wait; recursive because rename
  // and unlink hold it across the copy-up they may do themselves.
  static constexpr size_t kNameLocks = 64;
  std::recursive_mutex& name_mu(std::string_view name) {
    return name_mu_[std::hash<std::string_view>()(name) % kNameLocks];
  }
  std::recursive_mutex name_mu_[kNameLocks];

  // True if `st` is the object `node` stands for (its key). A renamed file's node is re-pointed
  // just after the rename, and the kernel does not hold back an open or getattr of the file
  // meanwhile: a named upper part read just before may lead to a whiteout, another file or
  // nothing. Readers check, and read the parts again after moved_pause(attempt), for about a
  // second at most (the renaming thread may be preempted in between).
  bool still_names(const Node* node, const struct stat& st) const;
  static void moved_pause(int attempt);
  // The node's topmost part for a by-name use (readlink, setattr): a named upper part comes
  // back as a descriptor checked with still_names, so a rename meanwhile cannot redirect it.
  std::shared_ptr<const ObjRef> checked_top(const Node* node) const;
  static constexpr int kMovedRetries = 10000;

  mutable std::mutex table_mu_;
  std::unordered_map<Node*, std::shared_ptr<Node>> live_;               // GUARDED_BY(table_mu_)
  std::unordered_map<std::pair<dev_t, ino_t>, Node*, KeyHash> by_key_;  // GUARDED_BY(table_mu_)
  std::atomic<uint64_t> generation_{1};
};

}  // namespace lamina::core
