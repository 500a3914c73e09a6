// SPDX-License-Identifier: Apache-2.0
// Snapshot of a plain directory: walk it all (volume_walk.cc), compare each name with the
// previous snapshot's merged tree, store what changed as one layer.
//
// Design notes:
//  - The walk keeps every entry of the directory in memory (metadata only), so the delta is
//    computed with the whole current tree at hand: whiteouts are the previous names whose
//    parent still exists as a directory and who are gone themselves.
//  - A hard-link group is emitted whole (its first name as kFile, the others as kHardlink of
//    it, the manifest's rule) unless every name of it is unchanged and was, before, one inode
//    with exactly these names.
//  - Every emitted entry brings its ancestors (with their current metadata): a manifest names
//    the parent of each entry. A non-opaque directory merges with what is below it.
//  - Index records are kept only for files whose ctime is older than the walk's start by more
//    than kRacySeconds: a file rewritten within the same timestamp tick after it was read
//    would otherwise look unchanged next time.
#include "lamina/diff/snapshot.h"

#include <fcntl.h>
#include <time.h>

#include <algorithm>
#include <unordered_map>

#include "lamina/base/sys.h"
#include "volume_walk.h"

namespace lamina::diff {
namespace {

using store::Entry;
using store::EntryKind;

constexpr int64_t kRacySeconds = 2;

using Cur = WalkedEntry;

bool same_stat(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
         a.st_ctim.tv_nsec == b.st_ctim.tv_nsec && a.st_ino == b.st_ino;
}

using IndexKey = std::tuple<uint64_t, uint64_t, uint64_t, int64_t, uint32_t, int64_t, uint32_t>;

IndexKey key_of(const struct stat& st) {
  return {st.st_dev,
          st.st_ino,
          static_cast<uint64_t>(st.st_size),
          st.st_mtim.tv_sec,
          static_cast<uint32_t>(st.st_mtim.tv_nsec),
          st.st_ctim.tv_sec,
          static_cast<uint32_t>(st.st_ctim.tv_nsec)};
}

}  // namespace

bool snapshot_dir(store::Store& store, const std::string& dir, const TreeView& previous,
                  const SnapshotOptions& options, SnapshotResult* result, std::string* error) {
  const int64_t start = ::time(nullptr);
  auto root_fd = sys::openat(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (!root_fd) {
    *error = "'" + dir + "': " + root_fd.error().message();
    return false;
  }
  std::vector<Cur> cur;
  if (!walk_volume(root_fd->get(), dir, &cur, error)) return false;
  std::unordered_map<std::string, size_t> at;  // path -> index in cur
  for (size_t i = 0; i < cur.size(); ++i) at[cur[i].entry.path] = i;

  std::map<IndexKey, std::string> index;
  if (options.index != nullptr) {
    for (const IndexRecord& r : options.index->records) {
      index[{r.dev, r.ino, r.size, r.mtime_sec, r.mtime_nsec, r.ctime_sec, r.ctime_nsec}] =
          r.object;
    }
  }
  SnapshotResult res;

  // Objects: from the index when the stat matches and the object is stored, else read.
  std::map<std::pair<uint64_t, uint64_t>, std::vector<size_t>> groups;  // (dev, ino) -> names
  for (size_t i = 0; i < cur.size(); ++i) {
    Cur& c = cur[i];
    if (c.entry.kind != EntryKind::kFile) continue;
    groups[{c.st.st_dev, c.st.st_ino}].push_back(i);
    if (groups[{c.st.st_dev, c.st.st_ino}].size() > 1) continue;  // read once per inode
    auto hit = index.find(key_of(c.st));
    if (hit != index.end() && store.stat_object(hit->second)) {
      c.entry.object = hit->second;
      continue;
    }
    std::string rel = c.entry.path.substr(1);
    for (int attempt = 0;; ++attempt) {
      // The tree may change under us: no component may be a symlink (a directory swapped for
      // one would make us store a file from outside the volume), and a fifo put in the file's
      // place must not block (put_object refuses what is not a regular file).
      auto fd =
          sys::openat_beneath(root_fd->get(), rel.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      Result<store::PutResult> put = Error{EAGAIN, "open"};
      struct stat before {};
      if (fd) {
        auto st = sys::fstat(fd->get());
        if (!st) {
          *error = "'" + c.entry.path + "': " + st.error().message();
          return false;
        }
        before = *st;
        put = store.put_object(fd->get());
        if (put) {
          auto after = sys::fstat(fd->get());
          if (!after || !same_stat(before, *after)) put = Error{EAGAIN, "changed"};
        }
      } else {
        put = fd.error();
      }
      if (put) {
        ++res.files_read;
        c.st = before;
        fill_from_stat(before, &c.entry);
        c.entry.object = put->name;
        if (put->added) {
          ++res.objects_added;
          res.bytes_added += put->size;
        }
        break;
      }
      if (put.code() != EAGAIN || attempt + 1 >= options.retries) {
        *error = "'" + c.entry.path + "': " +
                 (put.code() == EAGAIN
                      ? "changed while it was read, " + std::to_string(options.retries) + " times"
                      : put.error().message());
        return false;
      }
    }
  }
  // Hard-link names share the first name's object and metadata.
  for (auto& [key, names] : groups) {
    for (size_t k = 1; k < names.size(); ++k) {
      Entry& e = cur[names[k]].entry;
      std::string path = e.path;
      e = cur[names[0]].entry;
      e.path = path;
    }
  }

  // Which names changed.
  std::map<std::string, size_t> prev_group_size;
  for (const auto& [p, v] : previous) {
    if (!v.link_group.empty()) ++prev_group_size[v.link_group];
  }
  auto unchanged = [&](const Cur& c) {
    auto it = previous.find(c.entry.path);
    if (it == previous.end()) return false;
    Entry a = it->second.entry;
    Entry b = c.entry;
    a.opaque = b.opaque = false;
    return a == b;
  };
  for (auto& [key, names] : groups) {
    bool same = true;
    std::string g;
    for (size_t i : names) {
      if (!unchanged(cur[i])) {
        same = false;
        break;
      }
      const std::string& pg = previous.at(cur[i].entry.path).link_group;
      if (g.empty()) g = pg;
      if (pg != g) same = false;
    }
    if (same && prev_group_size[g] != names.size()) same = false;
    if (!same) {
      for (size_t i : names) cur[i].emit = true;
    }
  }
  for (Cur& c : cur) {
    if (c.entry.kind == EntryKind::kFile) continue;
    if (!unchanged(c)) c.emit = true;
  }
  for (const Cur& c : cur) {
    if (!c.emit || c.entry.path == "/") continue;
    if (previous.count(c.entry.path) != 0U) {
      ++res.changed;
    } else {
      ++res.added;
    }
  }

  // Whiteouts, and opaque directories where every old child is gone.
  std::map<std::string, size_t> prev_children, kept_children;
  for (const auto& [p, v] : previous) {
    if (p == "/") continue;
    std::string parent(store::parent_path(p));
    ++prev_children[parent];
    if (at.count(p) != 0U) ++kept_children[parent];
  }
  std::vector<Entry> whiteouts;
  for (const auto& [p, v] : previous) {
    if (p == "/" || at.count(p) != 0U) continue;
    std::string parent(store::parent_path(p));
    auto pc = at.find(parent);
    auto pp = previous.find(parent);
    if (pc == at.end() || cur[pc->second].entry.kind != EntryKind::kDir) continue;
    if (pp == previous.end() || pp->second.entry.kind != EntryKind::kDir) continue;
    ++res.deleted;
    Cur& d = cur[pc->second];
    if (kept_children[parent] == 0) {
      d.entry.opaque = true;  // every child below is new, so the layer holds them all
      d.emit = true;
      continue;
    }
    Entry w;
    w.path = p;
    w.kind = EntryKind::kWhiteout;
    whiteouts.push_back(std::move(w));
    d.emit = true;
  }

  // Ancestors of everything emitted.
  std::vector<bool> need(cur.size(), false);
  auto mark_up = [&](std::string_view path) {
    while (path != "/") {
      path = store::parent_path(path);
      size_t i = at.at(std::string(path));
      if (need[i]) break;
      need[i] = true;
    }
  };
  need[0] = true;
  for (size_t i = 0; i < cur.size(); ++i) {
    if (cur[i].emit) {
      need[i] = true;
      mark_up(cur[i].entry.path);
    }
  }
  store::Manifest manifest;
  std::map<std::pair<uint64_t, uint64_t>, std::string> first_name;
  for (size_t i = 0; i < cur.size(); ++i) {
    if (!need[i]) continue;
    Entry e = cur[i].entry;
    if (e.kind == EntryKind::kFile) {
      auto [it, fresh] = first_name.try_emplace({cur[i].st.st_dev, cur[i].st.st_ino}, e.path);
      if (!fresh) {
        Entry link;
        link.path = e.path;
        link.kind = EntryKind::kHardlink;
        link.target = it->second;
        manifest.entries.push_back(std::move(link));
        continue;
      }
      ++res.files;
      res.content_bytes += e.size;
    }
    manifest.entries.push_back(std::move(e));
  }
  res.whiteouts = whiteouts.size();
  for (Entry& w : whiteouts) manifest.entries.push_back(std::move(w));
  if (!store::normalize(&manifest, error)) return false;
  store::LayerInfo info;
  info.entries = manifest.entries.size();
  info.files = res.files;
  info.whiteouts = res.whiteouts;
  info.content_bytes = res.content_bytes;
  info.comment = options.comment + " (" + std::to_string(res.added) + " added, " +
                 std::to_string(res.changed) + " changed, " + std::to_string(res.deleted) +
                 " deleted)";
  auto id = store.publish_layer(manifest, info);
  if (!id) {
    *error = "cannot publish the layer: " + id.error().message();
    return false;
  }
  res.layer_id = *id;
  res.entries = manifest.entries.size();
  for (const Cur& c : cur) {
    if (c.entry.kind != EntryKind::kFile || c.entry.object.empty()) continue;
    if (c.st.st_ctim.tv_sec >= start - kRacySeconds) continue;
    IndexRecord r;
    r.dev = c.st.st_dev;
    r.ino = c.st.st_ino;
    r.size = static_cast<uint64_t>(c.st.st_size);
    r.mtime_sec = c.st.st_mtim.tv_sec;
    r.mtime_nsec = static_cast<uint32_t>(c.st.st_mtim.tv_nsec);
    r.ctime_sec = c.st.st_ctim.tv_sec;
    r.ctime_nsec = static_cast<uint32_t>(c.st.st_ctim.tv_nsec);
    r.object = c.entry.object;
    res.index.records.push_back(std::move(r));
  }
  *result = std::move(res);
  return true;
}

}  // namespace lamina::diff
