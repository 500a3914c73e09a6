// SPDX-License-Identifier: Apache-2.0
#include "integration/mount_helpers.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#ifndef LAMINAFS_BIN
#define LAMINAFS_BIN "laminafs"
#endif

namespace lamina::it {
namespace {

// ---- watchdog ----------------------------------------------------------------------------

std::mutex g_watch_mu;
std::set<std::string>* g_watched = nullptr;  // GUARDED_BY(g_watch_mu); leaked on purpose

void watchdog_main(std::chrono::seconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::fprintf(stderr,
               "\nintegration_tests: WATCHDOG: still running after %lld s (LAMINA_IT_TIMEOUT); a "
               "mount probably hangs. Detaching all test mounts and exiting.\n",
               static_cast<long long>(limit.count()));
  std::set<std::string> points;
  {
    std::lock_guard<std::mutex> lock(g_watch_mu);
    if (g_watched) points = *g_watched;
  }
  for (auto it = points.rbegin(); it != points.rend(); ++it) {
    std::fprintf(stderr, "  umount -l %s\n", it->c_str());
    ::umount2(it->c_str(), MNT_DETACH);
  }
  std::_Exit(3);
}

void start_watchdog_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    long secs = 600;
    if (const char* env = std::getenv("LAMINA_IT_TIMEOUT")) secs = std::max(1L, std::atol(env));
    std::thread(watchdog_main, std::chrono::seconds(secs)).detach();
  });
}

std::string join_argv(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    if (a.size() > 300) {
      s += a.substr(0, 300) + fmt::format("...[{} chars]", a.size());
    } else {
      s += a;
    }
  }
  return s;
}

}  // namespace

// ---- environment -----------------------------------------------------------------------------

std::string laminafs_bin() {
  if (const char* env = std::getenv("LAMINAFS_BIN"); env && *env) return env;
  return LAMINAFS_BIN;
}

bool laminafs_built_with(const std::string& feature) {
  ProcResult r = run_process({laminafs_bin(), "--version"});
  REQUIRE(r.succeeded());
  INFO(r.out);
  REQUIRE(r.out.find(feature + ": ") != std::string::npos);
  return r.out.find(feature + ": built in") != std::string::npos;
}

bool mount_env_ok() {
  std::string why;
  if (::geteuid() != 0) {
    why = "the integration tests must run as root (they mount FUSE and kernel overlayfs)";
  } else if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    why = "/dev/fuse is missing or not accessible: " + errno_name(errno);
  } else if (::access(laminafs_bin().c_str(), X_OK) != 0) {
    why = "the daemon under test " + laminafs_bin() + " is not executable: " + errno_name(errno);
  }
  if (why.empty()) {
    start_watchdog_once();
    return true;
  }
  const char* skip = std::getenv("LAMINA_SKIP_MOUNT_TESTS");
  if (skip && std::string(skip) == "1") {
    WARN("skipping (LAMINA_SKIP_MOUNT_TESTS=1): " << why);
    return false;
  }
  FAIL(why << " (set LAMINA_SKIP_MOUNT_TESTS=1 to skip mount tests on purpose)");
  return false;
}

void unmount_fuse(const std::string& path) noexcept {
  try {
    if (!is_mountpoint(path)) return;
    run_process({"fusermount3", "-u", "-q", path}, std::chrono::seconds(20));
    if (!is_mountpoint(path)) return;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unmount %s: %s; trying umount2\n", path.c_str(), e.what());
  }
  if (::umount2(path.c_str(), 0) == 0 && !is_mountpoint(path)) return;
  ::umount2(path.c_str(), MNT_DETACH);
}

// ---- TempDir -------------------------------------------------------------------------------

TempDir::TempDir() {
  std::string tmpl = "/tmp/lamina-it.XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw_errno("mkdtemp");
  path_ = tmpl;
  ::chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  try {
    cleanup();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cleaning up %s: %s\n", path_.c_str(), e.what());
  }
}

void TempDir::cleanup() {
  // Unmount everything still mounted below us, deepest first, then delete.
  std::vector<MountInfo> below;
  for (auto& mi : read_mountinfo()) {
    if (mi.point.rfind(path_ + "/", 0) == 0) below.push_back(mi);
  }
  std::sort(below.begin(), below.end(),
            [](const MountInfo& a, const MountInfo& b) { return a.point.size() > b.point.size(); });
  for (const auto& mi : below) {
    if (mi.fstype.rfind("fuse", 0) == 0) {
      unmount_fuse(mi.point);
    } else if (::umount2(mi.point.c_str(), 0) != 0) {
      ::umount2(mi.point.c_str(), MNT_DETACH);
    }
    watchdog_untrack(mi.point);
  }
  if (const char* keep = std::getenv("LAMINA_IT_KEEP"); keep && std::string(keep) == "1") {
    std::fprintf(stderr, "LAMINA_IT_KEEP=1: keeping %s\n", path_.c_str());
    return;
  }
  remove_tree(path_);
}

std::string TempDir::mkdir(std::string_view rel, mode_t mode) const {
  std::string p = sub(rel);
  make_dirs(p, mode);
  return p;
}

// ---- laminafs mounts -----------------------------------------------------------------------

std::string escape_lower(std::string_view path) {
  std::string out;
  for (char c : path) {
    if (c == '\\' || c == ',' || c == ':') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::string mount_options(const StackPaths& paths) {
  std::string o = "lowerdir=";
  for (size_t i = 0; i < paths.lowers.size(); ++i) {
    if (i) o += ':';
    o += escape_lower(paths.lowers[i]);
  }
  if (!paths.upper.empty()) o += ",upperdir=" + escape_lower(paths.upper);
  if (!paths.work.empty()) o += ",workdir=" + escape_lower(paths.work);
  for (const auto& e : paths.extra) o += "," + e;
  // A whole suite under another mode (CI runs the write suite with writeback=1).
  if (const char* more = std::getenv("LAMINA_IT_OPTIONS"); more && *more)
    o += "," + std::string(more);
  return o;
}

Mount::Mount(std::string mountpoint, std::vector<std::string> args)
    : mountpoint_(strip_slash(std::move(mountpoint))) {
  start_watchdog_once();
  argv_.push_back(laminafs_bin());
  for (auto& a : args) argv_.push_back(std::move(a));
  argv_.push_back(mountpoint_);
  watchdog_track(mountpoint_);
  {
    Child child(argv_);
    if (!child.wait(std::chrono::seconds(30))) child.kill_and_reap();
    result_ = child.result();
  }
  // The contract: when laminafs exits 0 the mount is already usable, so no polling here.
  mounted_now_ = is_mountpoint(mountpoint_);
}

Mount::Mount(std::string mountpoint, const StackPaths& paths)
    : Mount(std::move(mountpoint), std::vector<std::string>{"-o", mount_options(paths)}) {}

Mount::~Mount() { unmount(); }

void Mount::unmount() noexcept {
  unmount_fuse(mountpoint_);
  try {
    if (!is_mountpoint(mountpoint_)) watchdog_untrack(mountpoint_);
  } catch (const std::exception&) {
  }
}

std::string Mount::describe() const {
  std::string s = "command: " + join_argv(argv_) + "\noutcome: " + result_.describe();
  if (result_.succeeded() && !mounted_now_) {
    s += "\n(exited 0 but " + mountpoint_ + " is not in /proc/self/mountinfo)";
  }
  return s;
}

// ---- laminafs -f ------------------------------------------------------------------------------

namespace {

std::vector<std::string> foreground_argv(const std::vector<std::string>& prefix,
                                         const std::string& mnt, const StackPaths& paths) {
  std::vector<std::string> argv = prefix;
  argv.insert(argv.end(), {laminafs_bin(), "-f", "-o", mount_options(paths), mnt});
  return argv;
}

}  // namespace

ForegroundDaemon::ForegroundDaemon(std::string mnt, const StackPaths& paths,
                                   const std::vector<std::string>& prefix)
    : mnt_(strip_slash(std::move(mnt))),
      child_(std::make_unique<Child>(foreground_argv(prefix, mnt_, paths))) {
  start_watchdog_once();
  watchdog_track(mnt_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    if (is_mountpoint(mnt_)) {
      mounted_ = true;
      return;
    }
    if (child_->wait(std::chrono::milliseconds(5))) return;  // exited: failed to mount
  }
}

ForegroundDaemon::~ForegroundDaemon() {
  if (child_->running()) child_->kill_and_reap();
  detach();
}

void ForegroundDaemon::detach() {
  if (is_mountpoint(mnt_)) ::umount2(mnt_.c_str(), MNT_DETACH);
  watchdog_untrack(mnt_);
}

ProcResult ForegroundDaemon::unmount(std::chrono::milliseconds timeout) {
  unmount_fuse(mnt_);
  if (child_->running() && !child_->wait(timeout)) child_->kill_and_reap();
  detach();
  mounted_ = false;
  return child_->result();
}

// ---- kernel overlayfs ----------------------------------------------------------------------

KernelOverlay::KernelOverlay(std::string mountpoint, const StackPaths& requested)
    : mountpoint_(strip_slash(std::move(mountpoint))) {
  start_watchdog_once();
  StackPaths paths = requested;
  const bool read_only = paths.upper.empty();
  if (read_only && paths.lowers.size() == 1) {
    std::string empty = mountpoint_ + ".empty-lower";
    make_dirs(empty);
    paths.lowers.push_back(empty);
  }
  std::string data = "lowerdir=";
  for (size_t i = 0; i < paths.lowers.size(); ++i) {
    if (i) data += ':';
    data += escape_lower(paths.lowers[i]);
  }
  if (!read_only) {
    data += ",upperdir=" + escape_lower(paths.upper) + ",workdir=" + escape_lower(paths.work);
  }
  watchdog_track(mountpoint_);
  if (data.size() < 4000) {
    if (::mount("lamina-it", mountpoint_.c_str(), "overlay", read_only ? MS_RDONLY : 0,
                data.c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = fmt::format("mount(2) overlay {} -o {}: {} (see dmesg)", mountpoint_, data,
                           errno_name(errno));
    }
    return;
  }
  // Too long for one page of mount(2) data: the new mount API, one "lowerdir+" per layer.
  int fs = ::fsopen("overlay", FSOPEN_CLOEXEC);
  if (fs < 0) {
    error_ = "fsopen(overlay): " + errno_name(errno);
    return;
  }
  auto fail = [&](const std::string& step) {
    error_ = step + ": " + errno_name(errno);
    char msg[1024];
    ssize_t n;
    while ((n = ::read(fs, msg, sizeof msg - 1)) > 0) {
      msg[n] = 0;
      error_ += std::string("; ") + msg;
    }
  };
  bool good = true;
  for (const auto& l : paths.lowers) {
    if (::fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", l.c_str(), 0) != 0) {
      fail("fsconfig lowerdir+ " + l);
      good = false;
      break;
    }
  }
  if (good && !read_only &&
      (::fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", paths.upper.c_str(), 0) != 0 ||
       ::fsconfig(fs, FSCONFIG_SET_STRING, "workdir", paths.work.c_str(), 0) != 0)) {
    fail("fsconfig upperdir/workdir");
    good = false;
  }
  if (good && ::fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    fail("fsconfig create");
    good = false;
  }
  if (good) {
    int mfd = ::fsmount(fs, FSMOUNT_CLOEXEC, read_only ? MOUNT_ATTR_RDONLY : 0);
    if (mfd < 0) {
      fail("fsmount");
    } else {
      if (::move_mount(mfd, "", AT_FDCWD, mountpoint_.c_str(), MOVE_MOUNT_F_EMPTY_PATH) == 0) {
        mounted_ = true;
      } else {
        fail("move_mount " + mountpoint_);
      }
      ::close(mfd);
    }
  }
  ::close(fs);
}

KernelOverlay::~KernelOverlay() {
  if (mounted_ && is_mountpoint(mountpoint_)) {
    if (::umount2(mountpoint_.c_str(), 0) != 0) ::umount2(mountpoint_.c_str(), MNT_DETACH);
  }
  watchdog_untrack(mountpoint_);
}

// ---- watchdog registry -----------------------------------------------------------------------

void watchdog_track(const std::string& mountpoint) {
  std::lock_guard<std::mutex> lock(g_watch_mu);
  if (!g_watched) g_watched = new std::set<std::string>();
  g_watched->insert(mountpoint);
}

void watchdog_untrack(const std::string& mountpoint) {
  std::lock_guard<std::mutex> lock(g_watch_mu);
  if (g_watched) g_watched->erase(mountpoint);
}

}  // namespace lamina::it
