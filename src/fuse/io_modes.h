// SPDX-License-Identifier: Apache-2.0
#pragma once
// FUSE passthrough bookkeeping. Private to src/fuse.
//
// The kernel serves the open files of one inode either all through one backing file
// (passthrough: reads and writes go to the upper file without the daemon) or all through the
// daemon; an open that would mix the two modes fails with EIO, and an inode has at most one
// backing file. So the first open of an inode decides its mode and later opens follow it
// until the last one is released. Only files whose data is in the upper pass through: a
// read-only open of a lower file must keep switching to the upper copy after a copy-up (see
// FileHandle), which a backing file fixed at open time cannot do.

#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace lamina::fuse {

class IoModes {
 public:
  // Registers an open of `inode` and returns the backing id to reply with (0: through the
  // daemon). `can_pass`: this open's data is in the upper. `open_backing()` registers the
  // backing file with the kernel and returns its id, or 0 when the kernel refused it; it is
  // called only for the first open of an inode, under the lock, so two first opens never race.
  template <class OpenBacking>
  int open(const void* inode, bool can_pass, OpenBacking&& open_backing) {
    std::lock_guard lock(mu_);
    Mode& m = modes_[inode];
    if (m.opens == 0) m.backing_id = can_pass ? open_backing() : 0;
    ++m.opens;
    return m.backing_id;
  }

  // Unregisters an open of `inode`; returns the backing id to close when it was the last one
  // (0: nothing to close).
  int release(const void* inode) {
    std::lock_guard lock(mu_);
    auto it = modes_.find(inode);
    if (it == modes_.end()) return 0;
    if (--it->second.opens > 0) return 0;
    int id = it->second.backing_id;
    modes_.erase(it);
    return id;
  }

  size_t inodes() {
    std::lock_guard lock(mu_);
    return modes_.size();
  }

 private:
  struct Mode {
    int backing_id = 0;  // > 0: passthrough to this backing file
    uint32_t opens = 0;
  };
  std::mutex mu_;  // guards modes_ (leaf, except for the open_backing() ioctl)
  std::unordered_map<const void*, Mode> modes_;
};

}  // namespace lamina::fuse
