// SPDX-License-Identifier: Apache-2.0
#pragma once
// A committed layer of lamina's store, seen as a Layer: metadata from the manifest (held in
// memory), data from the objects. Nothing is extracted. The union code sees it in overlay
// format: a whiteout entry stats as a char device 0/0, an opaque directory carries
// trusted.overlay.opaque=y.
//
// (Interface fixed here; implementation in src/core/store_layer.cc.)

#include <memory>
#include <string>

#include "lamina/core/layer.h"
#include "lamina/store/store.h"

namespace lamina::core {

struct StoreLayerOptions {
  // Hash every object on first open and refuse (EIO) one whose bytes do not match its name.
  bool verify = false;
};

class StoreLayer;

// Opens layer `id` of `store`. While the StoreLayer lives it holds a shared flock on the
// layer's manifest, which `lamina gc` honours (a mounted layer is never collected).
// On failure returns null and *error names the layer and the problem.
std::unique_ptr<Layer> open_store_layer(std::shared_ptr<const store::Store> store,
                                        const std::string& id, StoreLayerOptions options,
                                        std::string* error);

}  // namespace lamina::core
