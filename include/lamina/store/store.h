// SPDX-License-Identifier: Apache-2.0
#pragma once
// lamina's content-addressed store (docs/formats.md, "Store layout"):
//
//   ROOT/store.json          {"version": 1, "object_hash": "xxh3-128"}
//   ROOT/objects/ab/cdef…    file contents named by their XXH3-128, immutable, mode 0444
//   ROOT/layers/ID/manifest  the layer's manifest; ID = XXH3-128 of its bytes
//   ROOT/layers/ID/info.json sizes and counts, creation time
//   ROOT/images/NAME.json    an image: its layer ids, bottom first
//   ROOT/tmp/                staging; nothing there is referenced
//   ROOT/lock                flock: shared for commits, exclusive for gc
//
// Everything is published by rename (or link, for objects) after its contents are written, so a
// crash at any instant leaves at worst unreferenced files: objects before their manifest, a
// layer before its image. Durability: objects and manifests are flushed (syncfs) before the
// manifest and the image that reference them are published.
//
// The store knows nothing of union semantics: to it a layer is a manifest and objects.

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lamina/base/error.h"
#include "lamina/base/hash.h"
#include "lamina/base/unique_fd.h"
#include "lamina/store/manifest.h"

namespace lamina::store {

inline constexpr int kStoreVersion = 1;

// Held for the life of the object.
class StoreLock {
 public:
  StoreLock() = default;
  explicit StoreLock(UniqueFd fd) : fd_(std::move(fd)) {}
  bool held() const { return fd_.valid(); }

 private:
  UniqueFd fd_;
};

struct LayerInfo {
  std::string id;
  std::string created;   // RFC 3339, UTC
  uint64_t entries = 0;  // manifest entries
  uint64_t files = 0;    // regular files (hard links not counted)
  uint64_t whiteouts = 0;
  uint64_t content_bytes = 0;  // sum of the file sizes
  uint64_t manifest_bytes = 0;
  std::string comment;  // free text (e.g. "commit of /path/to/upper")
};

struct Image {
  std::string name;
  std::vector<std::string> layers;  // bottom first
  std::string created;              // RFC 3339, UTC
  std::string config_json = "{}";   // image config (OCI-style), kept verbatim
};

// What put_object did.
struct PutResult {
  std::string name;  // the object's name (its hash, or hash-N after a collision)
  uint64_t size = 0;
  bool added = false;  // false: an identical object was already stored
};

class Store {
 public:
  // ROOT when none is given: $LAMINA_ROOT, else /var/lib/lamina as root, else
  // $XDG_DATA_HOME/lamina (~/.local/share/lamina).
  static std::string default_root();

  // Opens the store at `root`, creating it (mode 0700) when `create` and it does not exist.
  // Fails with a message in *error: not a store, unknown version, unreadable.
  static std::unique_ptr<Store> open(const std::string& root, bool create, std::string* error);

  const std::string& root() const { return root_; }
  int root_fd() const { return root_fd_.get(); }
  int objects_fd() const { return objects_fd_.get(); }
  int layers_fd() const { return layers_fd_.get(); }
  int images_fd() const { return images_fd_.get(); }

  // flock on ROOT/lock. `wait` false: EWOULDBLOCK instead of waiting.
  Result<StoreLock> lock_shared(bool wait = true) const;
  Result<StoreLock> lock_exclusive(bool wait = true) const;

  // ---- objects ----
  // Stores the bytes of the regular file `src_fd` (from offset 0 to its size when read) as an
  // object: copied into tmp/ while hashed (holes stay holes), then linked under its name. An
  // object of the same name is reused only if its bytes are equal; otherwise the new bytes get
  // a distinct name (hash-1, hash-2 ...) and a warning is logged. REQUIRES: a lock is held.
  Result<PutResult> put_object(int src_fd);
  Result<PutResult> put_bytes(std::string_view bytes);
  // objects/ab/cdef… relative to the root, and a descriptor on it.
  static std::string object_path(std::string_view name);
  Result<UniqueFd> open_object(std::string_view name, int flags = 0) const;
  Result<struct stat> stat_object(std::string_view name) const;
  // Calls fn(name, size) for every object.
  Status list_objects(const std::function<Status(const std::string&, uint64_t)>& fn) const;
  // EINVAL for a name that is not a valid object name; ENOENT when absent.
  Status remove_object(std::string_view name);

  // ---- layers ----
  // Publishes a valid manifest (EINVAL otherwise) as a layer (after flushing the objects it
  // references) and returns its id. A layer with the same id that exists already is kept if its
  // manifest has the same bytes (EEXIST on the rare differing one, never overwritten).
  Result<std::string> publish_layer(const Manifest& manifest, LayerInfo info);
  static std::string layer_id(std::string_view manifest_bytes);
  bool has_layer(std::string_view id) const;
  // Reads and checks a layer's manifest; *error says what is wrong.
  bool read_manifest(std::string_view id, Manifest* m, std::string* error) const;
  Result<std::string> read_manifest_bytes(std::string_view id) const;
  // The manifest file, opened read-only (the mount keeps it, locked shared, while mounted).
  Result<UniqueFd> open_manifest(std::string_view id) const;
  // EBADMSG when info.json is not JSON or a field has the wrong type.
  Result<LayerInfo> read_layer_info(std::string_view id) const;
  Result<std::vector<std::string>> list_layers() const;
  Status remove_layer(std::string_view id);
  static bool valid_layer_id(std::string_view id);

  // ---- images ----
  // Names: letters, digits and "._-/:@", at most 200 bytes (and at most 255 once each '/' is
  // stored as "%2F"), no "..", no "//", no component starting with ".", not starting with "/",
  // "." or "-". ENOENT when absent; EBADMSG for a damaged record.
  static bool valid_image_name(std::string_view name, std::string* why);
  Result<Image> read_image(std::string_view name) const;
  // EEXIST when the name exists and !replace. Published by rename after a syncfs.
  Status write_image(const Image& image, bool replace);
  Status remove_image(std::string_view name);
  // The readable images, sorted by name; a damaged record is skipped (list_image_names and
  // read_image see it: gc and fsck must).
  Result<std::vector<Image>> list_images() const;
  // The names of every image record, readable or not, sorted.
  Result<std::vector<std::string>> list_image_names() const;
  // Finds a layer id from a prefix of at least 4 hex digits (EINVAL when ambiguous).
  Result<std::string> resolve_layer(std::string_view prefix) const;

  // ---- staging ----
  int tmp_fd() const { return tmp_fd_.get(); }
  // Flushes everything written to the store's filesystem.
  Status sync() const;

  static std::string now_rfc3339();

 private:
  Store() = default;
  Result<PutResult> link_object(int tmp_fd, const std::string& tmp_name, const Hash128& hash,
                                uint64_t size);

  std::string root_;
  UniqueFd root_fd_;
  UniqueFd objects_fd_;
  UniqueFd layers_fd_;
  UniqueFd images_fd_;
  UniqueFd tmp_fd_;
};

}  // namespace lamina::store
