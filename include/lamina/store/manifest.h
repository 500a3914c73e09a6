// SPDX-License-Identifier: Apache-2.0
#pragma once
// The manifest of a layer: every entry of the layer with its metadata, and for a regular file
// the object holding its bytes. This file is the one owner of the manifest encoding
// (docs/formats.md): a text file, one entry per line, sorted, with nothing in it that depends
// on when or where the layer was made, so the same change always encodes to the same bytes and
// the layer id (XXH3-128 of those bytes) names the content.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lamina/base/error.h"

namespace lamina::store {

inline constexpr int kManifestVersion = 1;

enum class EntryKind : char {
  kDir = 'd',
  kFile = 'f',
  kSymlink = 'l',
  kHardlink = 'h',  // another name of an earlier kFile entry of the same layer
  kChar = 'c',
  kBlock = 'b',
  kFifo = 'p',
  kSocket = 's',
  kWhiteout = 'w',  // the name is deleted: it hides what the layers below hold there
};

struct Entry {
  std::string path;  // "/" for the root, else "/a/b": no empty, "." or ".." components
  EntryKind kind = EntryKind::kFile;
  uint32_t mode = 0;  // permission bits and setuid/setgid/sticky (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint64_t size = 0;   // kFile
  std::string object;  // kFile: the object holding the bytes
  std::string target;  // kSymlink: the link's target; kHardlink: the path of its file
  uint32_t rdev_major = 0;
  uint32_t rdev_minor = 0;
  bool opaque = false;  // kDir: hides everything the layers below hold under this path
  std::vector<std::pair<std::string, std::string>> xattrs;  // sorted by name, unique

  // What stat() shows as st_mode: type bits plus mode.
  mode_t st_mode() const;
  bool operator==(const Entry&) const = default;
};

struct Manifest {
  std::vector<Entry> entries;  // sorted by path_less; entries[0] is the root
};

// The manifest order: component by component, so a directory comes right before its
// children and siblings sort by bytes ("/a" < "/a/z" < "/a.b").
bool path_less(std::string_view a, std::string_view b);

// The parent of a path ("/" for "/a"); the last component.
std::string_view parent_path(std::string_view path);
std::string_view base_name(std::string_view path);

// The overlay format's private xattrs (trusted.overlay.*, user.overlay.*, user.fuseoverlayfs.*):
// how an upper directory encodes whiteouts, redirects and the like, never content. No layer
// holds them: commit drops them, export never writes them, import never stores them.
bool is_overlay_xattr(std::string_view name);

// True for a valid object name: 32 lowercase hex digits, optionally "-N" (a distinct object
// whose hash collided with an existing one).
bool valid_object_name(std::string_view name);

// Sorts the entries, then checks the manifest's rules (see validate). On failure *error names
// the entry and the rule.
bool normalize(Manifest* m, std::string* error);
// The rules: the root comes first and is a directory; paths are valid, unique and sorted; every
// entry's parent is a directory entry of the manifest; a hard link names an earlier kFile;
// object names are valid; xattr names are sorted and unique.
bool validate(const Manifest& m, std::string* error);

// The canonical bytes. REQUIRES: validate(m).
std::string encode(const Manifest& m);
// Parses and validates. On failure returns false and *error names the line and the problem.
bool decode(std::string_view bytes, Manifest* m, std::string* error);

}  // namespace lamina::store
