// SPDX-License-Identifier: Apache-2.0
#pragma once
// Images of lamina's store in and out as OCI image layouts (and `docker save` archives in).

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "lamina/oci/layout.h"
#include "lamina/store/store.h"

namespace lamina::oci {

// Called with bytes done and total (0 when unknown) for progress bars.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

// The image config label that marks a volume snapshot (`lamina snapshot` sets it to the
// volume's NAME; import keeps it with the config). Export and push write the layers of such an
// image with exact mtimes (nanoseconds kept) and holes (sparse entries), so a volume restored
// after a round trip through a layout or a registry is identical to the source.
inline constexpr std::string_view kVolumeLabel = "org.lamina.volume";

// The image config JSON of a new volume snapshot of `volume`: {"Labels":{kVolumeLabel: volume}}.
std::string volume_config_json(const std::string& volume);
// True when the image's config (an OCI config, or its "config" object) has kVolumeLabel.
bool is_volume_snapshot(const store::Image& image);

struct ExportOptions {
  Compression compression = Compression::kGzip;
  ProgressFn progress;
};

// Writes image `name` of the store into the layout at `dir` (created if needed; an existing
// `dir` must be an empty directory or a layout, whose other tags are kept) under `tag` (empty:
// default_layout_tag(name)), replacing an earlier manifest of that tag. Layers are written
// bottom first as blobs (write_layer_tar), then the config (diff_ids, `created` of the image,
// its "config" object) and the manifest. Returns the manifest's descriptor (with the tag as its
// ref.name annotation). Takes the store's shared lock. The same image gives the same blobs.
bool export_image(store::Store& store, const std::string& name, const std::string& dir,
                  const std::string& tag, const ExportOptions& options, Descriptor* manifest,
                  std::string* error);

// The tag an image is exported under when none is given: its name with every byte outside
// [A-Za-z0-9_.-] ('/', ':', '@') replaced by '-', at most 128 bytes (a valid docker/skopeo
// tag): "library/app:1.0" -> "library-app-1.0".
std::string default_layout_tag(const std::string& image_name);

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
