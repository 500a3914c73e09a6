// SPDX-License-Identifier: Apache-2.0
// Import: an OCI image layout, or a `docker save` archive, becomes layers and an image of the
// store.
//
// Order (so a failure leaves no image and no layer, only unreferenced objects that gc removes):
// check the image name, lock the store shared, read and verify the manifest and config, read
// every layer (blob digest, size and diff_id verified while its objects are stored; each layer
// checked against the ones below it for paths through symlinks), then publish the layers, then
// write the image record.
#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "lamina/oci/digest.h"
#include "lamina/oci/image_io.h"
#include "lamina/oci/layer_tar.h"

namespace lamina::oci {
namespace {

using nlohmann::json;

// The checks before anything is read: a valid name, not taken (unless replacing).
bool check_name(const store::Store& store, const std::string& name, const ImportOptions& options,
                std::string* error) {
  std::string why;
  if (!store::Store::valid_image_name(name, &why)) {
    *error = "invalid image name '" + name + "': " + why;
    return false;
  }
  if (!options.replace) {
    auto existing = store.read_image(name);
    if (existing || existing.code() != ENOENT) {
      *error = "image '" + name + "' exists (use --force to replace it)";
      return false;
    }
  }
  return true;
}

struct LayerIn {
  store::Manifest manifest;
  std::string digest;  // of the blob, for the layer's comment
};

// Publishes the layers, then the image record.
bool publish(store::Store& store, const std::string& name, const std::string& source,
             const ImageConfig& config, std::vector<LayerIn>& layers, const ImportOptions& options,
             std::string* error) {
  store::Image image;
  image.name = name;
  // The whole config minus rootfs (export rebuilds that from the layers), so exporting the
  // image again reproduces its config, and with it the manifest, byte for byte.
  {
    nlohmann::json whole = {{"architecture", config.architecture}, {"os", config.os}};
    auto cfg = nlohmann::json::parse(config.config_json.empty() ? "{}" : config.config_json,
                                     nullptr, false);
    if (!cfg.is_discarded()) whole["config"] = cfg;
    if (!config.history_json.empty()) {
      auto h = nlohmann::json::parse(config.history_json, nullptr, false);
      if (!h.is_discarded()) whole["history"] = h;
    }
    image.config_json = whole.dump();
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    store::LayerInfo info;
    for (const store::Entry& e : layers[i].manifest.entries) {
      ++info.entries;
      if (e.kind == store::EntryKind::kFile) {
        ++info.files;
        info.content_bytes += e.size;
      }
      if (e.kind == store::EntryKind::kWhiteout) ++info.whiteouts;
    }
    info.comment = "import of " + source + " layer " + layers[i].digest;
    auto id = store.publish_layer(layers[i].manifest, info);
    if (!id) {
      *error = "layer " + std::to_string(i) + " (" + layers[i].digest +
               "): cannot publish it: " + id.error().message();
      return false;
    }
    image.layers.push_back(*id);
  }
  // The image's own creation time, as `docker images` shows it (now when the config has none).
  image.created = config.created.empty() ? store::Store::now_rfc3339() : config.created;
  if (Status s = store.write_image(image, options.replace); !s) {
    *error = s.code() == EEXIST ? "image '" + name + "' exists (use --force to replace it)"
                                : "cannot write image '" + name + "': " + s.error().message();
    return false;
  }
  return true;
}

ReadLayerOptions layer_options(const std::vector<LayerIn>& below, const std::string& diff_id) {
  ReadLayerOptions o;
  for (const LayerIn& l : below) o.below.push_back(&l.manifest);
  o.allow_devices = ::geteuid() == 0;
  o.expected_diff_id = diff_id;
  return o;
}

// ---- docker save archives ----------------------------------------------------------------

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveFree>;

// A member name of the archive as a plain relative path ("./a//b" -> "a/b"); ".." pops a
// component but never above the archive's root. Empty when it would.
std::string clean_member(std::string_view name, std::string_view base_dir = "") {
  std::vector<std::string> parts;
  std::string joined = std::string(base_dir) + "/" + std::string(name);
  if (!name.empty() && name[0] == '/') return "";
  size_t pos = 0;
  while (pos <= joined.size()) {
    size_t end = joined.find('/', pos);
    if (end == std::string::npos) end = joined.size();
    std::string c = joined.substr(pos, end - pos);
    pos = end + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      if (parts.empty()) return "";
      parts.pop_back();
      continue;
    }
    parts.push_back(c);
  }
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

// Opens the archive positioned at the data of regular file `member` (following symlinks and
// hard links inside the archive).
ArchivePtr open_member(const std::string& path, std::string member, int64_t* size,
                       std::string* error) {
  const std::string asked = member;
  for (int hop = 0; hop < 8; ++hop) {
    ArchivePtr a(archive_read_new());
    archive_read_support_filter_gzip(a.get());
    archive_read_support_filter_zstd(a.get());
    archive_read_support_format_tar(a.get());
    if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) {
      *error = "archive '" + path + "': " + archive_error_string(a.get());
      return nullptr;
    }
    archive_entry* e = nullptr;
    std::string next;
    int r;
    while ((r = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
      const char* n = archive_entry_pathname(e);
      if (n == nullptr || clean_member(n) != member) continue;
      const std::string dir = member.find('/') == std::string::npos
                                  ? std::string()
                                  : member.substr(0, member.rfind('/'));
      if (const char* h = archive_entry_hardlink(e); h != nullptr) {
        next = clean_member(h);
      } else if (archive_entry_filetype(e) == AE_IFLNK && archive_entry_symlink(e) != nullptr) {
        next = clean_member(archive_entry_symlink(e), dir);
      } else if (archive_entry_filetype(e) == AE_IFREG) {
        *size = archive_entry_size(e);
        return a;
      } else {
        *error = "archive '" + path + "': '";
        *error += asked;
        *error += "' is not a regular file";
        return nullptr;
      }
      break;
    }
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN && r != ARCHIVE_EOF) {
      *error = "archive '" + path + "': " + archive_error_string(a.get());
      return nullptr;
    }
    if (next.empty()) {
      *error = "archive '" + path + "' has no member '";
      *error += asked;
      *error += "'";
      return nullptr;
    }
    member = next;
  }
  *error = "archive '" + path + "': '" + asked + "': too many links";
  return nullptr;
}

bool read_member(const std::string& path, const std::string& member, std::string* bytes,
                 std::string* error) {
  int64_t size = 0;
  ArchivePtr a = open_member(path, member, &size, error);
  if (!a) return false;
  if (size > (64 << 20)) {
    *error = "archive '" + path + "': '" + member + "' is too large";
    return false;
  }
  bytes->assign(static_cast<size_t>(size), '\0');
  la_ssize_t n = archive_read_data(a.get(), bytes->data(), bytes->size());
  if (n != static_cast<la_ssize_t>(size)) {
    *error = "archive '" + path + "': '" + member + "': truncated or unreadable";
    return false;
  }
  return true;
}

// "blobs/sha256/HEX" or "HEX.json" style names carry the digest of their bytes.
std::string digest_in_name(const std::string& member) {
  std::string base = member.substr(member.rfind('/') + 1);
  if (base.size() > 5 && base.ends_with(".json")) base.resize(base.size() - 5);
  std::string d = "sha256:" + base;
  return valid_digest(d) ? d : std::string();
}

}  // namespace

bool import_image(store::Store& store, const std::string& dir, const std::string& tag,
                  const std::string& name, const ImportOptions& options, std::string* error) {
  if (!check_name(store, name, options, error)) return false;
  auto lock = store.lock_shared();
  if (!lock) {
    *error = "cannot lock store " + store.root() + ": " + lock.error().message();
    return false;
  }
  auto reader = LayoutReader::open(dir, error);
  if (!reader) return false;
  Descriptor md;
  if (!reader->resolve(tag, &md, error)) return false;
  std::string bytes;
  ImageManifest manifest;
  if (!reader->read_blob(md, &bytes, error)) return false;
  if (!parse_manifest(bytes, &manifest, error)) {
    *error = "manifest " + md.digest + ": " + *error;
    return false;
  }
  ImageConfig config;
  if (!reader->read_blob(manifest.config, &bytes, error)) return false;
  if (!parse_config(bytes, &config, error)) {
    *error = "config " + manifest.config.digest + ": " + *error;
    return false;
  }
  if (manifest.layers.size() != config.diff_ids.size()) {
    *error = "manifest " + md.digest + " has " + std::to_string(manifest.layers.size()) +
             " layers, its config " + std::to_string(config.diff_ids.size()) + " diff_ids";
    return false;
  }
  uint64_t total = 0;
  for (const Descriptor& l : manifest.layers) total += static_cast<uint64_t>(l.size);
  uint64_t done = 0;
  std::vector<LayerIn> layers;
  layers.reserve(manifest.layers.size());  // `below` points into it
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const Descriptor& l = manifest.layers[i];
    const std::string what = "layer " + std::to_string(i) + " (" + l.digest + ")";
    if (!compression_of(l.media_type)) {
      *error = what + ": unsupported media type '" + l.media_type + "'";
      return false;
    }
    auto fd = reader->open_blob(l);
    if (!fd) {
      *error = what + ": " + fd.error().message();
      return false;
    }
    ReadLayerOptions o = layer_options(layers, config.diff_ids[i]);
    o.expected_digest = l.digest;
    o.expected_size = l.size;
    if (options.progress) {
      o.progress = [&](uint64_t n) { options.progress(done + n, total); };
    }
    LayerIn in;
    in.digest = l.digest;
    std::string diff_id;
    std::string why;
    if (!read_layer_tar(store, fd->get(), o, &in.manifest, &diff_id, &why)) {
      *error = what;
      *error += ": ";
      *error += why;
      return false;
    }
    done += static_cast<uint64_t>(l.size);
    layers.push_back(std::move(in));
  }
  std::string source = dir + (tag.empty() ? "" : ":" + tag);
  return publish(store, name, source, config, layers, options, error);
}

bool import_docker_archive(store::Store& store, const std::string& archive_path,
                           const std::string& name, const ImportOptions& options,
                           std::string* error) {
  if (!check_name(store, name, options, error)) return false;
  auto lock = store.lock_shared();
  if (!lock) {
    *error = "cannot lock store " + store.root() + ": " + lock.error().message();
    return false;
  }
  std::string bytes;
  if (!read_member(archive_path, "manifest.json", &bytes, error)) return false;
  json j = json::parse(bytes, nullptr, false);
  if (j.is_discarded() || !j.is_array()) {
    *error = "archive '" + archive_path + "': manifest.json is not a JSON array";
    return false;
  }
  if (j.size() != 1) {
    *error = "archive '" + archive_path + "' holds " + std::to_string(j.size()) +
             " images; lamina imports archives of one";
    return false;
  }
  const json& m = j[0];
  if (!m.is_object() || !m.contains("Config") || !m["Config"].is_string() ||
      !m.contains("Layers") || !m["Layers"].is_array()) {
    *error = "archive '" + archive_path + "': manifest.json lacks Config or Layers";
    return false;
  }
  std::vector<std::string> layer_names;
  for (const json& l : m["Layers"]) {
    std::string n = l.is_string() ? clean_member(l.get<std::string>()) : std::string();
    if (n.empty()) {
      *error = "archive '" + archive_path + "': manifest.json names a layer outside the archive";
      return false;
    }
    layer_names.push_back(n);
  }
  const std::string config_name = clean_member(m["Config"].get<std::string>());
  if (config_name.empty() || !read_member(archive_path, config_name, &bytes, error)) {
    if (config_name.empty()) *error = "archive '" + archive_path + "': bad Config name";
    return false;
  }
  if (std::string d = digest_in_name(config_name); !d.empty() && sha256_digest(bytes) != d) {
    *error = "archive '" + archive_path + "': config '" + config_name +
             "': its bytes do not match its digest";
    return false;
  }
  ImageConfig config;
  if (!parse_config(bytes, &config, error)) {
    *error = "archive '" + archive_path + "': " + *error;
    return false;
  }
  if (layer_names.size() != config.diff_ids.size()) {
    *error = "archive '" + archive_path + "': " + std::to_string(layer_names.size()) +
             " layers, but its config has " + std::to_string(config.diff_ids.size()) + " diff_ids";
    return false;
  }
  std::vector<LayerIn> layers;
  layers.reserve(layer_names.size());
  uint64_t done = 0;
  for (size_t i = 0; i < layer_names.size(); ++i) {
    const std::string what = "layer " + std::to_string(i) + " ('" + layer_names[i] + "')";
    int64_t size = 0;
    std::string why;
    ArchivePtr a = open_member(archive_path, layer_names[i], &size, &why);
    if (!a) {
      *error = what;
      *error += ": ";
      *error += why;
      return false;
    }
    ReadLayerOptions o = layer_options(layers, config.diff_ids[i]);
    o.expected_digest = digest_in_name(layer_names[i]);
    o.expected_size = size;
    if (options.progress) {
      o.progress = [&](uint64_t n) { options.progress(done + n, 0); };
    }
    archive* outer = a.get();
    ReadFn read = [outer](void* buf, size_t n) -> Result<size_t> {
      la_ssize_t r = archive_read_data(outer, buf, n);
      if (r < 0) return Error{EIO, "reading the docker archive"};
      return static_cast<size_t>(r);
    };
    LayerIn in;
    in.digest = config.diff_ids[i];
    std::string diff_id;
    if (!read_layer_stream(store, read, o, &in.manifest, &diff_id, &why)) {
      *error = what;
      *error += ": ";
      *error += why;
      return false;
    }
    done += static_cast<uint64_t>(size);
    layers.push_back(std::move(in));
  }
  return publish(store, name, archive_path, config, layers, options, error);
}

}  // namespace lamina::oci
