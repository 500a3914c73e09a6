// SPDX-License-Identifier: Apache-2.0
#include "workloads.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <vector>

#include "tree_ops.h"

extern char** environ;

namespace lamina::bench {
namespace {

constexpr size_t kBlock = 1 << 20;
constexpr size_t kSmall = 4096;

// Runs argv (PATH lookup) in `cwd` with stdout to /dev/null; throws unless it exits 0.
void run_command(const std::vector<std::string>& argv, const std::string& cwd) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw BenchError{"posix_spawnp(" + argv[0] + ")", rc};
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw BenchError{"waitpid(" + argv[0] + ")", errno};
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string how = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                        : "signal " + std::to_string(WTERMSIG(status));
    throw BenchError{argv[0] + " failed (" + how + ")", 0};
  }
}

void read_file(int root_fd, const std::string& path) {
  static std::vector<char> buf(kBlock);
  Fd f = open_at(root_fd, path, O_RDONLY);
  while (check(::read(f.get(), buf.data(), buf.size()), "read(" + path + ")") > 0) {
  }
}

void note_count(Result& r, const TreeCount& c) {
  r.note("files", static_cast<double>(c.files));
  r.note("dirs", static_cast<double>(c.dirs));
}

// Open for writing (the copy-up), append 4 KiB, close: per lower file size.
void first_write(const Context& ctx, Result& r) {
  std::string dir = ctx.args.str("dir", "data");
  bool restore = ctx.args.num("restore", 0) != 0;
  std::vector<char> buf = pattern(kSmall, 7);
  for (const std::string& label : ctx.args.list("sizes", "4k,64k,1m,16m,128m,1g")) {
    std::string path = dir + "/f_" + size_label(parse_size(label));
    double t0 = now();
    {
      Fd f = open_at(ctx.root_fd, path, O_WRONLY | O_APPEND);
      write_all(f.get(), buf.data(), buf.size(), "write(" + path + ")");
    }
    r.metric("first_write_" + size_label(parse_size(label)), now() - t0);
    if (restore) {
      Fd f = open_at(ctx.root_fd, path, O_WRONLY);
      check(::ftruncate(f.get(), static_cast<off_t>(parse_size(label))), "ftruncate(" + path + ")");
    }
  }
}

// Sequential 1 MiB writes of a new file; "seq_write" ends after the last write (buffered),
// "seq_write_fsync" after fsync and close.
void seq_write(const Context& ctx, Result& r) {
  uint64_t size = ctx.args.size("size", 1ULL << 30);
  std::string path = ctx.args.str("file", "seqwrite.out");
  std::vector<char> buf = pattern(kBlock, 11);
  double t0 = now();
  Fd f = open_at(ctx.root_fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  for (uint64_t done = 0; done < size; done += kBlock) {
    write_all(f.get(), buf.data(), std::min<uint64_t>(kBlock, size - done), "write(" + path + ")");
  }
  double t1 = now();
  check(::fsync(f.get()), "fsync(" + path + ")");
  f = Fd();
  double t2 = now();
  r.metric("seq_write", t1 - t0);
  r.metric("seq_write_fsync", t2 - t0);
}

// Prepares the caches for a read workload: cold drops them, warm runs `pass` once untimed.
template <typename F>
void prepare_cache(const Context& ctx, F pass) {
  std::string cache = ctx.args.str("cache", "asis");
  if (cache == "cold") {
    drop_caches();
  } else if (cache == "warm") {
    pass();
  } else if (cache != "asis") {
    throw BenchError{"cache=" + cache + ": expected cold, warm or asis", EINVAL};
  }
}

void seq_read(const Context& ctx, Result& r) {
  std::string path = ctx.args.str("file", "data/f_1g");
  prepare_cache(ctx, [&] { read_file(ctx.root_fd, path); });
  double t0 = now();
  read_file(ctx.root_fd, path);
  r.metric("seq_read", now() - t0);
}

// Random aligned 4 KiB preads (readahead off, as a database would ask); metric per read.
void rand_read(const Context& ctx, Result& r) {
  std::string path = ctx.args.str("file", "data/f_1g");
  long count = ctx.args.num("count", 20000);
  Fd f = open_at(ctx.root_fd, path, O_RDONLY);
  struct stat st {};
  check(::fstat(f.get(), &st), "fstat(" + path + ")");
  check(-::posix_fadvise(f.get(), 0, 0, POSIX_FADV_RANDOM), "posix_fadvise(" + path + ")");
  uint64_t blocks = static_cast<uint64_t>(st.st_size) / kSmall;
  if (blocks == 0) throw BenchError{path + " is smaller than 4 KiB", EINVAL};
  std::vector<char> buf(kSmall);
  Rng rng(42);
  double t0 = now();
  for (long i = 0; i < count; ++i) {
    off_t off = static_cast<off_t>((rng.next() % blocks) * kSmall);
    check(::pread(f.get(), buf.data(), kSmall, off), "pread(" + path + ")");
  }
  r.metric("rand_read_op", (now() - t0) / static_cast<double>(count));
  r.note("count", static_cast<double>(count));
}

// Random aligned 4 KiB pwrites into a new sparse file (sized untimed); metric per write.
void write_4k(const Context& ctx, Result& r) {
  std::string path = ctx.args.str("file", "write4k.out");
  uint64_t span = ctx.args.size("span", 256ULL << 20);
  long count = ctx.args.num("count", 20000);
  Fd f = open_at(ctx.root_fd, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  check(::ftruncate(f.get(), static_cast<off_t>(span)), "ftruncate(" + path + ")");
  std::vector<char> buf = pattern(kSmall, 13);
  Rng rng(43);
  uint64_t blocks = span / kSmall;
  double t0 = now();
  for (long i = 0; i < count; ++i) {
    off_t off = static_cast<off_t>((rng.next() % blocks) * kSmall);
    ssize_t n = check(::pwrite(f.get(), buf.data(), kSmall, off), "pwrite(" + path + ")");
    if (static_cast<size_t>(n) != kSmall) throw BenchError{"short pwrite(" + path + ")", EIO};
  }
  r.metric("write_4k_op", (now() - t0) / static_cast<double>(count));
  r.note("count", static_cast<double>(count));
}

// mkdir, then `dirs` directories of `files` new files of `size` bytes each.
void create_files(const Context& ctx, Result& r) {
  std::string path = ctx.args.str("dir", "created");
  long dirs = ctx.args.num("dirs", 20);
  long files = ctx.args.num("files", 1000);
  std::vector<char> buf = pattern(ctx.args.size("size", 100), 17);
  char name[32];
  double t0 = now();
  check(::mkdirat(ctx.root_fd, path.c_str(), 0755), "mkdirat(" + path + ")");
  Fd top = open_at(ctx.root_fd, path, O_RDONLY | O_DIRECTORY);
  for (long d = 0; d < dirs; ++d) {
    std::snprintf(name, sizeof name, "d%03ld", d);
    check(::mkdirat(top.get(), name, 0755), "mkdirat(" + std::string(name) + ")");
    Fd dir = open_at(top.get(), name, O_RDONLY | O_DIRECTORY);
    for (long i = 0; i < files; ++i) {
      std::snprintf(name, sizeof name, "f%05ld", i);
      Fd f = open_at(dir.get(), name, O_WRONLY | O_CREAT | O_EXCL, 0644);
      write_all(f.get(), buf.data(), buf.size(), "write(" + std::string(name) + ")");
    }
  }
  r.metric("create", now() - t0);
  r.note("files", static_cast<double>(dirs * files));
}

void stat_walk_workload(const Context& ctx, Result& r) {
  std::string path = ctx.args.str("path", "walk");
  prepare_cache(ctx, [&] { stat_walk(ctx.root_fd, path); });
  double t0 = now();
  TreeCount c = stat_walk(ctx.root_fd, path);
  r.metric("stat_walk", now() - t0);
  note_count(r, c);
}

void ls_lr_workload(const Context& ctx, Result& r) {
  std::string path = ctx.root + "/" + ctx.args.str("path", "walk");
  prepare_cache(ctx, [&] { ls_lr(path); });
  double t0 = now();
  TreeCount c = ls_lr(path);
  r.metric("ls_lr", now() - t0);
  note_count(r, c);
}

void rm_rf_workload(const Context& ctx, Result& r) {
  double t0 = now();
  TreeCount c = rm_rf(ctx.root_fd, ctx.args.str("path", "rm"));
  r.metric("rm_rf", now() - t0);
  note_count(r, c);
}

void chmod_r_workload(const Context& ctx, Result& r) {
  double t0 = now();
  TreeCount c = chmod_r(ctx.root_fd, ctx.args.str("path", "chmod"), 0600, 0700);
  r.metric("chmod_r", now() - t0);
  note_count(r, c);
}

void chmod_big(const Context& ctx, Result& r) {
  std::string path = ctx.args.str("file", "data/f_1g");
  double t0 = now();
  check(::fchmodat(ctx.root_fd, path.c_str(), 0600, 0), "fchmodat(" + path + ")");
  r.metric("chmod_big", now() - t0);
  if (ctx.args.num("restore", 0) != 0) {
    check(::fchmodat(ctx.root_fd, path.c_str(), 0644, 0), "fchmodat(" + path + ")");
  }
}

// rename(2) of a directory; on EXDEV do what mv does: copy the tree, then remove the source.
void rename_dir(const Context& ctx, Result& r) {
  std::string from = ctx.args.str("from", "ren/src");
  std::string to = ctx.args.str("to", "ren/dst");
  double t0 = now();
  bool exdev = false;
  if (::renameat(ctx.root_fd, from.c_str(), ctx.root_fd, to.c_str()) < 0) {
    if (errno != EXDEV) throw BenchError{"renameat(" + from + ", " + to + ")", errno};
    exdev = true;
    copy_tree(ctx.root_fd, from, to);
  }
  r.metric("rename_dir", now() - t0);
  r.note("exdev", exdev ? 1 : 0);
  note_count(r, stat_walk(ctx.root_fd, to));
}

void untar(const Context& ctx, Result& r) {
  std::string tarball = ctx.args.str("tarball", "");
  std::string dest = ctx.args.str("dest", "untar");
  if (tarball.empty()) throw BenchError{"untar needs tarball=PATH", EINVAL};
  check(::mkdirat(ctx.root_fd, dest.c_str(), 0755), "mkdirat(" + dest + ")");
  double t0 = now();
  run_command({"tar", "-xf", tarball, "-C", ctx.root + "/" + dest}, ctx.root);
  r.metric("untar", now() - t0);
}

// The generated C project: ./configure (compiler probes, writes config.h and config.mk),
// then make -jN.
void build(const Context& ctx, Result& r) {
  std::string dir = ctx.root + "/" + ctx.args.str("path", "proj");
  std::string jobs = "-j" + std::to_string(ctx.args.num("jobs", 2));
  double t0 = now();
  run_command({"sh", "./configure"}, dir);
  double t1 = now();
  run_command({"make", "-s", jobs}, dir);
  double t2 = now();
  r.metric("configure", t1 - t0);
  r.metric("make", t2 - t1);
}

// Walks a big tree (readdir + fstatat), then reads the daemon's peak RSS (VmHWM) and counts
// its open descriptors.
void mem_walk(const Context& ctx, Result& r) {
  long pid = ctx.args.num("pid", 0);
  Rss before = pid > 0 ? read_rss(pid) : Rss{};
  double t0 = now();
  TreeCount c = stat_walk(ctx.root_fd, ctx.args.str("path", "big"));
  r.metric("mem_walk", now() - t0);
  note_count(r, c);
  if (pid > 0) {
    Rss after = read_rss(pid);
    r.metric("hwm_kib", static_cast<double>(after.hwm_kib));
    r.metric("fds_count", static_cast<double>(count_fds(pid)));
    r.note("hwm_before_kib", static_cast<double>(before.hwm_kib));
    r.note("rss_kib", static_cast<double>(after.rss_kib));
  }
}

// The cost of one request: lgetxattr of a name the file does not have, `count` times. The
// kernel keeps no xattr cache for FUSE, so every call is a round trip to the daemon (on kernel
// overlayfs, the underlying filesystem's getxattr).
void xattr_loop(const Context& ctx, Result& r) {
  std::string path = ctx.root + "/" + ctx.args.str("file", "f");
  long count = ctx.args.num("count", 100000);
  char buf[64];
  if (::lgetxattr(path.c_str(), "user.lamina-bench-absent", buf, sizeof buf) >= 0 ||
      errno != ENODATA) {
    throw BenchError{"lgetxattr(" + path + ") should fail with ENODATA", errno};
  }
  double t0 = now();
  for (long i = 0; i < count; ++i) {
    (void)::lgetxattr(path.c_str(), "user.lamina-bench-absent", buf, sizeof buf);
  }
  r.metric("xattr_op", (now() - t0) / static_cast<double>(count));
}

struct Entry {
  const char* name;
  WorkloadFn fn;
  const char* help;
};

constexpr Entry kWorkloads[] = {
    {"first-write", first_write, "sizes=4k,..,1g dir=data [restore=1]: open(O_WRONLY) + 4 KiB"},
    {"seq-write", seq_write, "size=1g file=F: 1 MiB writes of a new file, then fsync"},
    {"seq-read", seq_read, "file=F cache=cold|warm|asis: 1 MiB reads of a whole file"},
    {"rand-read", rand_read, "file=F count=N: random 4 KiB preads"},
    {"write-4k", write_4k, "file=F span=256m count=N: random 4 KiB pwrites"},
    {"create", create_files, "dir=D dirs=20 files=1000 size=100: new small files"},
    {"stat-walk", stat_walk_workload, "path=P cache=cold|warm|asis: readdir + fstatat"},
    {"ls-lR", ls_lr_workload, "path=P cache=cold|warm|asis: readdir + lstat + lgetxattr"},
    {"rm-rf", rm_rf_workload, "path=P: unlink the whole tree"},
    {"chmod-R", chmod_r_workload, "path=P: fchmodat every entry"},
    {"chmod-big", chmod_big, "file=F [restore=1]: one fchmodat"},
    {"rename-dir", rename_dir, "from=A to=B: rename(2), mv's copy fallback on EXDEV"},
    {"untar", untar, "tarball=T dest=D: tar -xf"},
    {"build", build, "path=P jobs=2: sh ./configure, make -jN"},
    {"mem-walk", mem_walk, "path=P pid=N: stat walk, then VmHWM of pid"},
    {"xattr-loop", xattr_loop, "file=F count=N: lgetxattr of an absent name (one request each)"},
};

}  // namespace

WorkloadFn find_workload(const std::string& name) {
  for (const Entry& e : kWorkloads) {
    if (name == e.name) return e.fn;
  }
  return nullptr;
}

std::string workload_help() {
  std::string out;
  for (const Entry& e : kWorkloads) out += std::string("  ") + e.name + "  " + e.help + "\n";
  return out;
}

}  // namespace lamina::bench
