// SPDX-License-Identifier: Apache-2.0
#include "bench_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

namespace lamina::bench {

long check(long rc, const std::string& what) {
  if (rc < 0) throw BenchError{what, errno};
  return rc;
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd open_at(int dirfd, const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  check(fd, "openat(" + path + ")");
  return Fd(fd);
}

double now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::vector<char> pattern(size_t size, uint64_t seed) {
  std::vector<char> buf(size);
  Rng rng(seed);
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = rng.next();
    std::memcpy(buf.data() + i, &v, 8);
  }
  return buf;
}

void write_all(int fd, const char* buf, size_t len, const std::string& what) {
  while (len > 0) {
    ssize_t n = ::write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    check(n, what);
    if (n == 0) throw BenchError{what + ": short write", EIO};
    buf += n;
    len -= static_cast<size_t>(n);
  }
}

uint64_t parse_size(std::string_view s) {
  if (s.empty()) throw BenchError{"empty size", EINVAL};
  uint64_t mult = 1;
  const char unit = static_cast<char>(std::tolower(static_cast<unsigned char>(s.back())));
  if (unit == 'k') mult = 1ULL << 10;
  if (unit == 'm') mult = 1ULL << 20;
  if (unit == 'g') mult = 1ULL << 30;
  if (mult != 1) s.remove_suffix(1);
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') throw BenchError{"bad size '" + std::string(s) + "'", EINVAL};
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v * mult;
}

std::string size_label(uint64_t bytes) {
  static const char* const kUnits[] = {"", "k", "m", "g"};
  int u = 0;
  while (u < 3 && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++u;
  }
  return std::to_string(bytes) + kUnits[u];
}

void drop_caches() {
  ::sync();
  Fd fd = open_at(AT_FDCWD, "/proc/sys/vm/drop_caches", O_WRONLY);
  write_all(fd.get(), "3\n", 2, "write(/proc/sys/vm/drop_caches)");
}

Rss read_rss(long pid) {
  Rss r;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) throw BenchError{"open(/proc/" + std::to_string(pid) + "/status)", ESRCH};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) r.hwm_kib = std::stol(line.substr(6));
    if (line.rfind("VmRSS:", 0) == 0) r.rss_kib = std::stol(line.substr(6));
  }
  return r;
}

long count_fds(long pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) throw BenchError{"opendir(" + path + ")", errno};
  long n = 0;
  while (dirent* de = ::readdir(d)) {
    if (de->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

Args::Args(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    auto eq = a.find('=');
    if (eq == std::string::npos) throw BenchError{"argument '" + a + "' is not key=value", EINVAL};
    kv_[a.substr(0, eq)] = a.substr(eq + 1);
  }
}

std::string Args::str(const std::string& key, const std::string& def) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? def : it->second;
}

uint64_t Args::size(const std::string& key, uint64_t def) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? def : parse_size(it->second);
}

long Args::num(const std::string& key, long def) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? def : std::stol(it->second);
}

std::vector<std::string> Args::list(const std::string& key, const std::string& def) const {
  std::vector<std::string> out;
  std::stringstream ss(str(key, def));
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

namespace {

void append_pairs(std::string& out, const std::vector<std::pair<std::string, double>>& pairs) {
  out += '{';
  bool first = true;
  for (const auto& [name, value] : pairs) {
    char num[64];
    std::snprintf(num, sizeof num, "%.9g", value);
    if (!first) out += ',';
    first = false;
    out += '"' + name + "\":" + num;
  }
  out += '}';
}

}  // namespace

std::string Result::json() const {
  std::string out = "{\"workload\":\"" + workload_ + "\",\"metrics\":";
  append_pairs(out, metrics_);
  out += ",\"notes\":";
  append_pairs(out, notes_);
  out += '}';
  return out;
}

}  // namespace lamina::bench
