// SPDX-License-Identifier: Apache-2.0
// (placeholder until the store layer lands)
#include "lamina/core/store_layer.h"

namespace lamina::core {

std::unique_ptr<Layer> open_store_layer(std::shared_ptr<const store::Store>, const std::string& id,
                                        StoreLayerOptions, std::string* error) {
  *error = "layer " + id + ": store layers are not implemented yet";
  return nullptr;
}

}  // namespace lamina::core
