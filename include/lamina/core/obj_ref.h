// SPDX-License-Identifier: Apache-2.0
#pragma once
// ObjRef: how a layer's object is held while the daemon caches it, and PathFd: how code gets a
// descriptor for one.
//
// Descriptors are the daemon's scarce resource: the kernel keeps every inode it looked up (FUSE
// entries are cached for a very long time), so the number of cached objects grows with the tree
// walked, while RLIMIT_NOFILE is fixed (often 1,024 soft, tens of thousands hard). So:
//  - a non-directory is named by its directory and name, and holds no descriptor;
//  - a directory holds a descriptor from a shared budget: when more directory descriptors are
//    open than the budget allows, the least recently used ones are closed and opened again from
//    (parent directory, name) when next used -- checked to be the same inode, else ESTALE;
//  - a few objects hold their descriptor for good: layer roots, index entries, and upper
//    objects whose name went away (nothing could open them again).
// A directory that moves in the upper is relocate()d, before it is removed it is hold()ed.

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "lamina/base/error.h"
#include "lamina/base/unique_fd.h"

namespace lamina::core {

struct ObjRef;

// The descriptor of a directory ObjRef, under the budget. Internal to ObjRef and PathFd.
class CachedDir {
 public:
  CachedDir(std::shared_ptr<const ObjRef> home, std::string name, UniqueFd fd,
            const struct stat& st);
  ~CachedDir();
  CachedDir(const CachedDir&) = delete;
  CachedDir& operator=(const CachedDir&) = delete;

 private:
  friend class PathFd;
  friend struct ObjRef;
  friend class DescriptorBudget;
  // An open descriptor, counted as in use until release(): never closed meanwhile.
  Result<int> acquire() const;
  void release() const { users_.fetch_sub(1, std::memory_order_release); }

  mutable std::mutex mu_;
  mutable UniqueFd fd_;                 // GUARDED_BY(mu_); invalid while closed
  std::shared_ptr<const ObjRef> home_;  // GUARDED_BY(mu_): the directory holding it
  std::string name_;                    // GUARDED_BY(mu_): and its name there
  mutable bool held_ = false;           // GUARDED_BY(mu_): never closed again
  const dev_t dev_;
  const ino_t ino_;
  mutable std::atomic<int> users_{0};
  mutable std::atomic<bool> referenced_{false};  // used since the clock hand last passed
  mutable size_t slot_ = SIZE_MAX;               // GUARDED_BY(DescriptorBudget): ring index
};

// A handle on one object inside one layer (see the top of this file). Store layers use
// `entry` (index + 1 of a manifest entry) instead; only upper objects are ever on disk there.
struct ObjRef {
  ObjRef() = default;
  // Holds `f` for good.
  explicit ObjRef(UniqueFd f) : fd_(std::move(f)) {}
  // A non-directory named by its directory and name.
  ObjRef(std::shared_ptr<const ObjRef> d, std::string n) : dir(std::move(d)), name(std::move(n)) {}
  // A directory dir/name whose inode is `st`, open as `f`: its descriptor is under the budget.
  ObjRef(std::shared_ptr<const ObjRef> d, std::string n, UniqueFd f, const struct stat& st)
      : cached_(std::make_unique<CachedDir>(std::move(d), std::move(n), std::move(f), st)) {}

  uint64_t entry = 0;
  std::shared_ptr<const ObjRef> dir;  // named form: the directory holding the object
  std::string name;                   // and its name there

  bool named() const { return !fd_.valid() && !cached_ && dir != nullptr; }
  // Has a descriptor of its own (held or under the budget), i.e. neither named nor a store entry.
  bool has_fd() const { return fd_.valid() || cached_ != nullptr; }
  // The descriptor a held ObjRef holds, which it gives up.
  UniqueFd take_fd() { return std::move(fd_); }

  // A directory moved in the upper: it is now dir/name. Call while a PathFd of it is alive
  // across the rename, so no reopen can look in between.
  void relocate(std::shared_ptr<const ObjRef> d, std::string n) const;
  // Its name is about to go (rmdir, replaced by a rename): keep the descriptor from now on.
  Status hold() const;

 private:
  friend class PathFd;
  UniqueFd fd_;
  std::unique_ptr<CachedDir> cached_;
};

// An O_PATH descriptor for an ObjRef for the moment: its own, one opened (never following a
// symlink) from its directory and name, or a budgeted directory's (kept open while this lives).
class PathFd {
 public:
  explicit PathFd(const ObjRef& obj);
  ~PathFd() {
    if (cached_) cached_->release();
  }
  PathFd(const PathFd&) = delete;
  PathFd& operator=(const PathFd&) = delete;

  bool ok() const { return fd_ >= 0; }
  int get() const { return fd_; }
  int code() const { return err_; }
  Error error() const { return Error{err_, "openat(O_PATH)"}; }

 private:
  const CachedDir* cached_ = nullptr;
  UniqueFd own_;
  int fd_ = -1;
  int err_ = EBADF;
};

// The process-wide budget of directory descriptors.
class DescriptorBudget {
 public:
  // Default: half of RLIMIT_NOFILE's soft limit when first used (at least 16); the rest is for
  // open files and everything else.
  static void set_limit(size_t n);
  static size_t limit();
  // Directory descriptors open now (under the budget).
  static size_t open_count();
  // Closes every directory descriptor not in use right now: after EMFILE/ENFILE.
  static void shed();

 private:
  friend class CachedDir;
  friend struct ObjRef;
  // A descriptor of `c` was opened: count it, and close others while over the limit.
  static void add(const CachedDir* c);
  // `c` holds its descriptor for good, or is going away.
  static void remove(const CachedDir* c);
};

// openat(O_PATH|O_NOFOLLOW); on EMFILE/ENFILE sheds the directory descriptors and tries again.
Result<UniqueFd> open_path_shedding(int dirfd, const char* name);

}  // namespace lamina::core
