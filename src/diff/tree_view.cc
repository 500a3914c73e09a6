// SPDX-License-Identifier: Apache-2.0
// The merged tree of an image's layers (what a mount of it shows), computed from the manifests
// alone, and the volume index: the one owner of its encoding (docs/formats.md, "Volume index").
#include <fcntl.h>

#include <cinttypes>
#include <cstdio>
#include <random>

#include "lamina/base/sys.h"
#include "lamina/diff/snapshot.h"

namespace lamina::diff {
namespace {

using store::Entry;
using store::EntryKind;

constexpr std::string_view kIndexMagic = "lamina-volume-index 1";

// Removes `path` and everything below it.
void erase_subtree(TreeView* view, const std::string& path, bool keep_self) {
  auto it = view->lower_bound(path);
  const std::string prefix = path == "/" ? "/" : path + "/";
  if (it != view->end() && it->first == path) {
    it = keep_self ? std::next(it) : view->erase(it);
  }
  while (it != view->end() && it->first.compare(0, prefix.size(), prefix) == 0) {
    it = view->erase(it);
  }
}

std::string index_file(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  return out + ".index";
}

}  // namespace

bool merge_layers(const store::Store& store, const std::vector<std::string>& ids, TreeView* out,
                  std::string* error) {
  TreeView view;
  for (size_t li = 0; li < ids.size(); ++li) {
    store::Manifest m;
    std::string why;
    if (!store.read_manifest(ids[li], &m, &why)) {
      *error = "layer " + ids[li] + ": " + why;
      return false;
    }
    std::map<std::string, const Entry*> files;  // this layer's kFile entries (hard link targets)
    for (const Entry& e : m.entries) {
      ViewEntry v{e, ""};
      v.entry.opaque = false;
      switch (e.kind) {
        case EntryKind::kWhiteout: erase_subtree(&view, e.path, false); continue;
        case EntryKind::kDir: {
          auto it = view.find(e.path);
          bool merge = it != view.end() && it->second.entry.kind == EntryKind::kDir;
          if (!merge) {
            erase_subtree(&view, e.path, false);
          } else if (e.opaque) {
            erase_subtree(&view, e.path, true);  // the children below; the entry is replaced
          }
          view[e.path] = std::move(v);
          continue;
        }
        case EntryKind::kHardlink: {
          auto t = files.find(e.target);
          if (t == files.end()) {
            *error = "layer " + ids[li] + ": hard link '" + e.path + "' names no file";
            return false;
          }
          v.entry = *t->second;
          v.entry.path = e.path;
          v.link_group = std::to_string(li) + ":" + e.target;
          break;
        }
        case EntryKind::kFile:
          files[e.path] = &e;
          v.link_group = std::to_string(li) + ":" + e.path;
          break;
        default: break;
      }
      erase_subtree(&view, e.path, false);
      view[e.path] = std::move(v);
    }
  }
  *out = std::move(view);
  return true;
}

Result<VolumeIndex> read_volume_index(const store::Store& store, const std::string& name) {
  auto dir = sys::openat(store.root_fd(), "volumes", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) return dir.error();
  auto text = sys::read_file(dir->get(), index_file(name).c_str());
  if (!text) return text.error();
  const Error bad{EBADMSG, "volume index"};
  VolumeIndex idx;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text->size()) {
    size_t nl = text->find('\n', pos);
    if (nl == std::string::npos) return bad;
    std::string line = text->substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line_no == 1) {
      if (line != kIndexMagic) return bad;
      continue;
    }
    if (line_no == 2) {
      if (line.compare(0, 6, "image ") != 0) return bad;
      idx.image = line.substr(6);
      continue;
    }
    IndexRecord r;
    char obj[80];
    int64_t ms = 0, cs = 0;
    unsigned mn = 0, cn = 0;
    unsigned long long dev = 0, ino = 0, size = 0;
    if (std::sscanf(line.c_str(), "%llu %llu %llu %" SCNd64 ".%u %" SCNd64 ".%u %79s", &dev, &ino,
                    &size, &ms, &mn, &cs, &cn, obj) != 8 ||
        !store::valid_object_name(obj)) {
      return bad;
    }
    r.dev = dev;
    r.ino = ino;
    r.size = size;
    r.mtime_sec = ms;
    r.mtime_nsec = mn;
    r.ctime_sec = cs;
    r.ctime_nsec = cn;
    r.object = obj;
    idx.records.push_back(std::move(r));
  }
  if (line_no < 2) return bad;
  return idx;
}

Status write_volume_index(const store::Store& store, const std::string& name,
                          const VolumeIndex& index) {
  Status mk = sys::mkdirat(store.root_fd(), "volumes", 0700);
  if (!mk && mk.code() != EEXIST) return mk;
  auto dir = sys::openat(store.root_fd(), "volumes", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) return dir.error();
  std::string text(kIndexMagic);
  text += "\nimage " + index.image + "\n";
  char buf[256];
  for (const IndexRecord& r : index.records) {
    std::snprintf(buf, sizeof buf, "%llu %llu %llu %" PRId64 ".%09u %" PRId64 ".%09u ",
                  static_cast<unsigned long long>(r.dev), static_cast<unsigned long long>(r.ino),
                  static_cast<unsigned long long>(r.size), r.mtime_sec, r.mtime_nsec, r.ctime_sec,
                  r.ctime_nsec);
    text += buf;
    text += r.object;
    text += '\n';
  }
  std::random_device rd;
  const std::string tmp = ".tmp-" + std::to_string(rd()) + "-" + index_file(name);
  auto fd = sys::openat(dir->get(), tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
  if (!fd) return fd.error();
  Status s = sys::write_all(fd->get(), text);
  if (s) s = sys::fsync(fd->get());
  if (s) s = sys::renameat2(dir->get(), tmp.c_str(), dir->get(), index_file(name).c_str(), 0);
  if (!s) (void)sys::unlinkat(dir->get(), tmp.c_str(), 0);
  return s;
}

}  // namespace lamina::diff
