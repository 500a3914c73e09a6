// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/overlay_format.h"

#include <fcntl.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "lamina/base/sys.h"
#include "lamina/store/manifest.h"

namespace lamina::core::overlay {
namespace {

// Kernel overlayfs as root, kernel overlayfs with userxattr (rootless), fuse-overlayfs rootless
// (the same list as store::is_overlay_xattr, which says no layer holds them).
constexpr const char* kPrefixes[] = {"trusted.overlay.", "user.overlay.", "user.fuseoverlayfs."};

// Value of overlay.NAME under either namespace; empty optional-like (found=false) if absent.
// Filesystems without xattr support (EOPNOTSUPP) simply have no marks.
Result<bool> read_mark(const Layer& layer, const ObjRef& obj, const char* suffix,
                       std::string* value) {
  for (const char* prefix : kPrefixes) {
    std::string name = std::string(prefix) + suffix;
    auto v = layer.getxattr(obj, name.c_str());
    if (v) {
      *value = std::move(*v);
      return true;
    }
    int e = v.code();
    if (e != ENODATA && e != EOPNOTSUPP && e != EPERM && e != EACCES) return v.error();
  }
  return false;
}

}  // namespace

std::string_view whiteout_target(std::string_view name) {
  if (!is_reserved_name(name) || name == kOpaqueMarker) return {};
  return name.substr(kWhiteoutPrefix.size());
}

bool is_private_xattr(std::string_view name) { return store::is_overlay_xattr(name); }

Result<DirMarks> dir_marks(const Layer& layer, const ObjRef& dir) {
  DirMarks marks;
  // One listxattr answers "no marks" for the common directory; values are read only for
  // names that are present.
  auto names = layer.listxattr(dir);
  if (!names && names.code() != EOPNOTSUPP) return names.error();
  bool any_mark = false;
  if (names) {
    std::string_view all = *names;
    for (size_t pos = 0; pos < all.size();) {
      size_t end = all.find('\0', pos);
      if (end == std::string_view::npos) end = all.size();
      if (is_private_xattr(all.substr(pos, end - pos))) any_mark = true;
      pos = end + 1;
    }
  }
  std::string value;
  if (!any_mark) {
    auto marker = layer.contains(dir, std::string(kOpaqueMarker).c_str());
    if (!marker) return marker.error();
    marks.opaque = *marker;
    return marks;
  }
  auto impure = read_mark(layer, dir, "impure", &value);
  if (!impure) return impure.error();
  marks.impure = *impure;
  auto redirect = read_mark(layer, dir, "redirect", &value);
  if (!redirect) return redirect.error();
  if (*redirect) marks.redirect = value;
  auto opaque = read_mark(layer, dir, "opaque", &value);
  if (!opaque) return opaque.error();
  if (*opaque) {
    if (value == "y") marks.opaque = true;
    if (value == "x") marks.xwhiteouts = true;
  }
  if (!marks.xwhiteouts) {
    // Linux 6.7 marked such directories with overlay.whiteouts instead of opaque=x.
    auto legacy = read_mark(layer, dir, "whiteouts", &value);
    if (!legacy) return legacy.error();
    marks.xwhiteouts = *legacy;
  }
  if (!marks.opaque) {
    auto marker = layer.contains(dir, std::string(kOpaqueMarker).c_str());
    if (!marker) return marker.error();
    marks.opaque = *marker;
  }
  return marks;
}

Result<bool> is_xattr_whiteout(const Layer& layer, const ObjRef& obj, const struct stat& st) {
  if (!S_ISREG(st.st_mode) || st.st_size != 0) return false;
  std::string value;
  return read_mark(layer, obj, "whiteout", &value);
}

Result<FileMarks> file_marks(const Layer& layer, const ObjRef& file) {
  FileMarks m;
  auto names = layer.listxattr(file);
  if (!names) {
    if (names.code() == EOPNOTSUPP) return m;
    return names.error();
  }
  bool any = false;
  std::string_view all = *names;
  for (size_t pos = 0; pos < all.size();) {
    size_t end = all.find('\0', pos);
    if (end == std::string_view::npos) end = all.size();
    if (is_private_xattr(all.substr(pos, end - pos))) any = true;
    pos = end + 1;
  }
  if (!any) return m;
  std::string value;
  auto meta = read_mark(layer, file, "metacopy", &value);
  if (!meta) return meta.error();
  m.metacopy = *meta;
  if (m.metacopy) {
    auto redirect = read_mark(layer, file, "redirect", &value);
    if (!redirect) return redirect.error();
    if (*redirect) m.redirect = value;
  }
  auto ino = read_mark(layer, file, "lamina.ino", &value);
  if (!ino) return ino.error();
  if (*ino) m.ino = std::strtoull(value.c_str(), nullptr, 10);
  return m;
}

Result<std::optional<int>> nlink_offset(const Layer& layer, const ObjRef& obj) {
  std::string value;
  auto found = read_mark(layer, obj, "nlink", &value);
  if (!found) return found.error();
  if (!*found || value.size() < 2 || value[0] != 'U') return std::optional<int>();
  int offset = 0;
  if (std::sscanf(value.c_str() + 1, "%d", &offset) != 1) return std::optional<int>();
  return std::optional<int>(offset);
}

Status set_nlink_offset(int fd, const char* prefix, int offset) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "U%+d", offset);
  std::string name = std::string(prefix) + "nlink";
  return sys::fsetxattr(fd, name.c_str(), buf, static_cast<size_t>(n), 0);
}

Status set_origin_ino(int fd, const char* prefix, uint64_t ino) {
  std::string name = std::string(prefix) + "lamina.ino";
  std::string v = std::to_string(ino);
  return sys::fsetxattr(fd, name.c_str(), v.data(), v.size(), 0);
}

Status set_impure(int dir_fd, const char* prefix) {
  std::string name = std::string(prefix) + "impure";
  return sys::fsetxattr(dir_fd, name.c_str(), "y", 1, 0);
}

Status set_metacopy(int fd, const char* prefix) {
  std::string name = std::string(prefix) + "metacopy";
  return sys::fsetxattr(fd, name.c_str(), "", 0, 0);
}

Status clear_metacopy(int fd, const char* prefix) {
  for (const char* suffix : {"metacopy", "redirect"}) {
    std::string name = std::string(prefix) + suffix;
    Status s = sys::fremovexattr(fd, name.c_str());
    if (!s && s.code() != ENODATA) return s;
  }
  return {};
}

Status write_whiteout(int dir_fd, const std::string& name, bool device) {
  if (device) return sys::mknodat(dir_fd, name.c_str(), S_IFCHR | 0, 0);
  std::string wh = std::string(kWhiteoutPrefix) + name;
  auto fd = sys::openat(dir_fd, wh.c_str(), O_CREAT | O_WRONLY | O_NOFOLLOW, 0);
  if (!fd) return fd.error();
  return {};
}

Result<bool> has_whiteout(int dir_fd, const std::string& name) {
  auto st = sys::fstatat(dir_fd, name.c_str());
  if (st) return is_whiteout_device(*st);
  if (st.code() != ENOENT) return st.error();
  std::string wh = std::string(kWhiteoutPrefix) + name;
  if (wh.size() > NAME_MAX) return false;  // cannot exist
  return sys::exists_at(dir_fd, wh.c_str());
}

Status clear_whiteouts(int dir_fd) {
  std::vector<std::string> doomed;
  Status s = sys::read_dir(dir_fd, [&](std::string_view name, unsigned char type, ino_t) {
    if (is_reserved_name(name)) {
      doomed.emplace_back(name);
    } else if (type == DT_CHR || type == DT_UNKNOWN) {
      auto st = sys::fstatat(dir_fd, std::string(name).c_str());
      if (st && is_whiteout_device(*st)) doomed.emplace_back(name);
    }
    return Status{};
  });
  if (!s) return s;
  for (const auto& n : doomed) {
    if (Status u = sys::unlinkat(dir_fd, n.c_str(), 0); !u && u.code() != ENOENT) return u;
  }
  return {};
}

Status set_opaque(int fd, const char* prefix) {
  std::string name = std::string(prefix) + "opaque";
  return sys::fsetxattr(fd, name.c_str(), "y", 1, 0);
}

Status set_redirect(int fd, const char* prefix, const std::string& value) {
  std::string name = std::string(prefix) + "redirect";
  return sys::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0);
}

}  // namespace lamina::core::overlay
