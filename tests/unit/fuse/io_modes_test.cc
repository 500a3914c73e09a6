// SPDX-License-Identifier: Apache-2.0
#include "fuse/io_modes.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

namespace lamina::fuse {
namespace {

TEST_CASE("io modes: the first open of an inode decides, later ones follow",
          "[fuse][passthrough]") {
  IoModes modes;
  int a = 0, b = 0;  // two inodes
  int registered = 0;
  auto backing = [&] {
    ++registered;
    return 7;
  };
  auto refused = [&]() -> int {
    FAIL("a backing file registered for an inode already in a mode");
    return 0;
  };

  SECTION("upper first: every later open shares its backing file") {
    CHECK(modes.open(&a, true, backing) == 7);
    CHECK(modes.open(&a, true, refused) == 7);
    CHECK(modes.open(&a, false, refused) == 7);
    CHECK(registered == 1);
    CHECK(modes.release(&a) == 0);
    CHECK(modes.release(&a) == 0);
    CHECK(modes.release(&a) == 7);  // the last release closes the backing file
    CHECK(modes.inodes() == 0);
  }
  SECTION("lower first: later opens go through the daemon even once the data is upper") {
    CHECK(modes.open(&a, false, refused) == 0);
    CHECK(modes.open(&a, true, refused) == 0);
    CHECK(modes.release(&a) == 0);
    CHECK(modes.release(&a) == 0);
    // All closed: the next open decides afresh.
    CHECK(modes.open(&a, true, backing) == 7);
    CHECK(modes.release(&a) == 7);
  }
  SECTION("a refused backing file leaves the inode on the daemon path") {
    CHECK(modes.open(&a, true, [] { return 0; }) == 0);
    CHECK(modes.open(&a, true, refused) == 0);
    CHECK(modes.release(&a) == 0);
    CHECK(modes.release(&a) == 0);
  }
  SECTION("inodes are independent; a release of an unknown inode does nothing") {
    CHECK(modes.open(&a, true, backing) == 7);
    CHECK(modes.open(&b, false, refused) == 0);
    CHECK(modes.release(&b) == 0);
    CHECK(modes.release(&b) == 0);
    CHECK(modes.release(&a) == 7);
  }
}

TEST_CASE("io modes: concurrent first opens register one backing file", "[fuse][passthrough]") {
  IoModes modes;
  int inode = 0;
  std::atomic<int> registered{0};
  constexpr int kThreads = 8;
  std::vector<int> ids(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ids[i] = modes.open(&inode, true, [&] { return 100 + registered.fetch_add(1); });
    });
  }
  for (auto& t : threads) t.join();
  CHECK(registered == 1);
  for (int id : ids) CHECK(id == 100);
  int closed = 0;
  for (int i = 0; i < kThreads; ++i) closed += modes.release(&inode) == 100 ? 1 : 0;
  CHECK(closed == 1);
}

}  // namespace
}  // namespace lamina::fuse
