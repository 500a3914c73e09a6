// SPDX-License-Identifier: Apache-2.0
#pragma once
// What an upper directory changed, against the lower layers it was written over. Reads uppers
// written by laminafs, kernel overlayfs and fuse-overlayfs: every whiteout and opaque form,
// redirected directories and metadata-only copy-ups (resolved through the merged view). Walks
// only the upper, so the cost grows with the change, not with the image.
//
// The result is the new layer's content in canonical form (src/diff/commit.cc stores it):
//  - a whiteout is kept only where the lowers hold something to hide;
//  - a directory is opaque only where the lowers hold a directory it hides;
//  - a redirected (renamed) directory becomes an opaque directory with its whole merged tree;
//  - metadata and content come from the merged view (what a reader of the mount saw);
//  - the private overlay xattrs never reach the layer.
// So uppers that the three implementations wrote for the same changes give the same layer.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lamina/base/error.h"
#include "lamina/base/unique_fd.h"
#include "lamina/core/layer.h"
#include "lamina/store/manifest.h"

namespace lamina::core {
class UnionFs;
class Node;
}  // namespace lamina::core

namespace lamina::diff {

enum class ChangeKind : char { kAdded = 'A', kChanged = 'C', kDeleted = 'D' };

struct Change {
  store::Entry entry;  // as the layer holds it (entry.object is filled in by commit)
  ChangeKind kind = ChangeKind::kChanged;
  bool in_layer = true;          // false: listed by diff only (a name an opaque dir hides)
  core::Node* source = nullptr;  // regular files: the merged node holding the content
};

// Opens the lower layers, topmost first. Called twice (the merged view and the view below the
// upper each own their layers). Returns false with *error set on failure.
using LayerFactory =
    std::function<bool(std::vector<std::unique_ptr<core::Layer>>*, std::string* error)>;

class UpperDiff {
 public:
  // `upper`: the upper directory. `lowers`: may open no layer (a base layer: every entry is
  // added). On failure returns null; *error names the directory and the problem.
  static std::unique_ptr<UpperDiff> open(const std::string& upper, const LayerFactory& lowers,
                                         std::string* error);
  ~UpperDiff();

  // The layer's entries sorted in manifest order (root first), plus the names opaque
  // directories hide (in_layer false). *error names the path and the problem (an unknown
  // whiteout form, an unreadable entry).
  bool walk(std::vector<Change>* out, std::string* error);

  // A read-only descriptor on a regular file's content (the lower data of a metacopy).
  Result<UniqueFd> open_content(const Change& c);

 private:
  struct Impl;
  explicit UpperDiff(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lamina::diff
