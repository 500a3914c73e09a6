// SPDX-License-Identifier: Apache-2.0
#include "lamina/fuse/daemon.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon_state.h"
#include "fuse_ops.h"
#include "lamina/base/log.h"
#include "lamina/base/sys.h"
#include "lamina/core/dir_layer.h"

namespace lamina::fuse {
namespace {

const char* program_name = "laminafs";  // set once by run_daemon, before any thread starts

void fail(const std::string& msg) { std::fprintf(stderr, "%s: %s\n", program_name, msg.c_str()); }

// Nodes hold O_PATH descriptors, one per contributing layer: take every descriptor allowed.
void raise_fd_limit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

bool open_layer(const std::string& role, const std::string& path,
                std::vector<std::unique_ptr<core::Layer>>* layers) {
  auto layer = core::DirLayer::open(path);
  if (!layer) {
    fail(role + " '" + path + "': " + std::strerror(layer.code()));
    return false;
  }
  layers->push_back(std::move(*layer));
  return true;
}

std::string real_path(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) == nullptr) return p;
  return buf;
}

bool is_within(const std::string& inner, const std::string& outer) {
  return inner == outer ||
         (inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
          inner[outer.size()] == '/');
}

// Checks upper and work: both directories, same filesystem, separate subtrees.
bool check_upper_work(const core::MountOptions& o) {
  auto work = sys::openat(AT_FDCWD, o.workdir.c_str(), O_PATH | O_DIRECTORY);
  if (!work) {
    fail("workdir '" + o.workdir + "': " + std::strerror(work.code()));
    return false;
  }
  auto upper = sys::openat(AT_FDCWD, o.upperdir.c_str(), O_PATH | O_DIRECTORY);
  if (!upper) {
    fail("upperdir '" + o.upperdir + "': " + std::strerror(upper.code()));
    return false;
  }
  auto wst = sys::fstat(work->get());
  auto ust = sys::fstat(upper->get());
  if (!wst || !ust) {
    fail("cannot stat upperdir or workdir");
    return false;
  }
  if (wst->st_dev != ust->st_dev) {
    fail("upperdir '" + o.upperdir + "' and workdir '" + o.workdir +
         "' are on different filesystems (they must share one)");
    return false;
  }
  std::string ru = real_path(o.upperdir), rw = real_path(o.workdir);
  if (is_within(ru, rw) || is_within(rw, ru)) {
    fail("upperdir '" + o.upperdir + "' and workdir '" + o.workdir + "' must be separate subtrees");
    return false;
  }
  return true;
}

// Escapes commas so libfuse's -o parser keeps each option whole (context="a,b").
std::string escape_commas(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

bool has_option_prefix(const std::vector<std::string>& opts, const std::string& prefix) {
  for (const auto& o : opts) {
    if (o.compare(0, prefix.size(), prefix) == 0) return true;
  }
  return false;
}

// Removes dir/name and everything below it (leftovers in the work dir only).
void remove_tree(int dir_fd, const std::string& name) {
  if (sys::unlinkat(dir_fd, name.c_str(), 0).ok()) return;
  auto sub = sys::openat(dir_fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (sub) {
    std::vector<std::string> names;
    (void)sys::read_dir(sub->get(), [&](std::string_view n, unsigned char, ino_t) {
      names.emplace_back(n);
      return Status{};
    });
    for (const auto& n : names) remove_tree(sub->get(), n);
  }
  (void)sys::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR);
}

// SELinux mount options reach the kernel, which rejects them (EINVAL, no further word) when
// SELinux is not running. Say so by name instead.
bool check_selinux_options(const std::vector<std::string>& opts) {
  bool selinux = ::access("/sys/fs/selinux/enforce", F_OK) == 0;
  for (const auto& o : opts) {
    for (const char* key : {"context=", "fscontext=", "defcontext=", "rootcontext="}) {
      if (o.compare(0, std::strlen(key), key) == 0 && !selinux) {
        fail(std::string("option '") + std::string(key, std::strlen(key) - 1) +
             "' needs SELinux, which is not enabled on this system");
        return false;
      }
    }
  }
  return true;
}

// The work dir holds copy-ups and new objects until they are renamed into the upper. Like
// kernel overlayfs, lamina uses WORKDIR/work, and empties it at mount: anything there is a
// leftover of a crash and was never visible. Also finds out whether whiteouts can be char
// devices (mknod needs CAP_MKNOD; rootless mounts use ".wh.NAME").
std::optional<UniqueFd> prepare_work_dir(const std::string& workdir, bool* whiteout_devices,
                                         bool* trusted_xattrs, UniqueFd* index) {
  auto base = sys::openat(AT_FDCWD, workdir.c_str(), O_PATH | O_DIRECTORY);
  if (!base) {
    fail("workdir '" + workdir + "': " + std::strerror(base.code()));
    return std::nullopt;
  }
  Status made = sys::mkdirat(base->get(), "work", 0700);
  if (!made && made.code() != EEXIST) {
    fail("workdir '" + workdir + "': cannot create work/: " + made.error().message());
    return std::nullopt;
  }
  auto work = sys::openat(base->get(), "work", O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!work) {
    fail("workdir '" + workdir + "/work': " + std::strerror(work.code()));
    return std::nullopt;
  }
  std::vector<std::string> leftovers;
  (void)sys::read_dir(work->get(), [&](std::string_view name, unsigned char, ino_t) {
    leftovers.emplace_back(name);
    return Status{};
  });
  for (const auto& name : leftovers) remove_tree(work->get(), name);
  const char* probe = "#lamina-whiteout-probe";
  Status dev = sys::mknodat(work->get(), probe, S_IFCHR | 0, 0);
  *whiteout_devices = dev.ok();
  if (dev.ok()) (void)sys::unlinkat(work->get(), probe, 0);
  // trusted.* needs CAP_SYS_ADMIN in the filesystem's user namespace; a user namespace's root
  // has euid 0 but not that.
  *trusted_xattrs = sys::fsetxattr(work->get(), "trusted.overlay.lamina-probe", "", 0, 0).ok();
  if (*trusted_xattrs) (void)sys::fremovexattr(work->get(), "trusted.overlay.lamina-probe");
  // WORKDIR/index keeps copied-up lower hard links (kept across mounts, like overlayfs's).
  Status idx = sys::mkdirat(base->get(), "index", 0700);
  if (idx || idx.code() == EEXIST) {
    auto fd = sys::openat(base->get(), "index", O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (fd) *index = std::move(*fd);
  }
  return std::move(*work);
}

}  // namespace

void print_version() {
  std::printf("laminafs version %s\nFUSE library version %s\n", LAMINA_VERSION, fuse_pkgversion());
#ifdef FUSE_CAP_PASSTHROUGH
  std::printf("FUSE passthrough: built in (used with CAP_SYS_ADMIN when the kernel offers it)\n");
#else
  std::printf("FUSE passthrough: not built in (needs libfuse >= 3.17)\n");
#endif
#ifdef FUSE_CAP_OVER_IO_URING
  std::printf("FUSE over io_uring: built in (-o io_uring=1, when the kernel offers it)\n");
#else
  std::printf("FUSE over io_uring: not built in (needs libfuse >= 3.18 built with it)\n");
#endif
  std::fflush(stdout);
  fuse_lowlevel_version();  // "using FUSE kernel interface version X.Y"
}

int run_daemon(const core::MountOptions& o, std::vector<std::unique_ptr<core::Layer>> extra_lowers,
               const char* program) {
  program_name = program;
  log::set_program(program);
  log::set_level(o.debug ? log::Level::kDebug : log::Level::kWarn);
  raise_fd_limit();

  struct stat mst;
  if (::stat(o.mountpoint.c_str(), &mst) != 0) {
    fail("mountpoint '" + o.mountpoint + "': " + std::strerror(errno));
    return 1;
  }
  if (!S_ISDIR(mst.st_mode)) {
    fail("mountpoint '" + o.mountpoint + "' is not a directory");
    return 1;
  }

  if (!check_selinux_options(o.fuse_options)) return 1;
#ifndef FUSE_CAP_OVER_IO_URING
  if (o.io_uring) {
    fail(std::string("option io_uring=1: this laminafs is built against libfuse ") +
         fuse_pkgversion() +
         ", without FUSE over io_uring (it needs libfuse >= 3.18 built with it: make "
         "build-passthrough)");
    return 1;
  }
#endif

  std::vector<std::unique_ptr<core::Layer>> layers;
  if (!o.upperdir.empty()) {
    if (!check_upper_work(o)) return 1;
    if (!open_layer("upperdir", o.upperdir, &layers)) return 1;
  }
  for (const std::string& dir : o.lowerdirs) {
    if (!open_layer("lowerdir", dir, &layers)) return 1;
  }
  for (auto& layer : extra_lowers) layers.push_back(std::move(layer));
  core::UnionConfig config = core::UnionConfig::from(o);
  UniqueFd work;
  bool whiteout_devices = true, trusted_xattrs = true;
  UniqueFd index;
  if (!o.upperdir.empty() && !config.read_only) {
    auto w = prepare_work_dir(o.workdir, &whiteout_devices, &trusted_xattrs, &index);
    if (!w) return 1;
    work = std::move(*w);
  }
  // Modes arrive from the kernel with the caller's umask applied: ours must not apply again.
  ::umask(0);

  auto state = std::make_unique<DaemonState>();
  auto fs = core::UnionFs::create(std::move(layers), std::move(config), std::move(work));
  if (!fs) {
    fail("cannot build the merged root: " + fs.error().message());
    return 1;
  }
  (*fs)->set_upper_format(whiteout_devices, trusted_xattrs);
  (*fs)->set_index_dir(std::move(index));
  state->fs = std::move(*fs);
  state->timeout = o.timeout;
  state->acl = o.acl;
  // The kernel never combines the two; asking for writeback is the stronger wish.
  state->passthrough_wanted = o.passthrough && !o.writeback;
  state->writeback_wanted = o.writeback;
  state->uring_wanted = o.io_uring;

  // libfuse sees only FUSE options: ours were consumed above.
  std::vector<std::string> fuse_opts = {"default_permissions"};
  if (state->fs->config().read_only) fuse_opts.push_back("ro");
  if (!has_option_prefix(o.fuse_options, "fsname=")) fuse_opts.push_back("fsname=laminafs");
  if (!has_option_prefix(o.fuse_options, "subtype=")) fuse_opts.push_back("subtype=laminafs");
  if (o.io_uring) fuse_opts.push_back("io_uring");
  for (const auto& f : o.fuse_options) {
    if (f != "rw") fuse_opts.push_back(f);
  }
  std::string joined;
  for (const auto& f : fuse_opts) {
    if (!joined.empty()) joined += ',';
    joined += escape_commas(f);
  }
  std::vector<std::string> argv_store = {"laminafs", "-o", joined};
  if (o.debug) argv_store.push_back("-d");
  std::vector<char*> argv;
  argv.reserve(argv_store.size());
  for (auto& a : argv_store) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  fuse_session* se = fuse_session_new(&args, &operations(), sizeof(fuse_lowlevel_ops), state.get());
  fuse_opt_free_args(&args);
  if (se == nullptr) {
    fail("cannot create the FUSE session (options: " + joined + ")");
    return 1;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fail("cannot install signal handlers");
    fuse_session_destroy(se);
    return 1;
  }
  // Absolute: the daemon changes to "/" when it detaches, and unmounts by this path.
  const std::string mountpoint = real_path(o.mountpoint);
  if (fuse_session_mount(se, mountpoint.c_str()) != 0) {
    fail("cannot mount on '" + o.mountpoint + "' (see the message above)");
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return 1;
  }
  // The mount exists before we fork: the parent exits 0 only when it is usable, and requests
  // that arrive before the child's loop starts wait in the kernel's queue.
  if (!o.foreground) {
    if (fuse_daemonize(0) != 0) {
      fuse_session_unmount(se);
      fuse_remove_signal_handlers(se);
      fuse_session_destroy(se);
      return 1;
    }
    log::use_syslog(program);
  }

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 1);
  fuse_loop_cfg_set_max_threads(cfg, 16);
  fuse_loop_cfg_set_idle_threads(cfg, 4);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);

  // Requests still being answered off their ring thread finish before the session goes.
  state->offload.stop();
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  return rc == 0 || rc == SIGTERM || rc == SIGINT || rc == SIGHUP ? 0 : 1;
}

}  // namespace lamina::fuse
