// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers for unit tests that work on real temporary directories.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

namespace lamina::test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lamina-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << content;
  if (!f) throw std::runtime_error("cannot write " + path);
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline void make_dir(const std::string& path) { std::filesystem::create_directories(path); }

inline void make_char_whiteout(const std::string& path) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  if (::mknod(path.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0)
    throw std::runtime_error("mknod " + path + " failed (root needed)");
}

inline void set_xattr(const std::string& path, const std::string& name, const std::string& v) {
  if (::lsetxattr(path.c_str(), name.c_str(), v.data(), v.size(), 0) != 0)
    throw std::runtime_error("setxattr " + name + " on " + path + " failed");
}

}  // namespace lamina::test
