// SPDX-License-Identifier: Apache-2.0
// lamina_null_fuse: the cheapest FUSE daemon there is, to measure what a request costs before
// a filesystem does any work. It shows a root directory holding one empty file, `f`, and
// answers every getxattr with ENODATA, running the same request loop as laminafs
// (fuse_session_loop_mt, clone_fd, up to 16 threads, 4 idle).
//
//   lamina_null_fuse MOUNTPOINT [-o io_uring]     (foreground; fusermount3 -u ends it)
//   lamina_bench xattr-loop MOUNTPOINT file=f count=100000
//
// -o io_uring takes effect in a build against libfuse >= 3.18 built with it
// (build-passthrough/bin/lamina_null_fuse) when the fuse module has enable_uring=Y.
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr fuse_ino_t kFile = 2;

struct stat attr_of(fuse_ino_t ino) {
  struct stat st {};
  st.st_ino = ino;
  st.st_mode = ino == FUSE_ROOT_ID ? (S_IFDIR | 0755) : (S_IFREG | 0644);
  st.st_nlink = ino == FUSE_ROOT_ID ? 2 : 1;
  return st;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != FUSE_ROOT_ID || std::strcmp(name, "f") != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_entry_param e{};
  e.ino = kFile;
  e.attr = attr_of(kFile);
  e.attr_timeout = 86400;
  e.entry_timeout = 86400;
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st = attr_of(ino);
  fuse_reply_attr(req, &st, 86400);
}

void op_getxattr(fuse_req_t req, fuse_ino_t, const char*, size_t) { fuse_reply_err(req, ENODATA); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: lamina_null_fuse MOUNTPOINT [-o io_uring]\n");
    return 2;
  }
  std::vector<std::string> store = {argv[0], "-o", "default_permissions,fsname=null"};
  for (int i = 2; i < argc; ++i) store.emplace_back(argv[i]);
  std::vector<char*> args;
  for (auto& s : store) args.push_back(s.data());
  fuse_args fa = FUSE_ARGS_INIT(static_cast<int>(args.size()), args.data());
  fuse_lowlevel_ops ops{};
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.getxattr = op_getxattr;
  fuse_session* se = fuse_session_new(&fa, &ops, sizeof ops, nullptr);
  fuse_opt_free_args(&fa);
  if (se == nullptr) return 1;
  if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) {
    fuse_session_destroy(se);
    return 1;
  }
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 1);
  fuse_loop_cfg_set_max_threads(cfg, 16);
  fuse_loop_cfg_set_idle_threads(cfg, 4);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  return rc == 0 ? 0 : 1;
}
