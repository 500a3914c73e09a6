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

#include <cstdint>
#include <optional>
#include <string>
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
  std::string redirect;     // overlay.redirect: where the lower parts live ("/a/b" or "name")
  bool impure = false;      // overlay.impure: holds copied-up entries (see FileMarks::ino)
};

// Reads the marks of a directory object in `layer`.
Result<DirMarks> dir_marks(const Layer& layer, const ObjRef& dir);

// True if the object (already stat'ed as `st`) in a directory whose marks say xwhiteouts is
// an xattr whiteout: a zero-size regular file with overlay.whiteout.
Result<bool> is_xattr_whiteout(const Layer& layer, const ObjRef& obj, const struct stat& st);

// A metadata-only copy-up (kernel overlayfs's metacopy=on): an upper regular file carrying
// overlay.metacopy holds metadata only; its data is the lower file of the same name, or the
// one its overlay.redirect names.
// lamina also records, on every non-directory it copies up, the st_ino the object showed
// before (overlay.lamina.ino, private like every overlay xattr), so the number survives
// remounts; the parent directory gets kernel overlayfs's overlay.impure mark, which tells
// readdir which directories hold such entries.
struct FileMarks {
  bool metacopy = false;
  std::string redirect;
  uint64_t ino = 0;  // 0: none recorded
};
// One listxattr for the common unmarked file; values only for the names present.
Result<FileMarks> file_marks(const Layer& layer, const ObjRef& file);

// overlay.nlink on an upper inode shared with the index: "U+N"/"U-N", the difference between
// the link count the mount shows and the inode's real one (kernel overlayfs's format).
Result<std::optional<int>> nlink_offset(const Layer& layer, const ObjRef& obj);
Status set_nlink_offset(int fd, const char* prefix, int offset);

// ---- writing the format (upper layer only) ----

// Writes a whiteout for `name` in the directory `dir_fd`: a char device 0/0 when `device`,
// else an empty ".wh.NAME" file.
Status write_whiteout(int dir_fd, const std::string& name, bool device);
// True if `name` in dir_fd is a whiteout in any form (device, ".wh.NAME").
Result<bool> has_whiteout(int dir_fd, const std::string& name);
// Removes every whiteout inside the directory dir_fd (before it is removed or reused).
Status clear_whiteouts(int dir_fd);
// Marks the directory (an O_PATH or real fd) opaque with PREFIX + "opaque" = "y".
Status set_opaque(int fd, const char* prefix);
Status set_redirect(int fd, const char* prefix, const std::string& value);
Status set_metacopy(int fd, const char* prefix);
Status set_origin_ino(int fd, const char* prefix, uint64_t ino);
Status set_impure(int dir_fd, const char* prefix);
// Drops the metacopy mark (the data is now in the upper file), then its redirect.
Status clear_metacopy(int fd, const char* prefix);

}  // namespace lamina::core::overlay
