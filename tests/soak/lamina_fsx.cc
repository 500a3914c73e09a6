// SPDX-License-Identifier: Apache-2.0
// lamina_fsx: a data-verifying random file exerciser in the style of fsx. It keeps the expected
// contents of every file it owns in memory and checks each read, and the size after each
// operation, against that model: pread, pwrite, ftruncate / truncate(2) (grow and shrink), mmap
// reads, mmap writes with msync, fallocate (plain, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE,
// ZERO_RANGE), renames of files and of a whole directory (into and out of a directory that all
// processes share), fsync, and close/reopen (read-only or read-write, so a lower file is copied
// up at its first write). On a mismatch it prints the offset, the expected and actual bytes and
// the last operations, and exits 1.
//
//   lamina_fsx prepare --dir LOWER --id K          the lower files of process K
//   lamina_fsx run --dir MNT --id K --seed S (--ops N | --duration SEC) [--state FILE] ...
//   lamina_fsx verify --dir MNT --state FILE       contents equal the state written by run
//
// Process K owns p<K>/f<i> (i % 3 != 2) and p<K>/sub/f<i> (i % 3 == 2); even i start in the
// lower layer (written by prepare, contents derived from K and i), odd i are created by run.
// Files of p<K> move between p<K>/ and shared/, and p<K>/sub moves to shared/p<K>-sub and back.
// Exit: 0 all verified, 1 mismatch or unexpected error, 64 bad usage.

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr int kExitMismatch = 1;
constexpr int kExitUsage = 64;
constexpr size_t kPage = 4096;

struct Options {
  std::string mode;
  std::string dir;
  std::string state;
  int id = 0;
  uint64_t seed = 1;
  uint64_t ops = 0;            // 0: until duration
  double duration = 0;         // seconds; 0: until ops
  int files = 6;               // files per process
  size_t max_len = 256 << 10;  // largest file size
  size_t max_io = 64 << 10;    // largest single read/write
  size_t log_size = 64;        // operations kept for the failure report
  uint64_t corrupt_after = 0;  // self-test: flip a byte behind our back after this op (0: never)
  bool mmap = true;
  bool fallocate = true;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "lamina_fsx: %s\n"
               "usage: lamina_fsx prepare --dir DIR --id K [--files N] [--maxlen BYTES]\n"
               "       lamina_fsx run --dir DIR --id K --seed S (--ops N | --duration SEC)\n"
               "                  [--state FILE] [--files N] [--maxlen BYTES] [--maxio BYTES]\n"
               "                  [--log N] [--no-mmap] [--no-fallocate] [--corrupt-after N]\n"
               "       lamina_fsx verify --dir DIR --state FILE\n",
               msg);
  std::exit(kExitUsage);
}

uint64_t parse_u64(const char* flag, const char* v) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (errno != 0 || end == v || *end != 0) usage((std::string("bad number for ") + flag).c_str());
  return n;
}

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) usage("no mode given");
  o.mode = argv[1];
  if (o.mode != "prepare" && o.mode != "run" && o.mode != "verify") usage("unknown mode");
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--dir") {
      o.dir = val();
    } else if (a == "--state") {
      o.state = val();
    } else if (a == "--id") {
      o.id = static_cast<int>(parse_u64("--id", val()));
    } else if (a == "--seed") {
      o.seed = parse_u64("--seed", val());
    } else if (a == "--ops") {
      o.ops = parse_u64("--ops", val());
    } else if (a == "--duration") {
      o.duration = static_cast<double>(parse_u64("--duration", val()));
    } else if (a == "--files") {
      o.files = static_cast<int>(parse_u64("--files", val()));
    } else if (a == "--maxlen") {
      o.max_len = parse_u64("--maxlen", val());
    } else if (a == "--maxio") {
      o.max_io = parse_u64("--maxio", val());
    } else if (a == "--log") {
      o.log_size = parse_u64("--log", val());
    } else if (a == "--corrupt-after") {
      o.corrupt_after = parse_u64("--corrupt-after", val());
    } else if (a == "--no-mmap") {
      o.mmap = false;
    } else if (a == "--no-fallocate") {
      o.fallocate = false;
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  if (o.dir.empty()) usage("--dir is required");
  if (o.mode == "verify" && o.state.empty()) usage("--state is required");
  if (o.mode == "run" && o.ops == 0 && o.duration <= 0) usage("--ops or --duration is required");
  if (o.files < 1 || o.files > 1000) usage("--files must be 1..1000");
  if (o.max_len < kPage || o.max_io < 1) usage("--maxlen must be >= 4096, --maxio >= 1");
  return o;
}

// Deterministic bytes for a lower file, so prepare and run agree without a shared file.
std::vector<uint8_t> initial_contents(int id, int index, size_t max_len) {
  std::mt19937_64 rng(0x9e3779b97f4a7c15ull * static_cast<uint64_t>(id + 1) + index);
  std::vector<uint8_t> v(rng() % (max_len / 2) + 1);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

bool starts_in_lower(int index) { return index % 2 == 0; }
bool in_sub(int index) { return index % 3 == 2; }

std::string errstr(int e) { return std::string(strerrorname_np(e) ? strerrorname_np(e) : "?"); }

// ---- the exerciser -----------------------------------------------------------------------------

struct File {
  int index = 0;
  std::string name;     // current name in its directory
  bool shared = false;  // in shared/ rather than p<K>/ (never for files of sub/)
  std::vector<uint8_t> data;
  int fd = -1;
  bool writable = false;
};

class Fsx {
 public:
  explicit Fsx(const Options& o) : o_(o), rng_(o.seed) {}

  int run();

 private:
  std::string own() const { return "p" + std::to_string(o_.id); }
  std::string sub_dir() const { return sub_shared_ ? "shared/" + own() + "-sub" : own() + "/sub"; }
  std::string rel(const File& f) const {
    if (in_sub(f.index)) return sub_dir() + "/" + f.name;
    return (f.shared ? std::string("shared") : own()) + "/" + f.name;
  }
  std::string abs(const std::string& r) const { return o_.dir + "/" + r; }

  uint64_t rnd(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  void log(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  [[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  void check_sys(long rc, const char* what, const File& f);

  void open_file(File& f, bool writable, bool create);
  void close_file(File& f);
  void ensure_writable(File& f);
  void check_size(File& f);
  void compare(const File& f, const char* how, size_t off, const uint8_t* got, size_t n);
  void random_bytes(uint8_t* p, size_t n);

  void op_read(File& f);
  void op_write(File& f);
  void op_map_read(File& f);
  void op_map_write(File& f);
  void op_truncate(File& f);
  void op_fallocate(File& f);
  void op_rename_file(File& f);
  void op_rename_dir();
  void op_reopen(File& f);
  void op_fsync(File& f);
  void full_check(File& f);
  void corrupt(File& f);
  bool write_state();

  const Options& o_;
  std::mt19937_64 rng_;
  std::vector<File> files_;
  bool sub_shared_ = false;
  uint64_t opno_ = 0;
  std::deque<std::string> log_;
  uint64_t rename_gen_ = 0;
  bool punch_ok_ = true, zero_ok_ = true, alloc_ok_ = true;
  uint64_t counts_[10] = {};
};

void Fsx::log(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  log_.push_back("#" + std::to_string(opno_) + " " + buf);
  while (log_.size() > o_.log_size) log_.pop_front();
}

void Fsx::fail(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "lamina_fsx[%d]: FAILED at op #%" PRIu64 " (seed %" PRIu64 "): %s\n", o_.id,
               opno_, o_.seed, buf);
  std::fprintf(stderr, "last %zu operations (oldest first):\n", log_.size());
  for (const auto& l : log_) std::fprintf(stderr, "  %s\n", l.c_str());
  std::fprintf(stderr, "replay: lamina_fsx run --id %d --seed %" PRIu64 " --ops %" PRIu64 " ...\n",
               o_.id, o_.seed, opno_);
  std::exit(kExitMismatch);
}

void Fsx::check_sys(long rc, const char* what, const File& f) {
  if (rc < 0)
    fail("%s on %s: %s (%s)", what, rel(f).c_str(), errstr(errno).c_str(), std::strerror(errno));
}

void Fsx::random_bytes(uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng_();
    std::memcpy(p + i, &v, 8);
  }
  uint64_t v = rng_();
  for (; i < n; ++i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

void Fsx::open_file(File& f, bool writable, bool create) {
  int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
  f.fd = ::open(abs(rel(f)).c_str(), flags, 0644);
  check_sys(f.fd, create ? "open(O_CREAT|O_EXCL)" : "open", f);
  f.writable = writable;
}

void Fsx::close_file(File& f) {
  if (f.fd >= 0) check_sys(::close(f.fd), "close", f);
  f.fd = -1;
}

void Fsx::ensure_writable(File& f) {
  if (f.writable) return;
  log("reopen %s read-write", rel(f).c_str());
  close_file(f);
  open_file(f, true, false);
}

void Fsx::check_size(File& f) {
  struct stat st {};
  check_sys(::fstat(f.fd, &st), "fstat", f);
  if (static_cast<uint64_t>(st.st_size) != f.data.size()) {
    fail("size of %s is %lld, expected %zu", rel(f).c_str(), static_cast<long long>(st.st_size),
         f.data.size());
  }
}

void Fsx::compare(const File& f, const char* how, size_t off, const uint8_t* got, size_t n) {
  const uint8_t* want = f.data.data() + off;
  if (std::memcmp(want, got, n) == 0) return;
  size_t i = 0;
  while (want[i] == got[i]) ++i;
  std::string detail;
  char buf[64];
  size_t from = i & ~size_t{15};
  for (size_t row = from; row < std::min(n, from + 48); row += 16) {
    std::snprintf(buf, sizeof buf, "\n  offset %zu:", off + row);
    detail += buf;
    detail += "\n    expected";
    for (size_t k = row; k < std::min(n, row + 16); ++k) {
      std::snprintf(buf, sizeof buf, " %02x", want[k]);
      detail += buf;
    }
    detail += "\n    actual  ";
    for (size_t k = row; k < std::min(n, row + 16); ++k) {
      std::snprintf(buf, sizeof buf, " %02x", got[k]);
      detail += buf;
    }
  }
  fail(
      "MISMATCH (%s) in %s at offset %zu (0x%zx): expected 0x%02x, got 0x%02x; "
      "file size %zu, checked [%zu, %zu)%s",
      how, rel(f).c_str(), off + i, off + i, want[i], got[i], f.data.size(), off, off + n,
      detail.c_str());
}

void Fsx::op_read(File& f) {
  size_t size = f.data.size();
  size_t off = rnd(size + kPage);  // sometimes past the end
  size_t len = rnd(o_.max_io) + 1;
  log("read %s off=%zu len=%zu (size %zu)", rel(f).c_str(), off, len, size);
  std::vector<uint8_t> buf(len);
  ssize_t n = ::pread(f.fd, buf.data(), len, static_cast<off_t>(off));
  check_sys(n, "pread", f);
  size_t want = off >= size ? 0 : std::min(len, size - off);
  if (static_cast<size_t>(n) != want) {
    fail("pread of %s off=%zu len=%zu returned %zd, expected %zu (size %zu)", rel(f).c_str(), off,
         len, n, want, size);
  }
  if (want) compare(f, "read", off, buf.data(), want);
}

void Fsx::op_write(File& f) {
  ensure_writable(f);
  size_t off = rnd(o_.max_len);
  size_t len = std::min(rnd(o_.max_io) + 1, o_.max_len - off);
  if (len == 0) len = 1;
  log("write %s off=%zu len=%zu (size %zu)", rel(f).c_str(), off, len, f.data.size());
  std::vector<uint8_t> buf(len);
  random_bytes(buf.data(), len);
  ssize_t n = ::pwrite(f.fd, buf.data(), len, static_cast<off_t>(off));
  check_sys(n, "pwrite", f);
  if (static_cast<size_t>(n) != len) fail("short pwrite: %zd of %zu", n, len);
  if (f.data.size() < off + len) f.data.resize(off + len, 0);
  std::memcpy(f.data.data() + off, buf.data(), len);
}

void Fsx::op_map_read(File& f) {
  size_t size = f.data.size();
  if (size == 0) return op_read(f);
  size_t off = rnd(size);
  size_t len = std::min(rnd(o_.max_io) + 1, size - off);
  size_t pg = off & ~(kPage - 1);
  log("mapread %s off=%zu len=%zu (size %zu)", rel(f).c_str(), off, len, size);
  void* p = ::mmap(nullptr, len + (off - pg), PROT_READ, MAP_SHARED, f.fd, static_cast<off_t>(pg));
  if (p == MAP_FAILED) check_sys(-1, "mmap(PROT_READ)", f);
  compare(f, "mmap read", off, static_cast<uint8_t*>(p) + (off - pg), len);
  ::munmap(p, len + (off - pg));
}

void Fsx::op_map_write(File& f) {
  ensure_writable(f);
  size_t off = rnd(o_.max_len);
  size_t len = std::min(rnd(o_.max_io) + 1, o_.max_len - off);
  if (len == 0) len = 1;
  log("mapwrite %s off=%zu len=%zu (size %zu)", rel(f).c_str(), off, len, f.data.size());
  if (f.data.size() < off + len) {  // a mapping cannot extend a file: grow it first
    check_sys(::ftruncate(f.fd, static_cast<off_t>(off + len)), "ftruncate (mapwrite)", f);
    f.data.resize(off + len, 0);
  }
  size_t pg = off & ~(kPage - 1);
  size_t maplen = len + (off - pg);
  void* p =
      ::mmap(nullptr, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, static_cast<off_t>(pg));
  if (p == MAP_FAILED) check_sys(-1, "mmap(PROT_WRITE)", f);
  random_bytes(static_cast<uint8_t*>(p) + (off - pg), len);
  std::memcpy(f.data.data() + off, static_cast<uint8_t*>(p) + (off - pg), len);
  // MS_SYNC (written back through the daemon now) one time in four; otherwise the dirty pages
  // reach the daemon later, by writeback, close or unmount.
  const int how = rnd(4) == 0 ? MS_SYNC : MS_ASYNC;
  log("  msync(%s)", how == MS_SYNC ? "MS_SYNC" : "MS_ASYNC");
  if (::msync(p, maplen, how) != 0) {
    int e = errno;
    ::munmap(p, maplen);
    errno = e;
    check_sys(-1, "msync", f);
  }
  ::munmap(p, maplen);
}

void Fsx::op_truncate(File& f) {
  size_t size = rnd(o_.max_len + 1);
  if (rnd(4) == 0) {  // by name: the daemon sees a setattr without a file handle
    log("truncate(path) %s to %zu (size %zu)", rel(f).c_str(), size, f.data.size());
    check_sys(::truncate(abs(rel(f)).c_str(), static_cast<off_t>(size)), "truncate", f);
  } else {
    ensure_writable(f);
    log("ftruncate %s to %zu (size %zu)", rel(f).c_str(), size, f.data.size());
    check_sys(::ftruncate(f.fd, static_cast<off_t>(size)), "ftruncate", f);
  }
  f.data.resize(size, 0);
}

void Fsx::op_fallocate(File& f) {
  ensure_writable(f);
  size_t off = rnd(o_.max_len);
  size_t len = std::min(rnd(o_.max_io) + 1, o_.max_len - off);
  if (len == 0) len = 1;
  struct Mode {
    int flags;
    const char* name;
    bool* ok;
  };
  const Mode modes[] = {
      {0, "plain", &alloc_ok_},
      {FALLOC_FL_KEEP_SIZE, "KEEP_SIZE", &alloc_ok_},
      {FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "PUNCH_HOLE|KEEP_SIZE", &punch_ok_},
      {FALLOC_FL_ZERO_RANGE, "ZERO_RANGE", &zero_ok_}};
  const Mode& m = modes[rnd(4)];
  if (!*m.ok) return;
  log("fallocate(%s) %s off=%zu len=%zu (size %zu)", m.name, rel(f).c_str(), off, len,
      f.data.size());
  if (::fallocate(f.fd, m.flags, static_cast<off_t>(off), static_cast<off_t>(len)) != 0) {
    if (errno == EOPNOTSUPP) {  // the backing filesystem lacks this mode: stop using it
      std::fprintf(stderr, "lamina_fsx[%d]: fallocate(%s): EOPNOTSUPP, mode disabled\n", o_.id,
                   m.name);
      *m.ok = false;
      return;
    }
    check_sys(-1, "fallocate", f);
  }
  const bool keep = (m.flags & FALLOC_FL_KEEP_SIZE) != 0;
  if (!keep && f.data.size() < off + len) f.data.resize(off + len, 0);
  if (m.flags & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
    size_t end = std::min(off + len, f.data.size());
    if (off < end) std::memset(f.data.data() + off, 0, end - off);
  }
}

void Fsx::op_rename_file(File& f) {
  std::string from = rel(f);
  // Names carry the process id: shared/ holds the files of every process.
  std::string name = own() + "-f" + std::to_string(f.index) + "." + std::to_string(++rename_gen_);
  bool shared = in_sub(f.index) ? false : rnd(2) == 0;
  File probe = f;
  probe.name = name;
  probe.shared = shared;
  std::string to = rel(probe);
  log("rename %s -> %s", from.c_str(), to.c_str());
  check_sys(::rename(abs(from).c_str(), abs(to).c_str()), "rename", f);
  f.name = name;
  f.shared = shared;
}

void Fsx::op_rename_dir() {
  std::string from = sub_dir();
  sub_shared_ = !sub_shared_;
  std::string to = sub_dir();
  log("rename dir %s -> %s", from.c_str(), to.c_str());
  if (::rename(abs(from).c_str(), abs(to).c_str()) != 0) {
    fail("rename dir %s -> %s: %s", from.c_str(), to.c_str(), errstr(errno).c_str());
  }
}

void Fsx::op_reopen(File& f) {
  bool writable = rnd(2) == 0;
  log("close+reopen %s %s", rel(f).c_str(), writable ? "rw" : "ro");
  close_file(f);
  open_file(f, writable, false);
}

void Fsx::op_fsync(File& f) {
  log("%s %s", f.writable ? "fsync" : "fdatasync(ro)", rel(f).c_str());
  check_sys(f.writable ? ::fsync(f.fd) : ::fdatasync(f.fd), "fsync", f);
}

void Fsx::full_check(File& f) {
  log("check %s (size %zu)", rel(f).c_str(), f.data.size());
  check_size(f);
  std::vector<uint8_t> buf(f.data.size() + 1);
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = ::pread(f.fd, buf.data() + got, buf.size() - got, static_cast<off_t>(got));
    check_sys(n, "pread (check)", f);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got != f.data.size())
    fail("%s: read %zu bytes, expected %zu", rel(f).c_str(), got, f.data.size());
  if (got) compare(f, "whole-file check", 0, buf.data(), got);
}

// Self-test only: change one byte through a second descriptor without telling the model.
void Fsx::corrupt(File& f) {
  if (f.data.empty()) {
    ensure_writable(f);
    check_sys(::ftruncate(f.fd, 1), "ftruncate (corrupt)", f);
    f.data.resize(1, 0);
  }
  size_t off = rnd(f.data.size());
  uint8_t b = static_cast<uint8_t>(f.data[off] ^ 0x5a);
  int fd = ::open(abs(rel(f)).c_str(), O_WRONLY | O_CLOEXEC);
  check_sys(fd, "open (corrupt)", f);
  check_sys(::pwrite(fd, &b, 1, static_cast<off_t>(off)), "pwrite (corrupt)", f);
  ::close(fd);
  std::fprintf(stderr, "lamina_fsx[%d]: self-test: flipped the byte at %zu of %s\n", o_.id, off,
               rel(f).c_str());
}

bool Fsx::write_state() {
  if (o_.state.empty()) return true;
  std::string tmp = o_.state + ".tmp";
  FILE* out = std::fopen(tmp.c_str(), "w");
  if (!out) return false;
  std::fprintf(out, "# lamina_fsx state: id %d seed %" PRIu64 " ops %" PRIu64 "\n", o_.id, o_.seed,
               opno_);
  for (const auto& f : files_) {
    std::fprintf(out, "%s %zu %016llx\n", rel(f).c_str(), f.data.size(),
                 static_cast<unsigned long long>(XXH3_64bits(f.data.data(), f.data.size())));
  }
  bool ok = std::fflush(out) == 0 && ::fsync(fileno(out)) == 0;
  ok = std::fclose(out) == 0 && ok;
  return ok && std::rename(tmp.c_str(), o_.state.c_str()) == 0;
}

int Fsx::run() {
  std::printf("lamina_fsx[%d]: seed %" PRIu64 ", dir %s\n", o_.id, o_.seed, o_.dir.c_str());
  std::fflush(stdout);
  if (::mkdir(abs("shared").c_str(), 0755) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "lamina_fsx: mkdir %s/shared: %s\n", o_.dir.c_str(), std::strerror(errno));
    return kExitMismatch;
  }
  if (::mkdir(abs(own()).c_str(), 0755) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "lamina_fsx: mkdir %s: %s\n", own().c_str(), std::strerror(errno));
    return kExitMismatch;
  }
  if (::mkdir(abs(own() + "/sub").c_str(), 0755) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "lamina_fsx: mkdir %s/sub: %s\n", own().c_str(), std::strerror(errno));
    return kExitMismatch;
  }
  for (int i = 0; i < o_.files; ++i) {
    File f;
    f.index = i;
    f.name = "f" + std::to_string(i);
    if (starts_in_lower(i)) f.data = initial_contents(o_.id, i, o_.max_len);
    files_.push_back(std::move(f));
  }
  for (auto& f : files_) {
    const bool lower = starts_in_lower(f.index);
    log("open %s %s", rel(f).c_str(), lower ? "ro (lower)" : "create");
    open_file(f, !lower, !lower);
    check_size(f);
  }
  const auto start = std::chrono::steady_clock::now();
  const auto limit = std::chrono::duration<double>(o_.duration);
  while (true) {
    if (o_.ops && opno_ >= o_.ops) break;
    if (o_.duration > 0 && (opno_ & 15) == 0 && std::chrono::steady_clock::now() - start >= limit) {
      break;
    }
    ++opno_;
    File& f = files_[rnd(files_.size())];
    unsigned op = static_cast<unsigned>(rnd(100));
    unsigned kind;
    if (op < 25) {
      kind = 0, op_read(f);
    } else if (op < 45) {
      kind = 1, op_write(f);
    } else if (op < 55) {
      kind = 2, o_.mmap ? op_map_read(f) : op_read(f);
    } else if (op < 65) {
      kind = 3, o_.mmap ? op_map_write(f) : op_write(f);
    } else if (op < 73) {
      kind = 4, op_truncate(f);
    } else if (op < 81) {
      kind = 5, o_.fallocate ? op_fallocate(f) : op_truncate(f);
    } else if (op < 87) {
      kind = 6, op_rename_file(f);
    } else if (op < 89) {
      kind = 7, op_rename_dir();
    } else if (op < 99) {
      kind = 8, op_reopen(f);
    } else {
      kind = 9, op_fsync(f);
    }
    ++counts_[kind];
    check_size(f);
    if (o_.corrupt_after && opno_ == o_.corrupt_after) {
      corrupt(f);
      full_check(f);  // before a later write or truncate can cover the flipped byte again
    }
    if (opno_ % 1000 == 0) {
      for (auto& g : files_) full_check(g);
    }
  }
  for (auto& f : files_) full_check(f);
  for (auto& f : files_) close_file(f);
  if (!write_state()) {
    std::fprintf(stderr, "lamina_fsx: writing %s: %s\n", o_.state.c_str(), std::strerror(errno));
    return kExitMismatch;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("lamina_fsx[%d]: %" PRIu64 " ops in %.1f s (%.0f ops/s), all verified; read %" PRIu64
              " write %" PRIu64 " mapread %" PRIu64 " mapwrite %" PRIu64 " truncate %" PRIu64
              " fallocate %" PRIu64 " rename %" PRIu64 " dirrename %" PRIu64 " reopen %" PRIu64
              " fsync %" PRIu64 "\n",
              o_.id, opno_, secs, secs > 0 ? static_cast<double>(opno_) / secs : 0.0, counts_[0],
              counts_[1], counts_[2], counts_[3], counts_[4], counts_[5], counts_[6], counts_[7],
              counts_[8], counts_[9]);
  return 0;
}

// ---- prepare and verify ------------------------------------------------------------------------

int prepare(const Options& o) {
  std::string own = o.dir + "/p" + std::to_string(o.id);
  for (const std::string& d : {o.dir + "/shared", own, own + "/sub"}) {
    if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) {
      std::fprintf(stderr, "lamina_fsx: mkdir %s: %s\n", d.c_str(), std::strerror(errno));
      return kExitMismatch;
    }
  }
  for (int i = 0; i < o.files; ++i) {
    if (!starts_in_lower(i)) continue;
    std::string path = own + (in_sub(i) ? "/sub/f" : "/f") + std::to_string(i);
    auto data = initial_contents(o.id, i, o.max_len);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data.data()),
              static_cast<std::streamsize>(data.size()));
    if (!out) {
      std::fprintf(stderr, "lamina_fsx: writing %s failed\n", path.c_str());
      return kExitMismatch;
    }
  }
  return 0;
}

int verify(const Options& o) {
  std::ifstream in(o.state);
  if (!in) {
    std::fprintf(stderr, "lamina_fsx: cannot read state file %s\n", o.state.c_str());
    return kExitUsage;
  }
  std::string line;
  int bad = 0, checked = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    char path[4096];
    unsigned long long size = 0, hash = 0;
    if (std::sscanf(line.c_str(), "%4095s %llu %llx", path, &size, &hash) != 3) {
      std::fprintf(stderr, "lamina_fsx: bad state line: %s\n", line.c_str());
      return kExitUsage;
    }
    std::string full = o.dir + "/" + path;
    std::ifstream f(full, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ++checked;
    if (!f.good() && !f.eof()) {
      std::fprintf(stderr, "lamina_fsx: MISMATCH %s: cannot read it\n", full.c_str());
      ++bad;
    } else if (data.size() != size) {
      std::fprintf(stderr, "lamina_fsx: MISMATCH %s: size %zu, expected %llu\n", full.c_str(),
                   data.size(), size);
      ++bad;
    } else if (XXH3_64bits(data.data(), data.size()) != hash) {
      std::fprintf(stderr,
                   "lamina_fsx: MISMATCH %s: contents differ (xxh3 %016llx, expected "
                   "%016llx)\n",
                   full.c_str(),
                   static_cast<unsigned long long>(XXH3_64bits(data.data(), data.size())), hash);
      ++bad;
    }
  }
  std::printf("lamina_fsx verify: %d files checked against %s, %d mismatched\n", checked,
              o.state.c_str(), bad);
  return bad ? kExitMismatch : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (o.mode == "prepare") return prepare(o);
  if (o.mode == "verify") return verify(o);
  return Fsx(o).run();
}
