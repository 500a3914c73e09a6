// SPDX-License-Identifier: Apache-2.0
#pragma once
// The one owner of the OCI layer tar encoding (image-spec "layer.md"), both ways.
//
// Writing (export, push): a store layer's manifest -> a PAX tar stream with every entry sorted
// (the manifest order: parents before children), a directory's whiteouts (".wh.NAME", and
// ".wh..wh..opq" for an opaque directory) before its other entries, hard links only to files
// earlier in the same layer, xattrs as SCHILY.xattr.* (never overlay xattrs or
// security.selinux), whole-second mtimes (exact ones for volume snapshots), no
// atime/ctime/uname/gname, the two zero end blocks; then compressed (gzip without a timestamp or
// name, or zstd), with the SHA-256 of the tar (diff_id) and of the compressed bytes (digest)
// computed on the exact bytes written. The same layer always gives the same bytes.
//
// Reading (import, pull): a layer tar (uncompressed, gzip or zstd; PAX, GNU or ustar) ->
// objects in the store and a manifest, refusing hostile entries with a message naming the entry:
// absolute paths, "..", an entry reached through a symlink (of this layer or the layers below),
// a hard link to outside the layer or to a later entry, duplicate paths, device nodes when not
// root, a bare ".wh.", a truncated or corrupt stream, a diff_id that does not match.
// Paths lose a leading "./" (and empty or "." components); missing parent directories are made
// up (0755, root, mtime 0), as is "/" when the tar has no "./". ".wh..wh..opq" makes its
// directory opaque; other ".wh..wh.*" names (aufs) are refused; ".wh.NAME" beside an entry NAME
// of the same layer: the entry stays (a directory becomes opaque). A hard link to a symlink,
// device or fifo becomes a copy of that entry; a hard link group's first name in manifest order
// holds the file. Sockets are skipped with a warning. Overlay xattrs are dropped.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lamina/oci/layout.h"
#include "lamina/store/manifest.h"
#include "lamina/store/store.h"

namespace lamina::oci {

struct LayerBlob {
  std::string digest;   // of the bytes written (compressed)
  std::string diff_id;  // of the uncompressed tar
  int64_t size = 0;     // bytes written
  std::string media_type;
};

// Writes the layer `manifest` (objects read from `store`) to `out_fd` (from its current
// offset). Returns false with *error naming the entry or step on failure. `progress`, when set,
// is called with the bytes of file contents written so far. Sockets are left out (a tar cannot
// hold them). `exact` (the layers of volume snapshots): mtimes keep their nanoseconds
// (a PAX mtime record) instead of whole seconds, and files with holes are sparse entries.
// The exact entry rules are in docs/formats.md ("OCI layer tars").
bool write_layer_tar(const store::Store& store, const store::Manifest& manifest,
                     Compression compression, int out_fd, LayerBlob* blob, std::string* error,
                     const std::function<void(uint64_t file_bytes)>& progress = {},
                     bool exact = false);

struct ReadLayerOptions {
  // The manifests of the layers below, bottom first: a path reached through a symlink of any of
  // them is refused too.
  std::vector<const store::Manifest*> below;
  // Device nodes are refused unless this is true (lamina sets it when running as root).
  bool allow_devices = false;
  // When not empty, the SHA-256 the uncompressed tar must have.
  std::string expected_diff_id;
  // When not empty, the SHA-256 of the bytes read from the input (the blob as stored, usually
  // compressed); when >= 0, their count. Both checked once the input is read to its end.
  std::string expected_digest;
  int64_t expected_size = -1;
  // Called after each read with the count of input bytes read so far.
  std::function<void(uint64_t)> progress;
};

// Reads a layer tar (any compression libarchive detects) from `in_fd` into `store` (objects)
// and *manifest (validated, not yet published). REQUIRES: the store's shared lock is held.
// On failure returns false and *error names the entry and the problem; objects stored so far
// stay unreferenced (gc removes them).
bool read_layer_tar(store::Store& store, int in_fd, const ReadLayerOptions& options,
                    store::Manifest* manifest, std::string* diff_id, std::string* error);

// The input of read_layer_stream: reads up to `size` bytes into `buf`; 0 at the end.
using ReadFn = std::function<Result<size_t>(void* buf, size_t size)>;

// The same from any byte stream (a member of a `docker save` archive, a registry download).
bool read_layer_stream(store::Store& store, const ReadFn& read, const ReadLayerOptions& options,
                       store::Manifest* manifest, std::string* diff_id, std::string* error);

}  // namespace lamina::oci
