// SPDX-License-Identifier: Apache-2.0
// json_depth_within: the nesting guard run before parsing JSON from outside.
#include "lamina/base/json_depth.h"

#include <catch2/catch.hpp>
#include <string>

namespace lamina {
namespace {

std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST_CASE("json_depth_within: counts arrays and objects outside strings", "[base]") {
  CHECK(json_depth_within("", 0));
  CHECK(json_depth_within("1", 0));
  CHECK_FALSE(json_depth_within("[]", 0));
  CHECK(json_depth_within("[]", 1));
  CHECK(json_depth_within(R"({"a":[1,{"b":2}],"c":{}})", 3));
  CHECK_FALSE(json_depth_within(R"({"a":[1,{"b":2}],"c":{}})", 2));
  CHECK(json_depth_within(nested(kMaxJsonDepth)));
  CHECK_FALSE(json_depth_within(nested(kMaxJsonDepth + 1)));
  // Siblings do not add up.
  CHECK(json_depth_within("[[],[],[[]]]", 3));
}

TEST_CASE("json_depth_within: brackets inside strings, escaped quotes", "[base]") {
  CHECK(json_depth_within(R"(["[[[[{{{{"])", 1));
  CHECK(json_depth_within(R"(["a\"[[[[", "\\"])", 1));
  // An escaped quote does not end the string; the escaped backslash before the last quote does.
  CHECK_FALSE(json_depth_within(R"(["\\"[[])", 2));
  // Unbalanced closers do not hide later opens.
  CHECK_FALSE(json_depth_within("]]]][[[", 2));
}

}  // namespace
}  // namespace lamina
