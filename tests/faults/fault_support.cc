// SPDX-License-Identifier: Apache-2.0
#include "faults/fault_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

#ifndef FAULTFS_BIN
#define FAULTFS_BIN "faultfs"
#endif

namespace lamina::ft {
namespace {

constexpr const char* kImagePrefix = "lamina-faults-";

// The pid in "…/lamina-faults-PID-NAME.img", or 0.
pid_t image_owner(const std::string& backing) {
  auto slash = backing.rfind('/');
  std::string base = slash == std::string::npos ? backing : backing.substr(slash + 1);
  if (base.rfind(kImagePrefix, 0) != 0) return 0;
  return static_cast<pid_t>(std::atol(base.c_str() + std::string(kImagePrefix).size()));
}

bool process_alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH); }

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

void run_or_throw(const std::vector<std::string>& argv) {
  auto r = it::run_process(argv, std::chrono::seconds(60));
  if (!r.succeeded()) {
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    throw std::runtime_error(cmd + "failed: " + r.describe());
  }
}

}  // namespace

void sweep_stale_faults() {
  // /dev/loopN of a dead test run: its mounts go (lazily), then the device.
  DIR* dir = ::opendir("/sys/block");
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name.rfind("loop", 0) != 0) continue;
    std::string backing = first_line("/sys/block/" + name + "/loop/backing_file");
    pid_t owner = image_owner(backing);
    if (owner != 0 && !process_alive(owner)) stale.push_back("/dev/" + name);
  }
  ::closedir(dir);
  if (stale.empty()) return;
  auto mounts = it::read_mountinfo();
  for (const auto& dev : stale) {
    for (auto m = mounts.rbegin(); m != mounts.rend(); ++m) {
      if (m->source == dev) {
        std::fprintf(stderr, "faults: stale mount of %s on %s: detaching\n", dev.c_str(),
                     m->point.c_str());
        ::umount2(m->point.c_str(), MNT_DETACH);
      }
    }
    it::run_process({"losetup", "-d", dev}, std::chrono::seconds(20));
  }
}

// ---- SmallFs ----------------------------------------------------------------------------------

SmallFs::SmallFs(const it::TempDir& tmp, const std::string& name, uint64_t size_kib,
                 unsigned inodes)
    : image_(tmp.sub(fmt::format("{}{}-{}.img", kImagePrefix, ::getpid(), name))),
      dir_(tmp.mkdir(name)),
      ballast_(dir_ + "/ballast") {
  sweep_stale_faults();
  run_or_throw({"truncate", "-s", fmt::format("{}K", size_kib), image_});
  run_or_throw({"mkfs.ext4", "-q", "-F", "-b", "1024", "-m", "0", "-N", std::to_string(inodes),
                "-O", "^has_journal,^resize_inode", "-I", "256", image_});
  run_or_throw({"mount", "-t", "ext4", "-o", "loop", image_, dir_});
  mounted_ = true;
  it::make_dirs(ballast_);
}

SmallFs::~SmallFs() {
  if (!mounted_) return;
  // Whatever sits on top (a laminafs mount with its upper here) goes first.
  auto mounts = it::read_mountinfo();
  std::sort(mounts.begin(), mounts.end(), [](const it::MountInfo& a, const it::MountInfo& b) {
    return a.point.size() > b.point.size();
  });
  for (const auto& m : mounts) {
    if (m.point.rfind(dir_ + "/", 0) == 0) it::unmount_fuse(m.point);
  }
  // A daemon that was just unmounted may still be closing its descriptors of the upper.
  for (int i = 0; i < 100 && ::umount2(dir_.c_str(), 0) != 0 && errno == EBUSY; ++i) {
    ::usleep(50 * 1000);
  }
  if (it::is_mountpoint(dir_)) {
    std::fprintf(stderr, "faults: %s still busy after 5 s; detaching\n", dir_.c_str());
    ::umount2(dir_.c_str(), MNT_DETACH);
  }
  ::unlink(image_.c_str());
}

void SmallFs::fill_inodes() {
  for (;;) {
    std::string p = fmt::format("{}/i{}", ballast_, files_++);
    int fd = ::open(p.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == ENOSPC) break;
      it::throw_errno("fill_inodes: create " + p);
    }
    ::close(fd);
  }
}

void SmallFs::fill_blocks() {
  std::string p = fmt::format("{}/b{}", ballast_, files_++);
  int flags = O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC;
  if (::access(p.c_str(), F_OK) != 0 && errno == ENOENT) {
    int fd = ::open(p.c_str(), flags, 0644);
    if (fd < 0 && errno == ENOSPC) {
      p = fmt::format("{}/i0", ballast_);  // no inode for a new file: grow one that exists
    } else if (fd < 0) {
      it::throw_errno("fill_blocks: create " + p);
    } else {
      ::close(fd);
    }
  }
  std::string chunk(64 * 1024, 'B');
  // Big writes, then single blocks, then bytes, until a whole pass adds nothing: closing the
  // file gives back its preallocated blocks, a sync what delayed allocation had reserved. And
  // until a pass 50 ms later adds nothing too: the daemon closes its descriptor of a file
  // closed through the mount when the kernel's asynchronous RELEASE arrives, which gives back
  // that file's preallocated blocks after close() returned (seen as a setxattr that found a
  // block on a "full" upper).
  for (int empty_passes = 0; empty_passes < 2;) {
    int fd = ::open(p.c_str(), flags, 0644);
    if (fd < 0) it::throw_errno("fill_blocks: open " + p);
    size_t added = 0;
    for (size_t size : {size_t{64 * 1024}, size_t{1024}, size_t{1}}) {
      ssize_t n;
      while ((n = ::write(fd, chunk.data(), size)) > 0) added += static_cast<size_t>(n);
      ::fsync(fd);
    }
    ::close(fd);
    // A block left that the data passes cannot reach can still hold an xattr block (one per
    // inode): give every ballast file one, of distinct values (equal xattr blocks are shared).
    for (const auto& name : list_dir(ballast_)) {
      std::string value = fmt::format("{:0>900}", xattr_serial_++);
      std::string file = ballast_ + "/" + name;
      if (::setxattr(file.c_str(), "user.ballast", value.data(), value.size(), XATTR_CREATE) == 0)
        ++added;
    }
    ::sync();
    if (added != 0) {
      empty_passes = 0;
    } else if (++empty_passes < 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

void SmallFs::free_all() {
  for (const auto& name : list_dir(ballast_)) ::unlink((ballast_ + "/" + name).c_str());
  ::sync();
}

uint64_t SmallFs::free_bytes() const {
  struct statvfs sv;
  if (::statvfs(dir_.c_str(), &sv) != 0) it::throw_errno("statvfs " + dir_);
  return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
}

uint64_t SmallFs::free_inodes() const {
  struct statvfs sv;
  if (::statvfs(dir_.c_str(), &sv) != 0) it::throw_errno("statvfs " + dir_);
  return sv.f_favail;
}

// ---- FaultLower -----------------------------------------------------------------------------

FaultLower::FaultLower(std::string source, std::string mnt) : mnt_(std::move(mnt)) {
  it::watchdog_track(mnt_);
  child_ = std::make_unique<it::Child>(std::vector<std::string>{FAULTFS_BIN, source, mnt_, "-f"});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    if (it::is_mountpoint(mnt_)) {
      mounted_ = true;
      return;
    }
    if (child_->wait(std::chrono::milliseconds(5))) return;
  }
}

FaultLower::~FaultLower() {
  it::unmount_fuse(mnt_);
  if (!child_->wait(std::chrono::seconds(5))) child_->kill_and_reap();
  it::watchdog_untrack(mnt_);
}

// ---- syscall helpers --------------------------------------------------------------------------

int errno_of(int rc) { return rc < 0 ? errno : 0; }

int write_path(const std::string& path, int flags, const std::string& data) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = 0;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      err = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0 && err == 0) err = errno;
  return err;
}

int read_all(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  if (out) out->clear();
  char buf[16 * 1024];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    if (out) out->append(buf, static_cast<size_t>(n));
  }
  int err = n < 0 ? errno : 0;
  ::close(fd);
  return err;
}

void drop_caches(int what) {
  ::sync();
  int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) it::throw_errno("open /proc/sys/vm/drop_caches");
  std::string v = std::to_string(what) + "\n";
  if (::write(fd, v.data(), v.size()) < 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    it::throw_errno("write /proc/sys/vm/drop_caches");
  }
  ::close(fd);
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) it::throw_errno("opendir " + path);
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> work_leftovers(const std::string& work) {
  std::vector<std::string> out;
  for (std::string& name : list_dir(work + "/work")) {
    // The whiteout inode the daemon links its whiteouts to lives there for the whole mount.
    if (name.rfind("#lamina-whiteout-", 0) != 0) out.push_back(std::move(name));
  }
  return out;
}

bool mount_alive(const std::string& mnt) {
  struct stat st;
  return ::stat(mnt.c_str(), &st) == 0;
}

}  // namespace lamina::ft
