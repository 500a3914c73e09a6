// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/inode_map.h"

#include <algorithm>
#include <bit>

namespace lamina::core {

InodeMap::InodeMap(const std::vector<dev_t>& devs) {
  for (dev_t d : devs) {
    if (std::find(devs_.begin(), devs_.end(), d) == devs_.end()) devs_.push_back(d);
  }
  same_fs_ = devs_.size() <= 1;
  common_dev_ = devs_.empty() ? 0 : devs_[0];
  // Indexes 1..n for the layers' filesystems, n+1 for the table; 0 is never used so that a
  // composed number is never a plain one.
  overflow_index_ = devs_.size() + 1;
  unsigned bits = static_cast<unsigned>(std::bit_width(overflow_index_));
  shift_ = 64 - bits;
}

uint64_t InodeMap::map(dev_t dev, ino_t ino) {
  if (same_fs_) {
    // An object on another filesystem (a mount point inside a layer) must not collide with
    // the real numbers: it gets a table number with the top bit set.
    if (dev == common_dev_) return ino;
    return allocate(dev, ino);
  }
  auto it = std::find(devs_.begin(), devs_.end(), dev);
  if (it != devs_.end() && (static_cast<uint64_t>(ino) >> shift_) == 0) {
    uint64_t index = static_cast<uint64_t>(it - devs_.begin()) + 1;
    return (index << shift_) | ino;
  }
  return allocate(dev, ino);
}

uint64_t InodeMap::allocate(dev_t dev, ino_t ino) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = table_.try_emplace({dev, ino}, 0);
  if (inserted) {
    uint64_t base = same_fs_ ? (uint64_t{1} << 63) : (overflow_index_ << shift_);
    it->second = base | next_++;
  }
  return it->second;
}

}  // namespace lamina::core
