// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/union_fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_map>

#include "lamina/core/overlay_format.h"

namespace lamina::core {
namespace {

constexpr const char* kOverrideFuseOverlayfs = "user.fuseoverlayfs.override_stat";
constexpr const char* kOverrideContainers = "user.containers.override_stat";

mode_t dtype_to_mode(unsigned char t) {
  switch (t) {
    case DT_REG: return S_IFREG;
    case DT_DIR: return S_IFDIR;
    case DT_LNK: return S_IFLNK;
    case DT_CHR: return S_IFCHR;
    case DT_BLK: return S_IFBLK;
    case DT_FIFO: return S_IFIFO;
    case DT_SOCK: return S_IFSOCK;
    default: return 0;
  }
}

bool is_posix_acl(std::string_view name) {
  return name == "system.posix_acl_access" || name == "system.posix_acl_default";
}

bool valid_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

// Parses "uid:gid:mode[:type]" as fuse-overlayfs writes it. Returns false if malformed.
bool parse_override(const std::string& v, struct stat* st) {
  unsigned uid = 0, gid = 0, mode = 0;
  int n = 0;
  if (std::sscanf(v.c_str(), "%u:%u:%o%n", &uid, &gid, &mode, &n) < 3) return false;
  st->st_uid = uid;
  st->st_gid = gid;
  st->st_mode = (st->st_mode & S_IFMT) | (mode & 07777);
  return true;
}

}  // namespace

UnionConfig UnionConfig::from(const MountOptions& o) {
  UnionConfig c;
  c.has_upper = !o.upperdir.empty();
  // The write path is not built yet: every mount is read-only for now.
  c.read_only = true;
  c.acl = o.acl;
  c.static_nlink = o.static_nlink;
  c.xattr_permissions = o.xattr_permissions;
  c.uid_map = o.uid_map;
  c.gid_map = o.gid_map;
  return c;
}

UnionFs::UnionFs(std::vector<std::unique_ptr<Layer>> layers, UnionConfig config)
    : layers_(std::move(layers)), config_(std::move(config)), inodes_([&] {
        std::vector<dev_t> devs;
        for (const auto& l : layers_) devs.push_back(l->dev());
        return devs;
      }()) {}

UnionFs::~UnionFs() {
  std::lock_guard lock(table_mu_);
  for (auto& [key, node] : table_) {
    if (node != root_.get()) delete node;
  }
}

Result<std::unique_ptr<UnionFs>> UnionFs::create(std::vector<std::unique_ptr<Layer>> layers,
                                                 UnionConfig config) {
  if (layers.empty()) return Error{EINVAL, "no layers"};
  std::unique_ptr<UnionFs> fs(new UnionFs(std::move(layers), std::move(config)));
  auto root = std::make_unique<Node>();
  root->type = S_IFDIR;
  // The root merges every layer's root, down to the first opaque one.
  for (uint32_t i = 0; i < fs->layers_.size(); ++i) {
    const Layer& layer = *fs->layers_[i];
    auto obj = layer.root();
    if (!obj) return obj.error();
    auto marks = overlay::dir_marks(layer, *obj);
    if (!marks) return marks.error();
    root->parts.push_back(Node::Part{i, marks->xwhiteouts, std::move(*obj)});
    // A root marked opaque hides the layers below (kernel overlayfs does the same).
    if (marks->opaque) break;
  }
  auto top = fs->layers_[0]->stat(root->parts.front().obj);
  if (!top) return top.error();
  root->key_dev = top->st_dev;
  root->key_ino = top->st_ino;
  root->ino = fs->ino_of(root->parts, S_IFDIR);
  root->parent_ino = root->ino;
  root->nlookup = 1;
  fs->table_[{root->key_dev, root->key_ino}] = root.get();
  fs->root_ = std::move(root);
  return fs;
}

Result<std::vector<Node::Part>> UnionFs::resolve(const Node& parent, const char* name) const {
  std::vector<Node::Part> parts;
  const std::string whiteout = std::string(overlay::kWhiteoutPrefix) + name;
  // ".wh." + a name of more than NAME_MAX - 4 bytes cannot exist: no probe (it would fail
  // with ENAMETOOLONG).
  const bool wh_possible = whiteout.size() <= NAME_MAX;
  for (const Node::Part& dir : parent.parts) {
    const Layer& layer = *layers_[dir.layer];
    auto obj = layer.lookup(dir.obj, name);
    if (!obj) {
      if (obj.code() != ENOENT) return obj.error();
      // Absent here: a ".wh.NAME" beside it ends the search.
      if (!wh_possible) continue;
      auto wh = layer.contains(dir.obj, whiteout.c_str());
      if (!wh) return wh.error();
      if (*wh) break;
      continue;
    }
    auto st = layer.stat(*obj);
    if (!st) return st.error();
    if (overlay::is_whiteout_device(*st)) break;
    if (dir.xwhiteouts) {
      auto xw = overlay::is_xattr_whiteout(layer, *obj, *st);
      if (!xw) return xw.error();
      if (*xw) break;
    }
    if (!S_ISDIR(st->st_mode)) {
      // A non-directory hides everything below it, and is itself hidden under a directory.
      if (parts.empty()) parts.push_back(Node::Part{dir.layer, false, std::move(*obj)});
      break;
    }
    auto marks = overlay::dir_marks(layer, *obj);
    if (!marks) return marks.error();
    parts.push_back(Node::Part{dir.layer, marks->xwhiteouts, std::move(*obj)});
    if (marks->opaque) break;
    // A whiteout beside a directory of the same layer applies to the layers below only
    // (OCI layer semantics): the directory is effectively opaque.
    if (!wh_possible) continue;
    auto wh = layer.contains(dir.obj, whiteout.c_str());
    if (!wh) return wh.error();
    if (*wh) break;
  }
  return parts;
}

uint64_t UnionFs::ino_of(const std::vector<Node::Part>& parts, mode_t type) const {
  // As kernel overlayfs: a directory with a lower part takes its topmost lower part's number,
  // so it keeps it when copy-up adds an upper part; otherwise the topmost part's.
  const Node::Part* p = &parts.front();
  if (S_ISDIR(type) && config_.has_upper && p->layer == 0 && parts.size() > 1) p = &parts[1];
  auto st = layers_[p->layer]->stat(p->obj);
  if (!st) return 0;
  return inodes_.map(st->st_dev, st->st_ino);
}

Result<Node*> UnionFs::lookup(Node* parent, std::string_view name) {
  if (!parent->is_dir()) return Error{ENOTDIR, "lookup"};
  if (!valid_name(name)) return Error{EINVAL, "lookup(name)"};
  if (overlay::is_reserved_name(name)) return Error{ENOENT, "lookup(reserved)"};
  std::string cname(name);
  auto parts = resolve(*parent, cname.c_str());
  if (!parts) return parts.error();
  if (parts->empty()) return Error{ENOENT, "lookup"};

  const Node::Part& top = parts->front();
  auto st = layers_[top.layer]->stat(top.obj);
  if (!st) return st.error();
  std::pair<dev_t, ino_t> key{st->st_dev, st->st_ino};
  {
    std::lock_guard lock(table_mu_);
    auto it = table_.find(key);
    if (it != table_.end()) {
      ++it->second->nlookup;
      return it->second;
    }
  }
  // Build outside the lock (it stats a layer), then publish; a racing lookup may have
  // published the same object meanwhile, in which case ours is dropped.
  auto node = std::make_unique<Node>();
  node->type = st->st_mode & S_IFMT;
  node->key_dev = key.first;
  node->key_ino = key.second;
  node->parts = std::move(*parts);
  node->ino =
      node->parts.size() > 1 ? ino_of(node->parts, node->type) : inodes_.map(key.first, key.second);
  node->parent_ino = parent->ino;
  node->generation = generation_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(table_mu_);
  auto [it, inserted] = table_.try_emplace(key, node.get());
  ++it->second->nlookup;
  if (inserted) node.release();
  return it->second;
}

void UnionFs::forget(Node* node, uint64_t n) {
  if (node == root_.get()) return;
  std::lock_guard lock(table_mu_);
  if (n >= node->nlookup) {
    table_.erase({node->key_dev, node->key_ino});
    delete node;
    return;
  }
  node->nlookup -= n;
}

size_t UnionFs::node_count() const {
  std::lock_guard lock(table_mu_);
  return table_.size();
}

const char* UnionFs::override_xattr() const {
  switch (config_.xattr_permissions) {
    case XattrPermissions::kFuseOverlayfs: return kOverrideFuseOverlayfs;
    case XattrPermissions::kContainers: return kOverrideContainers;
    case XattrPermissions::kOff: break;
  }
  return nullptr;
}

void UnionFs::apply_owner_overrides(const Node& node, struct stat* st) const {
  st->st_uid = config_.uid_map.to_shown(st->st_uid);
  st->st_gid = config_.gid_map.to_shown(st->st_gid);
  if (const char* name = override_xattr()) {
    const Node::Part& top = node.top();
    auto v = layers_[top.layer]->getxattr(top.obj, name);
    if (!v && config_.xattr_permissions == XattrPermissions::kContainers) {
      // Stores written by older fuse-overlayfs carry the other name.
      v = layers_[top.layer]->getxattr(top.obj, kOverrideFuseOverlayfs);
    }
    if (v) parse_override(*v, st);
  }
}

Result<struct stat> UnionFs::getattr(const Node* node) const {
  const Node::Part& top = node->top();
  auto st = layers_[top.layer]->stat(top.obj);
  if (!st) return st.error();
  st->st_ino = node->ino;
  // Like kernel overlayfs, a merged directory cannot know its link count cheaply: it shows 1,
  // which tells find(1) and friends not to count subdirectories.
  if (node->is_dir() && (node->parts.size() > 1 || config_.static_nlink)) st->st_nlink = 1;
  apply_owner_overrides(*node, &*st);
  return st;
}

Result<std::string> UnionFs::readlink(const Node* node) const {
  if (!S_ISLNK(node->type)) return Error{EINVAL, "readlink"};
  const Node::Part& top = node->top();
  return layers_[top.layer]->readlink(top.obj);
}

bool UnionFs::immutable_data(const Node* node) const {
  return !(config_.has_upper && node->top().layer == 0) || config_.read_only;
}

Result<UniqueFd> UnionFs::open(const Node* node, int flags) const {
  int acc = flags & O_ACCMODE;
  if (acc != O_RDONLY || (flags & (O_TRUNC | O_APPEND | O_CREAT))) return Error{EROFS, "open"};
  if (!S_ISREG(node->type) && !S_ISDIR(node->type)) return Error{ENXIO, "open"};
  const Node::Part& top = node->top();
  // Only flags that change how reads behave pass through; O_NOFOLLOW is meaningless on the
  // already-resolved object, and creation flags were refused above.
  int pass = O_RDONLY | (flags & (O_DIRECT | O_NOATIME | O_DIRECTORY | O_NONBLOCK));
  auto fd = layers_[top.layer]->open(top.obj, pass);
  if (!fd && fd.code() == EPERM && (pass & O_NOATIME)) {
    fd = layers_[top.layer]->open(top.obj, pass & ~O_NOATIME);
  }
  return fd;
}

Result<std::vector<DirEntry>> UnionFs::list(const Node* dir) const {
  if (!dir->is_dir()) return Error{ENOTDIR, "readdir"};
  std::vector<DirEntry> out;
  out.push_back(DirEntry{".", dir->ino, S_IFDIR});
  out.push_back(DirEntry{"..", dir->parent_ino, S_IFDIR});

  // name -> index in `out` of the entry shown, or -1 when hidden by a whiteout; `layer` is
  // where the decision was made (a whiteout hides only what lies below its own layer).
  struct Seen {
    ptrdiff_t index;
    uint32_t layer;
  };
  std::unordered_map<std::string, Seen> seen;
  std::vector<size_t> merged_dirs;  // entries that are directories in two or more layers

  for (const Node::Part& part : dir->parts) {
    const Layer& layer = *layers_[part.layer];
    Status s = layer.list(
        part.obj, [&](std::string_view name, unsigned char dtype, ino_t d_ino) -> Status {
          if (overlay::is_reserved_name(name)) {
            std::string_view target = overlay::whiteout_target(name);
            if (!target.empty()) seen.try_emplace(std::string(target), Seen{-1, part.layer});
            return {};
          }
          std::string key(name);
          auto it = seen.find(key);
          if (it != seen.end()) {
            bool same_layer_whiteout = it->second.index < 0 && it->second.layer == part.layer;
            if (!same_layer_whiteout) {
              // Already decided above. An upper directory seen again lower down may be merged,
              // which gives it a lower part's st_ino; fixed up after the walk for those names.
              if (it->second.index >= 0 && config_.has_upper && it->second.layer == 0 &&
                  S_ISDIR(out[it->second.index].type) && (dtype == DT_DIR || dtype == DT_UNKNOWN))
                merged_dirs.push_back(static_cast<size_t>(it->second.index));
              return {};
            }
          }
          mode_t type = dtype_to_mode(dtype);
          uint64_t ino = 0;
          bool need_stat = type == 0 || type == S_IFCHR || (type == S_IFREG && part.xwhiteouts);
          if (need_stat) {
            auto obj = layer.lookup(part.obj, key.c_str());
            if (!obj) return obj.code() == ENOENT ? Status{} : Status{obj.error()};
            auto st = layer.stat(*obj);
            if (!st) return st.error();
            bool whiteout = overlay::is_whiteout_device(*st);
            if (!whiteout && part.xwhiteouts) {
              auto xw = overlay::is_xattr_whiteout(layer, *obj, *st);
              if (!xw) return xw.error();
              whiteout = *xw;
            }
            if (whiteout) {
              seen.insert_or_assign(key, Seen{-1, part.layer});
              return {};
            }
            type = st->st_mode & S_IFMT;
            ino = inodes_.map(st->st_dev, st->st_ino);
          } else {
            ino = inodes_.map(layer.dev(), d_ino);
          }
          seen.insert_or_assign(key, Seen{static_cast<ptrdiff_t>(out.size()), part.layer});
          out.push_back(DirEntry{std::move(key), ino, type});
          return {};
        });
    if (!s) return s.error();
  }

  // Resolve those names fully (opaque marks, whiteouts in between) to learn whether a lower
  // part really merges.
  std::sort(merged_dirs.begin(), merged_dirs.end());
  merged_dirs.erase(std::unique(merged_dirs.begin(), merged_dirs.end()), merged_dirs.end());
  for (size_t idx : merged_dirs) {
    DirEntry& e = out[idx];
    auto parts = resolve(*dir, e.name.c_str());
    if (!parts) return parts.error();
    if (!parts->empty()) e.ino = ino_of(*parts, S_IFDIR);
  }
  return out;
}

bool UnionFs::hidden_xattr(std::string_view name) const {
  if (overlay::is_private_xattr(name)) return true;
  if (config_.xattr_permissions != XattrPermissions::kOff &&
      (name == kOverrideFuseOverlayfs || name == kOverrideContainers))
    return true;
  return false;
}

Result<size_t> UnionFs::getxattr(const Node* node, const char* name, void* buf, size_t size) const {
  std::string_view n(name);
  if (hidden_xattr(n)) return Error{ENODATA, "getxattr(private)"};
  if (!config_.acl && is_posix_acl(n)) return Error{EOPNOTSUPP, "getxattr(noacl)"};
  const Node::Part& top = node->top();
  return layers_[top.layer]->getxattr(top.obj, name, buf, size);
}

Result<size_t> UnionFs::listxattr(const Node* node, char* buf, size_t size) const {
  const Node::Part& top = node->top();
  auto all = layers_[top.layer]->listxattr(top.obj);
  if (!all) return all.error();
  std::string shown;
  std::string_view list = *all;
  for (size_t pos = 0; pos < list.size();) {
    size_t end = list.find('\0', pos);
    if (end == std::string_view::npos) end = list.size();
    std::string_view n = list.substr(pos, end - pos);
    if (!n.empty() && !hidden_xattr(n) && (config_.acl || !is_posix_acl(n))) {
      shown.append(n);
      shown.push_back('\0');
    }
    pos = end + 1;
  }
  if (size == 0) return shown.size();
  if (shown.size() > size) return Error{ERANGE, "listxattr"};
  std::memcpy(buf, shown.data(), shown.size());
  return shown.size();
}

Result<struct statvfs> UnionFs::statfs() const { return layers_[0]->statfs(); }

Status UnionFs::access(const Node* node, int mask, uid_t uid, gid_t gid,
                       const std::vector<gid_t>& groups) const {
  auto st = getattr(node);
  if (!st) return st.error();
  if ((mask & W_OK) && config_.read_only) return Error{EROFS, "access"};
  if (mask == F_OK) return {};
  if (uid == 0) {
    // root passes read/write checks; execute needs some x bit on a non-directory.
    if ((mask & X_OK) && !S_ISDIR(st->st_mode) && !(st->st_mode & 0111))
      return Error{EACCES, "access"};
    return {};
  }
  mode_t bits;
  if (st->st_uid == uid) {
    bits = (st->st_mode >> 6) & 7;
  } else if (st->st_gid == gid ||
             std::find(groups.begin(), groups.end(), st->st_gid) != groups.end()) {
    bits = (st->st_mode >> 3) & 7;
  } else {
    bits = st->st_mode & 7;
  }
  if ((mask & bits) != (mask & 7)) return Error{EACCES, "access"};
  return {};
}

}  // namespace lamina::core
