// SPDX-License-Identifier: Apache-2.0
#pragma once
// What every FUSE op reaches through fuse_req_userdata(). Private to src/fuse.

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "io_modes.h"
#include "lamina/core/union_fs.h"
#include "offload.h"

namespace lamina::fuse {

// Open file and directory handles, so the ones the kernel never released (a lazy unmount
// with files still open) are freed when the daemon ends.
class HandleRegistry {
 public:
  using Deleter = void (*)(void*);
  HandleRegistry() = default;
  HandleRegistry(const HandleRegistry&) = delete;
  HandleRegistry& operator=(const HandleRegistry&) = delete;
  ~HandleRegistry() {
    for (auto& [p, del] : handles_) del(p);
  }
  void add(void* p, Deleter del) {
    std::lock_guard lock(mu_);
    handles_.emplace(p, del);
  }
  // Forgets and frees p.
  void release(void* p) {
    Deleter del = nullptr;
    {
      std::lock_guard lock(mu_);
      auto it = handles_.find(p);
      if (it == handles_.end()) return;
      del = it->second;
      handles_.erase(it);
    }
    del(p);
  }

 private:
  std::mutex mu_;  // guards handles_ (leaf)
  std::unordered_map<void*, Deleter> handles_;
};

struct DaemonState {
  HandleRegistry handles;  // destroyed after fs (declared first): handles point at nodes
  std::unique_ptr<core::UnionFs> fs;
  double timeout = 1.0;  // entry and attribute cache timeout, seconds
  bool acl = true;       // ask the kernel for POSIX ACL handling
  // FUSE passthrough: asked for (option) and, after init, granted by the kernel.
  bool passthrough_wanted = false;
  bool passthrough = false;
  std::atomic<bool> passthrough_refused{false};  // the kernel refused a backing file: stop asking
  IoModes io_modes;                              // with passthrough: each open inode's I/O mode
  // The kernel's writeback cache: asked for (option) and, after init, granted by the kernel.
  bool writeback_wanted = false;
  bool writeback = false;
  // FUSE over io_uring: asked for (option) and, after init, offered by the kernel; then the
  // requests that may take long are answered by `offload` (see offload.h). Declared last: its
  // threads end before anything they use goes.
  bool uring_wanted = false;
  bool uring = false;
  Offload offload;
};

}  // namespace lamina::fuse
