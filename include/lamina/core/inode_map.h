// SPDX-License-Identifier: Apache-2.0
#pragma once
// The st_ino the mount shows for an object of some layer. Numbers are unique within the mount
// and stable while it is mounted:
//   - all layers on one filesystem: the real inode number (as kernel overlayfs does);
//   - otherwise, like overlayfs's xino: the top bits carry a per-filesystem index, the low bits
//     the real number; a number too large for that gets a number from a table, in a range of
//     its own, and keeps it until unmount.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lamina::core {

class InodeMap {
 public:
  // `devs`: the devices of the layers' roots (duplicates allowed).
  explicit InodeMap(const std::vector<dev_t>& devs);

  uint64_t map(dev_t dev, ino_t ino);
  bool same_fs() const { return same_fs_; }

 private:
  uint64_t allocate(dev_t dev, ino_t ino);  // REQUIRES: mu_ not held

  bool same_fs_ = true;
  dev_t common_dev_ = 0;
  unsigned shift_ = 0;       // low bits available for the real number
  uint64_t overflow_index_;  // fs index reserved for table-allocated numbers
  std::vector<dev_t> devs_;  // index + 1 = fs index

  std::mutex mu_;  // guards table_, next_
  std::map<std::pair<dev_t, ino_t>, uint64_t> table_;
  uint64_t next_ = 1;
};

}  // namespace lamina::core
