// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/overlay_format.h"

#include <cerrno>
#include <string>

namespace lamina::core::overlay {
namespace {

// Kernel overlayfs as root, kernel overlayfs with userxattr (rootless), fuse-overlayfs rootless.
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

bool is_private_xattr(std::string_view name) {
  for (std::string_view prefix : kPrefixes) {
    if (name.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

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

}  // namespace lamina::core::overlay
