// SPDX-License-Identifier: Apache-2.0
#pragma once
// Store maintenance: gc (mark from images and mounts, sweep layers, objects and tmp/) and fsck
// (check every object, layer and image against its name and its references).

#include <cstdint>
#include <string>
#include <vector>

#include "lamina/base/error.h"
#include "lamina/store/store.h"

namespace lamina::store {

struct GcReport {
  bool dry_run = false;
  std::vector<std::string> layers_removed;  // ids, sorted (in a dry run: would be removed)
  uint64_t objects_removed = 0;
  // Space given back by the removed objects: their allocated blocks (st_blocks * 512, so a
  // sparse object counts what it really uses), counted only for an object's last link.
  uint64_t bytes_freed = 0;
  uint64_t tmp_removed = 0;  // entries of tmp/ (each a file or a whole tree)
  uint64_t layers_kept = 0;
  uint64_t objects_kept = 0;
  std::vector<std::string> layers_in_use;  // unreferenced, but kept: a mount holds the manifest
  // False when some live layer's manifest (or some image) could not be read: which objects
  // (or layers) are live is then unknown, and none was removed. `notes` says why.
  bool swept_objects = true;
  bool swept_layers = true;
  std::vector<std::string> notes;  // one line each: what was kept or skipped, and why
};

// Removes every layer no image names and no mount uses, every object no kept layer names, and
// everything in tmp/. Takes the store's exclusive lock (waiting) for the whole run, so no
// commit runs meanwhile. A layer is in use when its manifest is flock'ed (shared) by a mount.
// An image naming a missing layer is reported, never removed. `dry_run`: the same report,
// nothing deleted. Errors: the lock, or a listing of the store that failed.
Result<GcReport> gc(Store& store, bool dry_run);

struct FsckReport {
  std::vector<std::string> problems;  // one line each, naming the object, layer or image
  std::vector<std::string> notes;     // not problems (leftovers in tmp/ that gc removes)
  uint64_t objects = 0;
  uint64_t layers = 0;
  uint64_t images = 0;
  bool hashed = true;  // false with `quick`: object contents were not checked
  bool clean() const { return problems.empty(); }
};

// Checks the store under its shared lock (commits may run meanwhile): every object is a
// regular file whose XXH3-128 (skipped when `quick`) is its name; every layer directory is
// named by a valid id, its manifest decodes and hashes to that id, every object it names exists
// with the size it says, its info.json reads; every image record reads and every layer it
// names exists. Errors: the lock, or a listing of the store that failed.
Result<FsckReport> fsck(const Store& store, bool quick);

}  // namespace lamina::store
