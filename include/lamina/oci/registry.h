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

// HOST[:PORT]/REPO[:TAG|@DIGEST] (REPO may hold '/').
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

bool push_image(store::Store& store, const std::string& image, const Reference& ref,
                const RegistryOptions& options, std::string* error);
bool pull_image(store::Store& store, const Reference& ref, const std::string& name, bool replace,
                const RegistryOptions& options, std::string* error);

}  // namespace lamina::oci
