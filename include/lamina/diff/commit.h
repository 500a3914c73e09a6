// SPDX-License-Identifier: Apache-2.0
#pragma once
// Commit: the changes of an upper become a layer of the store (objects, then manifest), and
// the layer id is returned. Publishing an image that uses it is the caller's step.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "lamina/diff/upper_diff.h"
#include "lamina/store/store.h"

namespace lamina::diff {

struct CommitOptions {
  // Mtimes later than this (seconds since the epoch) become this: reproducible layers
  // (--timestamp, SOURCE_DATE_EPOCH).
  std::optional<int64_t> clamp_mtime;
  std::string comment;
  // Called now and then with the bytes stored so far, of `total`.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct CommitResult {
  std::string layer_id;
  uint64_t entries = 0;
  uint64_t files = 0;
  uint64_t whiteouts = 0;
  uint64_t content_bytes = 0;  // bytes of every file of the layer
  uint64_t objects_added = 0;  // new objects (the rest were already stored)
  uint64_t bytes_added = 0;    // their bytes
};

// REQUIRES: the caller holds the store's shared lock. On failure returns false and *error
// names the path and the problem; objects stored so far stay unreferenced (gc removes them).
bool commit_layer(store::Store& store, UpperDiff& diff, const CommitOptions& options,
                  CommitResult* result, std::string* error);

}  // namespace lamina::diff
