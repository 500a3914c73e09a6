// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/id_map.h"

#include <charconv>

namespace lamina::core {
namespace {

bool parse_u32(std::string_view s, uint32_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::optional<std::string> IdMap::parse(std::string_view text, IdMap* out) {
  std::vector<uint32_t> nums;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(':', pos);
    if (end == std::string_view::npos) end = text.size();
    uint32_t v;
    if (!parse_u32(text.substr(pos, end - pos), &v))
      return "'" + std::string(text) + "' is not a list of numbers A:B:LEN";
    nums.push_back(v);
    pos = end + 1;
  }
  if (nums.empty() || nums.size() % 3 != 0)
    return "'" + std::string(text) + "' must hold triples A:B:LEN";
  for (size_t i = 0; i < nums.size(); i += 3) {
    if (nums[i + 2] == 0) return "'" + std::string(text) + "' has a range of length 0";
    if (uint64_t{nums[i]} + nums[i + 2] > (uint64_t{1} << 32) ||
        uint64_t{nums[i + 1]} + nums[i + 2] > (uint64_t{1} << 32))
      return "'" + std::string(text) + "' has a range beyond 2^32";
    out->ranges_.push_back(Range{nums[i], nums[i + 1], nums[i + 2]});
  }
  return std::nullopt;
}

uint32_t IdMap::to_shown(uint32_t disk_id) const {
  if (squash_) return *squash_;
  if (ranges_.empty()) return disk_id;
  for (const Range& r : ranges_) {
    if (disk_id >= r.disk && disk_id - r.disk < r.length) return r.shown + (disk_id - r.disk);
  }
  return kOverflowId;
}

std::optional<uint32_t> IdMap::to_disk(uint32_t shown_id) const {
  if (ranges_.empty()) return shown_id;
  for (const Range& r : ranges_) {
    if (shown_id >= r.shown && shown_id - r.shown < r.length) return r.disk + (shown_id - r.shown);
  }
  return std::nullopt;
}

}  // namespace lamina::core
