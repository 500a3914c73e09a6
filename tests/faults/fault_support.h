// SPDX-License-Identifier: Apache-2.0
#pragma once
// Fault injection for the faults suite: a small ext4 filesystem on a loop device that can be
// filled up (ENOSPC) and freed again, and a lower layer whose bad blocks read as EIO (faultfs).
//
// Cleanup: every device and mount is owned by an RAII object. A loop device is attached with
// autoclear (mount -o loop), so unmounting the filesystem detaches it; the guard
// (sweep_stale_faults) unmounts what an earlier run killed mid-test left below /tmp/lamina-it.*
// and detaches loop devices whose backing file lies there. Each fixture runs it first.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "integration/mount_helpers.h"

namespace lamina::ft {

// Unmounts (lazily) leftover test mounts of a killed earlier run and detaches their loop
// devices. Mounts of a running test binary are left alone (their TempDir's path is still in
// use by a live process: only directories whose owner pid is gone are swept).
void sweep_stale_faults();

// An ext4 filesystem of `size_kib` KiB with at most `inodes` inodes (1 KiB blocks, no
// journal, no reserved blocks) mounted at `dir`. The destructor unmounts it (detaching the
// loop device) after unmounting anything still mounted on top of it.
class SmallFs {
 public:
  SmallFs(const it::TempDir& tmp, const std::string& name, uint64_t size_kib, unsigned inodes);
  ~SmallFs();
  SmallFs(const SmallFs&) = delete;
  SmallFs& operator=(const SmallFs&) = delete;

  const std::string& path() const { return dir_; }
  std::string sub(const std::string& rel) const { return dir_ + "/" + rel; }

  // Takes every free block and inode (files under path()/ballast) until the filesystem
  // answers ENOSPC, synced so no delayed allocation hides space.
  void fill_blocks();
  void fill_inodes();
  void fill() {
    fill_inodes();
    fill_blocks();
  }
  // Gives it all back.
  void free_all();
  uint64_t free_bytes() const;
  uint64_t free_inodes() const;

 private:
  std::string image_;
  std::string dir_;
  std::string ballast_;
  unsigned files_ = 0;
  unsigned xattr_serial_ = 0;  // distinct values for the ballast xattr blocks
  bool mounted_ = false;
};

// faultfs (a read-only pass-through FUSE filesystem, see faultfs.cc) over `source`, mounted at
// `mnt`: files named eio* fail reads of bytes [4096, 8192) with EIO. Unmounted on
// destruction.
class FaultLower {
 public:
  FaultLower(std::string source, std::string mnt);
  ~FaultLower();
  FaultLower(const FaultLower&) = delete;
  FaultLower& operator=(const FaultLower&) = delete;

  bool ok() const { return mounted_; }
  std::string describe() const { return child_->result().describe(); }
  const std::string& path() const { return mnt_; }

 private:
  std::string mnt_;
  std::unique_ptr<it::Child> child_;
  bool mounted_ = false;
};

// Sizes of the bad region of an eio* file in faultfs.
constexpr off_t kBadBegin = 4096;
constexpr off_t kBadEnd = 8192;

// ---- small syscall helpers: errno of the operation, 0 on success -----------------------------

int errno_of(int rc);
// open(path, flags, 0644), write `data`, close; the first errno met (0: all went through).
int write_path(const std::string& path, int flags, const std::string& data);
// Reads the whole file like cat does; the errno that ended it (0: the end of the file), the
// bytes read so far in *out when given.
int read_all(const std::string& path, std::string* out = nullptr);
// echo WHAT > /proc/sys/vm/drop_caches after a sync: 1 page cache, 2 dentries and inodes
// (FUSE sends FORGET for them), 3 both.
void drop_caches(int what);
// Entries of a directory (no "." and ".."), sorted.
std::vector<std::string> list_dir(const std::string& path);
// Names in the work dir that are not laminafs's own fixed ones (leftover temp files).
std::vector<std::string> work_leftovers(const std::string& work);
// True if the daemon answers on `mnt` (stat of the root works, no ENOTCONN).
bool mount_alive(const std::string& mnt);

}  // namespace lamina::ft
