// SPDX-License-Identifier: Apache-2.0
// FUSE callbacks: each unpacks its arguments, calls UnionFs, and replies exactly once.
// Nothing here decides union semantics, and nothing throws into libfuse.

#include "fuse_ops.h"

#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <vector>

#include "daemon_state.h"
#include "lamina/core/union_fs.h"

namespace lamina::fuse {
namespace {

using core::DirEntry;
using core::Node;
using core::UnionFs;

DaemonState& state(fuse_req_t req) { return *static_cast<DaemonState*>(fuse_req_userdata(req)); }
UnionFs& ufs(fuse_req_t req) { return *state(req).fs; }

// An open directory: a snapshot of the merged listing, so offsets stay valid across calls
// (telldir/seekdir) and entries created during a scan neither repeat nor vanish.
struct DirHandle {
  std::mutex mu;  // guards entries, served (the kernel may read one handle from two threads)
  std::vector<DirEntry> entries;
  bool served = false;
};

DirHandle* dir_handle(fuse_file_info* fi) { return reinterpret_cast<DirHandle*>(fi->fh); }

void fill_entry(fuse_req_t req, const Node* node, const struct stat& st, fuse_entry_param* e) {
  const DaemonState& s = state(req);
  *e = fuse_entry_param{};
  e->ino = s.fs->id_of(node);
  e->generation = node->generation;
  e->attr = st;
  e->attr_timeout = s.timeout;
  e->entry_timeout = s.timeout;
}

void op_init(void* userdata, fuse_conn_info* conn) noexcept {
  auto* s = static_cast<DaemonState*>(userdata);
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  want(FUSE_CAP_SPLICE_WRITE);
  want(FUSE_CAP_SPLICE_MOVE);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_CACHE_SYMLINKS);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_READDIRPLUS_AUTO);
  if (s->acl) want(FUSE_CAP_POSIX_ACL);
  conn->want &= ~FUSE_CAP_EXPORT_SUPPORT;
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
    fuse_reply_err(req, node.code());
    return;
  }
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

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) noexcept {
  UnionFs& fs = ufs(req);
  auto st = fs.getattr(fs.node(ino));
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

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  UnionFs& fs = ufs(req);
  auto entries = fs.list(fs.node(ino));
  if (!entries) {
    fuse_reply_err(req, entries.code());
    return;
  }
  auto h = std::make_unique<DirHandle>();
  h->entries = std::move(*entries);
  fi->fh = reinterpret_cast<uint64_t>(h.get());
  if (fuse_reply_open(req, fi) == 0) h.release();
}

void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                bool plus) {
  UnionFs& fs = ufs(req);
  Node* dir = fs.node(ino);
  DirHandle* h = dir_handle(fi);
  // Released before replying: once the reply is out, RELEASEDIR may free the handle.
  std::unique_lock lock(h->mu);
  if (off == 0 && h->served) {
    // rewinddir(): a fresh scan sees the directory as it is now.
    auto entries = fs.list(dir);
    if (!entries) {
      lock.unlock();
      fuse_reply_err(req, entries.code());
      return;
    }
    h->entries = std::move(*entries);
  }
  h->served = true;
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
  delete dir_handle(fi);
  fuse_reply_err(req, 0);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  UnionFs& fs = ufs(req);
  Node* node = fs.node(ino);
  auto fd = fs.open(node, fi->flags);
  if (!fd) {
    fuse_reply_err(req, fd.code());
    return;
  }
  fi->fh = static_cast<uint64_t>(fd->get());
  // Lower layers never change, so the kernel may keep their pages across opens.
  fi->keep_cache = fs.immutable_data(node) ? 1 : 0;
  fi->noflush = 1;  // nothing to flush on a read-only open
  if (fuse_reply_open(req, fi) == 0) fd->release();
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) noexcept {
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = static_cast<int>(fi->fh);
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) noexcept {
  UniqueFd fd(static_cast<int>(fi->fh));
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
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& operations() {
  static const fuse_lowlevel_ops ops = make_ops();
  return ops;
}

}  // namespace lamina::fuse
