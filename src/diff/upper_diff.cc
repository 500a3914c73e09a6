// SPDX-License-Identifier: Apache-2.0
// Upper dir -> the entries of a layer. Design notes:
//  - Three views of the same paths: the raw upper directory (what changed, in which on-disk
//    form), the merged view (upper over the lowers: what a reader of the mount saw, so
//    metacopy data and redirected directories are resolved by the union code itself), and the
//    view below the upper (the lowers alone: is there anything for a whiteout to hide, or for
//    an opaque directory to cut off).
//  - Only the upper is walked. The lowers are asked about names the upper holds, plus, for
//    `lamina diff`, the listing of directories the upper made opaque.
#include "lamina/diff/upper_diff.h"

#include <fcntl.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <unordered_map>

#include "lamina/base/sys.h"
#include "lamina/core/dir_layer.h"
#include "lamina/core/overlay_format.h"
#include "lamina/core/union_fs.h"

namespace lamina::diff {
namespace {

using core::Node;
using core::UnionFs;
using store::Entry;
using store::EntryKind;

std::string child_path(const std::string& dir, std::string_view name) {
  return dir == "/" ? "/" + std::string(name) : dir + "/" + std::string(name);
}

EntryKind kind_of(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return EntryKind::kDir;
    case S_IFLNK: return EntryKind::kSymlink;
    case S_IFCHR: return EntryKind::kChar;
    case S_IFBLK: return EntryKind::kBlock;
    case S_IFIFO: return EntryKind::kFifo;
    case S_IFSOCK: return EntryKind::kSocket;
    default: return EntryKind::kFile;
  }
}

}  // namespace

struct UpperDiff::Impl {
  std::unique_ptr<UnionFs> merged;  // layers()[0] is the upper
  std::unique_ptr<UnionFs> below;   // null: nothing below (a base layer)
  std::vector<Change>* out = nullptr;
  std::string* error = nullptr;

  bool fail(const std::string& path, const std::string& why) {
    *error = "'" + path + "': " + why;
    return false;
  }
  bool fail(const std::string& path, const Error& e) { return fail(path, e.message()); }

  const core::Layer& upper() const { return *merged->layers()[0]; }

  // Metadata (and for symlinks the target) of a merged node.
  bool describe(const std::string& path, Node* node, Entry* e) {
    auto st = merged->getattr(node);
    if (!st) return fail(path, st.error());
    e->path = path;
    e->kind = kind_of(st->st_mode);
    e->mode = st->st_mode & 07777;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
    e->mtime_sec = st->st_mtim.tv_sec;
    e->mtime_nsec = static_cast<uint32_t>(st->st_mtim.tv_nsec);
    if (e->kind == EntryKind::kFile) e->size = static_cast<uint64_t>(st->st_size);
    if (e->kind == EntryKind::kChar || e->kind == EntryKind::kBlock) {
      e->rdev_major = major(st->st_rdev);
      e->rdev_minor = minor(st->st_rdev);
    }
    if (e->kind == EntryKind::kSymlink) {
      auto t = merged->readlink(node);
      if (!t) return fail(path, t.error());
      e->target = std::move(*t);
    }
    // xattrs as the mount shows them: the private overlay ones are already hidden.
    auto size = merged->listxattr(node, nullptr, 0);
    if (!size) return fail(path, size.error());
    if (*size == 0) return true;
    std::string names(*size, '\0');
    auto got = merged->listxattr(node, names.data(), names.size());
    if (!got) return fail(path, got.error());
    names.resize(*got);
    for (size_t pos = 0; pos < names.size();) {
      size_t end = names.find('\0', pos);
      if (end == std::string::npos) end = names.size();
      std::string name = names.substr(pos, end - pos);
      pos = end + 1;
      if (name.empty() || core::overlay::is_private_xattr(name)) continue;
      auto vsize = merged->getxattr(node, name.c_str(), nullptr, 0);
      if (!vsize) {
        if (vsize.code() == ENODATA) continue;  // gone since the listing
        return fail(path, vsize.error());
      }
      std::string value(*vsize, '\0');
      auto vgot = merged->getxattr(node, name.c_str(), value.data(), value.size());
      if (!vgot) return fail(path, vgot.error());
      value.resize(*vgot);
      e->xattrs.emplace_back(std::move(name), std::move(value));
    }
    std::sort(e->xattrs.begin(), e->xattrs.end());
    return true;
  }

  // The node below the upper at parent/name, or null when the lowers hold nothing there.
  Node* below_child(Node* bparent, std::string_view name) {
    if (bparent == nullptr || below == nullptr) return nullptr;
    auto n = below->lookup(bparent, name);
    return n ? *n : nullptr;
  }

  bool emit(const std::string& path, Node* node, ChangeKind kind, bool opaque) {
    Change c;
    if (!describe(path, node, &c.entry)) return false;
    c.kind = kind;
    c.entry.opaque = opaque;
    if (c.entry.kind == EntryKind::kFile) c.source = node;
    out->push_back(std::move(c));
    return true;
  }

  void emit_hidden(const std::string& path) {
    Change c;
    c.entry.path = path;
    c.entry.kind = EntryKind::kWhiteout;
    c.kind = ChangeKind::kDeleted;
    c.in_layer = false;
    out->push_back(std::move(c));
  }

  // Every entry of the merged tree under `node` (a renamed directory: the lowers at this path
  // are not what it holds, so all of it goes into the layer).
  bool emit_full(const std::string& path, Node* node) {
    auto list = merged->list(node);
    if (!list) return fail(path, list.error());
    for (const auto& d : *list) {
      if (d.name == "." || d.name == "..") continue;
      std::string cpath = child_path(path, d.name);
      auto child = merged->lookup(node, d.name);
      if (!child) return fail(cpath, child.error());
      if (!emit(cpath, *child, ChangeKind::kAdded, false)) return false;
      if ((*child)->is_dir() && !emit_full(cpath, *child)) return false;
    }
    return true;
  }

  // Names an opaque directory hides, for diff's listing.
  bool emit_hidden_children(const std::string& path, Node* bdir,
                            const std::set<std::string>& shown) {
    if (bdir == nullptr || !bdir->is_dir()) return true;
    auto list = below->list(bdir);
    if (!list) return fail(path, list.error());
    for (const auto& d : *list) {
      if (d.name == "." || d.name == ".." || shown.count(d.name) != 0) continue;
      emit_hidden(child_path(path, d.name));
    }
    return true;
  }

  // One directory of the upper: `uobj` its raw upper object, `node` its merged node, `bnode`
  // what lies below it (null when nothing). `cut`: an opaque directory (here or above) hides
  // bnode; it then only tells added from changed names.
  bool walk_dir(const std::string& path, const core::ObjRef& uobj, Node* node, Node* bnode,
                bool cut) {
    auto marks = core::overlay::dir_marks(upper(), uobj);
    if (!marks) return fail(path, marks.error());
    std::set<std::string> real, whiteouts;
    Status s = upper().list(uobj, [&](std::string_view name, unsigned char, ino_t) -> Status {
      if (name == core::overlay::kOpaqueMarker) return {};
      auto st = upper().stat_at(uobj, std::string(name).c_str());
      if (!st) {
        if (st.code() == ENOENT) return {};
        return st.error();
      }
      if (core::overlay::is_reserved_name(name)) {
        std::string_view target = core::overlay::whiteout_target(name);
        bool file_form = S_ISREG(st->st_mode) && st->st_size == 0;
        if (target.empty() || core::overlay::is_reserved_name(target) ||
            !(file_form || core::overlay::is_whiteout_device(*st))) {
          return Error{EBADMSG, "unknown whiteout form"};
        }
        whiteouts.emplace(target);
        return {};
      }
      if (core::overlay::is_whiteout_device(*st)) {
        whiteouts.emplace(name);
        return {};
      }
      if (marks->xwhiteouts) {
        auto child = upper().lookup(uobj, std::string(name).c_str());
        if (!child) return child.error();
        auto xw = core::overlay::is_xattr_whiteout(upper(), *child, *st);
        if (!xw) return xw.error();
        if (*xw) {
          whiteouts.emplace(name);
          return {};
        }
      }
      real.emplace(name);
      return {};
    });
    if (!s) {
      if (s.code() == EBADMSG) {
        return fail(path,
                    "holds a whiteout in a form lamina does not know (only char 0/0, "
                    "'.wh.NAME' files and overlay xattr whiteouts are read)");
      }
      return fail(path, s.error());
    }
    for (const std::string& name : real) {
      std::string cpath = child_path(path, name);
      auto child = merged->lookup(node, name);
      if (!child) return fail(cpath, child.error());
      Node* bchild = below_child(bnode, name);
      const ChangeKind kind = bchild != nullptr ? ChangeKind::kChanged : ChangeKind::kAdded;
      if (!(*child)->is_dir()) {
        if (!emit(cpath, *child, kind, false)) return false;
        continue;
      }
      auto uchild = upper().lookup(uobj, name.c_str());
      if (!uchild) return fail(cpath, uchild.error());
      auto cmarks = core::overlay::dir_marks(upper(), *uchild);
      if (!cmarks) return fail(cpath, cmarks.error());
      const bool below_dir = !cut && bchild != nullptr && bchild->is_dir();
      // A whiteout beside a directory of the same layer: the directory is opaque.
      const bool opaque = cmarks->opaque || whiteouts.count(name) != 0;
      if (!cmarks->redirect.empty()) {
        if (!emit(cpath, *child, kind, below_dir)) return false;
        if (below_dir && !emit_hidden_children(cpath, bchild, {})) return false;
        if (!emit_full(cpath, *child)) return false;
        continue;
      }
      if (!emit(cpath, *child, kind, opaque && below_dir)) return false;
      if (opaque && below_dir) {
        std::set<std::string> shown;
        (void)upper().list(*uchild, [&](std::string_view n, unsigned char, ino_t) {
          shown.emplace(n);
          return Status{};
        });
        if (!emit_hidden_children(cpath, bchild, shown)) return false;
      }
      Node* bdir = bchild != nullptr && bchild->is_dir() ? bchild : nullptr;
      if (!walk_dir(cpath, *uchild, *child, bdir, cut || opaque)) return false;
    }
    for (const std::string& name : whiteouts) {
      if (real.count(name) != 0) continue;  // beside a directory: made it opaque
      if (cut || below_child(bnode, name) == nullptr) continue;  // nothing to hide
      Change c;
      c.entry.path = child_path(path, name);
      c.entry.kind = EntryKind::kWhiteout;
      c.kind = ChangeKind::kDeleted;
      out->push_back(std::move(c));
    }
    return true;
  }

  // The node at an absolute path of a view, or null.
  static Node* node_at(UnionFs& fs, const std::string& path) {
    Node* n = fs.root();
    size_t pos = 1;
    while (n != nullptr && pos < path.size()) {
      size_t end = path.find('/', pos);
      if (end == std::string::npos) end = path.size();
      auto next = fs.lookup(n, std::string_view(path).substr(pos, end - pos));
      n = next ? *next : nullptr;
      pos = end + 1;
    }
    return n;
  }

  // A lower hard-link group that the upper holds only some names of: laminafs (like kernel
  // overlayfs with index=on) copies the inode up once and links further upper names to it, so
  // the other lower names show the new inode without being in the upper. The layer must hold
  // every name the merged view shows for the group, or they would keep the old lower file.
  bool complete_link_groups() {
    struct Group {
      nlink_t nlink = 0;
      std::vector<std::string> names;
    };
    std::unordered_map<ino_t, Group> groups;
    std::set<std::string> in_layer;
    for (const Change& c : *out) {
      if (!c.in_layer) continue;
      in_layer.insert(c.entry.path);
      if (c.entry.kind != EntryKind::kFile || c.source == nullptr) continue;
      auto st = merged->getattr(c.source);
      if (!st) return fail(c.entry.path, st.error());
      if (st->st_nlink < 2) continue;
      Group& g = groups[st->st_ino];
      g.nlink = st->st_nlink;
      g.names.push_back(c.entry.path);
    }
    if (below == nullptr) return true;
    // A deleted name of a lower group: the names left show one link fewer, which the layer
    // can only say by holding them (the lower layer's count cannot change).
    std::vector<std::string> deleted;
    for (const Change& c : *out) {
      if (c.in_layer && c.entry.kind == EntryKind::kWhiteout) deleted.push_back(c.entry.path);
    }
    for (const std::string& name : deleted) {
      Node* b = node_at(*below, name);
      if (b == nullptr || !S_ISREG(b->type)) continue;
      auto bst = below->getattr(b);
      if (!bst || bst->st_nlink < 2) continue;
      auto parts = b->parts();
      const core::Part& part = parts->front();
      auto names = below->layers()[part.layer]->link_names(*part.obj);
      if (!names) return fail(name, names.error());
      for (const std::string& other : *names) {
        if (in_layer.count(other) != 0) continue;
        Node* m = node_at(*merged, other);
        if (m == nullptr || !S_ISREG(m->type)) continue;
        if (!add_parents(other, &in_layer)) return false;
        if (!emit(other, m, ChangeKind::kChanged, false)) return false;
        in_layer.insert(other);
      }
    }
    for (auto& [ino, g] : groups) {
      if (g.names.size() >= g.nlink) continue;
      for (const std::string& name : g.names) {
        Node* b = node_at(*below, name);
        if (b == nullptr || b->is_dir()) continue;
        auto parts = b->parts();
        const core::Part& part = parts->front();
        auto names = below->layers()[part.layer]->link_names(*part.obj);
        if (!names) return fail(name, names.error());
        for (const std::string& other : *names) {
          if (in_layer.count(other) != 0) continue;
          Node* m = node_at(*merged, other);
          if (m == nullptr) continue;  // deleted (or hidden) in the upper
          auto st = merged->getattr(m);
          if (!st || st->st_ino != ino) continue;  // replaced by another file
          if (!add_parents(other, &in_layer)) return false;
          if (!emit(other, m, ChangeKind::kChanged, false)) return false;
          in_layer.insert(other);
        }
        break;
      }
    }
    return true;
  }

  // Directory entries for the ancestors of `path` that the layer does not hold yet.
  bool add_parents(const std::string& path, std::set<std::string>* in_layer) {
    std::string parent(store::parent_path(path));
    if (in_layer->count(parent) != 0) return true;
    if (!add_parents(parent, in_layer)) return false;
    Node* n = node_at(*merged, parent);
    if (n == nullptr) return fail(parent, "vanished from the merged view");
    if (!emit(parent, n, ChangeKind::kChanged, false)) return false;
    in_layer->insert(parent);
    return true;
  }
};

UpperDiff::UpperDiff(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UpperDiff::~UpperDiff() = default;

std::unique_ptr<UpperDiff> UpperDiff::open(const std::string& upper, const LayerFactory& lowers,
                                           std::string* error) {
  auto impl = std::make_unique<Impl>();
  auto up = core::DirLayer::open(upper);
  if (!up) {
    *error = "upper '" + upper + "': " + std::strerror(up.code());
    return nullptr;
  }
  // Readable through and through: an upper we cannot read would commit as a partial layer.
  auto probe = sys::openat(AT_FDCWD, upper.c_str(), O_RDONLY | O_DIRECTORY);
  if (!probe) {
    *error = "upper '" + upper + "': " + std::strerror(probe.code());
    return nullptr;
  }
  std::vector<std::unique_ptr<core::Layer>> merged_layers;
  merged_layers.push_back(std::move(*up));
  std::vector<std::unique_ptr<core::Layer>> lower_layers;
  if (lowers) {
    if (!lowers(&lower_layers, error)) return nullptr;
    std::vector<std::unique_ptr<core::Layer>> again;
    if (!lower_layers.empty()) {
      if (!lowers(&again, error)) return nullptr;
      for (auto& l : again) merged_layers.push_back(std::move(l));
    }
  }
  core::UnionConfig config;
  config.has_upper = true;
  config.read_only = true;
  auto merged = core::UnionFs::create(std::move(merged_layers), config);
  if (!merged) {
    *error = "upper '" + upper + "': cannot build the merged view: " + merged.error().message();
    return nullptr;
  }
  impl->merged = std::move(*merged);
  if (!lower_layers.empty()) {
    core::UnionConfig below_config;
    auto below = core::UnionFs::create(std::move(lower_layers), below_config);
    if (!below) {
      *error = "cannot read the lower layers: " + below.error().message();
      return nullptr;
    }
    impl->below = std::move(*below);
  }
  return std::unique_ptr<UpperDiff>(new UpperDiff(std::move(impl)));
}

bool UpperDiff::walk(std::vector<Change>* out, std::string* error) {
  Impl& d = *impl_;
  d.out = out;
  d.error = error;
  out->clear();
  auto root_obj = d.upper().root();
  if (!root_obj) {
    *error = "upper root: " + root_obj.error().message();
    return false;
  }
  auto marks = core::overlay::dir_marks(d.upper(), *root_obj);
  if (!marks) return d.fail("/", marks.error());
  Node* broot = d.below ? d.below->root() : nullptr;
  const bool opaque = marks->opaque && broot != nullptr;
  if (!d.emit("/", d.merged->root(), ChangeKind::kChanged, opaque)) return false;
  if (!d.walk_dir("/", *root_obj, d.merged->root(), broot, opaque)) return false;
  if (!d.complete_link_groups()) return false;
  std::stable_sort(out->begin(), out->end(), [](const Change& a, const Change& b) {
    return store::path_less(a.entry.path, b.entry.path);
  });
  // Hard links: the first name of a group (in manifest order) holds the file, the others
  // name it. The merged view shows one st_ino per group.
  std::unordered_map<ino_t, std::string> first_name;
  for (Change& c : *out) {
    if (!c.in_layer || c.entry.kind != EntryKind::kFile || c.source == nullptr) continue;
    auto st = d.merged->getattr(c.source);
    if (!st) return d.fail(c.entry.path, st.error());
    if (st->st_nlink < 2) continue;
    auto [it, inserted] = first_name.emplace(st->st_ino, c.entry.path);
    if (inserted) continue;
    Entry link;
    link.path = c.entry.path;
    link.kind = EntryKind::kHardlink;
    link.target = it->second;
    c.entry = std::move(link);
    c.source = nullptr;
  }
  return true;
}

Result<UniqueFd> UpperDiff::open_content(const Change& c) {
  if (c.source == nullptr) return Error{EINVAL, "no content"};
  return impl_->merged->open(c.source, O_RDONLY);
}

}  // namespace lamina::diff
