// SPDX-License-Identifier: Apache-2.0
#pragma once
// Volume snapshots: a plain directory (written directly, outside any union) becomes a chain of
// layers. The first snapshot holds the whole tree; each later one only the delta against the
// tree the previous snapshots add up to (TreeView): new and changed entries, whiteouts for
// names that are gone, an opaque directory where every old child is gone.
//
// What to re-read is decided by the volume index (docs/formats.md, "Volume index"): for each
// regular file of the previous snapshot (dev, ino, size, mtime, ctime) -> object. A file whose
// stat matches and whose object is still stored is not read; any other file is read and
// hashed (XXH3 decides whether it changed). A file that changes while it is read is read again
// (up to `retries` times), then the snapshot fails: nothing torn is ever stored.
//
// The directory is read with *at() calls from descriptors; symlinks are never followed.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "lamina/store/manifest.h"
#include "lamina/store/store.h"

namespace lamina::diff {

struct PathLessCmp {
  bool operator()(const std::string& a, const std::string& b) const {
    return store::path_less(a, b);
  }
};

// One name of the merged tree of an image. Hard links are resolved: entry.kind is kFile with
// the object and metadata of its file; `link_group` names the inode ("LAYER-INDEX:PATH" of the
// kFile entry; empty for non-files), so every name with the same group is one inode.
struct ViewEntry {
  store::Entry entry;
  std::string link_group;
};
using TreeView = std::map<std::string, ViewEntry, PathLessCmp>;

// The tree that the layers `ids` (bottom first) add up to: whiteouts remove, opaque
// directories hide what is below them, a non-directory hides a directory below it. *error names
// the layer and the problem.
bool merge_layers(const store::Store& store, const std::vector<std::string>& ids, TreeView* out,
                  std::string* error);

// One record of the volume index.
struct IndexRecord {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  int64_t ctime_sec = 0;
  uint32_t ctime_nsec = 0;
  std::string object;
};
struct VolumeIndex {
  std::string image;  // the snapshot (NAME:TAG) the records describe
  std::vector<IndexRecord> records;
};

// ROOT/volumes/NAME.index ('/' written as %2F). ENOENT when absent, EBADMSG when damaged.
Result<VolumeIndex> read_volume_index(const store::Store& store, const std::string& name);
// Written to tmp/, fsynced, renamed into place.
Status write_volume_index(const store::Store& store, const std::string& name,
                          const VolumeIndex& index);

struct SnapshotOptions {
  std::string comment;
  int retries = 3;  // re-reads of a file that changed while read
  // Index records from the previous snapshot (may be empty: everything is read).
  const VolumeIndex* index = nullptr;
};

struct SnapshotResult {
  std::string layer_id;
  uint64_t entries = 0;  // of the delta layer
  uint64_t files = 0;
  uint64_t whiteouts = 0;
  uint64_t content_bytes = 0;
  uint64_t objects_added = 0;
  uint64_t bytes_added = 0;
  uint64_t files_read = 0;  // files read and hashed (index misses)
  uint64_t added = 0, changed = 0, deleted = 0;
  VolumeIndex index;  // records for the next snapshot (image left for the caller to fill)
};

// Snapshots `dir` as a layer holding its delta against `previous` (empty: a full snapshot) and
// returns the layer id. REQUIRES: the caller holds the store's shared lock. On failure returns
// false and *error names the path and the problem.
bool snapshot_dir(store::Store& store, const std::string& dir, const TreeView& previous,
                  const SnapshotOptions& options, SnapshotResult* result, std::string* error);

// Materializes `view` as a new directory DEST: built in DEST.lamina-restore-XXXXXX beside it
// (removed on failure), then renamed into place without replacing anything (EEXIST when DEST
// exists). Owners, modes, times (directories' after their children), xattrs, hard links, holes,
// symlinks and special files are restored. REQUIRES: the caller holds the store's shared lock.
bool restore_tree(const store::Store& store, const TreeView& view, const std::string& dest,
                  std::string* error);

// Updates the existing directory `dest` in place to match `view`: entries the view lacks are
// removed, directories kept and updated, a regular file kept when its size and mtime match
// (its owner, mode, xattrs and times set again), anything else replaced. Not atomic: an
// interrupted update leaves DEST partly updated (run it again). REQUIRES: the shared lock.
bool restore_into_existing(const store::Store& store, const TreeView& view, const std::string& dest,
                           std::string* error);

}  // namespace lamina::diff
