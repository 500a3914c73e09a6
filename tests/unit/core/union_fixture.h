// SPDX-License-Identifier: Apache-2.0
#pragma once
// A writable union over TMP/upper and TMP/lower, with TMP/work and TMP/index, as the daemon
// sets it up (root's upper format, no fsync), for unit tests of the write path.

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>
#include <set>
#include <string>

#include "../test_util.h"
#include "lamina/base/sys.h"
#include "lamina/core/dir_layer.h"
#include "lamina/core/union_fs.h"

namespace lamina::test {

inline std::unique_ptr<core::UnionFs> make_writable_union(const TempDir& tmp) {
  for (const char* d : {"upper", "lower", "work", "index"}) make_dir(tmp / d);
  std::vector<std::unique_ptr<core::Layer>> layers;
  layers.push_back(std::move(*core::DirLayer::open(tmp / "upper")));
  layers.push_back(std::move(*core::DirLayer::open(tmp / "lower")));
  core::UnionConfig cfg;
  cfg.has_upper = true;
  cfg.read_only = false;
  cfg.fsync = false;
  auto work = sys::open_path(AT_FDCWD, (tmp / "work").c_str());
  REQUIRE(work.ok());
  auto made = core::UnionFs::create(std::move(layers), cfg, std::move(*work));
  REQUIRE(made.ok());
  auto fs = std::move(*made);
  fs->set_upper_format(true, true);
  auto index = sys::open_path(AT_FDCWD, (tmp / "index").c_str());
  REQUIRE(index.ok());
  fs->set_index_dir(std::move(*index));
  return fs;
}

// The node at a relative path ("a/b"; "" is the root), looked up component by component; null
// when a component is missing.
inline core::Node* walk(core::UnionFs& fs, const std::string& path) {
  core::Node* n = fs.root();
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    auto r = fs.lookup(n, path.substr(pos, end - pos));
    if (!r) return nullptr;
    n = *r;
    pos = end + 1;
  }
  return n;
}

// The merged listing of a directory, without "." and "..".
inline std::set<std::string> names(core::UnionFs& fs, const std::string& path) {
  core::Node* n = walk(fs, path);
  REQUIRE(n != nullptr);
  auto entries = fs.list(n);
  REQUIRE(entries.ok());
  std::set<std::string> out;
  for (const auto& e : *entries) {
    if (e.name != "." && e.name != "..") out.insert(e.name);
  }
  return out;
}

// The whole content of a file as the union shows it.
inline std::string read_path(core::UnionFs& fs, const std::string& path) {
  core::Node* n = walk(fs, path);
  REQUIRE(n != nullptr);
  auto fd = fs.open(n, O_RDONLY);
  REQUIRE(fd.ok());
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd->get(), buf, sizeof buf);
    REQUIRE(r >= 0);
    if (r == 0) return out;
    out.append(buf, static_cast<size_t>(r));
  }
}

}  // namespace lamina::test
