// SPDX-License-Identifier: Apache-2.0
// Seeded random operations in lockstep on a plain directory and on a laminafs mount.
//
// Each round generates a random initial tree over a small namespace (directories d0..d2,
// files f0..f3, three levels deep), spread at random over two lowers and the upper (with
// merged directories, files hiding files, whiteouts, opaque directories and a hard-link pair
// in a lower), then applies random operations -- create, write at offsets, append, truncate,
// rename (plain, NOREPLACE, EXCHANGE) of files and directories, link, unlink, mkdir, rmdir,
// chmod, setxattr/removexattr, symlink, explicit times, reads -- to both sides, requiring the
// same result and errno from every operation and the same tree after every batch. A round is
// remounted halfway and at the end.
//
// The seed is printed; LAMINA_SEED=N replays a run. LAMINA_RANDOM_ROUNDS and
// LAMINA_RANDOM_OPS change the size (default 6 rounds of 1500 operations);
// LAMINA_RANDOM_TRACE=1 prints the initial tree and every operation with both results;
// LAMINA_RANDOM_SKIP=3,7,10-20 leaves those operations out (to shrink a failing sequence);
// LAMINA_RANDOM_HARDLINKS=0 leaves out the lower hard-link pair (to look past its bugs).

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "write/write_support.h"

namespace lamina::wt {
namespace {

namespace s = step;

constexpr int kDirNames = 3;
constexpr int kFileNames = 4;
constexpr int kMaxDepth = 3;
constexpr int kBatch = 200;

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::strtoull(v, nullptr, 10);
}

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}
  uint64_t below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }
  std::string dir_name() { return "d" + std::to_string(below(kDirNames)); }
  std::string file_name() { return "f" + std::to_string(below(kFileNames)); }
  // What exists now (on the plain side), so that most operations meet real objects.
  void set_existing(std::vector<std::string> dirs, std::vector<std::string> files) {
    dirs_ = std::move(dirs);
    files_ = std::move(files);
  }
  // A path whose last component is a directory or a file name: often an existing object,
  // often a new name in an existing directory, sometimes anything in the namespace.
  std::string path(bool dir) {
    const auto& same = dir ? dirs_ : files_;
    if (!same.empty() && chance(0.45)) return pick(same);
    if (!dirs_.empty() && chance(0.6)) {
      const std::string& parent = pick(dirs_);
      if (std::count(parent.begin(), parent.end(), '/') + 1 < kMaxDepth)
        return parent + "/" + (dir ? dir_name() : file_name());
    }
    int depth = 1 + static_cast<int>(below(kMaxDepth));
    std::string p;
    for (int i = 0; i + 1 < depth; ++i) p += dir_name() + "/";
    return p + (dir ? dir_name() : file_name());
  }
  std::string any_path() { return path(chance(0.35)); }
  std::string parent_dir() {  // "" or a directory path
    if (chance(0.25)) return "";
    return path(true);
  }
  std::string data(size_t max_len) {
    size_t n = 1 + below(max_len);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>('a' + below(26));
    return s;
  }
  mode_t file_mode() {
    static const std::vector<mode_t> modes = {0644, 0600, 0755, 0444, 0640, 04755, 02755, 0666};
    return pick(modes);
  }
  mode_t dir_mode() {
    static const std::vector<mode_t> modes = {0755, 0700, 0711, 0555, 01777, 02775};
    return pick(modes);
  }
  unsigned layers() {  // a non-empty subset
    return static_cast<unsigned>(1 + below(7));
  }
  unsigned one_layer() { return 1u << below(3); }

 private:
  std::mt19937_64 rng_;
  std::vector<std::string> dirs_, files_;
};

// Directories and non-directories below root (relative paths, sorted).
void scan(const std::string& root, const std::string& rel, std::vector<std::string>* dirs,
          std::vector<std::string>* files) {
  DIR* d = ::opendir((rel.empty() ? root : root + "/" + rel).c_str());
  if (!d) return;
  std::vector<std::pair<std::string, bool>> children;
  while (struct dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n == "." || n == "..") continue;
    children.emplace_back(rel.empty() ? n : rel + "/" + n, de->d_type == DT_DIR);
  }
  ::closedir(d);
  std::sort(children.begin(), children.end());
  for (const auto& [p, is_dir] : children) {
    (is_dir ? dirs : files)->push_back(p);
    if (is_dir) scan(root, p, dirs, files);
  }
}

bool is_dir_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return path[slash == std::string::npos ? 0 : slash + 1] == 'd';
}

// All directory paths of the namespace.
std::vector<std::string> all_dirs(const std::string& prefix, int depth) {
  std::vector<std::string> out;
  if (depth == 0) return out;
  for (int i = 0; i < kDirNames; ++i) {
    std::string d = prefix + "d" + std::to_string(i);
    out.push_back(d);
    for (auto& sub : all_dirs(d + "/", depth - 1)) out.push_back(sub);
  }
  return out;
}

// A random initial tree. Paths keep one type across layers (d* directories, f* files), and a
// whiteout only goes where nothing of the upper lies below.
TreeSpec random_tree(Gen& g, std::string* summary) {
  TreeSpec t;
  std::set<std::string> upper_paths;  // paths with something in the upper (and their parents)
  auto note_upper = [&](const std::string& p) {
    std::string cur = p;
    for (;;) {
      upper_paths.insert(cur);
      auto slash = cur.find_last_of('/');
      if (slash == std::string::npos) break;
      cur = cur.substr(0, slash);
    }
  };
  std::map<std::string, unsigned> dir_layers;
  for (const auto& d : all_dirs("", kMaxDepth - 1)) {
    auto slash = d.find_last_of('/');
    unsigned parent = slash == std::string::npos ? 7u : dir_layers[d.substr(0, slash)];
    if (parent == 0 || !g.chance(0.55)) continue;
    unsigned layers = g.layers() & parent;  // present only where its parent is
    if (layers == 0) continue;
    dir_layers[d] = layers;
    t.dir(d, layers, g.chance(0.2) ? g.dir_mode() : 0755);
    if (layers & kUp) note_upper(d);
  }
  int files = 0;
  // A hard-link pair in the bottom lower, at the root, untouched by the layers above.
  if (env_u64("LAMINA_RANDOM_HARDLINKS", 1) != 0) {
    t.file("f0", "hard link pair\n", kL2).hardlink("f1", "f0", kL2);
  }
  for (const auto& [d, layers] : dir_layers) {
    for (int i = 0; i < kFileNames; ++i) {
      std::string f = d + "/f" + std::to_string(i);
      if (!g.chance(0.4)) continue;
      // One to three layers among the directory's; the topmost copy wins.
      for (LayerBit l : {kL2, kL1, kUp}) {
        if (!(layers & l) || !g.chance(0.5)) continue;
        t.file(
            f, fmt::format("{} in layer {}: {}\n", f, static_cast<unsigned>(l), g.data(300)), l,
            g.chance(0.2) ? g.file_mode() : 0644, 0, 0,
            g.chance(0.2) ? Xattrs{{"user.k" + std::to_string(g.below(3)), g.data(10)}} : Xattrs{});
        ++files;
        if (l == kUp) note_upper(f);
      }
    }
  }
  for (int i = 2; i < kFileNames; ++i) {
    std::string f = "f" + std::to_string(i);
    if (g.chance(0.6)) {
      t.file(f, f + " at the root\n", g.one_layer());
      ++files;
    }
  }
  // Whiteouts of lower-only paths, opaque upper directories.
  int whiteouts = 0, opaques = 0;
  std::set<std::string> whited;
  auto under_whiteout = [&](const std::string& p) {
    for (const auto& w : whited) {
      if (p.rfind(w + "/", 0) == 0) return true;
    }
    return false;
  };
  for (const auto& [d, layers] : dir_layers) {
    if (under_whiteout(d)) continue;
    if (!(layers & kUp) && (layers & (kL1 | kL2)) && !upper_paths.count(d) && g.chance(0.15)) {
      t.whiteout(d);
      whited.insert(d);
      note_upper(d);
      ++whiteouts;
    } else if ((layers & kUp) && (layers & (kL1 | kL2)) && g.chance(0.15)) {
      t.opaque(d);
      ++opaques;
    }
  }
  *summary = fmt::format("{} dirs, {} file copies, {} whiteouts, {} opaque dirs", dir_layers.size(),
                         files, whiteouts, opaques);
  return t;
}

// ---- operations ---------------------------------------------------------------------------

std::string close_rc(int fd) { return rc_str(::close(fd), errno); }

Step op_create(Gen& g) {
  std::string p = g.path(false);
  int flags = O_CREAT | O_WRONLY | (g.chance(0.3) ? O_EXCL : 0) | (g.chance(0.3) ? O_TRUNC : 0);
  mode_t mode = g.file_mode();
  std::string data = g.data(2000);
  return s::custom(fmt::format("create {} flags={:#o} mode={:04o} + write {} bytes", p, flags, mode,
                               data.size()),
                   [=](Ctx& c) {
                     int fd = ::open(c.p(p).c_str(), flags | O_CLOEXEC, mode);
                     if (fd < 0) return "open " + rc_str(-1, errno);
                     std::string r =
                         "write " + rc_str(::write(fd, data.data(), data.size()), errno);
                     return r + " close " + close_rc(fd);
                   });
}

Step op_pwrite(Gen& g) {
  std::string p = g.path(false);
  off_t off = static_cast<off_t>(g.below(20000));
  std::string data = g.data(3000);
  bool append = g.chance(0.25);
  return s::custom(
      fmt::format("{} {} off={} len={}", append ? "append" : "pwrite", p, off, data.size()),
      [=](Ctx& c) {
        int fd = ::open(c.p(p).c_str(), O_WRONLY | O_CLOEXEC | (append ? O_APPEND : 0));
        if (fd < 0) return "open " + rc_str(-1, errno);
        ssize_t n = append ? ::write(fd, data.data(), data.size())
                           : ::pwrite(fd, data.data(), data.size(), off);
        std::string r = "write " + rc_str(n, errno);
        return r + " close " + close_rc(fd);
      });
}

Step op_read(Gen& g) {
  std::string p = g.path(false);
  return s::cat(p);
}

Step op_truncate(Gen& g) { return s::truncate(g.path(false), static_cast<off_t>(g.below(30000))); }

Step op_rename(Gen& g) {
  std::string from = g.any_path();
  std::string to = g.chance(0.9) ? g.path(is_dir_name(from)) : g.any_path();
  unsigned flags = 0;
  if (g.chance(0.15)) flags = RENAME_NOREPLACE;
  if (g.chance(0.15)) flags = RENAME_EXCHANGE;
  return s::rename(from, to, flags);
}

Step op_link(Gen& g) { return s::link(g.path(false), g.path(false)); }
Step op_unlink(Gen& g) { return s::unlink(g.chance(0.9) ? g.path(false) : g.path(true)); }
Step op_mkdir(Gen& g) { return s::mkdir(g.path(true), g.dir_mode()); }
Step op_rmdir(Gen& g) { return s::rmdir(g.chance(0.9) ? g.path(true) : g.path(false)); }

Step op_chmod(Gen& g) {
  std::string p = g.any_path();
  return s::chmod(p, is_dir_name(p) ? g.dir_mode() : g.file_mode());
}

Step op_xattr(Gen& g) {
  std::string p = g.any_path();
  std::string name = "user.k" + std::to_string(g.below(3));
  if (g.chance(0.3)) return s::removexattr(p, name);
  int flags = g.chance(0.2) ? XATTR_CREATE : g.chance(0.2) ? XATTR_REPLACE : 0;
  return s::setxattr(p, name, g.data(40), flags);
}

Step op_symlink(Gen& g) {
  // Targets without '/': they resolve next to the link, never outside the tree.
  static const std::vector<std::string> targets = {"f0", "f1", "f2", "d0", "d1", "missing"};
  return s::symlink(g.pick(targets), g.path(false));
}

Step op_times(Gen& g) {
  std::string p = g.any_path();
  struct timespec a {
    static_cast<time_t>(1000000000 + g.below(100000000)), static_cast<long>(g.below(1000000000))
  };
  struct timespec m {
    static_cast<time_t>(1000000000 + g.below(100000000)), static_cast<long>(g.below(1000000000))
  };
  Step set = s::utimens(p, a, m, AT_SYMLINK_NOFOLLOW);
  Step get = s::times(p);
  return s::custom(set.desc + " + lstat times", [set, get](Ctx& c) {
    std::string r = set.run(c);  // before the lstat
    return r + " => " + get.run(c);
  });
}

Step op_stat(Gen& g) { return g.chance(0.5) ? s::stat(g.any_path()) : s::list(g.parent_dir()); }

Step random_op(Gen& g) {
  struct Weighted {
    int weight;
    Step (*make)(Gen&);
  };
  static const std::vector<Weighted> table = {
      {14, op_create}, {12, op_pwrite}, {6, op_read},  {6, op_truncate}, {16, op_rename},
      {5, op_link},    {10, op_unlink}, {9, op_mkdir}, {6, op_rmdir},    {5, op_chmod},
      {5, op_xattr},   {3, op_symlink}, {3, op_times}, {4, op_stat},
  };
  static const int total = [] {
    int t = 0;
    for (const auto& w : table) t += w.weight;
    return t;
  }();
  int r = static_cast<int>(g.below(static_cast<uint64_t>(total)));
  for (const auto& w : table) {
    if (r < w.weight) return w.make(g);
    r -= w.weight;
  }
  return op_stat(g);
}

// "3,7,10-20": operation numbers not to run (they are still drawn), to shrink a failing
// sequence by hand or with a script.
std::set<size_t> parse_indices(const char* spec) {
  std::set<size_t> out;
  if (!spec) return out;
  std::string s(spec);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    std::string item = s.substr(pos, comma - pos);
    size_t dash = item.find('-');
    if (!item.empty()) {
      size_t a = std::strtoull(item.c_str(), nullptr, 10);
      size_t b =
          dash == std::string::npos ? a : std::strtoull(item.c_str() + dash + 1, nullptr, 10);
      for (size_t i = a; i <= b; ++i) out.insert(i);
    }
    pos = comma + 1;
  }
  return out;
}

struct LoggedOp {
  size_t index;
  std::string desc;
  std::string result;
};

std::string recent(const std::deque<LoggedOp>& log) {
  std::string s;
  for (const auto& l : log) s += fmt::format("  #{:<5} {}  => {}\n", l.index, l.desc, l.result);
  return s;
}

// One round; returns false after the first difference (reported with the recent operations).
bool run_round(uint64_t seed, int round, size_t ops) {
  const std::string where = fmt::format(
      "round {} (replay it alone: LAMINA_SEED={} LAMINA_RANDOM_ROUNDS=1 LAMINA_RANDOM_OPS={})",
      round, seed, ops);
  Gen g(seed);
  std::string summary;
  TreeSpec spec = random_tree(g, &summary);
  const bool trace = env_u64("LAMINA_RANDOM_TRACE", 0) != 0;
  if (trace) {
    for (const auto& item : spec.items()) {
      std::fprintf(stderr, "init kind=%d layers=%u %s mode=%04o data=%s\n",
                   static_cast<int>(item.kind), item.layers, item.path.c_str(), item.mode,
                   bytes_str(item.data).c_str());
    }
  }
  Stack st(spec);
  {
    std::string d = compare_trees(st.plain(), st.mnt(), "plain", "laminafs");
    if (!d.empty()) {
      FAIL_CHECK(where << ": initial trees differ (" << summary << "):\n" << d);
      return false;
    }
  }
  std::deque<LoggedOp> log;
  Ctx plain(st.plain(), "plain");
  Ctx mnt(st.mnt(), "laminafs");
  const std::set<size_t> skip = parse_indices(std::getenv("LAMINA_RANDOM_SKIP"));
  for (size_t i = 1; i <= ops; ++i) {
    {
      std::vector<std::string> dirs, files;
      scan(st.plain(), "", &dirs, &files);
      g.set_existing(std::move(dirs), std::move(files));
    }
    Step op = random_op(g);
    if (skip.count(i)) continue;
    std::string a = op.run(plain);
    std::string b = op.run(mnt);
    if (trace)
      std::fprintf(stderr, "#%zu %s => %s | %s\n", i, op.desc.c_str(), a.c_str(), b.c_str());
    log.push_back({i, op.desc, a});
    if (log.size() > 25) log.pop_front();
    if (a != b) {
      FAIL_CHECK(
          fmt::format("{}: operation #{} differs ({}):\n  {}\n    plain   : {}\n    laminafs: {}\n"
                      "recent operations (plain results):\n{}",
                      where, i, summary, op.desc, a, b, recent(log)));
      return false;
    }
    bool remount = i == ops / 2;
    if (i % kBatch == 0 || i == ops || remount) {
      if (remount) st.mount();
      std::string d = compare_trees(st.plain(), st.mnt(), "plain",
                                    remount ? "laminafs(remounted)" : "laminafs");
      if (!d.empty()) {
        FAIL_CHECK(
            fmt::format("{}: trees differ after operation #{} ({}):\n{}\n"
                        "recent operations (plain results):\n{}",
                        where, i, summary, d, recent(log)));
        return false;
      }
    }
  }
  st.mount();
  std::string d = compare_trees(st.plain(), st.mnt(), "plain", "laminafs(remounted)");
  if (!d.empty()) {
    FAIL_CHECK(where << ": trees differ after the final remount:\n" << d);
    return false;
  }
  return true;
}

}  // namespace

TEST_CASE("random operations in lockstep on a plain dir and laminafs", "[random]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  const uint64_t now =
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  const uint64_t seed = env_u64("LAMINA_SEED", now % 1000000007ull);
  const int rounds = static_cast<int>(env_u64("LAMINA_RANDOM_ROUNDS", 6));
  const size_t ops = env_u64("LAMINA_RANDOM_OPS", 1500);
  std::printf("random_ops: seed %llu, %d rounds of %zu operations (replay: LAMINA_SEED=%llu)\n",
              static_cast<unsigned long long>(seed), rounds, ops,
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  int failed = 0;
  for (int r = 0; r < rounds; ++r) {
    // Each round has its own seed derived from the run's, so one round replays alone too.
    uint64_t round_seed = rounds == 1 ? seed : std::mt19937_64(seed + r)();
    if (!run_round(round_seed, r, ops)) ++failed;
  }
  INFO("seed " << seed);
  CHECK(failed == 0);
}

}  // namespace lamina::wt
