// SPDX-License-Identifier: Apache-2.0
#pragma once
// A writable union over TMP/upper and TMP/lower, with TMP/work and TMP/index, as the daemon
// sets it up (root's upper format, no fsync), for unit tests of the write path.

#include <fcntl.h>

#include <catch2/catch.hpp>
#include <memory>

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

}  // namespace lamina::test
