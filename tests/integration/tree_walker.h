// SPDX-License-Identifier: Apache-2.0
#pragma once
// Walks a mounted tree without ever following a symlink and turns it into a canonical, sorted
// listing: one line per entry with what a user of the merged view can observe (type,
// permission bits, owner, size and nlink of non-directories, symlink target, user.* xattrs,
// a hash of regular file contents). Two views are equal when their listings are.
//
// Deliberately left out, because they legitimately differ between kernel overlayfs and a FUSE
// daemon: timestamps, inode and device numbers (checked separately), directory size and nlink.

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lamina::it {

struct Entry {
  std::string path;   // relative to the root; "." for the root itself
  struct stat st {};  // lstat()
  bool stat_ok = false;
  unsigned char d_type = 0;  // from the parent's readdir (DT_UNKNOWN for the root)
  ino_t d_ino = 0;           // from the parent's readdir
  std::string target;        // symlink target
  std::vector<std::pair<std::string, std::string>> user_xattrs;  // sorted
  std::vector<std::string> xattr_names;                          // everything llistxattr shows
  uint64_t content_hash = 0;                                     // FNV-1a 64 of the bytes
  uint64_t bytes_read = 0;
  std::vector<std::string> errors;  // syscalls that failed while reading this entry
};

struct WalkOptions {
  bool read_contents = true;  // hash regular files
  bool read_xattrs = true;
};

// Every entry under root (root included), sorted by path. Errors reading an entry are
// recorded in Entry::errors (and so show up in the listing) instead of being thrown.
std::vector<Entry> walk_tree(const std::string& root, const WalkOptions& opts = {});

uint64_t fnv1a(const void* data, size_t size, uint64_t h = 14695981039346656037ull);

// The canonical line of one entry, and of a whole tree.
std::string format_entry(const Entry& e);
std::vector<std::string> listing(const std::vector<Entry>& entries);
std::string join_lines(const std::vector<std::string>& lines);

// Empty when equal; otherwise a readable report of the first `max_diffs` differences
// (missing on one side, or differing lines shown one above the other).
std::string diff_listings(const std::vector<std::string>& expected,
                          const std::vector<std::string>& actual, const std::string& expected_name,
                          const std::string& actual_name, size_t max_diffs = 30);

// Things the merged view must never show: names starting with ".wh.", trusted.overlay.* or
// user.overlay.* xattrs in listxattr, such an xattr readable with getxattr, a d_type from readdir
// that disagrees with lstat. One line per problem. `root` is the tree `entries` came from.
std::vector<std::string> overlay_leaks(const std::string& root, const std::vector<Entry>& entries);

}  // namespace lamina::it
