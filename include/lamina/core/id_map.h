// SPDX-License-Identifier: Apache-2.0
#pragma once
// Owner translation between what the layers store and what the mount shows, with
// fuse-overlayfs's option semantics so container tools can pass the same options:
//   uidmapping=A:B:LEN[:A2:B2:LEN2...]  an id in [A, A+LEN) on disk is shown as B + (id - A);
//                                       an id in no range is shown as the overflow id 65534
//   squash_to_root / squash_to_uid= / squash_to_gid=  every object shows that owner

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lamina::core {

class IdMap {
 public:
  static constexpr uint32_t kOverflowId = 65534;

  struct Range {
    uint32_t disk;   // first id as stored in the layers
    uint32_t shown;  // first id as the mount shows it
    uint32_t length;
  };

  // Parses "A:B:LEN[:A:B:LEN...]". Returns an error text on malformed input.
  static std::optional<std::string> parse(std::string_view text, IdMap* out);

  bool empty() const { return ranges_.empty() && !squash_; }
  void set_squash(uint32_t id) { squash_ = id; }
  const std::vector<Range>& ranges() const { return ranges_; }

  // Disk id -> shown id.
  uint32_t to_shown(uint32_t disk_id) const;
  // Shown id -> disk id (for the write path); nullopt when the id has no mapping.
  std::optional<uint32_t> to_disk(uint32_t shown_id) const;

 private:
  std::vector<Range> ranges_;
  std::optional<uint32_t> squash_;
};

}  // namespace lamina::core
