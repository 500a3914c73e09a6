// SPDX-License-Identifier: Apache-2.0
// Commit: walk (UpperDiff), store each file's bytes as an object, then publish the manifest.
// Objects first, manifest last (Store::publish_layer flushes before it renames), so a crash at
// any point leaves only unreferenced objects behind.
#include "lamina/diff/commit.h"

namespace lamina::diff {
namespace {

using store::Entry;
using store::EntryKind;

bool has_metadata(EntryKind k) { return k != EntryKind::kHardlink && k != EntryKind::kWhiteout; }

void clamp(Entry* e, int64_t limit) {
  if (e->mtime_sec > limit || (e->mtime_sec == limit && e->mtime_nsec > 0)) {
    e->mtime_sec = limit;
    e->mtime_nsec = 0;
  }
}

}  // namespace

bool commit_layer(store::Store& store, UpperDiff& diff, const CommitOptions& options,
                  CommitResult* result, std::string* error) {
  std::vector<Change> changes;
  if (!diff.walk(&changes, error)) return false;
  uint64_t total = 0;
  for (const Change& c : changes) {
    if (c.in_layer && c.entry.kind == EntryKind::kFile) total += c.entry.size;
  }
  CommitResult r;
  store::Manifest manifest;
  manifest.entries.reserve(changes.size());
  uint64_t done = 0;
  for (Change& c : changes) {
    if (!c.in_layer) continue;
    Entry& e = c.entry;
    if (options.clamp_mtime && has_metadata(e.kind)) clamp(&e, *options.clamp_mtime);
    if (e.kind == EntryKind::kWhiteout) ++r.whiteouts;
    if (e.kind == EntryKind::kFile) {
      auto fd = diff.open_content(c);
      if (!fd) {
        *error = "'" + e.path + "': " + fd.error().message();
        return false;
      }
      auto put = store.put_object(fd->get());
      if (!put) {
        *error = "'" + e.path + "': " +
                 (put.code() == EAGAIN ? std::string("changed while it was being committed")
                                       : put.error().message());
        return false;
      }
      e.object = put->name;
      e.size = put->size;
      ++r.files;
      r.content_bytes += put->size;
      if (put->added) {
        ++r.objects_added;
        r.bytes_added += put->size;
      }
      done += put->size;
      if (options.progress) options.progress(done, total);
    }
    manifest.entries.push_back(std::move(e));
  }
  if (!store::normalize(&manifest, error)) return false;
  store::LayerInfo info;
  info.entries = manifest.entries.size();
  info.files = r.files;
  info.whiteouts = r.whiteouts;
  info.content_bytes = r.content_bytes;
  info.comment = options.comment;
  auto id = store.publish_layer(manifest, info);
  if (!id) {
    *error = "cannot publish the layer: " + id.error().message();
    return false;
  }
  r.layer_id = *id;
  r.entries = manifest.entries.size();
  *result = r;
  return true;
}

}  // namespace lamina::diff
