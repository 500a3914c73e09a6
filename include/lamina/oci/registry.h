// SPDX-License-Identifier: Apache-2.0
#pragma once
// The OCI distribution API (libcurl): push and pull images between lamina's store and a
// registry. Blob HEAD before upload, monolithic and chunked uploads (offsets tracked from the
// registry's Range answers), cross-repository mount, manifest PUT with its exact media type,
// basic and bearer-token auth, plain HTTP only when asked (--insecure).

#include <string>

#include "lamina/oci/image_io.h"
#include "lamina/store/store.h"

namespace lamina::oci {

// HOST[:PORT]/REPO[:TAG|@DIGEST] (REPO may hold '/'). The first component is a host only if it
// holds '.' or ':' or is "localhost": there is no default registry.
struct Reference {
  std::string host;  // with the port, if any
  std::string repo;
  std::string tag;  // "latest" when none was given and no digest
  std::string digest;
};
bool parse_reference(const std::string& text, Reference* ref, std::string* error);

struct RegistryOptions {
  bool insecure = false;  // http:// instead of https://
  std::string username;   // basic auth / token request credentials
  std::string password;
  uint64_t chunk_size = 0;  // 0: monolithic uploads; else PATCH chunks of this size
  std::string mount_from;   // a repository on the same registry to mount blobs from
  Compression compression = Compression::kGzip;
  ProgressFn progress;
};

// Pushes image `image` of the store to ref (its tag, or its digest): exports it into a temp
// OCI layout under the store's tmp/ (options.compression), then push_layout. The temp layout
// is removed in every case.
bool push_image(store::Store& store, const std::string& image, const Reference& ref,
                const RegistryOptions& options, std::string* error);
// Pulls ref into a temp OCI layout under the store's tmp/ (pull_to_layout), then imports it as
// image `name` (replacing one of that name only with `replace`). The temp layout is removed.
bool pull_image(store::Store& store, const Reference& ref, const std::string& name, bool replace,
                const RegistryOptions& options, std::string* error);

// The layout-level halves of push and pull (no store involved).
//
// Pushes the image tagged `tag` in the OCI layout at layout_dir (empty tag: its only image) to
// ref: each layer blob, then the config, unless the registry has it already (HEAD), by a
// cross-repository mount when options.mount_from is set, else by a monolithic PUT or (chunk_size
// > 0) PATCH chunks; then the manifest with its exact bytes and media type, checking the digest
// the registry answers. Errors name the step, the URL, the HTTP status and the registry's error.
bool push_layout(const std::string& layout_dir, const std::string& tag, const Reference& ref,
                 const RegistryOptions& options, std::string* error);
// Pulls ref (an index or manifest list resolves to its linux/amd64 manifest) into the OCI layout
// at layout_dir (created if needed) under `tag`: the config and layer blobs are streamed into
// blobs/sha256 while hashed, and any digest or size mismatch fails naming the blob. The layout's
// tag points at the image manifest, byte for byte what the registry served.
bool pull_to_layout(const Reference& ref, const std::string& layout_dir, const std::string& tag,
                    const RegistryOptions& options, std::string* error);

}  // namespace lamina::oci
