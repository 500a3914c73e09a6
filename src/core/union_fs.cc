// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/union_fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
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
  c.read_only = o.read_only || !c.has_upper;
  c.fsync = o.fsync && !o.volatile_mode;
  c.metacopy = o.metacopy;
  c.acl = o.acl;
  c.static_nlink = o.static_nlink;
  c.xattr_permissions = o.xattr_permissions;
  c.uid_map = o.uid_map;
  c.gid_map = o.gid_map;
  return c;
}

UnionFs::UnionFs(std::vector<std::unique_ptr<Layer>> layers, UnionConfig config, UniqueFd work_fd)
    : layers_(std::move(layers)),
      config_(std::move(config)),
      work_fd_(std::move(work_fd)),
      inodes_([&] {
        std::vector<dev_t> devs;
        for (const auto& l : layers_) devs.push_back(l->dev());
        return devs;
      }()) {}

UnionFs::~UnionFs() {
  // Children hold their parents: drop the links first so every node is freed.
  std::lock_guard lock(table_mu_);
  for (auto& [ptr, node] : live_) {
    std::lock_guard node_lock(node->mu_);
    node->parent_.reset();
  }
}

Result<std::unique_ptr<UnionFs>> UnionFs::create(std::vector<std::unique_ptr<Layer>> layers,
                                                 UnionConfig config, UniqueFd work_fd) {
  if (layers.empty()) return Error{EINVAL, "no layers"};
  if (config.has_upper && !config.read_only && !work_fd.valid())
    return Error{EINVAL, "upper without work dir"};
  std::unique_ptr<UnionFs> fs(
      new UnionFs(std::move(layers), std::move(config), std::move(work_fd)));
  auto root = std::make_shared<Node>();
  root->type = S_IFDIR;
  PartList parts;
  // The root merges every layer's root, down to the first opaque one.
  for (uint32_t i = 0; i < fs->layers_.size(); ++i) {
    const Layer& layer = *fs->layers_[i];
    auto obj = layer.root();
    if (!obj) return obj.error();
    auto marks = overlay::dir_marks(layer, *obj);
    if (!marks) return marks.error();
    parts.push_back(Part{i, marks->xwhiteouts, false, std::make_shared<ObjRef>(std::move(*obj))});
    parts.back().impure = marks->impure;
    // A root marked opaque hides the layers below (kernel overlayfs does the same).
    if (marks->opaque) break;
  }
  auto top = fs->layers_[0]->stat(*parts.front().obj);
  if (!top) return top.error();
  root->ino = fs->ino_of(parts, S_IFDIR);
  root->parts_ = std::make_shared<const PartList>(std::move(parts));
  fs->root_parts_ = root->parts_;
  root->key_dev_ = top->st_dev;
  root->key_ino_ = top->st_ino;
  root->nlookup_ = 1;
  fs->live_[root.get()] = root;
  fs->by_key_[{top->st_dev, top->st_ino}] = root.get();
  fs->root_ = std::move(root);
  return fs;
}

Result<PartList> UnionFs::resolve(const PartList& parent, const char* name, bool skip_upper,
                                  int attempt) const {
  PartList parts;
  const std::string whiteout = std::string(overlay::kWhiteoutPrefix) + name;
  // ".wh." + a name of more than NAME_MAX - 4 bytes cannot exist: no probe (it would fail
  // with ENAMETOOLONG).
  const bool wh_possible = whiteout.size() <= NAME_MAX;
  for (const Part& dir : parent) {
    if (skip_upper && is_upper(dir)) continue;
    const Layer& layer = *layers_[dir.layer];
    auto st = layer.stat_at(*dir.obj, name);
    if (!st) {
      if (st.code() != ENOENT) return st.error();
      // Absent here: a ".wh.NAME" beside it ends the search.
      if (!wh_possible) continue;
      auto wh = layer.contains(*dir.obj, whiteout.c_str());
      if (!wh) return wh.error();
      if (*wh) break;
      continue;
    }
    if (overlay::is_whiteout_device(*st)) break;
    if (!S_ISDIR(st->st_mode)) {
      // Named by directory and name: cached files hold no descriptor. Except an upper file
      // with several names: one of them may go while the others stay, so it keeps one.
      std::shared_ptr<ObjRef> obj;
      if (is_upper(dir) && st->st_nlink > 1) {
        auto fd = layer.lookup(*dir.obj, name);
        if (!fd) return fd.error();
        // The name may have changed since the stat (an unlink made it a whiteout, a rename
        // put another object there): what the descriptor holds must be what was classified.
        auto held = layer.stat(*fd);
        if (!held) return held.error();
        if (held->st_dev != st->st_dev || held->st_ino != st->st_ino) {
          if (attempt >= 64) return Error{EAGAIN, "lookup(name keeps changing)"};
          return resolve(parent, name, skip_upper, attempt + 1);
        }
        obj = std::make_shared<ObjRef>(std::move(*fd));
      } else {
        obj = std::make_shared<ObjRef>(dir.obj, name);
      }
      if (dir.xwhiteouts) {
        auto xw = overlay::is_xattr_whiteout(layer, *obj, *st);
        if (!xw) return xw.error();
        if (*xw) break;
      }
      // A non-directory hides everything below it, and is itself hidden under a directory.
      if (!parts.empty()) break;
      parts.push_back(Part{dir.layer, false, false, std::move(obj)});
      if (S_ISREG(st->st_mode) && st->st_nlink > 1 && !is_upper(dir) && !skip_upper &&
          index_fd_.valid()) {
        // A lower hard link whose group was copied up through another name: the index holds
        // the shared upper inode.
        auto key = index_key(parts.front());
        if (key) {
          auto idx = sys::open_path(index_fd_.get(), key->c_str());
          if (idx) {
            parts.front() = Part{0, false, true, std::make_shared<ObjRef>(std::move(*idx))};
            auto marks = overlay::file_marks(*layers_[0], *parts.front().obj);
            if (!marks) return marks.error();
            parts.front().ino = marks->ino;
          } else if (idx.code() != ENOENT) {
            return idx.error();
          }
        }
      }
      if (!S_ISLNK(st->st_mode) && is_upper(dir)) {
        auto meta = overlay::file_marks(layer, *parts.front().obj);
        if (!meta) return meta.error();
        parts.front().ino = meta->ino;
        // A metadata-only copy: its data is a lower file, found by name or by redirect.
        if (meta->metacopy && S_ISREG(st->st_mode)) {
          auto data = meta->redirect.empty() ? resolve(parent, name, true)
                                             : resolve_redirect(parent, meta->redirect);
          if (!data) return data.error();
          if (data->empty()) return Error{EIO, "metacopy without lower data"};
          auto dst = layers_[data->front().layer]->stat(*data->front().obj);
          if (!dst) return dst.error();
          if (!S_ISREG(dst->st_mode)) return Error{EIO, "metacopy data is not a regular file"};
          parts.push_back(std::move(data->front()));
        }
      }
      break;
    }
    auto found = layer.lookup(*dir.obj, name);
    if (!found) {
      if (found.code() == ENOENT) continue;  // gone since the stat
      return found.error();
    }
    if (auto held = layer.stat(*found); !held || held->st_ino != st->st_ino) {
      // Replaced since the stat (an rmdir left a whiteout, a rename put another object there).
      if (!held) return held.error();
      if (attempt >= 64) return Error{EAGAIN, "lookup(name keeps changing)"};
      return resolve(parent, name, skip_upper, attempt + 1);
    }
    // A directory of a directory layer: its descriptor goes under the budget, opened again
    // from here by name if the budget closes it.
    auto obj = found->has_fd() ? std::make_shared<ObjRef>(dir.obj, name, found->take_fd(), *st)
                               : std::make_shared<ObjRef>(std::move(*found));
    auto marks = overlay::dir_marks(layer, *obj);
    if (!marks) return marks.error();
    parts.push_back(Part{dir.layer, marks->xwhiteouts, false, std::move(obj)});
    parts.back().impure = marks->impure;
    if (marks->opaque) break;
    if (!marks->redirect.empty() && is_upper(dir)) {
      // A renamed directory: its lower parts live where the redirect says.
      auto lower = resolve_redirect(parent, marks->redirect);
      if (!lower) return lower.error();
      // Only a directory merges: a redirect naming a symlink, file or device (hostile or stale
      // upper content) brings nothing in, as with kernel overlayfs.
      if (!lower->empty()) {
        auto lst = layers_[lower->front().layer]->stat(*lower->front().obj);
        if (!lst) return lst.error();
        if (!S_ISDIR(lst->st_mode)) lower->clear();
      }
      for (Part& p : *lower) parts.push_back(std::move(p));
      break;
    }
    // A whiteout beside a directory of the same layer applies to the layers below only
    // (OCI layer semantics): the directory is effectively opaque.
    if (!wh_possible) continue;
    auto wh = layer.contains(*dir.obj, whiteout.c_str());
    if (!wh) return wh.error();
    if (*wh) break;
  }
  return parts;
}

Result<PartList> UnionFs::resolve_redirect(const PartList& parent,
                                           const std::string& redirect) const {
  // "/a/b": from the lower roots; "name": beside the object, in the parent's lowers.
  PartList cur;
  std::string_view path = redirect;
  const PartList& start = path.front() == '/' ? *root_parts_ : parent;
  for (const Part& p : start) {
    if (!is_upper(p)) cur.push_back(p);
  }
  // Component by component with resolve(): single names from directory descriptors, never
  // following a symlink; "." and ".." are refused, so no redirect leads outside the layers.
  while (!path.empty() && !cur.empty()) {
    size_t slash = path.find('/');
    std::string comp(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (comp.empty()) continue;
    if (!valid_name(comp)) return Error{EIO, "overlay.redirect"};
    auto next = resolve(cur, comp.c_str(), true);
    if (!next) return next.error();
    cur = std::move(*next);
    if (!cur.empty() && !path.empty()) {
      auto st = layers_[cur.front().layer]->stat(*cur.front().obj);
      if (!st) return st.error();
      if (!S_ISDIR(st->st_mode)) cur.clear();  // a middle component must be a directory
    }
  }
  return cur;
}

uint64_t UnionFs::ino_of(const PartList& parts, mode_t type) const {
  // As kernel overlayfs: a directory with a lower part takes its topmost lower part's number,
  // so it keeps it when copy-up adds an upper part; otherwise the topmost part's.
  const Part* p = &parts.front();
  if (S_ISDIR(type) && is_upper(*p) && parts.size() > 1) p = &parts[1];
  auto st = layers_[p->layer]->stat(*p->obj);
  if (!st) return 0;
  return inodes_.map(st->st_dev, st->st_ino);
}

std::shared_ptr<Node> UnionFs::shared(Node* n) { return n->shared_from_this(); }

Result<Node*> UnionFs::lookup(Node* parent, std::string_view name) {
  if (!parent->is_dir()) return Error{ENOTDIR, "lookup"};
  if (!valid_name(name)) return Error{EINVAL, "lookup(name)"};
  if (overlay::is_reserved_name(name)) return Error{ENOENT, "lookup(reserved)"};
  std::string cname(name);
  auto parent_parts = parent->parts();
  auto parts = resolve(*parent_parts, cname.c_str(), false);
  if (!parts) return parts.error();
  if (parts->empty()) return Error{ENOENT, "lookup"};
  return publish(parent, cname, std::move(*parts));
}

Result<Node*> UnionFs::publish(Node* parent, const std::string& name, PartList parts) {
  const Part& top = parts.front();
  auto st = layers_[top.layer]->stat(*top.obj);
  if (!st) return st.error();
  std::pair<dev_t, ino_t> key{st->st_dev, st->st_ino};
  std::shared_ptr<Node> parent_ref = shared(parent);
  {
    std::lock_guard lock(table_mu_);
    auto it = by_key_.find(key);
    if (it != by_key_.end()) {
      Node* n = it->second;
      ++n->nlookup_;
      std::lock_guard node_lock(n->mu_);
      if (n != root_.get()) {
        n->parent_ = std::move(parent_ref);
        n->name_ = name;
      }
      return n;
    }
  }
  // Build outside the lock (it stats a layer), then publish; a racing lookup may have
  // published the same object meanwhile, in which case ours is dropped.
  auto node = std::make_shared<Node>();
  node->type = st->st_mode & S_IFMT;
  if (!S_ISDIR(node->type) && parts.front().ino != 0) {
    node->ino = parts.front().ino;  // recorded at copy-up: the number from before
  } else {
    node->ino = parts.size() > 1 ? ino_of(parts, node->type) : inodes_.map(key.first, key.second);
  }
  node->generation = generation_.fetch_add(1, std::memory_order_relaxed);
  node->parts_ = std::make_shared<const PartList>(std::move(parts));
  node->parent_ = std::move(parent_ref);
  node->name_ = name;
  node->key_dev_ = key.first;
  node->key_ino_ = key.second;
  std::lock_guard lock(table_mu_);
  auto [it, inserted] = by_key_.try_emplace(key, node.get());
  ++it->second->nlookup_;
  if (inserted) live_[node.get()] = node;
  return it->second;
}

void UnionFs::set_parts(Node* node, PartList parts) {
  const Part& top = parts.front();
  auto st = layers_[top.layer]->stat(*top.obj);
  auto list = std::make_shared<const PartList>(std::move(parts));
  {
    std::lock_guard lock(node->mu_);
    node->parts_ = std::move(list);
  }
  if (!st) return;
  std::lock_guard lock(table_mu_);
  if (live_.count(node) == 0) return;
  auto it = by_key_.find({node->key_dev_, node->key_ino_});
  if (it != by_key_.end() && it->second == node) by_key_.erase(it);
  node->key_dev_ = st->st_dev;
  node->key_ino_ = st->st_ino;
  by_key_[{st->st_dev, st->st_ino}] = node;
}

void UnionFs::forget(Node* node, uint64_t n) {
  if (node == root_.get()) return;
  std::shared_ptr<Node> doomed;  // freed after the lock is released
  std::lock_guard lock(table_mu_);
  if (n < node->nlookup_) {
    node->nlookup_ -= n;
    return;
  }
  auto it = by_key_.find({node->key_dev_, node->key_ino_});
  if (it != by_key_.end() && it->second == node) by_key_.erase(it);
  auto live = live_.find(node);
  if (live != live_.end()) {
    doomed = std::move(live->second);
    live_.erase(live);
  }
}

size_t UnionFs::node_count() const {
  std::lock_guard lock(table_mu_);
  return live_.size();
}

const char* UnionFs::override_xattr() const {
  switch (config_.xattr_permissions) {
    case XattrPermissions::kFuseOverlayfs: return kOverrideFuseOverlayfs;
    case XattrPermissions::kContainers: return kOverrideContainers;
    case XattrPermissions::kOff: break;
  }
  return nullptr;
}

void UnionFs::apply_owner_overrides(const PartList& parts, struct stat* st) const {
  st->st_uid = config_.uid_map.to_shown(st->st_uid);
  st->st_gid = config_.gid_map.to_shown(st->st_gid);
  if (const char* name = override_xattr()) {
    const Part& top = parts.front();
    auto v = layers_[top.layer]->getxattr(*top.obj, name);
    if (!v && config_.xattr_permissions == XattrPermissions::kContainers) {
      // Stores written by older fuse-overlayfs carry the other name.
      v = layers_[top.layer]->getxattr(*top.obj, kOverrideFuseOverlayfs);
    }
    if (v) parse_override(*v, st);
  }
}

Result<struct stat> UnionFs::getattr(const Node* node, int fd) const {
  auto parts = node->parts();
  auto st = layers_[parts->front().layer]->stat(*parts->front().obj);
  // A named upper part may have been renamed away just now (see still_names).
  for (int attempt = 0; attempt < kMovedRetries && parts->front().obj->named() &&
                        is_upper(parts->front()) && !(st && still_names(node, *st));
       ++attempt) {
    moved_pause(attempt);
    parts = node->parts();
    st = layers_[parts->front().layer]->stat(*parts->front().obj);
  }
  // An open file whose last name went: fstat of the open descriptor.
  if (!st && st.code() == ENOENT && fd >= 0) st = sys::fstat(fd);
  if (!st) return st.error();
  st->st_ino = node->ino;
  {
    std::lock_guard lock(node->mu_);
    if (node->removed_) st->st_nlink = 0;
  }
  if (!node->is_dir() && parts->size() > 1) {
    // Metacopy: the blocks are the lower data file's.
    auto data = layers_[parts->back().layer]->stat(*parts->back().obj);
    if (!data) return data.error();
    st->st_blocks = data->st_blocks;
  }
  if (S_ISREG(st->st_mode) && is_upper(parts->front()) &&
      (st->st_nlink > 1 || parts->front().indexed)) {
    // Shared with the index: the link count the mount shows is recorded beside it. An index
    // entry no upper name links to has a real count of 1 and still carries the offset.
    auto offset = overlay::nlink_offset(*layers_[0], *parts->front().obj);
    if (offset && *offset) {
      long n = static_cast<long>(st->st_nlink) + **offset;
      st->st_nlink = n < 1 ? 1 : static_cast<nlink_t>(n);
    }
  }
  // Like kernel overlayfs, a merged directory cannot know its link count cheaply: it shows 1,
  // which tells find(1) and friends not to count subdirectories.
  if (node->is_dir() && (parts->size() > 1 || config_.static_nlink)) st->st_nlink = 1;
  apply_owner_overrides(*parts, &*st);
  return st;
}

Result<std::string> UnionFs::readlink(const Node* node) const {
  if (!S_ISLNK(node->type)) return Error{EINVAL, "readlink"};
  auto parts = node->parts();
  const Part& top = parts->front();
  return layers_[top.layer]->readlink(*checked_top(node));
}

std::shared_ptr<const ObjRef> UnionFs::checked_top(const Node* node) const {
  for (int attempt = 0;; ++attempt) {
    auto parts = node->parts();
    const Part& top = parts->front();
    if (!top.obj->named() || !is_upper(top) || attempt >= kMovedRetries) return top.obj;
    PathFd fd(*top.obj);
    if (fd.ok()) {
      auto st = sys::fstat(fd.get());
      if (st && still_names(node, *st)) {
        auto dup = sys::dup(fd.get());
        if (dup) return std::make_shared<const ObjRef>(std::move(*dup));
      }
    }
    moved_pause(attempt);
  }
}

bool UnionFs::immutable_data(const Node* node) const {
  // Lower objects never change (a copy-up copies the same bytes); upper ones may.
  auto parts = node->parts();
  return !is_upper(S_ISREG(node->type) ? parts->back() : parts->front());
}

Result<UniqueFd> UnionFs::open(Node* node, int flags) {
  int acc = flags & O_ACCMODE;
  bool write = acc != O_RDONLY || (flags & O_TRUNC);
  if (!S_ISREG(node->type) && !S_ISDIR(node->type)) return Error{ENXIO, "open"};
  if (write) {
    if (config_.read_only) return Error{EROFS, "open"};
    if ((flags & O_TRUNC) && S_ISREG(node->type)) {
      // The data is about to go: copy the metadata only, then drop the data link.
      if (Status s = copy_up(node, false); !s) return s.error();
      if (Status s = truncate_metacopy(node); !s) return s.error();
    } else if (Status s = copy_up(node); !s) {
      return s.error();
    }
  }
  // Only flags that change how I/O behaves pass through; creation flags were handled by the
  // kernel and create(); O_NOFOLLOW is meaningless on the resolved object. O_TRUNC waits until
  // the object is known to be this node's (see still_names).
  int pass = acc | (flags & (O_DIRECT | O_NOATIME | O_DIRECTORY | O_NONBLOCK | O_APPEND | O_TRUNC |
                             O_SYNC | O_DSYNC));
  const bool trunc = (pass & O_TRUNC) && acc != O_RDONLY;
  if (trunc) pass &= ~O_TRUNC;
  for (int attempt = 0;; ++attempt) {
    auto parts = node->parts();
    // A regular file reads from its data part: the lower file of a metacopy.
    const Part& top = S_ISREG(node->type) ? parts->back() : parts->front();
    auto fd = layers_[top.layer]->open(*top.obj, pass);
    if (!fd && fd.code() == EPERM && (pass & O_NOATIME)) {
      fd = layers_[top.layer]->open(*top.obj, pass & ~O_NOATIME);
    }
    const bool checked = &top == &parts->front() && top.obj->named() && is_upper(top);
    bool retry = false;
    if (checked && attempt < kMovedRetries) {
      if (fd) {
        auto st = sys::fstat(fd->get());
        retry = st && !still_names(node, *st);
      } else {
        retry = fd.code() == ENOENT || fd.code() == ENXIO || fd.code() == ELOOP ||
                fd.code() == EISDIR || fd.code() == ENOTDIR;
      }
    }
    if (retry) {
      moved_pause(attempt);
      continue;
    }
    if (fd && trunc) {
      if (Status s = sys::ftruncate(fd->get(), 0); !s) return s.error();
    }
    return fd;
  }
}

void UnionFs::moved_pause(int attempt) {
  if (attempt < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

bool UnionFs::still_names(const Node* node, const struct stat& st) const {
  std::lock_guard lock(table_mu_);
  return node->key_dev_ == st.st_dev && node->key_ino_ == st.st_ino;
}

Result<std::vector<DirEntry>> UnionFs::list(const Node* dir) const {
  if (!dir->is_dir()) return Error{ENOTDIR, "readdir"};
  auto parent = dir->parent();
  return list_parts(*dir->parts(), dir->ino, parent ? parent->ino : dir->ino);
}

Result<std::vector<DirEntry>> UnionFs::list_parts(const PartList& parts, uint64_t self_ino,
                                                  uint64_t parent_ino) const {
  std::vector<DirEntry> out;
  out.push_back(DirEntry{".", self_ino, S_IFDIR});
  out.push_back(DirEntry{"..", parent_ino, S_IFDIR});

  // name -> index in `out` of the entry shown, or -1 when hidden by a whiteout; `layer` is
  // where the decision was made (a whiteout hides only what lies below its own layer).
  struct Seen {
    ptrdiff_t index;
    uint32_t layer;
  };
  std::unordered_map<std::string, Seen> seen;
  std::vector<size_t> merged_dirs;  // entries that are directories in two or more layers

  for (const Part& part : parts) {
    const Layer& layer = *layers_[part.layer];
    Status s = layer.list(
        *part.obj, [&](std::string_view name, unsigned char dtype, ino_t d_ino) -> Status {
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
          // Entries copied up into an impure directory show the st_ino recorded at copy-up.
          const bool recorded_ino =
              part.impure && is_upper(part) && type != S_IFDIR && type != S_IFLNK;
          bool need_stat =
              type == 0 || type == S_IFCHR || (type == S_IFREG && part.xwhiteouts) || recorded_ino;
          if (need_stat) {
            auto obj = layer.lookup(*part.obj, key.c_str());
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
            if (recorded_ino && !S_ISDIR(type) && !S_ISLNK(type)) {
              auto marks = overlay::file_marks(layer, *obj);
              if (!marks) return marks.error();
              if (marks->ino != 0) ino = marks->ino;
            }
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
    auto sub = resolve(parts, e.name.c_str(), false);
    if (!sub) return sub.error();
    if (!sub->empty()) e.ino = ino_of(*sub, S_IFDIR);
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
  auto parts = node->parts();
  const Part& top = parts->front();
  return layers_[top.layer]->getxattr(*top.obj, name, buf, size);
}

Result<size_t> UnionFs::listxattr(const Node* node, char* buf, size_t size) const {
  auto parts = node->parts();
  const Part& top = parts->front();
  auto all = layers_[top.layer]->listxattr(*top.obj);
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
