// SPDX-License-Identifier: Apache-2.0
#pragma once
// OCI image layout documents (image-spec v1.0/1.1) and the layout directory:
//
//   DIR/oci-layout             {"imageLayoutVersion": "1.0.0"}
//   DIR/index.json             an index: one manifest descriptor per tag
//                              (annotation org.opencontainers.image.ref.name)
//   DIR/blobs/sha256/HEX       manifests, configs, layers, named by their SHA-256
//
// This file owns the JSON encoding of these documents: serialization is deterministic (keys
// sorted, no insignificant whitespace), so the same image gives the same bytes and digests.
// Parsing is strict about what lamina needs (digests, sizes, media types) and keeps what it
// does not interpret (the config's "config" object, annotations) verbatim.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lamina/base/error.h"
#include "lamina/base/unique_fd.h"

namespace lamina::oci {

inline constexpr std::string_view kMediaIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kMediaManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kMediaConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kMediaLayerTar = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kMediaLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kMediaLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
// Docker's schema 2 (what `docker save`, and many registries, hold).
inline constexpr std::string_view kMediaDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kMediaDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kMediaDockerConfig =
    "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kMediaDockerLayerGzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";

enum class Compression { kNone, kGzip, kZstd };
// The layer media type for a compression, and back (docker's gzip type included).
std::string_view layer_media_type(Compression c);
std::optional<Compression> compression_of(std::string_view media_type);

struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:…"
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
  std::string platform_json;  // verbatim, empty when absent
};

struct ImageManifest {
  std::string media_type;  // kMediaManifest (or docker's)
  Descriptor config;
  std::vector<Descriptor> layers;  // bottom first
  std::map<std::string, std::string> annotations;
};

struct ImageConfig {
  std::string created;  // RFC 3339, may be empty
  std::string architecture = "amd64";
  std::string os = "linux";
  std::string config_json;            // the "config" object (Env, Cmd, ...) verbatim; may be empty
  std::vector<std::string> diff_ids;  // rootfs.diff_ids, bottom first
  std::string history_json;           // the "history" array verbatim; may be empty
};

struct Index {
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

// Deterministic JSON bytes.
std::string to_json(const ImageManifest& m);
std::string to_json(const ImageConfig& c);
std::string to_json(const Index& i);
// Parsing: false with *error naming the document and the field on failure.
bool parse_manifest(std::string_view text, ImageManifest* m, std::string* error);
bool parse_config(std::string_view text, ImageConfig* c, std::string* error);
bool parse_index(std::string_view text, Index* i, std::string* error);

// A layout directory being written. Blobs are written to a temp file in DIR/blobs/sha256/ and
// renamed to their digest; an existing blob of that digest is kept (same name, same bytes).
class LayoutWriter {
 public:
  // Creates DIR (and oci-layout, blobs/sha256/) if needed. An existing DIR must be a layout
  // (or empty); its index is read so tags accumulate.
  static std::unique_ptr<LayoutWriter> open(const std::string& dir, std::string* error);
  ~LayoutWriter();

  // A new temp blob file; finish it with commit_blob once written and its digest known.
  Result<UniqueFd> create_blob(std::string* temp_name);
  Status commit_blob(const std::string& temp_name, const std::string& digest);
  void abort_blob(const std::string& temp_name);
  // Writes bytes as a blob; returns its descriptor (media type as given).
  Result<Descriptor> put_blob(std::string_view bytes, std::string_view media_type);

  // Points TAG at the manifest (replacing a previous manifest of that tag) and rewrites
  // index.json (temp file + rename).
  Status set_tag(const std::string& tag, const Descriptor& manifest);

 private:
  LayoutWriter() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A layout directory being read: every blob read is checked against its digest and size.
class LayoutReader {
 public:
  static std::unique_ptr<LayoutReader> open(const std::string& dir, std::string* error);
  ~LayoutReader();

  const Index& index() const;
  // The manifest descriptor for TAG; with an empty tag, the only manifest (an error if there
  // are several). Nested indexes (multi-platform) resolve to the linux/amd64 manifest.
  bool resolve(const std::string& tag, Descriptor* manifest, std::string* error) const;
  // A small blob (manifest, config), verified.
  bool read_blob(const Descriptor& d, std::string* bytes, std::string* error) const;
  // A descriptor on a blob file, after checking it exists with the descriptor's size (the
  // digest is the caller's to check while it streams the bytes).
  Result<UniqueFd> open_blob(const Descriptor& d) const;

 private:
  LayoutReader() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "DIR:TAG" as the tools take it (skopeo's oci:DIR:TAG without "oci:"): splits at the last
// ':' that follows the last '/'. No tag: *tag empty.
void split_layout_ref(const std::string& ref, std::string* dir, std::string* tag);

}  // namespace lamina::oci
