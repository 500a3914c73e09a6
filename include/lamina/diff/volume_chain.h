// SPDX-License-Identifier: Apache-2.0
#pragma once
// The chain of snapshots of a volume, and pruning it.
//
// The chain of volume NAME is the images NAME:TAG (docs/formats.md, "Volume snapshots"),
// oldest first: fewest layers, then the oldest `created`, then the tag. Each snapshot's layers
// are its predecessor's plus one delta layer.
//
// Pruning keeps the `keep` newest snapshots. The oldest kept one holds, through its layers,
// everything the pruned ones added up to; those layers are squashed into one bottom layer (the
// merged tree: no whiteouts, no opaque marks, hard links resolved within the layer), and every
// kept snapshot gets that layer in place of the squashed ones, so each still restores to
// exactly the tree it was made of. The layers only pruned snapshots named are left for `gc`.
//
// Publish order, like a commit's: the squashed layer (its objects are already stored), then the
// pruned images removed, then each kept image rewritten by rename, oldest first. At every
// instant each image restores to its own tree and the latest snapshot stays the latest (a
// rewritten image has fewer layers than one not yet rewritten), so the volume index, which
// names the latest snapshot, stays valid. An interrupted prune leaves the older kept images
// rewritten and the newer ones not: each still restores to its own tree, and a later prune that
// keeps only images not yet rewritten squashes them again (one that keeps both kinds fails,
// naming the image that does not extend the oldest kept one).

#include <cstdint>
#include <string>
#include <vector>

#include "lamina/base/error.h"
#include "lamina/diff/snapshot.h"
#include "lamina/store/store.h"

namespace lamina::diff {

// The snapshots of volume `name`, oldest first. Errors: listing the images failed.
Result<std::vector<store::Image>> volume_chain(const store::Store& store, const std::string& name);

// A bottom layer holding the tree `view` (as merge_layers returns it): every name with its
// metadata, the first name (in manifest order) of each link group as a file, the others as hard
// links of it. Returns its id. REQUIRES: a lock of the store; every object `view` names stored.
Result<std::string> publish_tree_layer(store::Store& store, const TreeView& view,
                                       const std::string& comment);

struct PruneResult {
  std::vector<std::string> removed;  // images removed (pruned snapshots), oldest first
  std::vector<std::string> kept;     // images kept, oldest first
  std::string squashed_layer;        // the new bottom layer; empty when nothing was squashed
  uint64_t layers_squashed = 0;      // how many layers it replaced
};

// Keeps the `keep` (>= 1) newest snapshots of volume `name` (see the top of this file).
// Nothing to do when the chain has at most `keep` snapshots. Fails, changing nothing, when a
// kept snapshot does not extend the oldest kept one (its layers do not start with them).
// REQUIRES: the caller holds the store's exclusive lock (no snapshot or gc meanwhile).
bool prune_chain(store::Store& store, const std::string& name, size_t keep, PruneResult* result,
                 std::string* error);

}  // namespace lamina::diff
