// SPDX-License-Identifier: Apache-2.0
// export_image: a store image -> an OCI image layout. Every blob comes from the store's own
// bytes and times (the image's `created`, the layers' manifests), never from the clock, so the
// same image exported twice gives the same blobs, byte for byte.

#include <fcntl.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "lamina/base/sys.h"
#include "lamina/oci/image_io.h"
#include "lamina/oci/layer_tar.h"

namespace lamina::oci {
namespace {

using nlohmann::json;

// The image config of the store's record: its config_json is either a whole OCI image config
// (what import keeps: an object with "config", "rootfs" ...) or just the "config" object (Env,
// Cmd ...). Architecture and os come from a whole config when it has them; its history is kept
// when it describes exactly these layers (one entry per non-empty layer).
void fill_config(const store::Image& img, ImageConfig* c) {
  c->created = img.created;
  json j = json::parse(img.config_json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.empty()) return;
  const bool whole = j.contains("rootfs") || j.contains("config") || j.contains("history") ||
                     j.contains("architecture");
  if (!whole) {
    c->config_json = j.dump();
    return;
  }
  if (auto cfg = j.find("config"); cfg != j.end() && cfg->is_object()) c->config_json = cfg->dump();
  if (auto a = j.find("architecture"); a != j.end() && a->is_string()) c->architecture = *a;
  if (auto o = j.find("os"); o != j.end() && o->is_string()) c->os = *o;
  if (auto h = j.find("history"); h != j.end() && h->is_array()) {
    size_t layers = 0;
    for (const auto& e : *h) {
      // Not json::value(): it throws when "empty_layer" holds another type than a boolean.
      auto empty = e.is_object() ? e.find("empty_layer") : e.end();
      if (empty == e.end() || !empty->is_boolean() || !empty->get<bool>()) ++layers;
    }
    if (layers == img.layers.size()) c->history_json = h->dump();
  }
}

struct LayerTotals {
  std::vector<store::Manifest> manifests;
  uint64_t file_bytes = 0;
};

bool read_layers(const store::Store& st, const store::Image& img, LayerTotals* out,
                 std::string* error) {
  for (const auto& id : img.layers) {
    store::Manifest m;
    std::string why;
    if (!st.read_manifest(id, &m, &why)) {
      *error = "image '" + img.name + "': layer ";
      error->append(id).append(": ").append(why);
      return false;
    }
    for (const auto& e : m.entries) {
      if (e.kind == store::EntryKind::kFile) out->file_bytes += e.size;
    }
    out->manifests.push_back(std::move(m));
  }
  return true;
}

}  // namespace

std::string volume_config_json(const std::string& volume) {
  return json{{"Labels", {{std::string(kVolumeLabel), volume}}}}.dump();
}

bool is_volume_snapshot(const store::Image& image) {
  json j = json::parse(image.config_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  if (auto cfg = j.find("config"); cfg != j.end() && cfg->is_object()) j = *cfg;
  auto labels = j.find("Labels");
  return labels != j.end() && labels->is_object() && labels->contains(std::string(kVolumeLabel));
}

std::string default_layout_tag(const std::string& image_name) {
  std::string tag;
  for (char c : image_name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    tag += ok ? c : '-';
    if (tag.size() == 128) break;
  }
  return tag.empty() ? std::string("latest") : tag;
}

bool export_image(store::Store& store, const std::string& name, const std::string& dir,
                  const std::string& tag, const ExportOptions& options, Descriptor* manifest,
                  std::string* error) {
  auto lock = store.lock_shared();
  if (!lock) {
    *error = "cannot lock store " + store.root() + ": " + lock.error().message();
    return false;
  }
  auto img = store.read_image(name);
  if (!img) {
    *error = img.code() == ENOENT ? "no image named '" + name + "' in store " + store.root()
                                  : "image '" + name + "': " + img.error().message();
    return false;
  }
  LayerTotals layers;
  if (!read_layers(store, *img, &layers, error)) return false;
  auto layout = LayoutWriter::open(dir, error);
  if (!layout) return false;

  ImageManifest im;
  im.media_type = std::string(kMediaManifest);
  ImageConfig config;
  fill_config(*img, &config);
  const bool exact = is_volume_snapshot(*img);
  uint64_t done = 0;
  if (options.progress) options.progress(0, layers.file_bytes);
  for (size_t i = 0; i < layers.manifests.size(); ++i) {
    std::string temp;
    auto fd = layout->create_blob(&temp);
    if (!fd) {
      *error = "OCI layout '" + dir + "': new blob: " + fd.error().message();
      return false;
    }
    LayerBlob blob;
    std::function<void(uint64_t)> progress;
    if (options.progress) {
      progress = [&](uint64_t bytes) { options.progress(done + bytes, layers.file_bytes); };
    }
    std::string why;
    bool ok = write_layer_tar(store, layers.manifests[i], options.compression, fd->get(), &blob,
                              &why, progress, exact);
    if (ok) {
      if (Status s = sys::fsync(fd->get()); !s) {
        ok = false;
        why = s.error().message();
      }
    }
    if (!ok) {
      layout->abort_blob(temp);
      *error = "layer " + img->layers[i] + ": " + why;
      return false;
    }
    if (Status s = layout->commit_blob(temp, blob.digest); !s) {
      layout->abort_blob(temp);
      *error = "OCI layout '" + dir + "': blob " + blob.digest + ": " + s.error().message();
      return false;
    }
    for (const auto& e : layers.manifests[i].entries) {
      if (e.kind == store::EntryKind::kFile) done += e.size;
    }
    Descriptor d;
    d.media_type = blob.media_type;
    d.digest = blob.digest;
    d.size = blob.size;
    im.layers.push_back(std::move(d));
    config.diff_ids.push_back(blob.diff_id);
  }
  if (config.history_json.empty() && !img->layers.empty()) {
    json h = json::array();
    for (const auto& id : img->layers) {
      json e = {{"created_by", "lamina layer " + id}};
      if (!img->created.empty()) e["created"] = img->created;
      h.push_back(std::move(e));
    }
    config.history_json = h.dump();
  }
  auto cfg = layout->put_blob(to_json(config), kMediaConfig);
  if (!cfg) {
    *error = "OCI layout '" + dir + "': config blob: " + cfg.error().message();
    return false;
  }
  im.config = *cfg;
  auto man = layout->put_blob(to_json(im), kMediaManifest);
  if (!man) {
    *error = "OCI layout '" + dir + "': manifest blob: " + man.error().message();
    return false;
  }
  const std::string ref = tag.empty() ? default_layout_tag(name) : tag;
  if (Status s = layout->set_tag(ref, *man); !s) {
    *error = "OCI layout '" + dir + "': index.json: " + s.error().message();
    return false;
  }
  *manifest = *man;
  manifest->annotations[std::string(kRefNameAnnotation)] = ref;
  return true;
}

}  // namespace lamina::oci
