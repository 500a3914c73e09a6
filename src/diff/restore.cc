// SPDX-License-Identifier: Apache-2.0
// Restore: a merged tree (TreeView) becomes a plain directory.
//
// Built in DEST.lamina-restore-XXXXXX beside DEST with *at() calls from directory descriptors
// (names come from validated manifests, never joined into paths), then renamed into place with
// RENAME_NOREPLACE. The tree is visited in manifest order (a directory right before its
// children), with a stack of open directories; a directory's owner, mode, xattrs and times are
// set when it leaves the stack, after its children, so creating them does not change its mtime
// and a read-only mode does not stop them. Any failure removes the temporary directory; a
// kill leaves only it, never a half-restored DEST.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <random>
#include <unordered_map>

#include "lamina/base/sys.h"
#include "lamina/diff/snapshot.h"

namespace lamina::diff {
namespace {

using store::Entry;
using store::EntryKind;

Status remove_tree(int dirfd, const std::string& name) {
  auto st = sys::fstatat(dirfd, name.c_str());
  if (!st) return st.code() == ENOENT ? Status{} : Status{st.error()};
  if (S_ISDIR(st->st_mode)) {
    auto sub = sys::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!sub) return sub.error();
    (void)sys::fchmod_path(sub->get(), 0700);
    std::vector<std::string> names;
    Status s = sys::read_dir(sub->get(), [&](std::string_view n, unsigned char, ino_t) -> Status {
      names.emplace_back(n);
      return {};
    });
    if (!s) return s;
    for (const auto& n : names) {
      if (Status c = remove_tree(sub->get(), n); !c) return c;
    }
    return sys::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
  }
  return sys::unlinkat(dirfd, name.c_str(), 0);
}

// Owner, mode, xattrs, then times, on the object behind fd (name "" ) or dirfd/name.
Status set_metadata(int fd, const Entry& e, bool drop_other_xattrs = false) {
  if (Status s = sys::fchownat(fd, "", e.uid, e.gid); !s) return s;
  if (drop_other_xattrs && e.kind != EntryKind::kSymlink) {
    auto names = sys::flistxattr(fd);
    for (size_t pos = 0; names && pos < names->size();) {
      std::string name(names->c_str() + pos);
      pos += name.size() + 1;
      bool wanted = false;
      for (const auto& x : e.xattrs) wanted = wanted || x.first == name;
      if (!wanted && !name.empty()) (void)sys::fremovexattr(fd, name.c_str());
    }
  }
  if (e.kind != EntryKind::kSymlink) {
    if (Status s = sys::fchmod_path(fd, e.mode); !s) return s;
  }
  for (const auto& [name, value] : e.xattrs) {
    if (Status s = sys::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0); !s) return s;
  }
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = e.mtime_sec;
  times[0].tv_nsec = times[1].tv_nsec = e.mtime_nsec;
  return sys::utimensat(fd, "", times);
}

class Builder {
 public:
  // `into_existing`: `root` may hold entries already: those the view lacks are removed, the
  // others kept when they match (see keep()) or replaced.
  Builder(const store::Store& store, UniqueFd root, const TreeView& view, bool into_existing)
      : store_(store), view_(view), into_existing_(into_existing) {
    stack_.push_back({"/", std::move(root), view.at("/").entry});
    for (const auto& [path, v] : view) {
      if (!v.link_group.empty()) ++names_[v.link_group];
    }
  }

  bool add(const ViewEntry& v, std::string* error) {
    const Entry& e = v.entry;
    std::string parent(store::parent_path(e.path));
    while (stack_.size() > 1 && stack_.back().path != parent) {
      if (!pop(error)) return false;
    }
    if (stack_.back().path != parent) {
      *error = "'" + e.path + "': parent is not a directory";
      return false;
    }
    const int dir = stack_.back().fd.get();
    const std::string name(store::base_name(e.path));
    Status s = into_existing_ ? update(dir, name, v) : create(dir, name, v);
    if (s && e.kind == EntryKind::kDir && !prune(error)) return false;
    if (!s) {
      *error = "'" + e.path + "': " + s.error().message();
      return false;
    }
    return true;
  }

  // Removes what the view does not hold under the directory on top of the stack.
  bool prune(std::string* error) {
    if (!into_existing_) return true;
    const Open& top = stack_.back();
    std::vector<std::string> names;
    Status s = sys::read_dir(top.fd.get(), [&](std::string_view n, unsigned char, ino_t) -> Status {
      names.emplace_back(n);
      return {};
    });
    for (size_t i = 0; s && i < names.size(); ++i) {
      std::string path = top.path == "/" ? "/" + names[i] : top.path + "/" + names[i];
      if (view_.count(path) == 0) s = remove_tree(top.fd.get(), names[i]);
    }
    if (!s) {
      *error = "'" + top.path + "': " + s.error().message();
      return false;
    }
    return true;
  }

  bool finish(std::string* error) {
    while (!stack_.empty()) {
      if (!pop(error)) return false;
    }
    return true;
  }

 private:
  struct Open {
    std::string path;
    UniqueFd fd;
    Entry entry;
  };

  bool pop(std::string* error) {
    Open top = std::move(stack_.back());
    stack_.pop_back();
    if (Status s = set_metadata(top.fd.get(), top.entry, into_existing_); !s) {
      *error = "'" + top.path + "': " + s.error().message();
      return false;
    }
    return true;
  }

  // --into-existing: keeps a directory that is a directory (its content is updated) and a
  // regular file of one name whose size and mtime match (rsync's quick check; its metadata is
  // set again); replaces anything else.
  Status update(int dir, const std::string& name, const ViewEntry& v) {
    const Entry& e = v.entry;
    auto st = sys::fstatat(dir, name.c_str());
    if (!st) return st.code() == ENOENT ? create(dir, name, v) : Status{st.error()};
    if (e.kind == EntryKind::kDir && S_ISDIR(st->st_mode)) {
      auto fd = sys::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (!fd) return fd.error();
      stack_.push_back({e.path, std::move(*fd), e});
      return {};
    }
    const bool linked = !v.link_group.empty() && names_[v.link_group] > 1;
    if (e.kind == EntryKind::kFile && S_ISREG(st->st_mode) && !linked && st->st_nlink == 1 &&
        static_cast<uint64_t>(st->st_size) == e.size && st->st_mtim.tv_sec == e.mtime_sec &&
        static_cast<uint32_t>(st->st_mtim.tv_nsec) == e.mtime_nsec) {
      auto p = sys::open_path(dir, name.c_str());
      if (!p) return p.error();
      return set_metadata(p->get(), e, true);
    }
    if (Status s = remove_tree(dir, name); !s) return s;
    return create(dir, name, v);
  }

  Status create(int dir, const std::string& name, const ViewEntry& v) {
    const Entry& e = v.entry;
    switch (e.kind) {
      case EntryKind::kDir: {
        if (Status s = sys::mkdirat(dir, name.c_str(), 0700); !s) return s;
        auto fd = sys::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (!fd) return fd.error();
        stack_.push_back({e.path, std::move(*fd), e});
        return {};
      }
      case EntryKind::kFile: {
        const bool linked = !v.link_group.empty() && names_[v.link_group] > 1;
        if (linked) {
          auto first = links_.find(v.link_group);
          if (first != links_.end()) {
            std::string from = sys::proc_fd_path(first->second.get());
            return sys::linkat(AT_FDCWD, from.c_str(), dir, name.c_str(), AT_SYMLINK_FOLLOW);
          }
        }
        auto out = sys::openat(dir, name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW, 0600);
        if (!out) return out.error();
        if (e.size > 0) {
          auto obj = store_.open_object(e.object, O_RDONLY);
          if (!obj) return obj.error();
          if (Status s = sys::copy_data(obj->get(), out->get(), static_cast<off_t>(e.size)); !s)
            return s;
        }
        if (Status s = set_metadata(out->get(), e); !s) return s;
        if (linked) {
          auto p = sys::open_path(dir, name.c_str());
          if (!p) return p.error();
          links_.emplace(v.link_group, std::move(*p));
        }
        return {};
      }
      case EntryKind::kSymlink: {
        if (Status s = sys::symlinkat(e.target.c_str(), dir, name.c_str()); !s) return s;
        if (Status s = sys::fchownat(dir, name.c_str(), e.uid, e.gid); !s) return s;
        struct timespec times[2];
        times[0].tv_sec = times[1].tv_sec = e.mtime_sec;
        times[0].tv_nsec = times[1].tv_nsec = e.mtime_nsec;
        return sys::utimensat(dir, name.c_str(), times);
      }
      case EntryKind::kChar:
      case EntryKind::kBlock:
      case EntryKind::kFifo:
      case EntryKind::kSocket: {
        dev_t rdev = makedev(e.rdev_major, e.rdev_minor);
        if (Status s = sys::mknodat(dir, name.c_str(), (e.st_mode() & ~mode_t{07777}) | 0600, rdev);
            !s)
          return s;
        auto p = sys::open_path(dir, name.c_str());
        if (!p) return p.error();
        return set_metadata(p->get(), e);
      }
      default: return Error{EINVAL, "unexpected entry kind in a merged tree"};
    }
  }

  const store::Store& store_;
  const TreeView& view_;
  bool into_existing_;
  std::vector<Open> stack_;
  std::unordered_map<std::string, size_t> names_;    // link group -> its number of names
  std::unordered_map<std::string, UniqueFd> links_;  // link group -> O_PATH of its first name
};

}  // namespace

bool restore_tree(const store::Store& store, const TreeView& view, const std::string& dest,
                  std::string* error) {
  auto root = view.find("/");
  if (root == view.end()) {
    *error = "the image has no root directory";
    return false;
  }
  std::string d = dest;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  const size_t slash = d.rfind('/');
  const std::string parent = slash == std::string::npos ? "."
                             : slash == 0               ? "/"
                                                        : d.substr(0, slash);
  const std::string name = slash == std::string::npos ? d : d.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    *error = "'" + dest + "' cannot be a restore destination";
    return false;
  }
  auto pfd = sys::openat(AT_FDCWD, parent.c_str(), O_RDONLY | O_DIRECTORY);
  if (!pfd) {
    *error = "'" + parent + "': " + pfd.error().message();
    return false;
  }
  if (auto there = sys::exists_at(pfd->get(), name.c_str()); !there || *there) {
    *error = "'" + dest + "' exists (--into-existing updates it in place)";
    return false;
  }
  std::random_device rd;
  std::string tmp;
  for (int i = 0;; ++i) {
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "%06x", rd() & 0xffffff);
    tmp = name + ".lamina-restore-" + suffix;
    Status s = sys::mkdirat(pfd->get(), tmp.c_str(), 0700);
    if (s) break;
    if (s.code() != EEXIST || i > 100) {
      *error = "'" + parent;
      *error += "/" + tmp + "': " + s.error().message();
      return false;
    }
  }
  auto fail = [&](const std::string& why) {
    *error = why;
    (void)remove_tree(pfd->get(), tmp);
    return false;
  };
  auto tfd = sys::openat(pfd->get(), tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!tfd) return fail("'" + tmp + "': " + tfd.error().message());
  Builder b(store, std::move(*tfd), view, false);
  std::string why;
  for (auto it = std::next(root); it != view.end(); ++it) {
    if (!b.add(it->second, &why)) return fail(why);
  }
  if (!b.finish(&why)) return fail(why);
  if (Status s = sys::syncfs(pfd->get()); !s) return fail("syncfs: " + s.error().message());
  if (Status s =
          sys::renameat2(pfd->get(), tmp.c_str(), pfd->get(), name.c_str(), RENAME_NOREPLACE);
      !s) {
    return fail("cannot rename the restored tree to '" + dest + "': " + s.error().message());
  }
  return true;
}

}  // namespace lamina::diff

namespace lamina::diff {

bool restore_into_existing(const store::Store& store, const TreeView& view, const std::string& dest,
                           std::string* error) {
  if (view.count("/") == 0) {
    *error = "the image has no root directory";
    return false;
  }
  auto fd = sys::openat(AT_FDCWD, dest.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) {
    *error = "'" + dest + "': " + fd.error().message();
    return false;
  }
  Builder b(store, std::move(*fd), view, true);
  if (!b.prune(error)) return false;
  for (auto it = std::next(view.find("/")); it != view.end(); ++it) {
    if (!b.add(it->second, error)) return false;
  }
  return b.finish(error);
}

}  // namespace lamina::diff
