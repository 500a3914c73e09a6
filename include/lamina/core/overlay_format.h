// SPDX-License-Identifier: Apache-2.0
#pragma once
// The one owner of the upper/lower directory encoding shared with kernel overlayfs,
// fuse-overlayfs and container tools: how whiteouts, opaque directories and the private
// overlay xattrs look on disk. Everything else asks these functions.
//
// Read (always, in every layer):
//   whiteout: char device 0/0; an empty file ".wh.NAME" beside NAME; a zero-size regular
//             file with the overlay.whiteout xattr inside a directory marked overlay.opaque=x
//             (or carrying the older overlay.whiteouts xattr) -- kernel overlayfs's xwhiteouts
//   opaque:   xattr overlay.opaque=y (trusted., user., or fuse-overlayfs's
//             user.fuseoverlayfs.opaque); a ".wh..wh..opq" file inside

#include <sys/stat.h>

#include <string_view>

#include "lamina/base/error.h"
#include "lamina/core/layer.h"

namespace lamina::core::overlay {

inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

// True for names lamina reserves in layers: ".wh.*" (whiteouts and the opaque marker).
// Such names are never shown through the mount nor accepted from it.
inline bool is_reserved_name(std::string_view name) {
  return name.substr(0, kWhiteoutPrefix.size()) == kWhiteoutPrefix;
}

// For ".wh.NAME" returns NAME; empty for the opaque marker or other names.
std::string_view whiteout_target(std::string_view name);

// A character device 0/0.
inline bool is_whiteout_device(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == 0;
}

// The xattrs of the overlay format, under "trusted.overlay." (kernel as root),
// "user.overlay." (kernel's userxattr, rootless tools) or "user.fuseoverlayfs." (what
// fuse-overlayfs writes rootless). They are private: hidden from listxattr, refused to
// getxattr/setxattr through the mount.
bool is_private_xattr(std::string_view name);

struct DirMarks {
  bool opaque = false;      // hides everything below this directory
  bool xwhiteouts = false;  // may contain xattr whiteouts (kernel "opaque=x")
};

// Reads the marks of a directory object in `layer`.
Result<DirMarks> dir_marks(const Layer& layer, const ObjRef& dir);

// True if the object (already stat'ed as `st`) in a directory whose marks say xwhiteouts is
// an xattr whiteout: a zero-size regular file with overlay.whiteout.
Result<bool> is_xattr_whiteout(const Layer& layer, const ObjRef& obj, const struct stat& st);

}  // namespace lamina::core::overlay
