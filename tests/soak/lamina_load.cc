// SPDX-License-Identifier: Apache-2.0
// lamina_load: N processes doing mixed metadata and data work on one shared tree, counting every
// failed call by operation and errno, with a watchdog and a memory sampler for the daemon.
//
//   lamina_load prepare --dir DIR
//       the initial tree (as lower content): d0..d5, each with s0..s3, files f0..f7 in both
//   lamina_load run --dir DIR --procs N --duration SEC --seed S --report FILE
//                   [--daemon-pid PID] [--stall SEC]
//
// The workers pick random names from that small namespace, so they race on purpose: ENOENT,
// EEXIST, ENOTEMPTY... are expected and counted; whether an errno is acceptable is decided by
// comparing with a run on a plain directory (tests/soak/load_test.cc). Directories are renamed
// only to a name at their own depth, so no rename can move a directory below itself (EINVAL).
//
// The parent samples the daemon's VmRSS every second. When a worker makes no progress for
// --stall seconds (default 60) it dumps the stacks of the stuck workers and of every daemon
// thread (/proc/PID/task/*/stack, and gdb when installed), kills the workers and exits 2.
//
// Report (text, one record a line): "ops OP COUNT", "error OP ERRNAME COUNT",
// "rss SECONDS KIB", "total OPS SECONDS", "stall 0|1".
// Exit: 0 ran to the end, 2 stall (watchdog), 1 setup failure, 64 bad usage.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kExitSetup = 1;
constexpr int kExitStall = 2;
constexpr int kExitUsage = 64;
constexpr int kMaxProcs = 256;
constexpr int kMaxErrno = 160;
constexpr int kTopDirs = 6;
constexpr int kSubDirs = 4;
constexpr int kFiles = 8;

enum Op {
  kCreate,
  kWrite,
  kRead,
  kRename,
  kUnlink,
  kMkdir,
  kRmdir,
  kChmod,
  kStat,
  kReaddir,
  kLink,
  kSymlink,
  kXattr,
  kTruncate,
  kOpCount
};
const char* const kOpNames[kOpCount] = {"create", "write",   "read",  "rename",  "unlink",
                                        "mkdir",  "rmdir",   "chmod", "stat",    "readdir",
                                        "link",   "symlink", "xattr", "truncate"};
// Relative frequency of each op (data ops a little more often than the rest).
const int kWeights[kOpCount] = {8, 10, 12, 8, 6, 5, 5, 4, 12, 6, 4, 4, 6, 5};

// Lives in a MAP_SHARED mapping: lock-free atomics work across processes.
struct Shared {
  std::atomic<uint64_t> progress[kMaxProcs];
  std::atomic<uint64_t> ops[kOpCount];
  std::atomic<uint64_t> errors[kOpCount][kMaxErrno];
  std::atomic<int> stop;
};

struct Options {
  std::string mode;
  std::string dir;
  std::string report;
  int procs = 16;
  double duration = 30;
  uint64_t seed = 1;
  pid_t daemon = 0;
  double stall = 60;
  std::string only;  // comma-separated op names to run (narrowing down a failure); empty: all
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "lamina_load: %s\n"
               "usage: lamina_load prepare --dir DIR\n"
               "       lamina_load run --dir DIR --procs N --duration SEC --seed S --report FILE\n"
               "                       [--daemon-pid PID] [--stall SEC] [--only OP,OP...]\n",
               msg);
  std::exit(kExitUsage);
}

uint64_t parse_u64(const std::string& flag, const char* v) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (errno != 0 || end == v || *end != 0) usage(("bad number for " + flag).c_str());
  return n;
}

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) usage("no mode given");
  o.mode = argv[1];
  if (o.mode != "prepare" && o.mode != "run") usage("unknown mode");
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage((a + " needs a value").c_str());
    const char* v = argv[++i];
    if (a == "--dir") {
      o.dir = v;
    } else if (a == "--report") {
      o.report = v;
    } else if (a == "--procs") {
      o.procs = static_cast<int>(parse_u64(a, v));
    } else if (a == "--duration") {
      o.duration = static_cast<double>(parse_u64(a, v));
    } else if (a == "--seed") {
      o.seed = parse_u64(a, v);
    } else if (a == "--daemon-pid") {
      o.daemon = static_cast<pid_t>(parse_u64(a, v));
    } else if (a == "--only") {
      o.only = v;
    } else if (a == "--stall") {
      o.stall = static_cast<double>(parse_u64(a, v));
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  if (o.dir.empty()) usage("--dir is required");
  if (o.mode == "run" && o.report.empty()) usage("--report is required");
  if (o.procs < 1 || o.procs > kMaxProcs) usage("--procs must be 1..256");
  if (o.stall < 1) usage("--stall must be at least 1");
  for (size_t b = 0; !o.only.empty() && b <= o.only.size();) {
    size_t e = o.only.find(',', b);
    if (e == std::string::npos) e = o.only.size();
    std::string name = o.only.substr(b, e - b);
    bool known = false;
    for (const char* n : kOpNames) known = known || name == n;
    if (!known) usage(("unknown op in --only: " + name).c_str());
    b = e + 1;
  }
  return o;
}

std::string errno_name(int e) {
  const char* n = strerrorname_np(e);
  return n ? n : "E" + std::to_string(e);
}

// ---- the worker ------------------------------------------------------------------------------

class Worker {
 public:
  Worker(Shared* shared, int id, uint64_t seed, const std::string& only)
      : sh_(shared), id_(id), rng_(seed) {
    for (int i = 0; i < kOpCount; ++i) {
      bool on = only.empty() ||
                ("," + only + ",").find(std::string(",") + kOpNames[i] + ",") != std::string::npos;
      weights_[i] = on ? kWeights[i] : 0;
      total_weight_ += weights_[i];
    }
  }
  [[noreturn]] void loop();

 private:
  uint64_t rnd(uint64_t n) { return rng_() % n; }
  std::string top_dir() { return "d" + std::to_string(rnd(kTopDirs)); }
  std::string sub_dir() { return top_dir() + "/s" + std::to_string(rnd(kSubDirs)); }
  std::string any_dir() { return rnd(3) == 0 ? top_dir() : sub_dir(); }
  std::string file() { return any_dir() + "/f" + std::to_string(rnd(kFiles)); }
  std::string any_path() { return rnd(3) == 0 ? any_dir() : file(); }
  // 0 or the errno of the failing step.
  int run(Op op);
  int write_some(int fd, off_t off);

  Shared* sh_;
  int id_;
  std::mt19937_64 rng_;
  int weights_[kOpCount] = {};
  int total_weight_ = 0;
  char buf_[16384] = {};
};

int Worker::write_some(int fd, off_t off) {
  size_t len = rnd(sizeof buf_) + 1;
  std::memset(buf_, 'a' + id_ % 26, len);
  return ::pwrite(fd, buf_, len, off) < 0 ? errno : 0;
}

int err_of(int rc) { return rc < 0 ? errno : 0; }

int Worker::run(Op op) {
  switch (op) {
    case kCreate: {
      int fd = ::open(file().c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) return errno;
      int e = write_some(fd, 0);
      int c = err_of(::close(fd));
      return e ? e : c;
    }
    case kWrite: {
      int fd = ::open(file().c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return errno;
      int e = write_some(fd, static_cast<off_t>(rnd(sizeof buf_)));
      int c = err_of(::close(fd));
      return e ? e : c;
    }
    case kRead: {
      int fd = ::open(file().c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return errno;
      int e = 0;
      for (;;) {
        ssize_t n = ::read(fd, buf_, sizeof buf_);
        if (n < 0) e = errno;
        if (n <= 0) break;
      }
      int c = err_of(::close(fd));
      return e ? e : c;
    }
    case kRename: {
      uint64_t kind = rnd(4);
      if (kind == 0) return err_of(::rename(top_dir().c_str(), top_dir().c_str()));
      if (kind == 1) return err_of(::rename(sub_dir().c_str(), sub_dir().c_str()));
      return err_of(::rename(file().c_str(), file().c_str()));
    }
    case kUnlink: return err_of(::unlink(file().c_str()));
    case kMkdir: return err_of(::mkdir(any_dir().c_str(), 0755));
    case kRmdir: return err_of(::rmdir(any_dir().c_str()));
    case kChmod: {
      static const mode_t kModes[] = {0755, 0700, 0644, 0600};
      return err_of(::chmod(any_path().c_str(), kModes[rnd(4)]));
    }
    case kStat: {
      struct stat st {};
      return err_of(::lstat(any_path().c_str(), &st));
    }
    case kReaddir: {
      DIR* d = ::opendir(any_dir().c_str());
      if (!d) return errno;
      errno = 0;
      while (::readdir(d) != nullptr) {
      }
      int e = errno;
      ::closedir(d);
      return e;
    }
    case kLink: return err_of(::link(file().c_str(), file().c_str()));
    case kSymlink:
      return err_of(::symlink(("f" + std::to_string(rnd(kFiles))).c_str(), file().c_str()));
    case kXattr: {
      std::string p = any_path();
      uint64_t kind = rnd(3);
      if (kind == 0) {
        char v[32];
        int n = std::snprintf(v, sizeof v, "worker-%d", id_);
        return err_of(::lsetxattr(p.c_str(), "user.load", v, static_cast<size_t>(n), 0));
      }
      if (kind == 1) {
        char v[64];
        return ::lgetxattr(p.c_str(), "user.load", v, sizeof v) < 0 ? errno : 0;
      }
      return err_of(::lremovexattr(p.c_str(), "user.load"));
    }
    case kTruncate:
      return err_of(::truncate(file().c_str(), static_cast<off_t>(rnd(sizeof buf_ * 2))));
    case kOpCount: break;
  }
  return 0;
}

void Worker::loop() {
  while (sh_->stop.load(std::memory_order_relaxed) == 0) {
    int pick = static_cast<int>(rnd(static_cast<uint64_t>(total_weight_)));
    int op = 0;
    while (pick >= weights_[op]) pick -= weights_[op++];
    int e = run(static_cast<Op>(op));
    sh_->ops[op].fetch_add(1, std::memory_order_relaxed);
    if (e) sh_->errors[op][e < kMaxErrno ? e : 0].fetch_add(1, std::memory_order_relaxed);
    sh_->progress[id_].fetch_add(1, std::memory_order_relaxed);
  }
  ::_exit(0);
}

// ---- the parent ------------------------------------------------------------------------------

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

void dump_file(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) std::fprintf(stderr, "    %s\n", line.c_str());
}

void dump_stacks(pid_t daemon, const std::vector<pid_t>& stuck) {
  for (pid_t w : stuck) {
    std::fprintf(stderr, "  stuck worker %d: wchan ", w);
    dump_file("/proc/" + std::to_string(w) + "/wchan");
    std::fprintf(stderr, "\n  kernel stack:\n");
    dump_file("/proc/" + std::to_string(w) + "/stack");
  }
  if (daemon <= 0) return;
  std::string task_dir = "/proc/" + std::to_string(daemon) + "/task";
  if (DIR* d = ::opendir(task_dir.c_str())) {
    while (struct dirent* de = ::readdir(d)) {
      if (de->d_name[0] == '.') continue;
      std::string t = task_dir + "/" + de->d_name;
      std::fprintf(stderr, "  daemon thread %s (", de->d_name);
      std::ifstream comm(t + "/comm");
      std::string name;
      std::getline(comm, name);
      std::fprintf(stderr, "%s) kernel stack:\n", name.c_str());
      dump_file(t + "/stack");
    }
    ::closedir(d);
  }
  if (::access("/usr/bin/gdb", X_OK) == 0) {
    std::fprintf(stderr, "  daemon user-space stacks (gdb):\n");
    std::fflush(stderr);
    std::string cmd = "timeout 120 /usr/bin/gdb -batch -nx -p " + std::to_string(daemon) +
                      " -ex 'thread apply all bt' 1>&2 </dev/null";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "  (gdb failed)\n");
  }
}

int run(const Options& o) {
  if (::chdir(o.dir.c_str()) != 0) {
    std::fprintf(stderr, "lamina_load: chdir %s: %s\n", o.dir.c_str(), std::strerror(errno));
    return kExitSetup;
  }
  void* mem =
      ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    std::perror("lamina_load: mmap");
    return kExitSetup;
  }
  auto* sh = new (mem) Shared();  // zero-initialized by the anonymous mapping
  std::printf("lamina_load: seed %" PRIu64 ", %d processes, %.0f s, dir %s\n", o.seed, o.procs,
              o.duration, o.dir.c_str());
  std::fflush(stdout);

  std::vector<pid_t> workers;
  for (int i = 0; i < o.procs; ++i) {
    pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("lamina_load: fork");
      sh->stop = 1;
      break;
    }
    if (pid == 0) Worker(sh, i, o.seed * 1000003u + static_cast<uint64_t>(i), o.only).loop();
    workers.push_back(pid);
  }

  const auto start = Clock::now();
  auto secs_since = [&](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  std::vector<uint64_t> last(workers.size(), 0);
  std::vector<Clock::time_point> last_change(workers.size(), start);
  std::vector<std::pair<double, long>> rss;
  std::vector<bool> exited(workers.size(), false);
  bool stall = false;
  size_t running = workers.size();
  auto next_sample = start;
  while (running > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!sh->stop && secs_since(start) >= o.duration) sh->stop = 1;
    for (size_t i = 0; i < workers.size(); ++i) {
      if (exited[i]) continue;
      int st;
      if (::waitpid(workers[i], &st, WNOHANG) == workers[i]) {
        exited[i] = true;
        --running;
        continue;
      }
      uint64_t p = sh->progress[i].load();
      if (p != last[i]) {
        last[i] = p;
        last_change[i] = Clock::now();
      }
    }
    if (o.daemon > 0 && Clock::now() >= next_sample) {
      rss.emplace_back(secs_since(start), rss_kib(o.daemon));
      next_sample += std::chrono::seconds(1);
    }
    std::vector<pid_t> stuck;
    for (size_t i = 0; i < workers.size(); ++i) {
      if (!exited[i] && secs_since(last_change[i]) >= o.stall) stuck.push_back(workers[i]);
    }
    if (!stuck.empty()) {
      std::fprintf(stderr,
                   "lamina_load: WATCHDOG: %zu worker(s) made no progress for %.0f s "
                   "(seed %" PRIu64 "); stacks follow\n",
                   stuck.size(), o.stall, o.seed);
      dump_stacks(o.daemon, stuck);
      stall = true;
      break;
    }
  }
  const double elapsed = secs_since(start);
  if (stall) {
    for (size_t i = 0; i < workers.size(); ++i) {
      if (!exited[i]) ::kill(workers[i], SIGKILL);
    }
    // A worker stuck in an uninterruptible request stays until the mount is aborted; do not
    // wait for it forever (the caller kills the daemon, which releases it).
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  uint64_t total = 0;
  for (int op = 0; op < kOpCount; ++op) total += sh->ops[op].load();
  FILE* out = std::fopen(o.report.c_str(), "w");
  if (!out) {
    std::fprintf(stderr, "lamina_load: writing %s: %s\n", o.report.c_str(), std::strerror(errno));
    return kExitSetup;
  }
  std::fprintf(out, "total %" PRIu64 " %.3f\n", total, elapsed);
  std::fprintf(out, "stall %d\n", stall ? 1 : 0);
  for (int op = 0; op < kOpCount; ++op) {
    std::fprintf(out, "ops %s %" PRIu64 "\n", kOpNames[op], sh->ops[op].load());
    for (int e = 0; e < kMaxErrno; ++e) {
      if (uint64_t n = sh->errors[op][e].load()) {
        std::fprintf(out, "error %s %s %" PRIu64 "\n", kOpNames[op],
                     e ? errno_name(e).c_str() : "EOTHER", n);
      }
    }
  }
  for (const auto& [t, kib] : rss) std::fprintf(out, "rss %.1f %ld\n", t, kib);
  std::fclose(out);
  std::printf("lamina_load: %" PRIu64 " ops in %.1f s (%.0f ops/s)%s\n", total, elapsed,
              elapsed > 0 ? static_cast<double>(total) / elapsed : 0.0, stall ? ", STALLED" : "");
  return stall ? kExitStall : 0;
}

// ---- prepare ---------------------------------------------------------------------------------

int prepare(const Options& o) {
  auto mk = [](const std::string& p) {
    if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) {
      std::fprintf(stderr, "lamina_load: mkdir %s: %s\n", p.c_str(), std::strerror(errno));
      return false;
    }
    return true;
  };
  auto put = [](const std::string& p, size_t size) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << std::string(size, 'L');
    return static_cast<bool>(out);
  };
  if (!mk(o.dir)) return kExitSetup;
  for (int d = 0; d < kTopDirs; ++d) {
    std::string top = o.dir + "/d" + std::to_string(d);
    if (!mk(top)) return kExitSetup;
    for (int f = 0; f < kFiles; f += 2) {
      if (!put(top + "/f" + std::to_string(f), 1000u * static_cast<size_t>(f + 1))) {
        return kExitSetup;
      }
    }
    for (int s = 0; s < kSubDirs; ++s) {
      std::string sub = top + "/s" + std::to_string(s);
      if (!mk(sub)) return kExitSetup;
      for (int f = 1; f < kFiles; f += 2) {
        if (!put(sub + "/f" + std::to_string(f), 777u * static_cast<size_t>(f))) {
          return kExitSetup;
        }
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  return o.mode == "prepare" ? prepare(o) : run(o);
}
