// SPDX-License-Identifier: Apache-2.0
#include "write/tree_spec.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

#include "integration/fs_util.h"

namespace lamina::wt {

using it::errno_name;
using it::make_dirs;
using it::remove_tree;

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::runtime_error(fmt::format("{}: {}", what, errno_name(errno)));
}

std::string join(const std::string& root, const std::string& rel) {
  return rel.empty() ? root : root + "/" + rel;
}

void set_owner_mode(const std::string& full, const Item& item, bool is_link) {
  if (::lchown(full.c_str(), item.uid, item.gid) != 0) throw_errno("lchown " + full);
  if (!is_link && ::chmod(full.c_str(), item.mode) != 0) throw_errno("chmod " + full);
  for (const auto& [name, value] : item.xattrs) {
    if (::lsetxattr(full.c_str(), name.c_str(), value.data(), value.size(), 0) != 0)
      throw_errno("lsetxattr " + name + " " + full);
  }
}

// Removes whatever is at `full` (file or tree); nothing if absent.
void remove_any(const std::string& full) {
  struct stat st;
  if (::lstat(full.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    remove_tree(full);
  } else if (::unlink(full.c_str()) != 0) {
    throw_errno("unlink " + full);
  }
}

bool has_bit(unsigned layers, LayerBit b) { return (layers & b) != 0; }

}  // namespace

// ---- TreeSpec ----------------------------------------------------------------------------

TreeSpec& TreeSpec::dir(std::string path, unsigned layers, mode_t mode, uid_t uid, gid_t gid,
                        Xattrs xattrs) {
  Item i;
  i.kind = Item::kDir;
  i.path = std::move(path);
  i.mode = mode;
  i.uid = uid;
  i.gid = gid;
  i.xattrs = std::move(xattrs);
  i.layers = layers;
  items_.push_back(std::move(i));
  return *this;
}

TreeSpec& TreeSpec::file(std::string path, std::string content, unsigned layers, mode_t mode,
                         uid_t uid, gid_t gid, Xattrs xattrs) {
  Item i;
  i.kind = Item::kFile;
  i.path = std::move(path);
  i.data = std::move(content);
  i.mode = mode;
  i.uid = uid;
  i.gid = gid;
  i.xattrs = std::move(xattrs);
  i.layers = layers;
  items_.push_back(std::move(i));
  return *this;
}

TreeSpec& TreeSpec::sparse(std::string path, unsigned layers, off_t size,
                           std::vector<std::pair<off_t, std::string>> extents) {
  Item i;
  i.kind = Item::kSparse;
  i.path = std::move(path);
  i.layers = layers;
  i.size = size;
  i.extents = std::move(extents);
  items_.push_back(std::move(i));
  return *this;
}

TreeSpec& TreeSpec::symlink(std::string path, std::string target, unsigned layers) {
  Item i;
  i.kind = Item::kSymlink;
  i.path = std::move(path);
  i.data = std::move(target);
  i.layers = layers;
  items_.push_back(std::move(i));
  return *this;
}

TreeSpec& TreeSpec::hardlink(std::string path, std::string existing, unsigned layers) {
  Item i;
  i.kind = Item::kHardlink;
  i.path = std::move(path);
  i.data = std::move(existing);
  i.layers = layers;
  items_.push_back(std::move(i));
  return *this;
}

TreeSpec& TreeSpec::fifo(std::string path, unsigned layers, mode_t mode) {
  Item i;
  i.kind = Item::kFifo;
  i.path = std::move(path);
  i.mode = mode;
  i.layers = layers;
  items_.push_back(std::move(i));
  return *this;
}

TreeSpec& TreeSpec::whiteout(std::string path, unsigned layers) {
  Item i;
  i.kind = Item::kWhiteout;
  i.path = std::move(path);
  i.layers = layers;
  items_.push_back(std::move(i));
  return *this;
}

TreeSpec& TreeSpec::opaque(std::string path, unsigned layers) {
  Item i;
  i.kind = Item::kOpaque;
  i.path = std::move(path);
  i.layers = layers;
  items_.push_back(std::move(i));
  return *this;
}

void TreeSpec::make_parents(const std::string& root, const std::string& rel) const {
  // Missing ancestors get the metadata of their declaration in any layer (as a copy-up of
  // the lower directory would), else 0755 root:root.
  for (size_t slash = rel.find('/'); slash != std::string::npos; slash = rel.find('/', slash + 1)) {
    const std::string dir = rel.substr(0, slash);
    const std::string full = join(root, dir);
    struct stat st;
    if (::lstat(full.c_str(), &st) == 0) continue;
    const Item* decl = nullptr;
    for (const auto& i : items_) {
      if (i.kind == Item::kDir && i.path == dir) decl = &i;
    }
    if (::mkdir(full.c_str(), 0700) != 0) throw_errno("mkdir " + full);
    if (decl) {
      set_owner_mode(full, *decl, false);
    } else if (::chmod(full.c_str(), 0755) != 0) {
      throw_errno("chmod " + full);
    }
  }
}

void TreeSpec::apply(const std::string& root, const Item& item, bool merged) const {
  const std::string full = join(root, item.path);
  make_parents(root, item.path);
  switch (item.kind) {
    case Item::kDir: {
      struct stat st;
      if (::lstat(full.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) remove_any(full);
      if (::mkdir(full.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("mkdir " + full);
      set_owner_mode(full, item, false);
      break;
    }
    case Item::kFile: {
      remove_any(full);
      it::write_file(full, item.data, 0600);
      set_owner_mode(full, item, false);
      break;
    }
    case Item::kSparse: {
      remove_any(full);
      int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) throw_errno("open " + full);
      if (::ftruncate(fd, item.size) != 0) throw_errno("ftruncate " + full);
      for (const auto& [off, data] : item.extents) {
        if (::pwrite(fd, data.data(), data.size(), off) != static_cast<ssize_t>(data.size()))
          throw_errno("pwrite " + full);
      }
      ::fsync(fd);
      ::close(fd);
      break;
    }
    case Item::kSymlink:
      remove_any(full);
      it::make_symlink(item.data, full);
      set_owner_mode(full, item, true);
      break;
    case Item::kHardlink:
      remove_any(full);
      if (::link(join(root, item.data).c_str(), full.c_str()) != 0) throw_errno("link " + full);
      break;
    case Item::kFifo:
      remove_any(full);
      if (::mkfifo(full.c_str(), item.mode) != 0) throw_errno("mkfifo " + full);
      set_owner_mode(full, item, false);
      break;
    case Item::kWhiteout:
      remove_any(full);
      if (!merged && ::mknod(full.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0)
        throw_errno("mknod whiteout " + full);
      break;
    case Item::kOpaque:
      if (merged) {
        DIR* d = ::opendir(full.c_str());
        if (!d && errno == ENOENT) break;  // emptied already by an opaque ancestor
        if (!d) throw_errno("opendir " + full);
        std::vector<std::string> names;
        while (struct dirent* de = ::readdir(d)) {
          if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, ".."))
            names.push_back(de->d_name);
        }
        ::closedir(d);
        for (const auto& n : names) remove_any(full + "/" + n);
      } else {
        make_dirs(full, 0755);
        if (::lsetxattr(full.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0)
          throw_errno("set opaque " + full);
      }
      break;
  }
}

void TreeSpec::build_layer(const std::string& root, LayerBit layer) const {
  make_dirs(root, 0755);
  for (const auto& item : items_) {
    if (item.kind == Item::kDir && has_bit(item.layers, layer)) apply(root, item, false);
  }
  for (const auto& item : items_) {
    if (item.kind != Item::kDir && item.kind != Item::kWhiteout && item.kind != Item::kOpaque &&
        has_bit(item.layers, layer))
      apply(root, item, false);
  }
  for (const auto& item : items_) {
    if ((item.kind == Item::kWhiteout || item.kind == Item::kOpaque) && has_bit(item.layers, layer))
      apply(root, item, false);
  }
}

void TreeSpec::build_merged(const std::string& root) const {
  make_dirs(root, 0755);
  for (LayerBit layer : {kL2, kL1, kUp}) {
    for (const auto& item : items_) {
      if ((item.kind == Item::kWhiteout || item.kind == Item::kOpaque) &&
          has_bit(item.layers, layer))
        apply(root, item, true);
    }
    for (const auto& item : items_) {
      if (item.kind == Item::kDir && has_bit(item.layers, layer)) apply(root, item, true);
    }
    for (const auto& item : items_) {
      if (item.kind != Item::kDir && item.kind != Item::kWhiteout && item.kind != Item::kOpaque &&
          has_bit(item.layers, layer))
        apply(root, item, true);
    }
  }
}

std::string pattern_bytes(size_t size, uint64_t seed) {
  std::string s(size, '\0');
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < size; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, std::min<size_t>(8, size - i));
  }
  return s;
}

}  // namespace lamina::wt
