// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: the OCI layout documents (oci/layout.h): each input is read as an
// index.json, an image manifest and an image config. What parses must serialize, parse back,
// and serialize to the same bytes again (to_json is deterministic and loses nothing that the
// parser keeps); a refusal always says why. Nothing may throw.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lamina/oci/layout.h"

namespace {

template <class Doc, class Parse>
void round_trip(std::string_view text, Parse parse) {
  Doc doc;
  std::string error;
  if (!parse(text, &doc, &error)) {
    if (error.empty()) __builtin_trap();
    return;
  }
  const std::string once = lamina::oci::to_json(doc);
  Doc again;
  if (!parse(once, &again, &error)) __builtin_trap();
  if (lamina::oci::to_json(again) != once) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  using lamina::oci::ImageConfig;
  using lamina::oci::ImageManifest;
  using lamina::oci::Index;
  round_trip<Index>(text, [](std::string_view t, Index* d, std::string* e) {
    return lamina::oci::parse_index(t, d, e);
  });
  round_trip<ImageManifest>(text, [](std::string_view t, ImageManifest* d, std::string* e) {
    return lamina::oci::parse_manifest(t, d, e);
  });
  round_trip<ImageConfig>(text, [](std::string_view t, ImageConfig* d, std::string* e) {
    return lamina::oci::parse_config(t, d, e);
  });
  return 0;
}
