// SPDX-License-Identifier: Apache-2.0
#pragma once
// A guard for JSON read from outside (image layouts, registries, store records). nlohmann::json
// parses and frees iteratively, but dump(), copies and comparisons recurse once per nesting
// level: a config of a few hundred KB of '[' overflows the stack. Readers check the depth
// before parsing and refuse deeper documents (real ones nest a handful of levels).

#include <string_view>

namespace lamina {

inline constexpr int kMaxJsonDepth = 256;

// True when no '[' or '{' outside a string is nested more than `max_depth` deep. Not a
// validator: malformed text passes and is the parser's to refuse.
bool json_depth_within(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace lamina
