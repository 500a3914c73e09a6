// SPDX-License-Identifier: Apache-2.0
// gc and fsck. Design notes:
//  - gc is mark and sweep under the store's exclusive lock: no commit publishes anything while
//    it runs, so what it finds unreferenced stays unreferenced. Mounts do not take the store
//    lock; a mount holds its layers' manifests flock'ed shared instead, so gc takes each
//    unreferenced manifest's lock exclusively (non-blocking) and keeps holding it until the
//    layer is gone: a mount starting meanwhile waits or fails, never sees half a layer.
//  - gc errs towards keeping: an unreadable image means the live layers are unknown (no layer
//    and no object is removed); an unreadable live manifest means the live objects are unknown
//    (no object is removed). Both are reported, neither is a failure of the run.
//  - fsck runs under the shared lock, beside commits: a layer or object that appears after it
//    listed the store is looked up directly before it is called missing.
#include "lamina/store/maintenance.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "lamina/base/hash.h"
#include "lamina/base/sys.h"

namespace lamina::store {
namespace {

std::string object_rel(const std::string& name) { return name.substr(0, 2) + "/" + name.substr(2); }

// Removes dirfd/name and, for a directory, everything under it (made writable first: a
// layer directory holds 0444 files, and a crashed commit may leave anything).
Status remove_tree(int dirfd, const std::string& name) {
  auto st = sys::fstatat(dirfd, name.c_str());
  if (!st) return st.code() == ENOENT ? Status{} : Status(st.error());
  if (!S_ISDIR(st->st_mode)) return sys::unlinkat(dirfd, name.c_str(), 0);
  auto dir = sys::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) return dir.error();
  (void)sys::fchmod_path(dir->get(), 0700);
  std::vector<std::string> children;
  Status s = sys::read_dir(dir->get(), [&](std::string_view child, unsigned char, ino_t) {
    children.emplace_back(child);
    return Status{};
  });
  if (!s) return s;
  for (const std::string& child : children) {
    if (Status c = remove_tree(dir->get(), child); !c) return c;
  }
  return sys::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
}

Result<std::vector<std::string>> list_dir(int dirfd) {
  std::vector<std::string> names;
  Status s = sys::read_dir(dirfd, [&](std::string_view name, unsigned char, ino_t) {
    names.emplace_back(name);
    return Status{};
  });
  if (!s) return s.error();
  std::sort(names.begin(), names.end());
  return names;
}

// Adds the objects `manifest` names to *live.
void add_objects(const Manifest& manifest, std::unordered_set<std::string>* live) {
  for (const Entry& e : manifest.entries) {
    if (e.kind == EntryKind::kFile) live->insert(e.object);
  }
}

}  // namespace

Result<GcReport> gc(Store& store, bool dry_run) {
  auto lock = store.lock_exclusive(true);
  if (!lock) return lock.error();
  GcReport report;
  report.dry_run = dry_run;

  // Mark: the layers images name.
  std::set<std::string> live_layers;
  auto image_names = store.list_image_names();
  if (!image_names) return image_names.error();
  for (const std::string& name : *image_names) {
    auto image = store.read_image(name);
    if (!image) {
      report.notes.push_back(
          "image " + name + ": cannot be read (" + image.error().message() +
          "); the layers it names are unknown, so no layer or object is removed");
      report.swept_layers = false;
      report.swept_objects = false;
      continue;
    }
    for (const std::string& id : image->layers) {
      if (store.has_layer(id)) {
        live_layers.insert(id);
      } else {
        report.notes.push_back(fmt::format(
            "image {}: names layer {}, which is not in the store (the image is kept)", name, id));
      }
    }
  }

  // Mark: the layers mounts use. The locks taken here are held until the sweep is done.
  auto all_layers = store.list_layers();
  if (!all_layers) return all_layers.error();
  std::vector<std::string> dead_layers;
  std::vector<UniqueFd> held;
  for (const std::string& id : *all_layers) {
    if (live_layers.count(id) != 0) continue;
    auto fd = store.open_manifest(id);
    if (!fd && fd.code() != ENOENT) {
      report.notes.push_back("layer " + id + ": manifest cannot be opened (" +
                             fd.error().message() + "); kept, with its objects unknown");
      live_layers.insert(id);
      report.swept_objects = false;
      continue;
    }
    if (fd) {  // ENOENT: no manifest, so no mount can use it
      Status s = sys::flock(fd->get(), LOCK_EX | LOCK_NB);
      if (!s) {
        if (s.code() == EWOULDBLOCK) {
          report.layers_in_use.push_back(id);
          report.notes.push_back("layer " + id + ": in use by a mount; kept");
        } else {
          report.notes.push_back("layer " + id + ": cannot lock its manifest (" +
                                 s.error().message() + "); kept");
        }
        live_layers.insert(id);
        continue;
      }
      held.push_back(std::move(*fd));
    }
    dead_layers.push_back(id);
  }

  // Mark: the objects live layers name.
  std::unordered_set<std::string> live_objects;
  for (const std::string& id : live_layers) {
    Manifest manifest;
    std::string error;
    if (!store.read_manifest(id, &manifest, &error)) {
      report.notes.push_back(error + "; kept, with its objects unknown");
      report.swept_objects = false;
      continue;
    }
    add_objects(manifest, &live_objects);
  }
  if (!report.swept_objects) {
    report.notes.push_back("no object was removed: the objects of some layer are unknown");
  }

  // Sweep layers.
  if (report.swept_layers) {
    for (const std::string& id : dead_layers) {
      if (!dry_run) {
        if (Status s = store.remove_layer(id); !s) {
          report.notes.push_back("layer " + id + ": cannot remove (" + s.error().message() + ")");
          continue;
        }
      }
      report.layers_removed.push_back(id);
    }
  }
  held.clear();
  report.layers_kept = all_layers->size() - report.layers_removed.size();

  // Sweep objects.
  std::vector<std::string> objects;
  Status listed = store.list_objects([&](const std::string& name, uint64_t) {
    objects.push_back(name);
    return Status{};
  });
  if (!listed) return listed.error();
  for (const std::string& name : objects) {
    if (!valid_object_name(name)) {
      report.notes.push_back("objects/" + object_rel(name) + ": not an object name; left alone");
      continue;
    }
    if (!report.swept_objects || live_objects.count(name) != 0) {
      ++report.objects_kept;
      continue;
    }
    auto st = store.stat_object(name);
    if (!dry_run) {
      if (Status s = store.remove_object(name); !s) {
        report.notes.push_back("object " + name + ": cannot remove (" + s.error().message() + ")");
        ++report.objects_kept;
        continue;
      }
    }
    ++report.objects_removed;
    if (st && st->st_nlink <= 1) report.bytes_freed += static_cast<uint64_t>(st->st_blocks) * 512;
  }

  // Sweep tmp/: under the exclusive lock nothing there belongs to a running commit.
  auto junk = list_dir(store.tmp_fd());
  if (!junk) return junk.error();
  for (const std::string& name : *junk) {
    if (!dry_run) {
      if (Status s = remove_tree(store.tmp_fd(), name); !s) {
        report.notes.push_back("tmp/" + name + ": cannot remove (" + s.error().message() + ")");
        continue;
      }
    }
    ++report.tmp_removed;
  }
  return report;
}

Result<FsckReport> fsck(const Store& store, bool quick) {
  auto lock = store.lock_shared(true);
  if (!lock) return lock.error();
  FsckReport report;
  report.hashed = !quick;
  auto problem = [&](std::string what) { report.problems.push_back(std::move(what)); };

  // Objects: each a regular file whose content hashes to its name.
  std::unordered_map<std::string, uint64_t> sizes;
  std::vector<std::string> objects;
  Status listed = store.list_objects([&](const std::string& name, uint64_t) {
    objects.push_back(name);
    return Status{};
  });
  if (!listed) return listed.error();
  std::sort(objects.begin(), objects.end());
  for (const std::string& name : objects) {
    ++report.objects;
    const std::string where = "object " + name;
    if (!valid_object_name(name)) {
      problem("objects/" + object_rel(name) + ": not a valid object name");
      continue;
    }
    auto st = store.stat_object(name);
    if (!st) {
      if (st.code() != ENOENT) problem(where + ": " + st.error().message());
      continue;
    }
    if (!S_ISREG(st->st_mode)) {
      problem(where + ": not a regular file");
      continue;
    }
    sizes.emplace(name, static_cast<uint64_t>(st->st_size));
    if (quick) continue;
    auto fd = store.open_object(name);
    auto hash = fd ? hash_fd(fd->get()) : Result<Hash128>(fd.error());
    if (!hash) {
      problem(where + ": cannot be read (" + hash.error().message() + ")");
    } else if (hash->hex() != name.substr(0, 32)) {
      problem(where + ": content hashes to " + hash->hex() + " (corrupted)");
    }
  }

  // Layers: valid ids, manifests that decode and hash to their id, their objects present.
  auto layer_dirs = list_dir(store.layers_fd());
  if (!layer_dirs) return layer_dirs.error();
  for (const std::string& id : *layer_dirs) {
    ++report.layers;
    if (!Store::valid_layer_id(id)) {
      problem("layers/" + id + ": not a layer id");
      continue;
    }
    Manifest manifest;
    std::string error;
    if (!store.read_manifest(id, &manifest, &error)) {
      problem(error);
    } else {
      for (const Entry& e : manifest.entries) {
        if (e.kind != EntryKind::kFile) continue;
        uint64_t size = 0;
        if (auto it = sizes.find(e.object); it != sizes.end()) {
          size = it->second;
        } else if (auto st = store.stat_object(e.object); st && S_ISREG(st->st_mode)) {
          size = static_cast<uint64_t>(st->st_size);  // stored after the listing above
        } else {
          problem("layer " + id + ": " + e.path + ": object " + e.object + " is missing");
          continue;
        }
        if (size != e.size) {
          problem("layer " + id + ": " + e.path + ": object " + e.object + " holds " +
                  std::to_string(size) + " bytes, the manifest says " + std::to_string(e.size));
        }
      }
    }
    if (auto info = store.read_layer_info(id); !info) {
      problem("layer " + id + ": info.json: " + info.error().message());
    }
  }

  // Images: records that read, layers that exist.
  auto image_names = store.list_image_names();
  if (!image_names) return image_names.error();
  for (const std::string& name : *image_names) {
    ++report.images;
    auto image = store.read_image(name);
    if (!image) {
      problem("image " + name + ": cannot be read (" + image.error().message() + ")");
      continue;
    }
    for (const std::string& id : image->layers) {
      if (!store.has_layer(id)) problem(fmt::format("image {}: layer {} is missing", name, id));
    }
  }

  // tmp/: leftovers of a crash (or files of a commit running now); gc removes them.
  auto junk = list_dir(store.tmp_fd());
  if (!junk) return junk.error();
  for (const std::string& name : *junk) {
    report.notes.push_back("tmp/" + name + ": leftover (gc removes it)");
  }
  return report;
}

}  // namespace lamina::store
