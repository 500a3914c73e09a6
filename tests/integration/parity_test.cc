// SPDX-License-Identifier: Apache-2.0
// Parity with kernel overlayfs: the same abstract stack, written in the kernel's encoding for
// the kernel and in the encodings container tools write for laminafs, must show the same tree.

#include "integration/parity.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>

#include "integration/scenarios.h"

namespace lamina::it {
namespace {

std::string forms_label(WhiteoutForm wh, OpaqueForm opq, size_t layers) {
  return fmt::format("whiteout={} opaque={} layers={}", name_of(wh), name_of(opq), layers);
}

TEST_CASE("parity: scenarios for every whiteout form x opaque form x layer count", "[parity]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  auto wh = GENERATE(WhiteoutForm::kCharDev, WhiteoutForm::kWhFile, WhiteoutForm::kTrustedXattr);
  auto opq = GENERATE(OpaqueForm::kTrustedY, OpaqueForm::kUserY, OpaqueForm::kWhOpq);
  auto layers = GENERATE(as<size_t>{}, 2, 3, 5);
  const std::string label = forms_label(wh, opq, layers);
  INFO(label);

  StackSpec stack(layers);
  add_scenarios(stack);
  ParityOptions opts;
  // With 3 layers the middle lower reaches laminafs through a symlink; 2 and 5 layers use real
  // paths, so a symlink problem cannot hide every other result.
  opts.symlink_lower = layers == 3;
  run_parity(stack, constant_forms(Forms{wh, opq}), opts, label);
}

TEST_CASE("parity: every layer in a different encoding", "[parity][mixed]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  auto seed = GENERATE(as<uint64_t>{}, 0, 1, 2);
  const std::string label = fmt::format("per-layer mixed forms seed={} layers=5", seed);
  INFO(label);
  StackSpec stack(5);
  add_scenarios(stack);
  add_random(stack, 100 + seed);
  ParityOptions opts;
  opts.symlink_lower = true;
  run_parity(stack, mixed_forms(seed, /*per_entry=*/false), opts, label);
}

TEST_CASE("parity: random stacks, encoding chosen per entry", "[parity][random]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  auto seed = GENERATE(as<uint64_t>{}, 1, 2, 3, 4, 5, 6, 7, 8);
  const size_t layers = 2 + seed % 6;  // 3..7
  const std::string label =
      fmt::format("random stack seed={} layers={} per-entry forms", seed, layers);
  INFO(label);
  StackSpec stack(layers);
  add_random(stack, seed, "rnd", 60);
  add_random(stack, seed * 1000, "rnd2", 30);
  run_parity(stack, mixed_forms(seed, /*per_entry=*/true), ParityOptions{}, label);
}

TEST_CASE("parity: top layer as upperdir with workdir", "[parity][upper]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  auto wh = GENERATE(WhiteoutForm::kCharDev, WhiteoutForm::kWhFile, WhiteoutForm::kTrustedXattr);
  auto opq = GENERATE(OpaqueForm::kTrustedY, OpaqueForm::kUserY, OpaqueForm::kWhOpq);
  const std::string label = "upperdir " + forms_label(wh, opq, 3);
  INFO(label);
  StackSpec stack(3);
  add_scenarios(stack);
  ParityOptions opts;
  opts.use_upper = true;
  run_parity(stack, constant_forms(Forms{wh, opq}), opts, label);
}

TEST_CASE("parity: upperdir with mixed encodings and a random stack", "[parity][upper][mixed]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  auto seed = GENERATE(as<uint64_t>{}, 11, 12);
  const std::string label = fmt::format("upperdir mixed forms seed={} layers=5", seed);
  INFO(label);
  StackSpec stack(5);
  add_scenarios(stack);
  add_random(stack, seed);
  ParityOptions opts;
  opts.use_upper = true;
  opts.symlink_lower = true;
  run_parity(stack, mixed_forms(seed, /*per_entry=*/true), opts, label);
}

TEST_CASE("parity: names of 250 to 255 bytes in a multi-layer stack", "[parity][names]") {
  // ".wh." + NAME is longer than NAME_MAX for names of 252 bytes and more: probing a layer for
  // that whiteout fails with ENAMETOOLONG, which means "no such whiteout", not an error.
  LAMINA_REQUIRE_MOUNT_ENV();
  StackSpec stack(3);
  for (size_t len = 250; len <= 255; ++len) {
    stack[0].file(std::string(len, 'a'), "bottom");
    stack[0].file("d/" + std::string(len, 'b'), "bottom");
    stack[1].file("d/" + std::string(len, 'c'), "middle");
    stack[2].file(std::string(len, 'e'), "top");
  }
  stack[0].file(std::string(254, 'w'), "deleted above");
  stack[2].whiteout(std::string(254, 'w'));  // only a char device can delete it
  run_parity(stack, constant_forms(kKernelForms), ParityOptions{}, "long names");
}

}  // namespace
}  // namespace lamina::it
