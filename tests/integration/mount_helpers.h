// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers shared by the integration tests: temp dirs, child processes, a laminafs mount and a
// kernel overlayfs mount that always unmount, and a watchdog that unmounts everything and
// exits if a test hangs on a dead FUSE mount.
//
// Every helper throws std::runtime_error on a setup failure (a broken test environment, not a
// daemon bug); Catch reports the exception with its message.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "integration/fs_util.h"
#include "integration/process.h"

namespace lamina::it {

// The daemon under test: $LAMINAFS_BIN when set (e.g. to run the suite against fuse-overlayfs
// as a reference), else the laminafs built next to this test.
std::string laminafs_bin();
// What `laminafs --version` says of an optional part ("FUSE passthrough", "FUSE over
// io_uring"): true for "FEATURE: built in". FAILs the test when the line is missing.
bool laminafs_built_with(const std::string& feature);

// True when mount tests can run here (root and /dev/fuse). Otherwise FAILs the current test
// with the reason, unless LAMINA_SKIP_MOUNT_TESTS=1, where it WARNs and returns false.
bool mount_env_ok();

// Use at the top of every TEST_CASE that mounts.
#define LAMINA_REQUIRE_MOUNT_ENV()             \
  do {                                         \
    if (!::lamina::it::mount_env_ok()) return; \
  } while (0)

// Unmounts `path` with fusermount3 -u, then umount2(MNT_DETACH) if it is still mounted.
void unmount_fuse(const std::string& path) noexcept;

// ---------------------------------------------------------------------------------------------

// mkdtemp("/tmp/lamina-it.XXXXXX"); the destructor unmounts whatever is still mounted below it
// (deepest first) and removes the tree.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string sub(std::string_view rel) const { return path_ + "/" + std::string(rel); }
  // mkdir -p path()/rel, returns the full path.
  std::string mkdir(std::string_view rel, mode_t mode = 0755) const;

 private:
  void cleanup();

  std::string path_;
};

// Escapes one lowerdir item for the -o string: '\' ',' ':' get a backslash.
std::string escape_lower(std::string_view path);

// The -o string of a laminafs / fuse-overlayfs mount.
struct StackPaths {
  std::vector<std::string> lowers;  // topmost first, like lowerdir=
  std::string upper;                // empty: read-only mount
  std::string work;
  std::vector<std::string> extra;  // more -o items, appended verbatim
};
// "lowerdir=…,upperdir=…,workdir=…" plus paths.extra, plus $LAMINA_IT_OPTIONS when set (to
// run a whole suite in another mode, e.g. LAMINA_IT_OPTIONS=writeback=1).
std::string mount_options(const StackPaths& paths);

// Runs `laminafs ARGS... MOUNTPOINT`, waits for it to exit (it daemonizes once the mount is
// usable), and records the outcome. The destructor unmounts if anything is mounted there.
class Mount {
 public:
  Mount(std::string mountpoint, std::vector<std::string> args);
  // laminafs -o mount_options(paths) MOUNTPOINT
  Mount(std::string mountpoint, const StackPaths& paths);
  ~Mount();
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;

  // Exit 0 and the mount is in /proc/self/mountinfo.
  bool ok() const { return result_.succeeded() && mounted_now_; }
  const ProcResult& result() const { return result_; }
  const std::string& path() const { return mountpoint_; }
  // The command line and the outcome, for failure messages.
  std::string describe() const;
  void unmount() noexcept;

 private:
  std::string mountpoint_;
  std::vector<std::string> argv_;
  ProcResult result_;
  bool mounted_now_ = false;
};

// `laminafs -f` as our child, so its pid is the daemon's and its messages are ours (the
// daemon logs to syslog once daemonized). `prefix` goes before the daemon's path, e.g.
// {"prlimit", "--nofile=64"} (a program that execs its arguments keeps the pid). The
// constructor waits up to 15 s for the mount; the destructor kills the daemon (SIGKILL) if it
// still runs and detaches the mount.
class ForegroundDaemon {
 public:
  ForegroundDaemon(std::string mnt, const StackPaths& paths,
                   const std::vector<std::string>& prefix = {});
  ~ForegroundDaemon();
  ForegroundDaemon(const ForegroundDaemon&) = delete;
  ForegroundDaemon& operator=(const ForegroundDaemon&) = delete;

  bool ok() const { return mounted_; }
  pid_t pid() const { return child_->pid(); }
  bool running() const { return child_->running(); }
  // Waits up to `timeout` for the daemon to exit (it does after an unmount).
  bool wait_exit(std::chrono::milliseconds timeout) { return child_->wait(timeout).has_value(); }
  std::string describe() const { return child_->result().describe(); }
  void kill9() { child_->kill_and_reap(); }
  // The dead mount: detached (lazy unmount), as an admin would after a crash.
  void detach();
  const std::string& path() const { return mnt_; }
  // fusermount3 -u, then waits up to `timeout` for the daemon to exit (killed after that).
  // The daemon's result: a clean unmount exits 0 (and, in sanitizer builds, reports no leak).
  ProcResult unmount(std::chrono::milliseconds timeout = std::chrono::seconds(30));

 private:
  std::string mnt_;
  std::unique_ptr<Child> child_;
  bool mounted_ = false;
};

// Kernel overlayfs over the same kind of stack, as the reference. Lower-only mounts are
// read-only; a single lower gets an extra empty lower (the kernel wants two without upper).
class KernelOverlay {
 public:
  KernelOverlay(std::string mountpoint, const StackPaths& requested);
  ~KernelOverlay();
  KernelOverlay(const KernelOverlay&) = delete;
  KernelOverlay& operator=(const KernelOverlay&) = delete;

  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return mountpoint_; }

 private:
  std::string mountpoint_;
  bool mounted_ = false;
  std::string error_;
};

// Registers a mount point for the watchdog (which unmounts lazily and exits the process
// after $LAMINA_IT_TIMEOUT seconds, default 600, so a hung daemon cannot hang CI).
void watchdog_track(const std::string& mountpoint);
void watchdog_untrack(const std::string& mountpoint);

}  // namespace lamina::it
