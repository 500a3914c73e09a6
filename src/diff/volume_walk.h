// SPDX-License-Identifier: Apache-2.0
#pragma once
// The walk of a volume for snapshot_dir: every entry of a plain directory, metadata only, read
// with *at() calls from descriptors (symlinks never followed).

#include <sys/stat.h>

#include <string>
#include <vector>

#include "lamina/store/manifest.h"

namespace lamina::diff {

struct WalkedEntry {
  store::Entry entry;  // path, kind and metadata; for a file its size (no object yet)
  struct stat st {};   // the lstat the entry was made from
  bool emit = false;   // snapshot_dir's mark: the entry goes into the delta layer
};

// The kind, mode, owner, mtime, size (files) and device numbers (devices) of `st`.
void fill_from_stat(const struct stat& st, store::Entry* e);

// Every entry of the directory open as `root_fd` ("/" first, then the rest in manifest order),
// with its xattrs and symlink target. `dir` names it in messages. On failure returns false and
// *error names the path and the problem.
bool walk_volume(int root_fd, const std::string& dir, std::vector<WalkedEntry>* out,
                 std::string* error);

}  // namespace lamina::diff
