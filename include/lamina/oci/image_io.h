// SPDX-License-Identifier: Apache-2.0
#pragma once
// Images of lamina's store in and out as OCI image layouts (and `docker save` archives in).

#include <cstdint>
#include <functional>
#include <string>

#include "lamina/oci/layout.h"
#include "lamina/store/store.h"

namespace lamina::oci {

// Called with bytes done and total (0 when unknown) for progress bars.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

struct ExportOptions {
  Compression compression = Compression::kGzip;
  ProgressFn progress;
};

// Writes image `name` of the store into the layout at `dir` (created if needed) under `tag`
// (empty: the image's name). Returns the manifest's descriptor. Takes the store's shared lock.
bool export_image(store::Store& store, const std::string& name, const std::string& dir,
                  const std::string& tag, const ExportOptions& options, Descriptor* manifest,
                  std::string* error);

struct ImportOptions {
  bool replace = false;  // replace an image of the same name
  ProgressFn progress;
};

// Reads image `tag` of the layout at `dir` (empty tag: its only image), verifies every digest
// and diff_id, stores its layers, and records it as image `name`. Nothing is recorded unless
// every layer was read and verified. Takes the store's shared lock.
bool import_image(store::Store& store, const std::string& dir, const std::string& tag,
                  const std::string& name, const ImportOptions& options, std::string* error);

// The same from a `docker save` archive (a tar with manifest.json and layer tars).
bool import_docker_archive(store::Store& store, const std::string& archive, const std::string& name,
                           const ImportOptions& options, std::string* error);

}  // namespace lamina::oci
