// SPDX-License-Identifier: Apache-2.0
// Copy-up: giving a lower object an upper copy before its first change.
//
// Design. The copy is built in the work dir under a fresh temp name -- data (FICLONE, then
// copy_file_range over data extents, then read/write; holes stay holes), owner, xattrs
// (security.capability included; overlay's own are not copied), permission bits, times --
// its data fsynced unless fsync=0/volatile, and published into the upper by one renameat2
// (RENAME_NOREPLACE). A crash at any instant leaves either no upper copy or a complete one;
// a leftover temp file in the work dir is removed at the next mount. Metadata-only copies and
// directories are not synced (the journal orders them with the rename); the next fsync of the
// node syncs the parents whose names changed (UnionFs::sync).
//
// Parents first: upper_dir() makes the parent chain exist in the upper (as plain, non-opaque
// directories with the lower's metadata, so they merge), each under the node's copy_mu_,
// child before parent. No lock is held that other lookups or reads need: a copy-up of a
// 1 GiB file blocks only operations that want to copy up the same node.
//
// A node may be stale (the kernel forgot it while a child kept it as parent, and a newer node
// for the same directory did the copy-up): upper_dir() then adopts the directory it finds.

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "lamina/base/log.h"
#include "lamina/base/sys.h"
#include "lamina/core/overlay_format.h"
#include "lamina/core/union_fs.h"

namespace lamina::core {
namespace {

// Owner, xattrs, `mode` (st's, or a chmod's) and times of `st`/src onto work/tmp, in the
// order that keeps them:
// chown clears setuid bits and security.capability, so it comes first.
Status copy_metadata(const Layer& layer, const ObjRef& src, const struct stat& st, int work_fd,
                     const std::string& tmp, int tmp_fd, mode_t mode) {
  if (Status s = sys::fchownat(work_fd, tmp.c_str(), st.st_uid, st.st_gid); !s) return s;
  auto names = layer.listxattr(src);
  if (!names && names.code() != EOPNOTSUPP) return names.error();
  if (names) {
    std::string_view all = *names;
    for (size_t pos = 0; pos < all.size();) {
      size_t end = all.find('\0', pos);
      if (end == std::string_view::npos) end = all.size();
      std::string name(all.substr(pos, end - pos));
      pos = end + 1;
      if (name.empty() || overlay::is_private_xattr(name)) continue;
      auto value = layer.getxattr(src, name.c_str());
      if (!value) {
        if (value.code() == ENODATA) continue;
        return value.error();
      }
      Status s = sys::fsetxattr(tmp_fd, name.c_str(), value->data(), value->size(), 0);
      if (!s) {
        // A symlink cannot carry user.* xattrs and some filesystems refuse some namespaces:
        // the lower could not have had them either through a local mount; skip with a note.
        if (s.code() == EPERM || s.code() == EOPNOTSUPP) {
          log::warn("copy-up: xattr {} not copied: {}", name, s.error().message());
          continue;
        }
        return s;
      }
    }
  }
  if (!S_ISLNK(st.st_mode)) {
    if (Status s = sys::fchmod_path(tmp_fd, mode & 07777); !s) return s;
  }
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  return sys::utimensat(work_fd, tmp.c_str(), times);
}

// Durability for a directory entry change.
Status sync_dir(int dir_fd) {
  auto fd = sys::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY);
  if (!fd) return fd.error();
  return sys::fsync(fd->get());
}

}  // namespace

std::string UnionFs::temp_name() {
  return "#lamina-" + std::to_string(::getpid()) + "-" +
         std::to_string(temp_counter_.fetch_add(1, std::memory_order_relaxed));
}

Result<std::shared_ptr<const ObjRef>> UnionFs::upper_dir(Node* dir) {
  {
    auto parts = dir->parts();
    if (is_upper(parts->front())) return parts->front().obj;
  }
  if (config_.read_only) return Error{EROFS, "copy-up"};
  std::lock_guard copy_lock(dir->copy_mu_);
  auto parts = dir->parts();
  if (is_upper(parts->front())) return parts->front().obj;
  std::shared_ptr<Node> parent = dir->parent();
  std::string name = dir->name();
  if (!parent) return Error{EIO, "copy-up(root without upper)"};
  auto parent_up = upper_dir(parent.get());
  if (!parent_up) return parent_up.error();
  PathFd up_fd(**parent_up);
  if (!up_fd.ok()) return up_fd.error();
  const int up = up_fd.get();

  auto existing = open_path_shedding(up, name.c_str());
  struct stat dir_st {};
  if (existing) {
    auto st = sys::fstat(existing->get());
    if (!st) return st.error();
    if (!S_ISDIR(st->st_mode)) return Error{EIO, "copy-up(upper is not a directory)"};
    dir_st = *st;
  } else {
    if (existing.code() != ENOENT) return existing.error();
    const Part& src = parts->front();
    const Layer& layer = *layers_[src.layer];
    auto st = layer.stat(*src.obj);
    if (!st) return st.error();
    std::string tmp = temp_name();
    int wfd = work_fd_.get();
    if (Status s = sys::mkdirat(wfd, tmp.c_str(), 0700); !s) return s.error();
    auto tmp_fd = open_path_shedding(wfd, tmp.c_str());
    Status s = tmp_fd ? copy_metadata(layer, *src.obj, *st, wfd, tmp, tmp_fd->get(), st->st_mode)
                      : Status{tmp_fd.error()};
    if (s) {
      auto made = sys::fstat(tmp_fd->get());
      s = made ? Status{} : Status{made.error()};
      if (made) dir_st = *made;
    }
    if (s) s = sys::renameat2(wfd, tmp.c_str(), up, name.c_str(), RENAME_NOREPLACE);
    if (!s) {
      (void)sys::unlinkat(wfd, tmp.c_str(), AT_REMOVEDIR);
      return s.error();
    }
    dir->unsynced_name_ = true;
    existing = std::move(tmp_fd);
  }
  PartList next;
  next.push_back(Part{0, false, false,
                      std::make_shared<ObjRef>(*parent_up, name, std::move(*existing), dir_st)});
  for (const Part& p : *parts) next.push_back(p);
  auto obj = next.front().obj;
  set_parts(dir, std::move(next));
  return obj;
}

Status UnionFs::mark_impure(Node* dir, const std::shared_ptr<const ObjRef>& up) {
  auto same = [&] {
    return !dir->impure_dir_.owner_before(up) && !up.owner_before(dir->impure_dir_);
  };
  {
    std::lock_guard lock(dir->mu_);
    if (same()) return {};
  }
  PathFd up_fd(*up);
  if (!up_fd.ok()) return up_fd.error();
  if (Status s = overlay::set_impure(up_fd.get(), xattr_prefix_); !s) return s;
  std::lock_guard lock(dir->mu_);
  dir->impure_dir_ = up;
  return {};
}

Status UnionFs::copy_up(Node* node, bool data, std::optional<mode_t> mode, bool* mode_set) {
  if (mode_set != nullptr) *mode_set = false;
  if (config_.read_only) return Error{EROFS, "copy-up"};
  {
    auto parts = node->parts();
    // An index entry is the group's upper inode already: changes go to it as they are.
    if (parts->front().indexed) return {};
    if (is_upper(parts->front())) {
      return data && parts->size() > 1 && !node->is_dir() ? copy_up_data(node) : Status{};
    }
  }
  if (node->is_dir()) {
    auto up = upper_dir(node);
    return up ? Status{} : Status{up.error()};
  }
  // The name's lock first: an unlink or rename of the name comes wholly before the copy-up (it
  // finds the name removed) or after (it finds the node naming its upper part, to pin it).
  std::unique_lock name_lock(name_mu(node->name()));
  std::unique_lock copy_lock(node->copy_mu_);
  auto parts = node->parts();
  if (is_upper(parts->front())) {
    copy_lock.unlock();
    name_lock.unlock();
    if (parts->front().indexed) return {};
    return data && parts->size() > 1 ? copy_up_data(node) : Status{};
  }
  std::shared_ptr<Node> parent = node->parent();
  std::string name = node->name();
  if (!parent) return Error{EIO, "copy-up(no parent)"};
  auto parent_up = upper_dir(parent.get());
  if (!parent_up) return parent_up.error();
  PathFd up_fd(**parent_up);
  if (!up_fd.ok()) return up_fd.error();
  const int up = up_fd.get();

  const Part& src = parts->front();
  const Layer& layer = *layers_[src.layer];
  auto st = layer.stat(*src.obj);
  if (!st) return st.error();
  const std::string tmp = temp_name();
  const int wfd = work_fd_.get();
  // Metadata only (chmod, chown, utimens, xattrs): a sparse file of the right size marked
  // metacopy; the data stays below until the first write.
  // A lower hard link goes whole into the index too, so its other names find it there.
  std::string key;
  if (S_ISREG(st->st_mode) && st->st_nlink > 1 && index_fd_.valid()) {
    auto k = index_key(src);
    if (k) key = std::move(*k);
  }
  const bool meta_only =
      !data && config_.metacopy && key.empty() && S_ISREG(st->st_mode) && st->st_size > 0;
  UniqueFd data_fd;
  Status s;
  switch (st->st_mode & S_IFMT) {
    case S_IFREG: {
      auto out = sys::openat(wfd, tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
      if (!out) return out.error();
      data_fd = std::move(*out);
      if (meta_only) {
        s = sys::ftruncate(data_fd.get(), st->st_size);
      } else {
        auto in = layer.open(*src.obj, O_RDONLY);
        s = in ? sys::copy_data(in->get(), data_fd.get(), st->st_size) : Status{in.error()};
      }
      break;
    }
    case S_IFLNK: {
      auto target = layer.readlink(*src.obj);
      if (!target) return target.error();
      s = sys::symlinkat(target->c_str(), wfd, tmp.c_str());
      if (!s) return s;
      break;
    }
    default:
      s = sys::mknodat(wfd, tmp.c_str(), (st->st_mode & S_IFMT) | 0600, st->st_rdev);
      if (!s) return s;
      break;
  }
  // Metadata goes through the data descriptor of a file (no /proc lookup per call), else
  // through an O_PATH descriptor (kept as the part of a hard-link group's copy).
  UniqueFd tmp_fd;
  if (s && (!data_fd.valid() || !key.empty())) {
    auto opened = sys::open_path(wfd, tmp.c_str());
    if (opened) {
      tmp_fd = std::move(*opened);
    } else {
      s = opened.error();
    }
  }
  const int meta_fd = data_fd.valid() ? data_fd.get() : tmp_fd.get();
  const bool set_mode = mode.has_value() && !S_ISLNK(st->st_mode);
  if (s) s = copy_metadata(layer, *src.obj, *st, wfd, tmp, meta_fd, set_mode ? *mode : st->st_mode);
  if (s && meta_only) s = overlay::set_metacopy(meta_fd, xattr_prefix_);
  // The number it showed goes with it, and the directory learns it holds such entries.
  if (s && !S_ISLNK(st->st_mode)) s = overlay::set_origin_ino(meta_fd, xattr_prefix_, node->ino);
  if (s) s = mark_impure(parent.get(), *parent_up);
  if (s && !key.empty()) {
    // Shown: the lower group's count; real: the index and this name.
    s = overlay::set_nlink_offset(meta_fd, xattr_prefix_, static_cast<int>(st->st_nlink) - 2);
  }
  // Copied data must be on disk before the name shows it (a crash must never publish a file
  // whose data did not make it); a metadata-only copy has none, and the filesystem's journal
  // keeps its metadata in order with the rename.
  if (s && config_.fsync && data_fd.valid() && !meta_only) s = sys::fsync(data_fd.get());
  if (s && !key.empty()) {
    s = sys::linkat(wfd, tmp.c_str(), index_fd_.get(), key.c_str(), 0);
    if (s && config_.fsync) s = sync_dir(index_fd_.get());
  }
  if (s) {
    // Unlinked while this node was being opened: the file is gone, as for a later lookup. A
    // whiteout device at the name fails the rename below; a ".wh.NAME" file would not.
    std::string wh = std::string(overlay::kWhiteoutPrefix) + name;
    auto removed = wh.size() <= NAME_MAX ? sys::exists_at(up, wh.c_str()) : Result<bool>(false);
    if (!removed) {
      s = removed.error();
    } else if (*removed) {
      s = Error{ENOENT, "copy-up(name removed)"};
    }
  }
  if (s) s = sys::renameat2(wfd, tmp.c_str(), up, name.c_str(), RENAME_NOREPLACE);
  if (!s && s.code() == EEXIST) {
    // A newer node for the same name (this one went stale) copied it up first: the upper
    // object there is what the name shows now; adopt it and drop our copy.
    (void)sys::unlinkat(wfd, tmp.c_str(), 0);
    auto theirs = sys::open_path(up, name.c_str());
    if (!theirs) return theirs.error();
    auto tst = sys::fstat(theirs->get());
    if (!tst) return tst.error();
    if (overlay::is_whiteout_device(*tst)) return Error{ENOENT, "copy-up(name removed)"};
    if ((tst->st_mode & S_IFMT) != (st->st_mode & S_IFMT)) return Error{EEXIST, "copy-up"};
    PartList adopted{Part{0, false, false, std::make_shared<ObjRef>(*parent_up, name)}};
    auto marks = overlay::file_marks(*layers_[0], *adopted.front().obj);
    if (!marks) return marks.error();
    // Only a copy of this same object (it records our number): another file renamed or
    // created onto the name since this node was looked up means ours left the namespace.
    if (!S_ISLNK(st->st_mode) && marks->ino != node->ino) {
      return Error{ENOENT, "copy-up(name reused)"};
    }
    if (marks->metacopy) adopted.push_back(src);  // their copy is metadata only
    set_parts(node, std::move(adopted));
    copy_lock.unlock();
    return data ? copy_up_data(node) : Status{};
  }
  if (!s) {
    (void)sys::unlinkat(wfd, tmp.c_str(), 0);
    return s;
  }
  node->unsynced_name_ = true;
  if (mode_set != nullptr) *mode_set = set_mode;
  PartList next;
  // Named by its directory: a cached file holds no descriptor (a hard-link group's copy,
  // with several names, keeps one).
  if (key.empty()) {
    next.push_back(Part{0, false, false, std::make_shared<ObjRef>(*parent_up, name)});
  } else {
    next.push_back(Part{0, false, false, std::make_shared<ObjRef>(std::move(tmp_fd))});
  }
  if (meta_only) next.push_back(src);
  set_parts(node, std::move(next));
  return {};
}

// The data of a metacopy goes into the upper file in place: the mark is dropped only after the
// data is complete (and fsynced), so a crash leaves a metacopy whose data still comes from
// below -- never a file with partial data. Times are put back as they were.
Status UnionFs::copy_up_data(Node* node) {
  std::lock_guard copy_lock(node->copy_mu_);
  auto parts = node->parts();
  if (parts->size() < 2 || node->is_dir()) return {};
  const Part& upper = parts->front();
  const Part& lower = parts->back();
  auto ust = layers_[upper.layer]->stat(*upper.obj);
  if (!ust) return ust.error();
  auto lst = layers_[lower.layer]->stat(*lower.obj);
  if (!lst) return lst.error();
  auto in = layers_[lower.layer]->open(*lower.obj, O_RDONLY);
  if (!in) return in.error();
  auto out = layers_[0]->open(*upper.obj, O_WRONLY);
  if (!out) return out.error();
  if (Status s = sys::copy_data(in->get(), out->get(), lst->st_size); !s) return s;
  if (config_.fsync) {
    if (Status s = sys::fsync(out->get()); !s) return s;
  }
  const struct timespec times[2] = {ust->st_atim, ust->st_mtim};
  PathFd ufd(*upper.obj);
  if (!ufd.ok()) return ufd.error();
  if (Status s = sys::utimensat(ufd.get(), "", times); !s) return s;
  if (Status s = overlay::clear_metacopy(ufd.get(), xattr_prefix_); !s) return s;
  set_parts(node, PartList{upper});
  return {};
}

Result<std::string> UnionFs::index_key(const Part& lower) const {
  // Asked of the layer: a store layer's objects have no descriptor to take a handle of.
  return layers_[lower.layer]->link_key(*lower.obj);
}

Status UnionFs::adjust_nlink(int fd, int delta) {
  auto offset = overlay::nlink_offset(*layers_[0], ObjRef(UniqueFd(::dup(fd))));
  if (!offset) return offset.error();
  return overlay::set_nlink_offset(fd, xattr_prefix_, offset->value_or(0) + delta);
}

// A name of a lower hard-link group whose upper inode already sits in the index gets its own
// upper link (no data copied): rename needs a name in the upper to move.
Status UnionFs::link_up_name(Node* parent, const std::string& name, const Part& indexed) {
  auto up = upper_dir(parent);
  if (!up) return up.error();
  PathFd obj(*indexed.obj);
  if (!obj.ok()) return obj.error();
  PathFd up_fd(**up);
  if (!up_fd.ok()) return up_fd.error();
  const std::string proc = sys::proc_fd_path(obj.get());
  if (Status s = sys::linkat(AT_FDCWD, proc.c_str(), up_fd.get(), name.c_str(), AT_SYMLINK_FOLLOW);
      !s)
    return s;
  // One more real link, the same number shown.
  return adjust_nlink(obj.get(), -1);
}

Result<bool> UnionFs::exists_below(Node* parent, const std::string& name) {
  auto parts = parent->parts();
  auto below = resolve(*parts, name.c_str(), true);
  if (!below) return below.error();
  return !below->empty();
}

}  // namespace lamina::core

namespace lamina::core {

// open(O_TRUNC) of a metacopy: no data to bring up. Truncating first and dropping the mark
// second means a crash in between shows the old (lower) data, never a torn file.
Status UnionFs::truncate_metacopy(Node* node) {
  std::lock_guard copy_lock(node->copy_mu_);
  auto parts = node->parts();
  if (parts->size() < 2 || node->is_dir() || !is_upper(parts->front())) return {};
  const Part& upper = parts->front();
  auto out = layers_[0]->open(*upper.obj, O_WRONLY);
  if (!out) return out.error();
  if (Status s = sys::ftruncate(out->get(), 0); !s) return s;
  PathFd ufd(*upper.obj);
  if (!ufd.ok()) return ufd.error();
  if (Status s = overlay::clear_metacopy(ufd.get(), xattr_prefix_); !s) return s;
  set_parts(node, PartList{upper});
  return {};
}

}  // namespace lamina::core
