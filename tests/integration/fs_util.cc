// SPDX-License-Identifier: Apache-2.0
#include "integration/fs_util.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace lamina::it {
namespace {

std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

}  // namespace

void throw_errno(const std::string& what) {
  throw std::runtime_error(fmt::format("{}: {}", what, errno_name(errno)));
}

std::vector<MountInfo> read_mountinfo() {
  std::vector<MountInfo> result;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> fields;
    std::string f;
    while (ls >> f) fields.push_back(f);
    if (fields.size() < 7) continue;
    auto dash = std::find(fields.begin(), fields.end(), "-");
    MountInfo mi;
    mi.point = unescape_mountinfo(fields[4]);
    if (dash != fields.end() && dash + 1 != fields.end()) mi.fstype = *(dash + 1);
    if (dash != fields.end() && dash + 2 < fields.end())
      mi.source = unescape_mountinfo(*(dash + 2));
    result.push_back(std::move(mi));
  }
  return result;
}

std::string strip_slash(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string errno_name(int err) {
  const char* name = strerrorname_np(err);
  return fmt::format("{} ({})", name ? name : std::to_string(err), std::strerror(err));
}

void write_file(const std::string& path, std::string_view content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw_errno("open " + path);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      errno = e;
      throw_errno("write " + path);
    }
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd, mode) != 0) throw_errno("fchmod " + path);
  ::close(fd);
}

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("open " + path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      errno = e;
      throw_errno("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void make_dirs(const std::string& path, mode_t mode) {
  if (path.empty()) return;
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw std::runtime_error("make_dirs: not a directory: " + path);
    return;
  }
  auto slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) make_dirs(path.substr(0, slash), mode);
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) throw_errno("mkdir " + path);
  if (::chmod(path.c_str(), mode) != 0) throw_errno("chmod " + path);
}

void make_symlink(const std::string& target, const std::string& path) {
  if (::symlink(target.c_str(), path.c_str()) != 0) throw_errno("symlink " + path);
}

void remove_tree(const std::string& path) {
  if (path.size() < 6) return;  // paranoia: never "/" or "/tmp"
  ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int type, struct FTW*) -> int {
        if (type == FTW_DP) {
          ::rmdir(p);
        } else {
          ::unlink(p);
        }
        return 0;
      },
      64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

bool is_mountpoint(const std::string& path) {
  std::string want = strip_slash(path);
  for (const auto& mi : read_mountinfo()) {
    if (mi.point == want) return true;
  }
  return false;
}

}  // namespace lamina::it
