// SPDX-License-Identifier: Apache-2.0
// The write path: every change lands in the upper layer, in kernel overlayfs's format.
//
// New objects are made directly in the upper directory when nothing needs replacing, and in
// the work dir (then renamed into place) when a whiteout sits at the name: a non-directory
// replaces the whiteout with one rename; a directory, which cannot be renamed over a device,
// is exchanged with it (RENAME_EXCHANGE) and then the whiteout is removed from the work dir.
// A directory made over a whiteout is opaque.
//
// Removing a name that also exists below leaves a whiteout: for an upper object the object
// is swapped for a fresh whiteout in one RENAME_EXCHANGE, so no crash can bring the lower
// object back; rootless mounts (no mknod) write ".wh.NAME" first, then remove the object.
//
// Rename moves the upper copy (the source is copied up first; a directory only its top
// level). A directory with lower parts gets an overlay.redirect naming where its lower parts
// live (as kernel overlayfs with redirect_dir=on), so renaming a lower directory is O(1);
// a pure upper directory moved onto a name with something below is made opaque. The old name
// gets a whiteout atomically (RENAME_WHITEOUT) when something lies below it.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "lamina/base/sys.h"
#include "lamina/core/overlay_format.h"
#include "lamina/core/union_fs.h"

namespace lamina::core {
namespace {

bool valid_new_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

Status check_name(std::string_view name) {
  if (!valid_new_name(name)) return Error{EINVAL, "name"};
  if (name.size() > 255) return Error{ENAMETOOLONG, "name"};
  // ".wh.*" names are the format's own: refused rather than silently turned into whiteouts.
  if (overlay::is_reserved_name(name)) return Error{EPERM, "reserved .wh. name"};
  return {};
}

}  // namespace

Result<Node*> UnionFs::mknod(Node* parent, std::string_view name, mode_t mode, dev_t rdev,
                             const Caller& caller) {
  return make_object(parent, name, mode, rdev, {}, caller, nullptr, 0);
}

Result<Node*> UnionFs::mkdir(Node* parent, std::string_view name, mode_t mode,
                             const Caller& caller) {
  return make_object(parent, name, S_IFDIR | (mode & 07777), 0, {}, caller, nullptr, 0);
}

Result<Node*> UnionFs::symlink(Node* parent, std::string_view name, const std::string& target,
                               const Caller& caller) {
  return make_object(parent, name, S_IFLNK | 0777, 0, target, caller, nullptr, 0);
}

Result<std::pair<Node*, UniqueFd>> UnionFs::create(Node* parent, std::string_view name, mode_t mode,
                                                   int flags, const Caller& caller) {
  UniqueFd fd;
  auto node = make_object(parent, name, S_IFREG | (mode & 07777), 0, {}, caller, &fd, flags);
  if (!node) return node.error();
  return std::pair<Node*, UniqueFd>{*node, std::move(fd)};
}

Result<Node*> UnionFs::make_object(Node* parent, std::string_view name, mode_t mode, dev_t rdev,
                                   const std::string& target, const Caller& caller,
                                   UniqueFd* out_fd, int flags) {
  if (config_.read_only) return Error{EROFS, "create"};
  if (!parent->is_dir()) return Error{ENOTDIR, "create"};
  if (Status s = check_name(name); !s) return s.error();
  const std::string cname(name);
  auto existing = resolve(*parent->parts(), cname.c_str(), false);
  if (!existing) return existing.error();
  if (!existing->empty()) return Error{EEXIST, "create"};
  auto up = upper_dir(parent);
  if (!up) return up.error();
  PathFd up_fd(**up);
  if (!up_fd.ok()) return up_fd.error();
  const int dir_fd = up_fd.get();

  // Owner: the caller, through the id mapping; a setgid directory passes on its group.
  auto pst = getattr(parent);
  if (!pst) return pst.error();
  uid_t uid = config_.uid_map.to_disk(caller.uid).value_or(caller.uid);
  gid_t gid = config_.gid_map.to_disk(caller.gid).value_or(caller.gid);
  if (pst->st_mode & S_ISGID) {
    auto real = layers_[0]->stat(**up);
    if (real) gid = real->st_gid;
    if (S_ISDIR(mode)) mode |= S_ISGID;
  }

  auto whiteout = overlay::has_whiteout(dir_fd, cname);
  if (!whiteout) return whiteout.error();
  const bool over_whiteout = *whiteout;
  // Where the object is first made: in place, or in the work dir when something must be
  // replaced atomically.
  const int make_fd = over_whiteout ? work_fd_.get() : dir_fd;
  const std::string make_name = over_whiteout ? temp_name() : cname;
  const mode_t perm = mode & 07777;

  UniqueFd file;
  Status s;
  switch (mode & S_IFMT) {
    case S_IFREG: {
      int acc = (flags & O_ACCMODE) == O_RDONLY ? O_RDWR : (flags & O_ACCMODE);
      auto fd = sys::openat(make_fd, make_name.c_str(),
                            O_CREAT | O_EXCL | acc | (flags & (O_APPEND | O_DIRECT)), perm);
      if (!fd) return fd.error();
      file = std::move(*fd);
      break;
    }
    case S_IFDIR: s = sys::mkdirat(make_fd, make_name.c_str(), perm); break;
    case S_IFLNK: s = sys::symlinkat(target.c_str(), make_fd, make_name.c_str()); break;
    default: s = sys::mknodat(make_fd, make_name.c_str(), mode, rdev); break;
  }
  if (!s) return s.error();
  auto undo = [&] {
    (void)sys::unlinkat(make_fd, make_name.c_str(), S_ISDIR(mode) ? AT_REMOVEDIR : 0);
  };
  s = sys::fchownat(make_fd, make_name.c_str(), uid, gid);
  // chown clears setuid/setgid bits: put the permission bits back (not on symlinks).
  if (s && !S_ISLNK(mode) && (perm & (S_ISUID | S_ISGID))) {
    auto pfd = sys::open_path(make_fd, make_name.c_str());
    s = pfd ? sys::fchmod_path(pfd->get(), perm) : Status{pfd.error()};
  }
  if (s && over_whiteout) {
    if (S_ISDIR(mode)) {
      auto dfd = sys::open_path(make_fd, make_name.c_str());
      s = dfd ? overlay::set_opaque(dfd->get(), xattr_prefix_) : Status{dfd.error()};
      if (!s && s.code() == EPERM) {
        // No right to write overlay xattrs (rootless): the opaque marker file does it.
        s = overlay::write_whiteout(dfd->get(), ".wh..opq", false);
      }
    }
    if (s) s = replace_whiteout(make_name, dir_fd, cname, S_ISDIR(mode));
  }
  if (!s) {
    undo();
    return s.error();
  }
  auto parts = resolve(*parent->parts(), cname.c_str(), false);
  if (!parts) return parts.error();
  if (parts->empty()) return Error{EIO, "create(vanished)"};
  auto node = publish(parent, cname, std::move(*parts));
  if (node && out_fd) *out_fd = std::move(file);
  return node;
}

Status UnionFs::replace_whiteout(const std::string& tmp, int dir_fd, const std::string& name,
                                 bool is_dir) {
  const int wfd = work_fd_.get();
  auto dev = sys::fstatat(dir_fd, name.c_str());
  if (dev && overlay::is_whiteout_device(*dev)) {
    if (!is_dir) return sys::renameat2(wfd, tmp.c_str(), dir_fd, name.c_str(), 0);
    if (Status s = sys::renameat2(wfd, tmp.c_str(), dir_fd, name.c_str(), RENAME_EXCHANGE); !s)
      return s;
    (void)sys::unlinkat(wfd, tmp.c_str(), 0);  // the whiteout, now in the work dir
    return {};
  }
  // ".wh.NAME": put the object in place, then drop the marker (both present means the object).
  if (Status s = sys::renameat2(wfd, tmp.c_str(), dir_fd, name.c_str(), RENAME_NOREPLACE); !s)
    return s;
  std::string wh = std::string(overlay::kWhiteoutPrefix) + name;
  Status u = sys::unlinkat(dir_fd, wh.c_str(), 0);
  if (!u && u.code() != ENOENT) return u;
  return {};
}

Result<Node*> UnionFs::link(Node* node, Node* new_parent, std::string_view new_name) {
  if (config_.read_only) return Error{EROFS, "link"};
  if (node->is_dir()) return Error{EPERM, "link(directory)"};
  if (Status s = check_name(new_name); !s) return s.error();
  const std::string cname(new_name);
  auto existing = resolve(*new_parent->parts(), cname.c_str(), false);
  if (!existing) return existing.error();
  if (!existing->empty()) return Error{EEXIST, "link"};
  if (Status s = copy_up(node); !s) return s.error();
  auto up = upper_dir(new_parent);
  if (!up) return up.error();
  PathFd up_fd(**up);
  if (!up_fd.ok()) return up_fd.error();
  const int dir_fd = up_fd.get();
  auto src = node->parts()->front().obj;
  // Through the magic link: works without CAP_DAC_READ_SEARCH (unlike AT_EMPTY_PATH).
  PathFd src_fd(*src);
  if (!src_fd.ok()) return src_fd.error();
  const std::string proc = sys::proc_fd_path(src_fd.get());
  auto whiteout = overlay::has_whiteout(dir_fd, cname);
  if (!whiteout) return whiteout.error();
  if (*whiteout) {
    std::string tmp = temp_name();
    if (Status s =
            sys::linkat(AT_FDCWD, proc.c_str(), work_fd_.get(), tmp.c_str(), AT_SYMLINK_FOLLOW);
        !s)
      return s.error();
    if (Status s = replace_whiteout(tmp, dir_fd, cname, false); !s) {
      (void)sys::unlinkat(work_fd_.get(), tmp.c_str(), 0);
      return s.error();
    }
  } else if (Status s =
                 sys::linkat(AT_FDCWD, proc.c_str(), dir_fd, cname.c_str(), AT_SYMLINK_FOLLOW);
             !s) {
    return s.error();
  }
  auto parts = resolve(*new_parent->parts(), cname.c_str(), false);
  if (!parts) return parts.error();
  if (parts->empty()) return Error{EIO, "link(vanished)"};
  // Two names now: the node holds a descriptor rather than one of the names.
  set_parts(node, *parts);
  return publish(new_parent, cname, std::move(*parts));
}

Status UnionFs::remove_name(Node* parent, const std::string& name, const PartList& parts,
                            bool is_dir) {
  auto up = upper_dir(parent);
  if (!up) return up.error();
  PathFd up_fd(**up);
  if (!up_fd.ok()) return up_fd.error();
  const int dir_fd = up_fd.get();
  const int wfd = work_fd_.get();
  const bool in_upper = has_upper_name(parts.front());
  if (in_upper) pin(parts.front());
  if (parts.front().indexed) {
    // One name fewer shown for the group; its index entry stays for the others.
    PathFd fd(*parts.front().obj);
    if (!fd.ok()) return fd.error();
    if (Status s = adjust_nlink(fd.get(), -1); !s) return s;
  }
  if (in_upper && is_dir) {
    // Whiteouts inside an upper directory that looks empty go first.
    PathFd fd(*parts.front().obj);
    if (!fd.ok()) return fd.error();
    if (Status s = overlay::clear_whiteouts(fd.get()); !s) return s;
  }
  if (!in_upper) return make_whiteout(dir_fd, name);  // the object itself is below
  auto below = exists_below(parent, name);
  if (!below) return below.error();
  if (!*below) return sys::unlinkat(dir_fd, name.c_str(), is_dir ? AT_REMOVEDIR : 0);
  if (whiteout_devices_) {
    std::string tmp = temp_name();
    if (Status s = make_whiteout(wfd, tmp); !s) return s;
    if (Status s = sys::renameat2(wfd, tmp.c_str(), dir_fd, name.c_str(), RENAME_EXCHANGE); !s) {
      (void)sys::unlinkat(wfd, tmp.c_str(), 0);
      return s;
    }
    return sys::unlinkat(wfd, tmp.c_str(), is_dir ? AT_REMOVEDIR : 0);
  }
  if (Status s = overlay::write_whiteout(dir_fd, name, false); !s) return s;
  return sys::unlinkat(dir_fd, name.c_str(), is_dir ? AT_REMOVEDIR : 0);
}

Status UnionFs::make_whiteout(int dir_fd, const std::string& name) {
  if (!whiteout_devices_) return overlay::write_whiteout(dir_fd, name, false);
  std::lock_guard lock(whiteout_mu_);
  // Two rounds: a shared inode at the link limit (EMLINK) is replaced by a fresh one once.
  for (int round = 0; share_whiteouts_ && round < 2; ++round) {
    if (shared_whiteout_.empty()) {
      std::string fresh = "#lamina-whiteout-" + temp_name().substr(sizeof "#lamina-" - 1);
      if (Status s = overlay::write_whiteout(work_fd_.get(), fresh, true); !s) return s;
      shared_whiteout_ = std::move(fresh);
    }
    Status s = sys::linkat(work_fd_.get(), shared_whiteout_.c_str(), dir_fd, name.c_str(), 0);
    if (s) return s;
    // ENOENT: the shared inode's name went from the work dir (or dir_fd's directory went).
    bool renew = s.code() == EMLINK;
    if (s.code() == ENOENT) {
      auto there = sys::exists_at(work_fd_.get(), shared_whiteout_.c_str());
      renew = there && !*there;
    }
    const bool refused = s.code() == EPERM || s.code() == EXDEV || s.code() == EOPNOTSUPP;
    if (!renew && !refused) return s;  // a failure of this name (EEXIST, ENOSPC, ...)
    // The work dir's name goes; the whiteouts linked to it stay whiteouts.
    (void)sys::unlinkat(work_fd_.get(), shared_whiteout_.c_str(), 0);
    shared_whiteout_.clear();
    if (refused) share_whiteouts_ = false;  // the upper refuses hard links: one inode each
  }
  return overlay::write_whiteout(dir_fd, name, true);
}

Status UnionFs::unlink(Node* parent, std::string_view name) {
  if (config_.read_only) return Error{EROFS, "unlink"};
  const std::string cname(name);
  // A copy-up of this very name must not interleave (see name_mu_ in union_fs.h).
  std::lock_guard name_lock(name_mu(cname));
  if (overlay::is_reserved_name(name)) return Error{ENOENT, "unlink"};
  auto parts = resolve(*parent->parts(), cname.c_str(), false);
  if (!parts) return parts.error();
  if (parts->empty()) return Error{ENOENT, "unlink"};
  auto st = layers_[parts->front().layer]->stat(*parts->front().obj);
  if (!st) return st.error();
  if (S_ISDIR(st->st_mode)) return Error{EISDIR, "unlink"};
  if (S_ISREG(st->st_mode) && st->st_nlink > 1 && !is_upper(parts->front()) && index_fd_.valid()) {
    // One name of a lower hard-link group goes: the group moves to the index first, so the
    // other names show one link fewer (the lower inode's count cannot change).
    auto node = publish(parent, cname, *parts);
    if (!node) return node.error();
    Status s = copy_up(*node);
    forget(*node, 1);
    if (!s) return s;
    parts = resolve(*parent->parts(), cname.c_str(), false);
    if (!parts) return parts.error();
    if (parts->empty()) return Error{ENOENT, "unlink"};
  }
  Status s = remove_name(parent, cname, *parts, false);
  if (s) mark_removed(parts->front(), *st);
  return s;
}

void UnionFs::mark_removed(const Part& part, const struct stat& st) {
  // A lower object keeps its link count on disk; an open descriptor of the last name must
  // still see 0 links, as on a plain filesystem.
  if (is_upper(part) || (!S_ISDIR(st.st_mode) && st.st_nlink > 1)) return;
  std::lock_guard lock(table_mu_);
  auto it = by_key_.find({st.st_dev, st.st_ino});
  if (it == by_key_.end()) return;
  std::lock_guard node_lock(it->second->mu_);
  it->second->removed_ = true;
}

Status UnionFs::rmdir(Node* parent, std::string_view name) {
  if (config_.read_only) return Error{EROFS, "rmdir"};
  const std::string cname(name);
  if (overlay::is_reserved_name(name)) return Error{ENOENT, "rmdir"};
  auto parts = resolve(*parent->parts(), cname.c_str(), false);
  if (!parts) return parts.error();
  if (parts->empty()) return Error{ENOENT, "rmdir"};
  auto st = layers_[parts->front().layer]->stat(*parts->front().obj);
  if (!st) return st.error();
  if (!S_ISDIR(st->st_mode)) return Error{ENOTDIR, "rmdir"};
  auto entries = list_parts(*parts, 0, 0);
  if (!entries) return entries.error();
  if (entries->size() > 2) return Error{ENOTEMPTY, "rmdir"};
  Status s = remove_name(parent, cname, *parts, true);
  if (s) mark_removed(parts->front(), *st);
  return s;
}

Result<std::string> UnionFs::lower_path(Node* dir) {
  // Where a directory's lower parts live: its redirect if it has one, else its parent's
  // lower path plus its name.
  std::shared_ptr<Node> parent = dir->parent();
  if (!parent) return std::string();
  auto parts = dir->parts();
  if (is_upper(parts->front())) {
    auto v = layers_[0]->getxattr(*parts->front().obj,
                                  (std::string(xattr_prefix_) + "redirect").c_str());
    if (v) {
      if (!v->empty() && (*v)[0] == '/') return *v;
      auto pp = lower_path(parent.get());
      if (!pp) return pp.error();
      return *pp + "/" + *v;
    }
  }
  auto pp = lower_path(parent.get());
  if (!pp) return pp.error();
  return *pp + "/" + dir->name();
}

Status UnionFs::prepare_moved_dir(Node* dir, bool target_has_below) {
  // Called with the directory copied up, before it moves.
  auto parts = dir->parts();
  PathFd dir_fd(*parts->front().obj);
  if (!dir_fd.ok()) return dir_fd.error();
  const int fd = dir_fd.get();
  if (parts->size() > 1) {
    auto path = lower_path(dir);
    if (!path) return path.error();
    return overlay::set_redirect(fd, xattr_prefix_, *path);
  }
  if (target_has_below) {
    Status s = overlay::set_opaque(fd, xattr_prefix_);
    if (!s && s.code() == EPERM) s = overlay::write_whiteout(fd, ".wh..opq", false);
    return s;
  }
  return {};
}

Status UnionFs::rename(Node* parent, std::string_view name, Node* new_parent,
                       std::string_view new_name, unsigned flags) {
  if (config_.read_only) return Error{EROFS, "rename"};
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Error{EINVAL, "rename(flags)"};
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return Error{EINVAL, "rename"};
  if (Status s = check_name(new_name); !s) return s;
  const std::string from(name), to(new_name);
  if (overlay::is_reserved_name(name)) return Error{ENOENT, "rename"};
  // Copy-ups of either name must not interleave (see name_mu_ in union_fs.h).
  std::scoped_lock name_locks(name_mu(from), name_mu(to));
  auto src_parts = resolve(*parent->parts(), from.c_str(), false);
  if (!src_parts) return src_parts.error();
  if (src_parts->empty()) return Error{ENOENT, "rename"};
  auto dst_parts = resolve(*new_parent->parts(), to.c_str(), false);
  if (!dst_parts) return dst_parts.error();
  const bool dst_exists = !dst_parts->empty();
  if ((flags & RENAME_NOREPLACE) && dst_exists) return Error{EEXIST, "rename"};
  if ((flags & RENAME_EXCHANGE) && !dst_exists) return Error{ENOENT, "rename"};

  // Nodes for the objects involved, so copy-up knows their names; released at the end.
  auto src = publish(parent, from, std::move(*src_parts));
  if (!src) return src.error();
  Node* dst = nullptr;
  if (dst_exists) {
    auto d = publish(new_parent, to, std::move(*dst_parts));
    if (!d) {
      forget(*src, 1);
      return d.error();
    }
    dst = *d;
  }
  Status s = rename_nodes(parent, from, *src, new_parent, to, dst, flags);
  if (s) moved(*src, new_parent, to);
  if (s && dst && (flags & RENAME_EXCHANGE)) moved(dst, parent, from);
  forget(*src, 1);
  if (dst) forget(dst, 1);
  return s;
}

void UnionFs::pin(const Part& part) {
  // The name is about to go: a live node named by it (an open file, say) gets a descriptor,
  // so fstat and I/O keep working on the unlinked inode; a live directory node keeps the
  // descriptor it has (the budget could close it, and nothing could open it again). Lower
  // names never go (and a store layer's objects have no directory descriptor to open one from).
  if (!is_upper(part)) return;
  auto st = layers_[part.layer]->stat(*part.obj);
  if (!st) return;
  std::shared_ptr<Node> node;
  {
    std::lock_guard lock(table_mu_);
    auto it = by_key_.find({st->st_dev, st->st_ino});
    if (it == by_key_.end()) return;
    node = live_.at(it->second);
  }
  auto parts = node->parts();
  if (S_ISDIR(st->st_mode)) {
    if (is_upper(parts->front())) (void)parts->front().obj->hold();
    return;
  }
  if (!part.obj->named()) return;
  PathFd fd(*part.obj);
  if (!fd.ok()) return;
  if (!parts->front().obj->named()) return;
  auto held = sys::dup(fd.get());
  if (!held) return;
  PartList list = *parts;
  list.front().obj = std::make_shared<ObjRef>(std::move(*held));
  std::lock_guard lock(node->mu_);
  node->parts_ = std::make_shared<const PartList>(std::move(list));
}

void UnionFs::moved(Node* node, Node* new_parent, const std::string& new_name) {
  // A non-directory's upper part is named by directory and name: point it at the new ones.
  // (A directory's upper part was relocated by rename_nodes.)
  auto parts = node->parts();
  std::shared_ptr<const PartList> next;
  if (!node->is_dir() && parts->front().obj->named() && is_upper(parts->front())) {
    auto up = new_parent->parts();
    if (is_upper(up->front())) {
      PartList list = *parts;
      list.front().obj = std::make_shared<ObjRef>(up->front().obj, new_name);
      next = std::make_shared<const PartList>(std::move(list));
    }
  }
  std::lock_guard lock(node->mu_);
  if (next) node->parts_ = std::move(next);
  node->parent_ = shared(new_parent);
  node->name_ = new_name;
}

Status UnionFs::rename_nodes(Node* parent, const std::string& from, Node* src, Node* new_parent,
                             const std::string& to, Node* dst, unsigned flags) {
  if (src == dst) return {};  // hard links to one object: nothing to do (POSIX)
  if (dst && dst->is_dir() && !(flags & RENAME_EXCHANGE)) {
    if (!src->is_dir()) return Error{EISDIR, "rename"};
    auto entries = list(dst);
    if (!entries) return entries.error();
    if (entries->size() > 2) return Error{ENOTEMPTY, "rename"};
  } else if (dst && src->is_dir() && !(flags & RENAME_EXCHANGE)) {
    return Error{ENOTDIR, "rename"};
  }
  auto src_below = exists_below(parent, from);
  if (!src_below) return src_below.error();
  auto dst_below = exists_below(new_parent, to);
  if (!dst_below) return dst_below.error();

  // Hard links share one node: a name that only the index backs gets its own upper link
  // first, whatever the node's parts say.
  const int names = dst && (flags & RENAME_EXCHANGE) ? 2 : 1;
  for (int i = 0; i < names; ++i) {
    Node* dir = i == 0 ? parent : new_parent;
    const std::string* n = i == 0 ? &from : &to;
    auto p = resolve(*dir->parts(), n->c_str(), false);
    if (!p) return p.error();
    if (!p->empty() && p->front().indexed) {
      if (Status s = link_up_name(dir, *n, p->front()); !s) return s;
    }
  }
  if (Status s = copy_up(src); !s) return s;
  if (dst && (flags & RENAME_EXCHANGE)) {
    if (Status s = copy_up(dst); !s) return s;
  } else if (dst && S_ISREG(dst->type) && index_fd_.valid()) {
    // A replaced name of a lower hard-link group: as for unlink, the group goes to the index
    // (or already is there) so that its other names show one link fewer. Hard links share
    // a node, so look at what this very name resolves to.
    auto named = resolve(*new_parent->parts(), to.c_str(), false);
    if (!named) return named.error();
    if (!named->empty() && named->front().indexed) {
      PathFd fd(*named->front().obj);
      if (!fd.ok()) return fd.error();
      if (Status s = adjust_nlink(fd.get(), -1); !s) return s;
    } else if (!named->empty() && !is_upper(named->front())) {
      auto dst_st = layers_[named->front().layer]->stat(*named->front().obj);
      if (!dst_st) return dst_st.error();
      if (dst_st->st_nlink > 1) {
        if (Status s = copy_up(dst); !s) return s;
      }
    }
  }
  auto up1 = upper_dir(parent);
  if (!up1) return up1.error();
  auto up2 = upper_dir(new_parent);
  if (!up2) return up2.error();
  PathFd up1_fd(**up1);
  if (!up1_fd.ok()) return up1_fd.error();
  PathFd up2_fd(**up2);
  if (!up2_fd.ok()) return up2_fd.error();
  const int fd1 = up1_fd.get(), fd2 = up2_fd.get();

  // A directory that moves is relocated after the rename; it stays open across it, so that no
  // reopen looks for it by a name it no longer has.
  std::shared_ptr<const ObjRef> src_up, dst_up;
  std::optional<PathFd> keep_src, keep_dst;
  if (src->is_dir()) {
    if (Status s = prepare_moved_dir(src, *dst_below); !s) return s;
    src_up = src->parts()->front().obj;
    keep_src.emplace(*src_up);
    if (!keep_src->ok()) return keep_src->error();
  }
  if (flags & RENAME_EXCHANGE) {
    if (dst->is_dir()) {
      if (Status s = prepare_moved_dir(dst, *src_below); !s) return s;
      dst_up = dst->parts()->front().obj;
      keep_dst.emplace(*dst_up);
      if (!keep_dst->ok()) return keep_dst->error();
    }
    Status s = sys::renameat2(fd1, from.c_str(), fd2, to.c_str(), RENAME_EXCHANGE);
    if (s && src_up) src_up->relocate(*up2, to);
    if (s && dst_up) dst_up->relocate(*up1, from);
    return s;
  }

  // The destination in the upper: a real object is replaced by the rename; a whiteout device
  // under a directory cannot be, so it goes first (the moved directory is already opaque or
  // redirected, so nothing below shows through meanwhile); an empty upper directory being
  // replaced loses its whiteouts first.
  if (dst && dst->is_dir() && is_upper(dst->parts()->front())) {
    auto dst_now = dst->parts();
    const auto& obj = dst_now->front().obj;
    PathFd fd(*obj);
    if (!fd.ok()) return fd.error();
    if (Status s = overlay::clear_whiteouts(fd.get()); !s) return s;
    // Replaced: its name will be the moved directory's.
    if (Status s = obj->hold(); !s) return s;
  }
  if (dst && !dst->is_dir() && !(flags & RENAME_EXCHANGE)) pin(dst->parts()->front());
  auto dst_whiteout = overlay::has_whiteout(fd2, to);
  if (!dst_whiteout) return dst_whiteout.error();
  if (*dst_whiteout && !dst) {
    auto dev = sys::fstatat(fd2, to.c_str());
    if (dev && overlay::is_whiteout_device(*dev) && src->is_dir()) {
      if (Status s = sys::unlinkat(fd2, to.c_str(), 0); !s) return s;
    }
  }
  bool whiteout_left = false;
  if (*src_below && whiteout_devices_) {
    Status s = sys::renameat2(fd1, from.c_str(), fd2, to.c_str(), RENAME_WHITEOUT);
    // Filesystems without RENAME_WHITEOUT say EINVAL: rename, then write the whiteout.
    if (!s && s.code() != EINVAL) return s;
    whiteout_left = s.ok();
  }
  if (!whiteout_left) {
    if (Status s = sys::renameat2(fd1, from.c_str(), fd2, to.c_str(), 0); !s) return s;
  }
  if (src_up) src_up->relocate(*up2, to);
  if (!whiteout_left) {
    if (*src_below) {
      if (Status s = make_whiteout(fd1, from); !s) return s;
    }
  }
  if (*dst_whiteout) {
    std::string wh = std::string(overlay::kWhiteoutPrefix) + to;
    Status u = sys::unlinkat(fd2, wh.c_str(), 0);
    if (!u && u.code() != ENOENT) return u;
  }
  return {};
}

Result<struct stat> UnionFs::setattr(Node* node, const SetAttr& a, int fd) {
  if (config_.read_only) return Error{EROFS, "setattr"};
  // Only a size change needs the data; the rest is a metadata-only copy-up. A chmod alone is
  // done by the copy-up itself (with anything else, a chown after it would clear setuid bits
  // the chmod asked for).
  const bool chmod_only = (a.valid & ~SetAttr::kCtime) == SetAttr::kMode && !S_ISLNK(node->type);
  bool mode_set = false;
  if (Status s = copy_up(node, (a.valid & SetAttr::kSize) != 0,
                         chmod_only ? std::optional<mode_t>(a.mode) : std::nullopt, &mode_set);
      !s) {
    return s.error();
  }
  if (mode_set) return getattr(node);
  auto obj = checked_top(node);
  PathFd path_fd(*obj);
  // An open file whose last name went (fchmod after unlink) is reached through its descriptor.
  if (!path_fd.ok() && !(path_fd.error().code == ENOENT && fd >= 0)) return path_fd.error();
  const int pfd = path_fd.ok() ? path_fd.get() : fd;
  if (a.valid & (SetAttr::kUid | SetAttr::kGid)) {
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
    if (a.valid & SetAttr::kUid) uid = config_.uid_map.to_disk(a.uid).value_or(a.uid);
    if (a.valid & SetAttr::kGid) gid = config_.gid_map.to_disk(a.gid).value_or(a.gid);
    if (Status s = sys::fchownat(pfd, "", uid, gid); !s) return s.error();
  }
  if (a.valid & SetAttr::kMode) {
    if (S_ISLNK(node->type)) return Error{EOPNOTSUPP, "chmod(symlink)"};
    if (Status s = sys::fchmod_path(pfd, a.mode & 07777); !s) return s.error();
  }
  if (a.valid & SetAttr::kSize) {
    if (!S_ISREG(node->type)) return Error{S_ISDIR(node->type) ? EISDIR : EINVAL, "truncate"};
    if (fd >= 0) {
      if (Status s = sys::ftruncate(fd, a.size); !s) return s.error();
    } else {
      auto wfd = sys::reopen(pfd, O_WRONLY);
      if (!wfd) return wfd.error();
      if (Status s = sys::ftruncate(wfd->get(), a.size); !s) return s.error();
    }
  }
  if (a.valid & (SetAttr::kAtime | SetAttr::kMtime | SetAttr::kAtimeNow | SetAttr::kMtimeNow)) {
    struct timespec times[2];
    times[0].tv_nsec = UTIME_OMIT;
    times[1].tv_nsec = UTIME_OMIT;
    if (a.valid & SetAttr::kAtimeNow) {
      times[0].tv_nsec = UTIME_NOW;
    } else if (a.valid & SetAttr::kAtime) {
      times[0] = a.atime;
    }
    if (a.valid & SetAttr::kMtimeNow) {
      times[1].tv_nsec = UTIME_NOW;
    } else if (a.valid & SetAttr::kMtime) {
      times[1] = a.mtime;
    }
    if (Status s = sys::utimensat(pfd, "", times); !s) return s.error();
  }
  return getattr(node);
}

Status UnionFs::setxattr(Node* node, const char* name, const void* value, size_t size, int flags) {
  if (config_.read_only) return Error{EROFS, "setxattr"};
  std::string_view n(name);
  if (hidden_xattr(n)) return Error{EPERM, "setxattr(private)"};
  if (!config_.acl && (n == "system.posix_acl_access" || n == "system.posix_acl_default"))
    return Error{EOPNOTSUPP, "setxattr(noacl)"};
  if (Status s = copy_up(node, false); !s) return s;
  PathFd fd(*node->parts()->front().obj);
  if (!fd.ok()) return fd.error();
  return sys::fsetxattr(fd.get(), name, value, size, flags);
}

Status UnionFs::removexattr(Node* node, const char* name) {
  if (config_.read_only) return Error{EROFS, "removexattr"};
  std::string_view n(name);
  if (hidden_xattr(n)) return Error{EPERM, "removexattr(private)"};
  if (!config_.acl && (n == "system.posix_acl_access" || n == "system.posix_acl_default"))
    return Error{EOPNOTSUPP, "removexattr(noacl)"};
  // Absent already: no copy-up for nothing.
  char probe;
  auto present = getxattr(node, name, &probe, 0);
  if (!present) return present.error();
  if (Status s = copy_up(node, false); !s) return s;
  PathFd fd(*node->parts()->front().obj);
  if (!fd.ok()) return fd.error();
  return sys::fremovexattr(fd.get(), name);
}

Status UnionFs::sync(Node* node, int fd, bool datasync) {
  if (!config_.fsync) return {};  // fsync=0 / volatile
  if (fd >= 0) {
    if (Status s = datasync ? sys::fdatasync(fd) : sys::fsync(fd); !s) return s;
  } else {
    auto parts = node->parts();
    if (!is_upper(parts->front())) return {};  // nothing of ours to make durable
    auto rfd = layers_[0]->open(*parts->front().obj, O_RDONLY | (node->is_dir() ? O_DIRECTORY : 0));
    if (!rfd) return rfd.error();
    if (Status s = sys::fsync(rfd->get()); !s) return s;
  }
  return sync_copied_up_names(node);
}

// A copy-up published the node (and maybe its parents) by rename without syncing the
// directories: what the caller's fsync acknowledges includes those names.
Status UnionFs::sync_copied_up_names(Node* node) {
  std::shared_ptr<Node> keep;  // holds the parent being walked
  for (Node* n = node; n != nullptr && n->unsynced_name_.load(); n = keep.get()) {
    keep = n->parent();
    if (!keep) break;
    auto parts = keep->parts();
    if (!is_upper(parts->front())) break;
    auto dfd = layers_[0]->open(*parts->front().obj, O_RDONLY | O_DIRECTORY);
    if (!dfd) return dfd.error();
    if (Status s = sys::fsync(dfd->get()); !s) return s;
    n->unsynced_name_ = false;
  }
  return {};
}

}  // namespace lamina::core
