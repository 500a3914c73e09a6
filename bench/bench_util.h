// SPDX-License-Identifier: Apache-2.0
// Small helpers for the benchmark driver: an owned descriptor, a monotonic clock, a
// deterministic byte pattern, argument lookup and the one-line JSON result. The driver is a
// tool, so failures throw BenchError (step + errno) and main turns that into an error line.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace lamina::bench {

// A failed step: `what` names it (e.g. "openat(data/f_1g)"), `code` is the errno (0: none).
struct BenchError {
  std::string what;
  int code;
};

// Throws BenchError{what, errno} when rc < 0; returns rc otherwise.
long check(long rc, const std::string& what);

// A move-only file descriptor; closes on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// openat() that retries EINTR, adds O_CLOEXEC and throws on failure.
Fd open_at(int dirfd, const std::string& path, int flags, mode_t mode = 0);

// Seconds on CLOCK_MONOTONIC.
double now();

// xorshift64*: a fast deterministic generator, so every configuration sees the same offsets.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 0x9e3779b97f4a7c15ULL) {}
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545f4914f6cdd1dULL;
  }

 private:
  uint64_t s_;
};

// A buffer of `size` pseudo-random bytes (not zeros, so nothing can skip the data).
std::vector<char> pattern(size_t size, uint64_t seed);

// Writes all of buf at the current offset (retrying short writes and EINTR).
void write_all(int fd, const char* buf, size_t len, const std::string& what);

// "4k", "64K", "1m", "1g", "123" -> bytes.
uint64_t parse_size(std::string_view s);
// bytes -> "4k", "1m", "1g" (the inverse of parse_size for powers of two).
std::string size_label(uint64_t bytes);

// sync(), then drop the page, dentry and inode caches (root only).
void drop_caches();

// The peak and current resident set of a process in KiB, from /proc/PID/status.
struct Rss {
  long hwm_kib = -1;
  long rss_kib = -1;
};
Rss read_rss(long pid);

// How many descriptors process `pid` has open (entries of /proc/PID/fd).
long count_fds(long pid);

// key=value arguments after the workload and directory.
class Args {
 public:
  Args(int argc, char** argv, int first);
  std::string str(const std::string& key, const std::string& def) const;
  uint64_t size(const std::string& key, uint64_t def) const;
  long num(const std::string& key, long def) const;
  std::vector<std::string> list(const std::string& key, const std::string& def) const;

 private:
  std::map<std::string, std::string> kv_;
};

// One result line: {"workload":..,"metrics":{name: value,..},"notes":{name: value,..}}.
// Metrics are numbers (seconds unless the name ends in _kib); notes are counts and flags.
class Result {
 public:
  explicit Result(std::string workload) : workload_(std::move(workload)) {}
  void metric(const std::string& name, double value) { metrics_.emplace_back(name, value); }
  void note(const std::string& name, double value) { notes_.emplace_back(name, value); }
  std::string json() const;

 private:
  std::string workload_;
  std::vector<std::pair<std::string, double>> metrics_;
  std::vector<std::pair<std::string, double>> notes_;
};

}  // namespace lamina::bench
