// SPDX-License-Identifier: Apache-2.0
// A store layer as a Layer. Design notes:
//  - The manifest is decoded once at open into an immutable table: one Item per entry with its
//    parent, the entry holding its data (a hard link's file), its link count and a range of
//    children_ sorted by name, so lookup is a binary search and nothing is mutated afterwards.
//    Every const method may run on many daemon threads at once without a lock; the only mutable
//    state (the verify verdicts and lazily stat'ed object blocks) is a mutex-guarded map and
//    atomics.
//  - An object is an ObjRef with `entry` = index + 1 (of the data entry: hard links resolve to
//    their file, so they share st_ino). UnionFs also names non-directories by their directory's
//    ObjRef and a name; both forms are accepted everywhere.
//  - The overlay format is synthesized: a whiteout entry stats as a char device 0/0 and an
//    opaque directory shows trusted.overlay.opaque=y, which is what overlay_format reads.
#include "lamina/core/store_layer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lamina/base/hash.h"
#include "lamina/base/log.h"
#include "lamina/base/sys.h"

namespace lamina::core {
namespace {

using store::EntryKind;

constexpr std::string_view kOpaqueXattr = "trusted.overlay.opaque";
// No real device has this major: st_dev of store objects never meets a disk's numbers.
constexpr unsigned kStoreMajor = 0xfff;
std::atomic<unsigned> next_minor{1};

unsigned char dtype_of(EntryKind k) {
  switch (k) {
    case EntryKind::kDir: return DT_DIR;
    case EntryKind::kFile:
    case EntryKind::kHardlink: return DT_REG;
    case EntryKind::kSymlink: return DT_LNK;
    case EntryKind::kChar:
    case EntryKind::kWhiteout: return DT_CHR;
    case EntryKind::kBlock: return DT_BLK;
    case EntryKind::kFifo: return DT_FIFO;
    case EntryKind::kSocket: return DT_SOCK;
  }
  return DT_UNKNOWN;
}

}  // namespace

class StoreLayer final : public Layer {
 public:
  StoreLayer(std::shared_ptr<const store::Store> store, std::string id, StoreLayerOptions options,
             UniqueFd manifest_fd, store::Manifest manifest)
      : store_(std::move(store)),
        id_(std::move(id)),
        describe_(store_->root() + "/layers/" + id_),
        options_(options),
        manifest_fd_(std::move(manifest_fd)),
        entries_(std::move(manifest.entries)),
        dev_(makedev(kStoreMajor, next_minor.fetch_add(1))),
        blocks_(entries_.size()) {}

  // Builds the tables; false (with *error) for a manifest whose links do not resolve.
  bool index(std::string* error);

  const std::string& describe() const override { return describe_; }
  dev_t dev() const override { return dev_; }
  Result<ObjRef> root() const override { return ref(0); }
  Result<ObjRef> lookup(const ObjRef& dir, const char* name) const override {
    auto i = child(dir, name);
    if (!i) return i.error();
    return ref(*i);
  }
  Result<struct stat> stat_at(const ObjRef& dir, const char* name) const override {
    auto i = child(dir, name);
    if (!i) return i.error();
    return stat_of(*i);
  }
  Result<bool> contains(const ObjRef& dir, const char* name) const override {
    auto i = child(dir, name);
    if (!i && i.code() != ENOENT) return i.error();
    return i.ok();
  }
  Result<struct stat> stat(const ObjRef& obj) const override {
    auto i = resolve(obj);
    if (!i) return i.error();
    return stat_of(*i);
  }
  Result<std::string> readlink(const ObjRef& obj) const override;
  Result<UniqueFd> open(const ObjRef& obj, int flags) const override;
  Status list(const ObjRef& dir, const sys::DirentFn& fn) const override;
  Result<size_t> getxattr(const ObjRef& obj, const char* name, void* buf,
                          size_t size) const override;
  Result<std::string> getxattr(const ObjRef& obj, const char* name) const override;
  Result<std::string> listxattr(const ObjRef& obj) const override;
  Result<struct statvfs> statfs() const override { return sys::fstatvfs(store_->root_fd()); }
  Result<std::string> link_key(const ObjRef& obj) const override {
    auto i = resolve(obj);
    if (!i) return i.error();
    return "s-" + id_ + "-" + std::to_string(*i + 1);
  }
  Result<std::vector<std::string>> link_names(const ObjRef& obj) const override {
    auto i = resolve(obj);
    if (!i) return i.error();
    std::vector<std::string> out;
    for (uint32_t j = 0; j < items_.size(); ++j) {
      if (items_[j].data == *i) out.push_back(entries_[j].path);
    }
    return out;
  }

 private:
  struct Item {
    uint32_t parent = 0;
    uint32_t data = 0;  // the entry whose metadata and bytes this name shows
    uint32_t nlink = 1;
    uint32_t first_child = 0;  // range in children_
    uint32_t child_count = 0;
  };

  static ObjRef ref(uint32_t i) {
    ObjRef r;
    r.entry = uint64_t{i} + 1;
    return r;
  }
  std::string_view name_of(uint32_t i) const { return store::base_name(entries_[i].path); }
  // The data entry an ObjRef stands for.
  Result<uint32_t> resolve(const ObjRef& obj) const;
  // The data entry of dir/name. ENOENT when absent, ENOTDIR when dir is not a directory.
  Result<uint32_t> child(const ObjRef& dir, std::string_view name) const;
  Result<uint32_t> child_of(uint32_t dir, std::string_view name) const;
  struct stat stat_of(uint32_t i) const;
  // The value of xattr `name` of entry i, or null.
  const std::string* find_xattr(uint32_t i, std::string_view name) const;
  // EIO when the object's bytes are not what the manifest says (size always, hash if verify).
  Status check_object(const store::Entry& e, int fd) const;

  std::shared_ptr<const store::Store> store_;
  const std::string id_;
  const std::string describe_;
  const StoreLayerOptions options_;
  UniqueFd manifest_fd_;  // locked shared (gc keeps the layer while we live)
  const std::vector<store::Entry> entries_;
  std::vector<Item> items_;
  std::vector<uint32_t> children_;
  const dev_t dev_;
  mutable std::vector<std::atomic<int64_t>> blocks_;  // 0: not known yet; else st_blocks + 1

  mutable std::mutex verify_mu_;                            // leaf
  mutable std::unordered_map<std::string, bool> verdicts_;  // GUARDED_BY(verify_mu_)
};

bool StoreLayer::index(std::string* error) {
  if (entries_.empty() || entries_[0].kind != EntryKind::kDir) {
    *error = "manifest has no root directory";
    return false;
  }
  if (entries_.size() >= UINT32_MAX) {
    *error = "manifest has too many entries";
    return false;
  }
  const auto n = static_cast<uint32_t>(entries_.size());
  items_.resize(n);
  std::unordered_map<std::string_view, uint32_t> by_path;  // views into entries_
  by_path.reserve(n);
  std::vector<uint32_t> counts(n, 0);
  for (uint32_t i = 0; i < n; ++i) {
    const store::Entry& e = entries_[i];
    by_path.emplace(e.path, i);
    items_[i].data = i;
    if (i == 0) continue;
    auto parent = by_path.find(store::parent_path(e.path));
    if (parent == by_path.end() || entries_[parent->second].kind != EntryKind::kDir) {
      *error = "entry " + e.path + " has no parent directory";
      return false;
    }
    items_[i].parent = parent->second;
    ++counts[parent->second];
    if (e.kind == EntryKind::kDir) ++items_[parent->second].nlink;
    if (e.kind == EntryKind::kHardlink) {
      auto target = by_path.find(e.target);
      if (target == by_path.end() || entries_[target->second].kind != EntryKind::kFile) {
        *error = "hard link " + e.path + " names no file";
        return false;
      }
      items_[i].data = target->second;
      ++items_[target->second].nlink;
    }
  }
  for (uint32_t i = 0; i < n; ++i) {
    if (entries_[i].kind == EntryKind::kDir) items_[i].nlink += 1;  // "." and its name
  }
  uint32_t next = 0;
  for (uint32_t i = 0; i < n; ++i) {
    items_[i].first_child = next;
    next += counts[i];
  }
  children_.resize(next);
  std::vector<uint32_t> fill(n, 0);
  for (uint32_t i = 1; i < n; ++i) {
    const Item& p = items_[items_[i].parent];
    children_[p.first_child + fill[items_[i].parent]++] = i;
  }
  // The manifest order already sorts siblings by name; sorting again costs little and keeps
  // lookups right whatever the encoder did.
  for (uint32_t i = 0; i < n; ++i) {
    auto begin = children_.begin() + items_[i].first_child;
    std::sort(begin, begin + counts[i],
              [&](uint32_t a, uint32_t b) { return name_of(a) < name_of(b); });
    items_[i].child_count = counts[i];
  }
  return true;
}

Result<uint32_t> StoreLayer::resolve(const ObjRef& obj) const {
  if (obj.named()) return child(*obj.dir, obj.name);
  if (obj.entry == 0 || obj.entry > entries_.size()) return Error{EBADF, "store object"};
  return items_[obj.entry - 1].data;
}

Result<uint32_t> StoreLayer::child(const ObjRef& dir, std::string_view name) const {
  auto d = resolve(dir);
  if (!d) return d.error();
  return child_of(*d, name);
}

Result<uint32_t> StoreLayer::child_of(uint32_t dir, std::string_view name) const {
  if (entries_[dir].kind != EntryKind::kDir) return Error{ENOTDIR, "store lookup"};
  const Item& d = items_[dir];
  auto begin = children_.begin() + d.first_child;
  auto end = begin + d.child_count;
  auto it = std::lower_bound(begin, end, name,
                             [&](uint32_t c, std::string_view n) { return name_of(c) < n; });
  if (it == end || name_of(*it) != name) return Error{ENOENT, "store lookup"};
  return items_[*it].data;
}

struct stat StoreLayer::stat_of(uint32_t i) const {
  const store::Entry& e = entries_[i];
  const Item& item = items_[i];
  struct stat st {};
  st.st_dev = dev_;
  st.st_ino = i + 1;
  st.st_mode = e.st_mode();
  st.st_nlink = item.nlink;
  st.st_uid = e.uid;
  st.st_gid = e.gid;
  st.st_mtim.tv_sec = e.mtime_sec;
  st.st_mtim.tv_nsec = e.mtime_nsec;
  st.st_atim = st.st_mtim;
  st.st_ctim = st.st_mtim;
  st.st_blksize = 4096;
  switch (e.kind) {
    case EntryKind::kFile: {
      st.st_size = static_cast<off_t>(e.size);
      // The object's real blocks (sparse files stay small in du), stat'ed once.
      int64_t known = blocks_[i].load(std::memory_order_relaxed);
      if (known == 0) {
        auto ost = store_->stat_object(e.object);
        known = 1 + (ost ? ost->st_blocks : static_cast<int64_t>((e.size + 511) / 512));
        blocks_[i].store(known, std::memory_order_relaxed);
      }
      st.st_blocks = known - 1;
      break;
    }
    case EntryKind::kSymlink: st.st_size = static_cast<off_t>(e.target.size()); break;
    case EntryKind::kDir: st.st_size = 4096; break;
    case EntryKind::kChar:
    case EntryKind::kBlock: st.st_rdev = makedev(e.rdev_major, e.rdev_minor); break;
    default: break;  // a whiteout is char 0/0: st_rdev stays 0
  }
  if (e.kind == EntryKind::kDir) st.st_blocks = 8;
  return st;
}

Result<std::string> StoreLayer::readlink(const ObjRef& obj) const {
  auto i = resolve(obj);
  if (!i) return i.error();
  if (entries_[*i].kind != EntryKind::kSymlink) return Error{EINVAL, "readlink"};
  return entries_[*i].target;
}

Result<UniqueFd> StoreLayer::open(const ObjRef& obj, int flags) const {
  auto i = resolve(obj);
  if (!i) return i.error();
  const store::Entry& e = entries_[*i];
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) return Error{EROFS, "open(store)"};
  // Union code reads directories through list() and opens only upper ones for fsync: a store
  // directory has no descriptor to give.
  if (e.kind == EntryKind::kDir) return Error{EISDIR, "open(store directory)"};
  if (e.kind != EntryKind::kFile) return Error{ENXIO, "open(store)"};
  if (flags & O_DIRECTORY) return Error{ENOTDIR, "open(store)"};
  // O_DIRECT is dropped: objects never change, the page cache serves them best, and direct
  // I/O would impose alignment on the splice path.
  auto fd = store_->open_object(e.object, O_RDONLY | (flags & (O_NOATIME | O_NONBLOCK)));
  if (!fd) {
    if (fd.code() == ENOENT) {
      log::error("layer {}: object {} of {} is missing from the store", id_, e.object, e.path);
      return Error{EIO, "open(store object missing)"};
    }
    return fd.error();
  }
  if (Status s = check_object(e, fd->get()); !s) return s.error();
  return fd;
}

Status StoreLayer::check_object(const store::Entry& e, int fd) const {
  auto st = sys::fstat(fd);
  if (!st) return st.error();
  if (static_cast<uint64_t>(st->st_size) != e.size) {
    log::error("layer {}: object {} of {} has {} bytes, the manifest says {}", id_, e.object,
               e.path, st->st_size, e.size);
    return Error{EIO, "store object size"};
  }
  if (!options_.verify) return {};
  {
    std::lock_guard lock(verify_mu_);
    auto it = verdicts_.find(e.object);
    if (it != verdicts_.end())
      return it->second ? Status{} : Status{Error{EIO, "store object hash"}};
  }
  // Hashed outside the lock: two first opens may both hash, and agree.
  auto h = hash_fd(fd);
  if (!h) return h.error();
  const bool good = h->hex() == std::string_view(e.object).substr(0, 32);
  if (!good) {
    log::error("layer {}: object {} of {} does not match its hash (read {}): corrupted", id_,
               e.object, e.path, h->hex());
  }
  std::lock_guard lock(verify_mu_);
  verdicts_.emplace(e.object, good);
  return good ? Status{} : Status{Error{EIO, "store object hash"}};
}

Status StoreLayer::list(const ObjRef& dir, const sys::DirentFn& fn) const {
  auto d = resolve(dir);
  if (!d) return d.error();
  if (entries_[*d].kind != EntryKind::kDir) return Error{ENOTDIR, "store readdir"};
  const Item& item = items_[*d];
  for (uint32_t k = 0; k < item.child_count; ++k) {
    uint32_t c = children_[item.first_child + k];
    if (Status s = fn(name_of(c), dtype_of(entries_[c].kind), items_[c].data + 1); !s) return s;
  }
  return {};
}

const std::string* StoreLayer::find_xattr(uint32_t i, std::string_view name) const {
  static const std::string kYes = "y";
  const store::Entry& e = entries_[i];
  if (e.opaque && name == kOpaqueXattr) return &kYes;
  for (const auto& [n, v] : e.xattrs) {
    if (n == name) return &v;
  }
  return nullptr;
}

Result<size_t> StoreLayer::getxattr(const ObjRef& obj, const char* name, void* buf,
                                    size_t size) const {
  auto i = resolve(obj);
  if (!i) return i.error();
  const std::string* v = find_xattr(*i, name);
  if (v == nullptr) return Error{ENODATA, "getxattr"};
  if (size == 0) return v->size();
  if (v->size() > size) return Error{ERANGE, "getxattr"};
  std::memcpy(buf, v->data(), v->size());
  return v->size();
}

Result<std::string> StoreLayer::getxattr(const ObjRef& obj, const char* name) const {
  auto i = resolve(obj);
  if (!i) return i.error();
  const std::string* v = find_xattr(*i, name);
  if (v == nullptr) return Error{ENODATA, "getxattr"};
  return *v;
}

Result<std::string> StoreLayer::listxattr(const ObjRef& obj) const {
  auto i = resolve(obj);
  if (!i) return i.error();
  const store::Entry& e = entries_[*i];
  std::string out;
  if (e.opaque) {
    out.append(kOpaqueXattr);
    out.push_back('\0');
  }
  for (const auto& [n, v] : e.xattrs) {
    if (e.opaque && n == kOpaqueXattr) continue;
    out.append(n);
    out.push_back('\0');
  }
  return out;
}

std::unique_ptr<Layer> open_store_layer(std::shared_ptr<const store::Store> store,
                                        const std::string& id, StoreLayerOptions options,
                                        std::string* error) {
  if (!store::Store::valid_layer_id(id)) {
    *error = "'" + id + "' is not a layer id";
    return nullptr;
  }
  // Locked before it is read: gc cannot remove it between the two.
  auto fd = store->open_manifest(id);
  if (!fd) {
    *error = "layer " + id + ": " +
             (fd.code() == ENOENT ? std::string("not in the store") : fd.error().message());
    return nullptr;
  }
  if (Status s = sys::flock(fd->get(), LOCK_SH); !s) {
    *error = "layer " + id + ": cannot lock its manifest: " + s.error().message();
    return nullptr;
  }
  store::Manifest manifest;
  if (!store->read_manifest(id, &manifest, error)) return nullptr;
  auto layer = std::make_unique<StoreLayer>(std::move(store), id, options, std::move(*fd),
                                            std::move(manifest));
  std::string why;
  if (!layer->index(&why)) {
    *error = "layer " + id + ": " + why;
    return nullptr;
  }
  return layer;
}

}  // namespace lamina::core
