// SPDX-License-Identifier: Apache-2.0
// Whole-tree operations done the way the common tools do them (find, ls -lR, rm -rf, chmod -R,
// mv's copy fallback), with *at() calls relative to a directory descriptor, and the tree
// generators that build the lower layers and plain-dir copies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lamina::bench {

struct TreeCount {
  uint64_t files = 0;  // every non-directory
  uint64_t dirs = 0;   // directories below the start (the start itself not counted)
  uint64_t bytes = 0;  // bytes read (warm) or copied (copy_tree)
};

// find/du style: readdir, then fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW) of every entry.
TreeCount stat_walk(int dirfd, const std::string& path);

// ls -lR style: readdir of a directory, then for every entry lstat and the two
// lgetxattr calls ls makes (security.selinux, system.posix_acl_access) by full path.
TreeCount ls_lr(const std::string& path);

// rm -rf: unlink every entry (d_type, fstatat when unknown), then the directory itself.
TreeCount rm_rf(int dirfd, const std::string& path);

// chmod -R: fstatat then fchmodat of every entry, the start included; files get `file_mode`,
// directories `dir_mode`.
TreeCount chmod_r(int dirfd, const std::string& path, unsigned file_mode, unsigned dir_mode);

// mv's fallback after EXDEV: copy the tree (data and mode) to `to`, then rm -rf `from`.
TreeCount copy_tree(int dirfd, const std::string& from, const std::string& to);

// Reads every file below `path` (absolute or relative to the cwd): warms the page cache.
TreeCount warm(const std::string& path);

// Builds DIR/d<i>[/s<j>]/<prefix>f<k> with `files` files of `size` bytes in each leaf
// directory: `top` directories, each with `sub` subdirectories (sub == 0: files in the top
// directories). Missing directories are made; existing ones are reused (layers share names).
TreeCount gen_tree(const std::string& dir, int top, int sub, int files, uint64_t size,
                   const std::string& prefix, uint64_t seed);

// Builds DIR/f_<label> for each size (label as size_label gives it), of pseudo-random data.
TreeCount gen_files(const std::string& dir, const std::vector<uint64_t>& sizes, uint64_t seed);

}  // namespace lamina::bench
