// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: the layer manifest reader (store/manifest.h decode). A manifest that
// decodes must be valid and re-encode to exactly the bytes read (decode accepts only the
// canonical spelling), and a refusal always says why.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lamina/store/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  lamina::store::Manifest m;
  std::string error;
  if (!lamina::store::decode(bytes, &m, &error)) {
    if (error.empty()) __builtin_trap();
    return 0;
  }
  if (!lamina::store::validate(m, &error)) __builtin_trap();
  if (lamina::store::encode(m) != bytes) __builtin_trap();
  return 0;
}
