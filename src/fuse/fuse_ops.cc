// SPDX-License-Identifier: Apache-2.0
// FUSE callbacks: each unpacks its arguments, calls UnionFs, and replies exactly once.
// Nothing here decides union semantics, and nothing throws into libfuse.

#include "fuse_ops.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "daemon_state.h"
#include "lamina/base/log.h"
#include "lamina/base/sys.h"
#include "lamina/core/union_fs.h"

namespace lamina::fuse {
namespace {

using core::Caller;
using core::DirEntry;
using core::Node;
using core::SetAttr;
using core::UnionFs;

DaemonState& state(fuse_req_t req) { return *static_cast<DaemonState*>(fuse_req_userdata(req)); }
UnionFs& ufs(fuse_req_t req) { return *state(req).fs; }

// An open directory: a snapshot of the merged listing, so offsets stay valid across calls
// (telldir/seekdir) and entries created during a scan neither repeat nor vanish.
// The listing is taken by the first READDIR at offset 0 (or at any offset if none came yet),
// not at opendir: the kernel serves listings from its cache and asks the daemon only when the
// directory changed since, possibly long after this handle was opened.
struct DirHandle {
  std::mutex mu;  // guards entries, listed (the kernel may read one handle from two threads)
  std::vector<DirEntry> entries;
  bool listed = false;
};

DirHandle* dir_handle(fuse_file_info* fi) { return reinterpret_cast<DirHandle*>(fi->fh); }

// An open file. A read-only open of a lower file keeps reading the lower object until the
// file is copied up through another descriptor; from then on it reads the upper copy (as
// kernel overlayfs does since 4.19), so no reader sees stale data.
class FileHandle {
 public:
  FileHandle(UniqueFd fd, Node* node, bool lower) : node_(node), lower_(lower), fd_(fd.get()) {
    fds_.push_back(std::move(fd));
  }
  // The descriptor for I/O; valid until release.
  int fd(UnionFs& fs) {
    if (!lower_.load(std::memory_order_acquire) || fs.immutable_data(node_)) return fd_.load();
    std::lock_guard lock(mu_);
    if (lower_.load()) {
      auto upper = fs.open(node_, O_RDONLY);
      if (upper) {
        fd_ = upper->get();
        fds_.push_back(std::move(*upper));  // the old one may still be in a splice: keep it
        lower_ = false;
      }
    }
    return fd_.load();
  }
  int writable_fd() const { return fd_.load(); }  // write opens are always on the upper
  Node* node() const { return node_; }

 private:
  Node* node_;  // the kernel holds the inode while the file is open
  std::atomic<bool> lower_;
  std::atomic<int> fd_;
  std::mutex mu_;              // guards fds_ and the switch to the upper
  std::vector<UniqueFd> fds_;  // GUARDED_BY(mu_)
};

FileHandle* file_handle(fuse_file_info* fi) { return reinterpret_cast<FileHandle*>(fi->fh); }

#ifdef FUSE_CAP_OVER_IO_URING
// Threads answering the requests that may take long, with io_uring (see offload.h): enough for
// a few copy-ups and fsyncs side by side.
constexpr int kOffloadThreads = 4;
#endif

// Runs `slow` (which answers `req`) on the offload pool when `req` came through io_uring, else
// right here. What `slow` needs from the request it holds by value: the libfuse structures
// passed to an op (fuse_file_info, struct stat) live only until the op returns.
template <typename F>
void run_slow(fuse_req_t req, F&& slow) {
#ifdef FUSE_CAP_OVER_IO_URING
  DaemonState& s = *static_cast<DaemonState*>(fuse_req_userdata(req));
  if (s.uring && fuse_req_is_uring(req)) {
    std::function<void()> task(std::forward<F>(slow));
    if (!s.offload.post(std::move(task))) task();
    return;
  }
#else
  (void)req;
#endif
  slow();
}
int io_fd(fuse_req_t req, fuse_file_info* fi);

void fill_entry(fuse_req_t req, const Node* node, const struct stat& st, fuse_entry_param* e) {
  const DaemonState& s = state(req);
  *e = fuse_entry_param{};
  e->ino = s.fs->id_of(node);
  e->generation = node->generation;
  e->attr = st;
  e->attr_timeout = s.timeout;
  e->entry_timeout = s.timeout;
}

#ifdef FUSE_CAP_PASSTHROUGH
// The kernel registers a backing file only for a daemon with CAP_SYS_ADMIN (in the initial
// user namespace: a rootless daemon is refused at its first open and stops asking).
bool has_cap_sys_admin() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_SYS_ADMIN / 32].effective & (1U << (CAP_SYS_ADMIN % 32))) != 0;
}
#endif

void op_init(void* userdata, fuse_conn_info* conn) noexcept {
  auto* s = static_cast<DaemonState*>(userdata);
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
#ifdef FUSE_CAP_PASSTHROUGH
  // Backing files may not sit on a stacked filesystem (an upper on overlayfs is refused per
  // open and falls back), so kernel overlayfs can still stack on top of this mount.
  if (s->passthrough_wanted && (conn->capable & FUSE_CAP_PASSTHROUGH) && has_cap_sys_admin()) {
    conn->want |= FUSE_CAP_PASSTHROUGH;
    conn->max_backing_stack_depth = FUSE_BACKING_STACKED_UNDER;
    s->passthrough = true;
  }
#endif
#ifdef FUSE_CAP_OVER_IO_URING
  // libfuse asks for it by itself when started with its io_uring option (ours passes it).
  if (s->uring_wanted) {
    s->uring = (conn->capable & FUSE_CAP_OVER_IO_URING) != 0;
    if (s->uring) s->offload.start(kOffloadThreads);
    if (!s->uring) {
      log::warn(
          "io_uring=1: the kernel does not offer FUSE over io_uring (CONFIG_FUSE_IO_URING and "
          "the fuse module parameter enable_uring=Y, /sys/module/fuse/parameters/enable_uring); "
          "requests go through /dev/fuse reads");
    }
  }
#endif
  if (s->writeback_wanted && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    s->writeback = true;
  }
  want(FUSE_CAP_SPLICE_WRITE);
  want(FUSE_CAP_SPLICE_MOVE);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_CACHE_SYMLINKS);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_READDIRPLUS_AUTO);
  if (s->acl) want(FUSE_CAP_POSIX_ACL);
  conn->want &= ~FUSE_CAP_EXPORT_SUPPORT;
}

// Replies with the entry of a node that comes with one lookup counted (dropped on failure).
void reply_new_node(fuse_req_t req, Result<Node*> node) {
  if (!node) {
    fuse_reply_err(req, node.code());
    return;
  }
  UnionFs& fs = ufs(req);
  auto st = fs.getattr(*node);
  if (!st) {
    fs.forget(*node, 1);
    fuse_reply_err(req, st.code());
    return;
  }
  fuse_entry_param e;
  fill_entry(req, *node, *st, &e);
  fuse_reply_entry(req, &e);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  UnionFs& fs = ufs(req);
  auto node = fs.lookup(fs.node(parent), name);
  if (!node) {
    if (node.code() == ENOENT) {
      // A negative entry the kernel may cache: names appear only through this daemon.
      fuse_entry_param e{};
      e.entry_timeout = state(req).timeout;
      fuse_reply_entry(req, &e);
      return;
    }
  }
  reply_new_node(req, node);
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) noexcept {
  UnionFs& fs = ufs(req);
  fs.forget(fs.node(ino), nlookup);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) noexcept {
  UnionFs& fs = ufs(req);
  for (size_t i = 0; i < count; ++i) fs.forget(fs.node(forgets[i].ino), forgets[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  UnionFs& fs = ufs(req);
  Node* node = fs.node(ino);
  // fstat: the open file stands in for a name that went (S_ISREG: only file handles here).
  int fd = fi != nullptr && S_ISREG(node->type) ? file_handle(fi)->writable_fd() : -1;
  auto st = fs.getattr(node, fd);
  if (!st) {
    fuse_reply_err(req, st.code());
    return;
  }
  fuse_reply_attr(req, &*st, state(req).timeout);
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) noexcept {
  UnionFs& fs = ufs(req);
  auto target = fs.readlink(fs.node(ino));
  if (!target) {
    fuse_reply_err(req, target.code());
    return;
  }
  fuse_reply_readlink(req, target->c_str());
}

void op_opendir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) noexcept {
  DirHandle* h = std::make_unique<DirHandle>().release();
  // Registered before the reply: RELEASEDIR may come as soon as it is out.
  state(req).handles.add(h, [](void* p) { delete static_cast<DirHandle*>(p); });
  fi->fh = reinterpret_cast<uint64_t>(h);
  // The kernel may keep the listing across opens: lower layers never change and the upper
  // changes only through this mount, whose creates, unlinks and renames drop the cached
  // listing of the directories they touch (a warm `ls -lR` then costs no READDIR(PLUS), and
  // so does not refresh the attributes and drop the cached ACLs of every entry either).
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  if (fuse_reply_open(req, fi) != 0) state(req).handles.release(h);
}

void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                bool plus) {
  UnionFs& fs = ufs(req);
  Node* dir = fs.node(ino);
  DirHandle* h = dir_handle(fi);
  // Released before replying: once the reply is out, RELEASEDIR may free the handle.
  std::unique_lock lock(h->mu);
  if (off == 0 || !h->listed) {
    // opendir() or rewinddir(): a fresh scan sees the directory as it is now.
    auto entries = fs.list(dir);
    if (!entries) {
      lock.unlock();
      fuse_reply_err(req, entries.code());
      return;
    }
    h->entries = std::move(*entries);
  }
  h->listed = true;
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < h->entries.size(); ++i) {
    const DirEntry& de = h->entries[i];
    char* p = buf.data() + used;
    size_t rem = size - used;
    size_t n;
    if (!plus) {
      struct stat st {};
      st.st_ino = de.ino;
      st.st_mode = de.type;
      n = fuse_add_direntry(req, p, rem, de.name.c_str(), &st, static_cast<off_t>(i + 1));
      if (n > rem) break;
    } else if (de.name == "." || de.name == "..") {
      // The kernel does not link "." and ".." entries: no lookup is counted for them.
      fuse_entry_param e{};
      e.attr.st_ino = de.ino;
      e.attr.st_mode = de.type;
      n = fuse_add_direntry_plus(req, p, rem, de.name.c_str(), &e, static_cast<off_t>(i + 1));
      if (n > rem) break;
    } else {
      auto node = fs.lookup(dir, de.name);
      if (!node) continue;  // removed since the snapshot
      auto st = fs.getattr(*node);
      if (!st) {
        fs.forget(*node, 1);
        continue;
      }
      fuse_entry_param e;
      fill_entry(req, *node, *st, &e);
      n = fuse_add_direntry_plus(req, p, rem, de.name.c_str(), &e, static_cast<off_t>(i + 1));
      if (n > rem) {
        fs.forget(*node, 1);  // not sent: the kernel will not count it
        break;
      }
    }
    used += n;
  }
  lock.unlock();
  fuse_reply_buf(req, buf.data(), used);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                fuse_file_info* fi) noexcept {
  do_readdir(req, ino, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    fuse_file_info* fi) noexcept {
  do_readdir(req, ino, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) noexcept {
  state(req).handles.release(dir_handle(fi));
  fuse_reply_err(req, 0);
}

// With passthrough on: registers the open in the inode's I/O mode and, when the inode passes
// through, puts its backing id in *fi. `can_pass`: the data is in the upper.
void attach_io_mode(fuse_req_t req, [[maybe_unused]] fuse_file_info* fi, Node* node, bool can_pass,
                    int fd) {
  DaemonState& s = state(req);
  if (!s.passthrough) return;
  can_pass = can_pass && !s.passthrough_refused.load(std::memory_order_relaxed);
  [[maybe_unused]] int id = s.io_modes.open(node, can_pass, [&] {
#ifdef FUSE_CAP_PASSTHROUGH
    int backing = fuse_passthrough_open(req, fd);
    if (backing <= 0) s.passthrough_refused = true;  // libfuse logged why
    return backing > 0 ? backing : 0;
#else
    (void)fd;
    return 0;
#endif
  });
#ifdef FUSE_CAP_PASSTHROUGH
  if (id > 0) fi->backing_id = id;
#endif
}

// Undoes attach_io_mode() for a released (or never delivered) open.
void detach_io_mode(fuse_req_t req, Node* node) {
  DaemonState& s = state(req);
  if (!s.passthrough) return;
  [[maybe_unused]] int id = s.io_modes.release(node);
#ifdef FUSE_CAP_PASSTHROUGH
  if (id > 0) (void)fuse_passthrough_close(req, id);
#endif
}

// The flags of the daemon's own descriptor for an open. Never O_APPEND: the kernel already
// puts an appending write at the end of the file, and the write-back of a shared mapping of
// the same open file writes at the offsets of its pages, which O_APPEND would send to the end.
// With the writeback cache the kernel also reads through a write-only open (to fill the rest
// of a page it writes part of), so those are opened for reading too.
int daemon_flags(const DaemonState& s, int flags) {
  flags &= ~O_APPEND;
  if (s.writeback && (flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  return flags;
}

void open_node(fuse_req_t req, Node* node, fuse_file_info* fi) {
  UnionFs& fs = ufs(req);
  const int flags = daemon_flags(state(req), fi->flags);
  auto fd = fs.open(node, flags);
  // A write-only file the daemon may not read (a rootless daemon, mode 0200): as asked.
  if (!fd && fd.code() == EACCES && flags != (fi->flags & ~O_APPEND)) {
    fd = fs.open(node, fi->flags & ~O_APPEND);
  }
  if (!fd) {
    fuse_reply_err(req, fd.code());
    return;
  }
  const bool lower = fs.immutable_data(node);
  FileHandle* h = std::make_unique<FileHandle>(std::move(*fd), node, lower).release();
  state(req).handles.add(h, [](void* p) { delete static_cast<FileHandle*>(p); });
  fi->fh = reinterpret_cast<uint64_t>(h);
  // Lower layers never change, so the kernel may keep their pages across opens; so may it
  // for upper files, which change only through this mount, unless data passes through (a
  // passthrough write leaves the pages an earlier cached open kept behind).
  fi->keep_cache = lower || !state(req).passthrough ? 1 : 0;
  // Writes reach the upper file before they are answered and the kernel keeps POSIX locks
  // itself: a close has nothing to flush, so it costs no request.
  fi->noflush = 1;
  attach_io_mode(req, fi, node, !lower, h->writable_fd());
  if (fuse_reply_open(req, fi) != 0) {
    detach_io_mode(req, node);
    state(req).handles.release(h);
  }
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  UnionFs& fs = ufs(req);
  Node* node = fs.node(ino);
  // A write open of a file whose data is below copies it up first.
  const bool write = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
  if (write && S_ISREG(node->type) && fs.immutable_data(node)) {
    run_slow(req, [req, node, copy = *fi]() mutable { open_node(req, node, &copy); });
    return;
  }
  open_node(req, node, fi);
}

int io_fd(fuse_req_t req, fuse_file_info* fi) { return file_handle(fi)->fd(ufs(req)); }

Caller caller_of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{ctx->uid, ctx->gid, 0};
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              dev_t rdev) noexcept {
  UnionFs& fs = ufs(req);
  reply_new_node(req, fs.mknod(fs.node(parent), name, mode, rdev, caller_of(req)));
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) noexcept {
  UnionFs& fs = ufs(req);
  reply_new_node(req, fs.mkdir(fs.node(parent), name, mode, caller_of(req)));
}

void op_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) noexcept {
  UnionFs& fs = ufs(req);
  reply_new_node(req, fs.symlink(fs.node(parent), name, target, caller_of(req)));
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) noexcept {
  // A lower file is copied up first.
  run_slow(req, [req, ino, parent, n = std::string(name)] {
    UnionFs& fs = ufs(req);
    reply_new_node(req, fs.link(fs.node(ino), fs.node(parent), n));
  });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  UnionFs& fs = ufs(req);
  fuse_reply_err(req, fs.unlink(fs.node(parent), name).code());
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  // An upper directory may hold thousands of whiteouts to remove first.
  run_slow(req, [req, parent, n = std::string(name)] {
    UnionFs& fs = ufs(req);
    fuse_reply_err(req, fs.rmdir(fs.node(parent), n).code());
  });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) noexcept {
  // A lower file is copied up first.
  run_slow(
      req, [req, parent, newparent, flags, from = std::string(name), to = std::string(newname)] {
        UnionFs& fs = ufs(req);
        fuse_reply_err(req, fs.rename(fs.node(parent), from, fs.node(newparent), to, flags).code());
      });
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) noexcept {
  UnionFs& fs = ufs(req);
  auto made =
      fs.create(fs.node(parent), name, mode, daemon_flags(state(req), fi->flags), caller_of(req));
  if (!made) {
    fuse_reply_err(req, made.code());
    return;
  }
  auto& [node, fd] = *made;
  auto st = fs.getattr(node);
  if (!st) {
    fs.forget(node, 1);
    fuse_reply_err(req, st.code());
    return;
  }
  fuse_entry_param e;
  fill_entry(req, node, *st, &e);
  FileHandle* h = std::make_unique<FileHandle>(std::move(fd), node, false).release();
  state(req).handles.add(h, [](void* p) { delete static_cast<FileHandle*>(p); });
  fi->fh = reinterpret_cast<uint64_t>(h);
  fi->keep_cache = state(req).passthrough ? 0 : 1;  // as for op_open
  fi->noflush = 1;
  attach_io_mode(req, fi, node, true, h->writable_fd());
  if (fuse_reply_create(req, &e, fi) != 0) {
    detach_io_mode(req, node);
    state(req).handles.release(h);
  }
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                fuse_file_info* fi) noexcept {
  UnionFs& fs = ufs(req);
  SetAttr a;
  if (to_set & FUSE_SET_ATTR_MODE) a.valid |= SetAttr::kMode;
  if (to_set & FUSE_SET_ATTR_UID) a.valid |= SetAttr::kUid;
  if (to_set & FUSE_SET_ATTR_GID) a.valid |= SetAttr::kGid;
  if (to_set & FUSE_SET_ATTR_SIZE) a.valid |= SetAttr::kSize;
  if (to_set & FUSE_SET_ATTR_ATIME) a.valid |= SetAttr::kAtime;
  if (to_set & FUSE_SET_ATTR_MTIME) a.valid |= SetAttr::kMtime;
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) a.valid |= SetAttr::kAtimeNow;
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) a.valid |= SetAttr::kMtimeNow;
  if (a.valid == 0) {
    op_getattr(req, ino, fi);  // nothing lamina sets (a ctime alone)
    return;
  }
  if (state(req).writeback && (a.valid & ~(SetAttr::kAtime | SetAttr::kMtime)) == 0) {
    // With the writeback cache the kernel writes back the times of every inode it marked dirty,
    // changed or not: after an unlink or rename it sends the file's own mtime back with a new
    // ctime. A time that is already there needs no copy-up (nor a name: the file may be gone).
    Node* node = fs.node(ino);
    int fd = fi != nullptr && S_ISREG(node->type) ? file_handle(fi)->writable_fd() : -1;
    auto cur = fs.getattr(node, fd);
    auto same = [](const timespec& x, const timespec& y) {
      return x.tv_sec == y.tv_sec && x.tv_nsec == y.tv_nsec;
    };
    if (cur && (!(a.valid & SetAttr::kAtime) || same(cur->st_atim, attr->st_atim)) &&
        (!(a.valid & SetAttr::kMtime) || same(cur->st_mtim, attr->st_mtim))) {
      fuse_reply_attr(req, &*cur, state(req).timeout);
      return;
    }
  }
  a.mode = attr->st_mode;
  a.uid = attr->st_uid;
  a.gid = attr->st_gid;
  a.size = attr->st_size;
  a.atime = attr->st_atim;
  a.mtime = attr->st_mtim;
  Node* node = fs.node(ino);
  const int fd = fi ? file_handle(fi)->writable_fd() : -1;
  auto apply = [req, node, a, fd] {
    auto st = ufs(req).setattr(node, a, fd);
    if (!st) {
      fuse_reply_err(req, st.code());
      return;
    }
    fuse_reply_attr(req, &*st, state(req).timeout);
  };
  // A size change of a file whose data is below copies the data up first.
  if ((a.valid & SetAttr::kSize) && S_ISREG(node->type) && fs.immutable_data(node)) {
    run_slow(req, apply);
    return;
  }
  apply();
}

void op_write_buf(fuse_req_t req, fuse_ino_t, fuse_bufvec* in, off_t off,
                  fuse_file_info* fi) noexcept {
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = file_handle(fi)->writable_fd();
  out.buf[0].pos = off;
  ssize_t n = fuse_buf_copy(&out, in, FUSE_BUF_SPLICE_NONBLOCK);
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
    return;
  }
  fuse_reply_write(req, static_cast<size_t>(n));
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) noexcept {
  fuse_reply_err(req, 0);  // writes go straight to the upper file: nothing is buffered here
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) noexcept {
  const int fd = io_fd(req, fi);
  run_slow(req, [req, ino, fd, datasync] {
    UnionFs& fs = ufs(req);
    fuse_reply_err(req, fs.sync(fs.node(ino), fd, datasync != 0).code());
  });
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) noexcept {
  run_slow(req, [req, ino, datasync] {
    UnionFs& fs = ufs(req);
    fuse_reply_err(req, fs.sync(fs.node(ino), -1, datasync != 0).code());
  });
}

void op_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len,
                  fuse_file_info* fi) noexcept {
  const int fd = file_handle(fi)->writable_fd();
  run_slow(req, [req, fd, mode, off, len] {
    fuse_reply_err(req, sys::fallocate(fd, mode, off, len).code());
  });
}

void op_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) noexcept {
  if (state(req).writeback) {
    // The kernel may hold written data the upper file does not have yet, and does not write it
    // back before asking: ENOSYS makes it answer SEEK_DATA/SEEK_HOLE itself (no holes).
    fuse_reply_err(req, ENOSYS);
    return;
  }
  auto r = sys::lseek(io_fd(req, fi), off, whence);
  if (!r) {
    fuse_reply_err(req, r.code());
    return;
  }
  fuse_reply_lseek(req, *r);
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, fuse_file_info* fi_in, fuse_ino_t,
                        off_t off_out, fuse_file_info* fi_out, size_t len, int flags) noexcept {
  const int in = io_fd(req, fi_in), out = file_handle(fi_out)->writable_fd();
  run_slow(req, [req, in, out, off_in, off_out, len, flags]() mutable {
    auto n = sys::copy_file_range(in, &off_in, out, &off_out, len, static_cast<unsigned>(flags));
    if (!n) {
      fuse_reply_err(req, n.code());
      return;
    }
    fuse_reply_write(req, *n);
  });
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) noexcept {
  UnionFs& fs = ufs(req);
  fuse_reply_err(req, fs.setxattr(fs.node(ino), name, value, size, flags).code());
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) noexcept {
  UnionFs& fs = ufs(req);
  fuse_reply_err(req, fs.removexattr(fs.node(ino), name).code());
}

// Read into a buffer, not spliced by fuse_reply_data: libfuse's copy loop answers with the
// bytes it got before an error (EIO from a bad block of a lower), and the kernel takes a
// short read as the end of the file -- it shrinks the file and caches zeros for the rest.
// A read either returns all it was asked for (short only at end of file) or an error.
void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) noexcept {
  // One per worker thread, grown to the largest read once (max_read): no allocation per read.
  thread_local std::vector<char> buf;
  if (buf.size() < size) {
    try {
      buf.resize(size);
    } catch (const std::bad_alloc&) {
      fuse_reply_err(req, ENOMEM);
      return;
    }
  }
  auto n = sys::pread_full(io_fd(req, fi), buf.data(), size, off);
  if (!n) {
    fuse_reply_err(req, n.code());
    return;
  }
  fuse_reply_buf(req, buf.data(), *n);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) noexcept {
  detach_io_mode(req, file_handle(fi)->node());
  state(req).handles.release(file_handle(fi));
  fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) noexcept {
  auto sv = ufs(req).statfs();
  if (!sv) {
    fuse_reply_err(req, sv.code());
    return;
  }
  fuse_reply_statfs(req, &*sv);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) noexcept {
  UnionFs& fs = ufs(req);
  Node* node = fs.node(ino);
  if (size == 0) {
    auto n = fs.getxattr(node, name, nullptr, 0);
    if (!n) {
      fuse_reply_err(req, n.code());
      return;
    }
    fuse_reply_xattr(req, *n);
    return;
  }
  std::vector<char> buf(size);
  auto n = fs.getxattr(node, name, buf.data(), size);
  if (!n) {
    fuse_reply_err(req, n.code());
    return;
  }
  fuse_reply_buf(req, buf.data(), *n);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) noexcept {
  UnionFs& fs = ufs(req);
  std::vector<char> buf(size);
  auto n = fs.listxattr(fs.node(ino), buf.data(), size);
  if (!n) {
    fuse_reply_err(req, n.code());
    return;
  }
  if (size == 0) {
    fuse_reply_xattr(req, *n);
    return;
  }
  fuse_reply_buf(req, buf.data(), *n);
}

void op_access(fuse_req_t req, fuse_ino_t ino, int mask) noexcept {
  UnionFs& fs = ufs(req);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  std::vector<gid_t> groups(64);
  int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
  if (n > static_cast<int>(groups.size())) {
    groups.resize(static_cast<size_t>(n));
    n = fuse_req_getgroups(req, n, groups.data());
  }
  groups.resize(n > 0 ? static_cast<size_t>(n) : 0);
  Status s = fs.access(fs.node(ino), mask, ctx->uid, ctx->gid, groups);
  fuse_reply_err(req, s.code());
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.readlink = op_readlink;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.open = op_open;
  ops.read = op_read;
  ops.release = op_release;
  ops.statfs = op_statfs;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.access = op_access;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.create = op_create;
  ops.setattr = op_setattr;
  ops.write_buf = op_write_buf;
  ops.flush = op_flush;
  ops.fsync = op_fsync;
  ops.fsyncdir = op_fsyncdir;
  ops.fallocate = op_fallocate;
  ops.lseek = op_lseek;
  ops.copy_file_range = op_copy_file_range;
  ops.setxattr = op_setxattr;
  ops.removexattr = op_removexattr;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& operations() {
  static const fuse_lowlevel_ops ops = make_ops();
  return ops;
}

}  // namespace lamina::fuse
