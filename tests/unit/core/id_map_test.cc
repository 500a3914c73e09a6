// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/id_map.h"

#include <catch2/catch.hpp>

using lamina::core::IdMap;

TEST_CASE("IdMap maps ranges like fuse-overlayfs", "[core][idmap]") {
  IdMap m;
  REQUIRE_FALSE(IdMap::parse("0:1000:1:1:100000:65536", &m));
  CHECK(m.to_shown(0) == 1000);
  CHECK(m.to_shown(1) == 100000);
  CHECK(m.to_shown(65536) == 165535);
  CHECK(m.to_shown(65537) == IdMap::kOverflowId);
  CHECK(m.to_disk(1000) == 0u);
  CHECK(m.to_disk(100005) == 6u);
  CHECK_FALSE(m.to_disk(5).has_value());
}

TEST_CASE("IdMap without ranges is the identity; squash wins", "[core][idmap]") {
  IdMap m;
  CHECK(m.empty());
  CHECK(m.to_shown(4242) == 4242);
  m.set_squash(7);
  CHECK(m.to_shown(4242) == 7);
}

TEST_CASE("IdMap rejects malformed mappings", "[core][idmap]") {
  for (const char* bad : {"", "0:1", "0:1:2:3", "a:b:c", "0:0:0", "1:2:-3", "4294967295:0:2"}) {
    IdMap m;
    INFO(bad);
    CHECK(IdMap::parse(bad, &m).has_value());
  }
}
