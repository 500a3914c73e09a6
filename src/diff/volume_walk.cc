// SPDX-License-Identifier: Apache-2.0
// The walk of a volume (volume_walk.h).
#include "volume_walk.h"

#include <fcntl.h>
#include <sys/sysmacros.h>

#include <algorithm>

#include "lamina/base/sys.h"

namespace lamina::diff {
namespace {

using store::Entry;
using store::EntryKind;

EntryKind kind_of(mode_t m) {
  if (S_ISDIR(m)) return EntryKind::kDir;
  if (S_ISREG(m)) return EntryKind::kFile;
  if (S_ISLNK(m)) return EntryKind::kSymlink;
  if (S_ISCHR(m)) return EntryKind::kChar;
  if (S_ISBLK(m)) return EntryKind::kBlock;
  if (S_ISFIFO(m)) return EntryKind::kFifo;
  return EntryKind::kSocket;
}

std::string child_path(const std::string& parent, std::string_view name) {
  return parent == "/" ? "/" + std::string(name) : parent + "/" + std::string(name);
}

Status read_xattrs(int path_fd, Entry* e) {
  auto names = sys::flistxattr(path_fd);
  if (!names) {
    if (names.code() == ENOTSUP || names.code() == EOPNOTSUPP) return {};
    return names.error();
  }
  size_t pos = 0;
  while (pos < names->size()) {
    std::string name(names->c_str() + pos);
    pos += name.size() + 1;
    if (name.empty()) continue;
    auto value = sys::fgetxattr(path_fd, name.c_str());
    if (!value) {
      if (value.code() == ENODATA) continue;
      return value.error();
    }
    e->xattrs.emplace_back(std::move(name), std::move(*value));
  }
  std::sort(e->xattrs.begin(), e->xattrs.end());
  return {};
}

class Walker {
 public:
  explicit Walker(std::vector<WalkedEntry>* out) : out_(out) {}

  bool walk(int dir_fd, const std::string& path, std::string* error) {
    std::vector<std::string> names;
    Status s = sys::read_dir(dir_fd, [&](std::string_view n, unsigned char, ino_t) -> Status {
      names.emplace_back(n);
      return {};
    });
    if (!s) return fail(path, s.error(), error);
    for (const std::string& n : names) {
      WalkedEntry c;
      c.entry.path = child_path(path, n);
      auto pfd = sys::open_path(dir_fd, n.c_str());
      if (!pfd) return fail(c.entry.path, pfd.error(), error);
      auto st = sys::fstat(pfd->get());
      if (!st) return fail(c.entry.path, st.error(), error);
      c.st = *st;
      fill_from_stat(*st, &c.entry);
      if (Status x = read_xattrs(pfd->get(), &c.entry); !x) return fail(c.entry.path, x, error);
      if (c.entry.kind == EntryKind::kSymlink) {
        auto t = sys::readlinkat(dir_fd, n.c_str());
        if (!t) return fail(c.entry.path, t.error(), error);
        c.entry.target = *t;
      }
      const bool is_dir = c.entry.kind == EntryKind::kDir;
      std::string child = c.entry.path;
      out_->push_back(std::move(c));
      if (is_dir) {
        auto sub = sys::openat(dir_fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (!sub) return fail(child, sub.error(), error);
        if (!walk(sub->get(), child, error)) return false;
      }
    }
    return true;
  }

 private:
  static bool fail(const std::string& path, const Status& s, std::string* error) {
    *error = "'" + path + "': " + s.error().message();
    return false;
  }
  std::vector<WalkedEntry>* out_;
};

}  // namespace

void fill_from_stat(const struct stat& st, Entry* e) {
  e->kind = kind_of(st.st_mode);
  e->mode = st.st_mode & 07777;
  e->uid = st.st_uid;
  e->gid = st.st_gid;
  e->mtime_sec = st.st_mtim.tv_sec;
  e->mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  if (e->kind == EntryKind::kFile) e->size = static_cast<uint64_t>(st.st_size);
  if (e->kind == EntryKind::kChar || e->kind == EntryKind::kBlock) {
    e->rdev_major = major(st.st_rdev);
    e->rdev_minor = minor(st.st_rdev);
  }
}

bool walk_volume(int root_fd, const std::string& dir, std::vector<WalkedEntry>* out,
                 std::string* error) {
  std::vector<WalkedEntry> cur;
  {
    WalkedEntry root;
    root.entry.path = "/";
    auto st = sys::fstat(root_fd);
    if (!st) {
      *error = "'" + dir + "': " + st.error().message();
      return false;
    }
    root.st = *st;
    fill_from_stat(*st, &root.entry);
    if (Status x = read_xattrs(root_fd, &root.entry); !x) {
      *error = "'" + dir + "': " + x.error().message();
      return false;
    }
    cur.push_back(std::move(root));
  }
  Walker walker(&cur);
  if (!walker.walk(root_fd, "/", error)) return false;
  std::sort(cur.begin(), cur.end(), [](const WalkedEntry& a, const WalkedEntry& b) {
    return store::path_less(a.entry.path, b.entry.path);
  });
  *out = std::move(cur);
  return true;
}

}  // namespace lamina::diff
