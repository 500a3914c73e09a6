// SPDX-License-Identifier: Apache-2.0
#pragma once
// Steps: single syscalls (or a short fixed sequence) with a description, whose result is a
// canonical string ("0", "-1 ENOENT", a file's content, a stat summary). Running the same
// steps on a plain directory and on a mount in lockstep and comparing the strings is the
// parity check.

#include <sys/stat.h>
#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lamina::wt {

// Per-side state of a step sequence: named open descriptors, saved stats.
struct Ctx {
  std::string root;
  std::string label;  // "plain" / "laminafs" / "kernel"
  std::map<std::string, int> fds;
  std::map<std::string, struct stat> saved;
  // Set on the mount side: unmounts and mounts again (step::remount); a no-op elsewhere.
  std::function<void()> on_remount;

  Ctx(std::string r, std::string l) : root(std::move(r)), label(std::move(l)) {}
  ~Ctx();
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
  std::string p(const std::string& rel) const { return rel.empty() ? root : root + "/" + rel; }
  int fd(const std::string& name) const;  // -1 if not open
  void close_all();
};

struct Step {
  std::string desc;
  std::function<std::string(Ctx&)> run;
};

// "0", "12", or "-1 ENOENT".
std::string rc_str(long rc, int err);
// Short canonical form of bytes: the bytes themselves (escaped) up to 64, else size+hash+head.
std::string bytes_str(const std::string& s);
// "f 0644 0:0 size=12 nlink=1" (size and nlink only for non-directories, rdev for devices).
std::string stat_str(const struct stat& st);

namespace step {
Step open(std::string path, int flags, std::string fd_name, mode_t mode = 0644);
Step close(std::string fd_name);
Step pwrite(std::string fd_name, off_t off, std::string data);
Step write(std::string fd_name, std::string data);
Step pread(std::string fd_name, off_t off, size_t len);
Step ftruncate(std::string fd_name, off_t size);
Step fsync(std::string fd_name);
Step fallocate(std::string fd_name, int mode, off_t off, off_t len);
Step lseek(std::string fd_name, off_t off, int whence);
Step copy_file_range(std::string in_fd, off_t in_off, std::string out_fd, off_t out_off,
                     size_t len);
Step flock(std::string fd_name, int op);
Step fstat(std::string fd_name);

Step cat(std::string path);  // whole content (bytes_str) or the error
Step write_file(std::string path, std::string data, mode_t mode = 0644);  // O_CREAT|O_TRUNC
Step truncate(std::string path, off_t size);
Step stat(std::string path);  // stat_str of lstat
Step list(std::string path);  // sorted names
Step mkdir(std::string path, mode_t mode = 0755);
Step rmdir(std::string path);
Step unlink(std::string path);
Step rename(std::string from, std::string to, unsigned flags = 0);
Step link(std::string from, std::string to);
Step symlink(std::string target, std::string path);
Step readlink(std::string path);
Step mknod(std::string path, mode_t mode, dev_t dev = 0);
Step chmod(std::string path, mode_t mode);
Step lchown(std::string path, uid_t uid, gid_t gid);
// utimensat(AT_FDCWD, path, times, flags); nullptr-like when `null_times`.
Step utimens(std::string path, struct timespec atime, struct timespec mtime, int flags = 0);
Step utimens_null(std::string path);
Step times(std::string path);           // exact atime/mtime (lstat)
Step save_stat(std::string path);       // remembers lstat for times_vs_saved
Step times_vs_saved(std::string path);  // "atime same|changed(recent)|changed(other) mtime ..."
Step setxattr(std::string path, std::string name, std::string value, int flags = 0);
Step getxattr(std::string path, std::string name);
Step listxattr(std::string path);  // user.* names, sorted
Step removexattr(std::string path, std::string name);
// Whole-sequence helpers run by a forked child.
Step child_write_as(uid_t uid, gid_t gid, std::string path, std::string data, bool truncate);
// Runs `steps` in one forked child that first drops to uid:gid (no supplementary groups):
// "desc=result; " for each, in order (permission parity for an unprivileged caller).
Step as_user(uid_t uid, gid_t gid, std::vector<Step> steps);
Step posix_lock_conflict(std::string fd_name, std::string path);
Step custom(std::string desc, std::function<std::string(Ctx&)> fn);
// Closes every descriptor, then remounts where the context can (Ctx::on_remount).
Step remount();
}  // namespace step

// Runs `steps` on both contexts in lockstep. Returns one report per step whose results
// differ (empty: parity).
std::vector<std::string> run_lockstep(const std::vector<Step>& steps, Ctx& expected, Ctx& actual);

}  // namespace lamina::wt
