// SPDX-License-Identifier: Apache-2.0
#pragma once
// The layer stacks the parity tests mount: hand-written scenarios (each under its own
// top-level directory, adapted to the number of layers) and seeded random stacks.

#include <cstdint>
#include <string>

#include "integration/layer_builder.h"

namespace lamina::it {

// Adds every hand-written scenario to `stack` (which has at least 2 layers):
//   del/     a file and a dir present in every layer below, deleted in the top layer; root-level
//            deletion
//   re/      deleted in one layer, re-created above (file, dir without opaque, other type)
//   opq/     a dir made opaque above lower children, merging again above; opaque over a file;
//            opaque in the bottom layer; whiteout inside an opaque dir
//   repl/    file replaced by dir, dir replaced by file / symlink / fifo, dir over file over dir
//   deep/    dirs merged 3 levels deep across every layer, topmost dir metadata wins
//   links/   hard links in a lower (one name deleted above, one name replaced above)
//   sym/     absolute, relative, dangling, looping, long symlinks; symlink over a dir
//   special/ fifo, char device, set-id/sticky/0000 modes, owners, user xattrs, odd names,
//            a 1 MiB file
//   ghost/   whiteouts of names that exist nowhere below
//   root     attributes of the root itself, root-level files
void add_scenarios(StackSpec& stack);

// Adds a random stack under `prefix`/: per layer `ops_per_layer` random entries, whiteouts,
// opaque dirs, symlinks, hard links over a small name space so that layers collide often.
void add_random(StackSpec& stack, uint64_t seed, const std::string& prefix = "rnd",
                int ops_per_layer = 40);

// Forms for laminafs layers that differ per layer (layer i uses combination i+seed of all
// whiteout x opaque forms), or per entry when per_entry is true.
FormChooser mixed_forms(uint64_t seed, bool per_entry);

}  // namespace lamina::it
