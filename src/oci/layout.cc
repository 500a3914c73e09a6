// SPDX-License-Identifier: Apache-2.0
#include "lamina/oci/layout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <nlohmann/json.hpp>

#include "lamina/base/json_depth.h"
#include "lamina/base/sys.h"
#include "lamina/oci/digest.h"

namespace lamina::oci {
namespace {

using nlohmann::json;

std::atomic<uint64_t> temp_counter{0};

std::string temp_name(const char* what) {
  return std::string(".tmp-") + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(temp_counter.fetch_add(1));
}

json descriptor_json(const Descriptor& d) {
  json j = {{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  if (!d.platform_json.empty()) {
    json p = json::parse(d.platform_json, nullptr, false);
    if (!p.is_discarded()) j["platform"] = std::move(p);
  }
  return j;
}

bool parse_descriptor(const json& j, Descriptor* d, const std::string& where, std::string* error) {
  if (!j.is_object()) {
    *error = where + ": a descriptor must be an object";
    return false;
  }
  auto str = [&](const char* key, std::string* out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return false;
    *out = it->get<std::string>();
    return true;
  };
  if (!str("mediaType", &d->media_type)) {
    *error = where + ": no mediaType";
    return false;
  }
  if (!str("digest", &d->digest) || !valid_digest(d->digest)) {
    *error = where + ": digest missing or not sha256:<64 hex digits>";
    return false;
  }
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() || size->get<int64_t>() < 0) {
    *error = where + ": size missing or negative";
    return false;
  }
  d->size = size->get<int64_t>();
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    for (const auto& [k, v] : a->items()) {
      if (v.is_string()) d->annotations[k] = v.get<std::string>();
    }
  }
  if (auto p = j.find("platform"); p != j.end()) d->platform_json = p->dump();
  return true;
}

json parse_or_discard(std::string_view text) { return json::parse(text, nullptr, false); }

// A document from outside: a JSON object nested at most kMaxJsonDepth deep.
bool parse_document(std::string_view text, const char* what, json* j, std::string* error) {
  if (!json_depth_within(text)) {
    *error =
        std::string(what) + ": nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return false;
  }
  *j = parse_or_discard(text);
  if (j->is_discarded() || !j->is_object()) {
    *error = std::string(what) + ": not a JSON object";
    return false;
  }
  return true;
}

// j[key] when j is an object holding a value of that type; json::value() throws instead when
// the key holds another type, and these documents come from outside.
int64_t int_field(const json& j, const char* key) {
  if (!j.is_object()) return -1;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
}
std::string string_field(const json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::string_view layer_media_type(Compression c) {
  switch (c) {
    case Compression::kNone: return kMediaLayerTar;
    case Compression::kGzip: return kMediaLayerGzip;
    case Compression::kZstd: return kMediaLayerZstd;
  }
  return kMediaLayerTar;
}

std::optional<Compression> compression_of(std::string_view media_type) {
  if (media_type == kMediaLayerTar ||
      media_type == "application/vnd.docker.image.rootfs.diff.tar") {
    return Compression::kNone;
  }
  if (media_type == kMediaLayerGzip || media_type == kMediaDockerLayerGzip) {
    return Compression::kGzip;
  }
  if (media_type == kMediaLayerZstd ||
      media_type == "application/vnd.docker.image.rootfs.diff.tar.zstd") {
    return Compression::kZstd;
  }
  return std::nullopt;
}

std::string to_json(const ImageManifest& m) {
  json j = {{"schemaVersion", 2},
            {"mediaType", m.media_type.empty() ? std::string(kMediaManifest) : m.media_type},
            {"config", descriptor_json(m.config)},
            {"layers", json::array()}};
  for (const auto& l : m.layers) j["layers"].push_back(descriptor_json(l));
  if (!m.annotations.empty()) j["annotations"] = m.annotations;
  return j.dump();
}

std::string to_json(const ImageConfig& c) {
  json j = {{"architecture", c.architecture},
            {"os", c.os},
            {"rootfs", {{"type", "layers"}, {"diff_ids", c.diff_ids}}}};
  if (!c.created.empty()) j["created"] = c.created;
  if (!c.config_json.empty()) {
    json cfg = parse_or_discard(c.config_json);
    if (!cfg.is_discarded() && cfg.is_object() && !cfg.empty()) j["config"] = cfg;
  }
  if (!c.history_json.empty()) {
    json h = parse_or_discard(c.history_json);
    if (!h.is_discarded() && h.is_array()) j["history"] = h;
  }
  return j.dump();
}

std::string to_json(const Index& i) {
  json j = {{"schemaVersion", 2}, {"mediaType", kMediaIndex}, {"manifests", json::array()}};
  for (const auto& m : i.manifests) j["manifests"].push_back(descriptor_json(m));
  if (!i.annotations.empty()) j["annotations"] = i.annotations;
  return j.dump();
}

bool parse_manifest(std::string_view text, ImageManifest* m, std::string* error) {
  *m = ImageManifest{};
  json j;
  if (!parse_document(text, "manifest", &j, error)) return false;
  if (int_field(j, "schemaVersion") != 2) {
    *error = "manifest: schemaVersion is not 2";
    return false;
  }
  m->media_type = j.contains("mediaType") && j["mediaType"].is_string()
                      ? j["mediaType"].get<std::string>()
                      : std::string(kMediaManifest);
  if (!j.contains("config")) {
    *error = "manifest: no config";
    return false;
  }
  if (!parse_descriptor(j["config"], &m->config, "manifest config", error)) return false;
  if (!j.contains("layers") || !j["layers"].is_array()) {
    *error = "manifest: no layers array";
    return false;
  }
  m->layers.clear();
  size_t n = 0;
  for (const auto& l : j["layers"]) {
    Descriptor d;
    if (!parse_descriptor(l, &d, "manifest layer " + std::to_string(n++), error)) return false;
    m->layers.push_back(std::move(d));
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    for (const auto& [k, v] : a->items()) {
      if (v.is_string()) m->annotations[k] = v.get<std::string>();
    }
  }
  return true;
}

bool parse_config(std::string_view text, ImageConfig* c, std::string* error) {
  *c = ImageConfig{};
  json j;
  if (!parse_document(text, "image config", &j, error)) return false;
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object() || !rootfs->contains("diff_ids") ||
      !(*rootfs)["diff_ids"].is_array()) {
    *error = "image config: no rootfs.diff_ids";
    return false;
  }
  c->diff_ids.clear();
  for (const auto& d : (*rootfs)["diff_ids"]) {
    if (!d.is_string() || !valid_digest(d.get<std::string>())) {
      *error = "image config: a diff_id is not sha256:<64 hex digits>";
      return false;
    }
    c->diff_ids.push_back(d.get<std::string>());
  }
  if (j.contains("created") && j["created"].is_string()) c->created = j["created"];
  if (j.contains("architecture") && j["architecture"].is_string()) {
    c->architecture = j["architecture"];
  }
  if (j.contains("os") && j["os"].is_string()) c->os = j["os"];
  if (j.contains("config") && j["config"].is_object()) c->config_json = j["config"].dump();
  if (j.contains("history") && j["history"].is_array()) c->history_json = j["history"].dump();
  return true;
}

bool parse_index(std::string_view text, Index* i, std::string* error) {
  *i = Index{};
  json j;
  if (!parse_document(text, "index.json", &j, error)) return false;
  if (int_field(j, "schemaVersion") != 2) {
    *error = "index.json: schemaVersion is not 2";
    return false;
  }
  if (!j.contains("manifests") || !j["manifests"].is_array()) {
    *error = "index.json: no manifests array";
    return false;
  }
  i->manifests.clear();
  size_t n = 0;
  for (const auto& m : j["manifests"]) {
    Descriptor d;
    if (!parse_descriptor(m, &d, "index.json manifest " + std::to_string(n++), error)) return false;
    i->manifests.push_back(std::move(d));
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    for (const auto& [k, v] : a->items()) {
      if (v.is_string()) i->annotations[k] = v.get<std::string>();
    }
  }
  return true;
}

void split_layout_ref(const std::string& ref, std::string* dir, std::string* tag) {
  size_t slash = ref.rfind('/');
  size_t colon = ref.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    *dir = ref.substr(0, colon);
    *tag = ref.substr(colon + 1);
  } else {
    *dir = ref;
    tag->clear();
  }
}

// ---- LayoutWriter ----------------------------------------------------------------------

struct LayoutWriter::Impl {
  std::string dir;
  UniqueFd dir_fd;
  UniqueFd blobs_fd;  // blobs/sha256
  Index index;
};

LayoutWriter::~LayoutWriter() = default;

std::unique_ptr<LayoutWriter> LayoutWriter::open(const std::string& dir, std::string* error) {
  auto fail = [&](const std::string& why) {
    *error = "OCI layout '" + dir + "': " + why;
    return nullptr;
  };
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return fail(std::strerror(errno));
  auto fd = sys::openat(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (!fd) return fail(std::strerror(fd.code()));
  std::unique_ptr<LayoutWriter> w(new LayoutWriter());
  w->impl_ = std::make_unique<Impl>();
  Impl& im = *w->impl_;
  im.dir = dir;
  im.dir_fd = std::move(*fd);
  auto layout = sys::read_file(im.dir_fd.get(), "oci-layout");
  if (!layout) {
    bool empty = true;
    (void)sys::read_dir(im.dir_fd.get(), [&](std::string_view, unsigned char, ino_t) {
      empty = false;
      return Status{};
    });
    if (!empty) return fail("exists, is not empty and is not an OCI layout (no oci-layout file)");
    auto f = sys::openat(im.dir_fd.get(), "oci-layout", O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (!f) return fail(std::string("oci-layout: ") + std::strerror(f.code()));
    if (Status s = sys::write_all(f->get(), "{\"imageLayoutVersion\":\"1.0.0\"}"); !s) {
      return fail(s.error().message());
    }
  } else {
    auto j = json::parse(*layout, nullptr, false);
    if (j.is_discarded() || string_field(j, "imageLayoutVersion") != "1.0.0") {
      return fail("oci-layout does not say imageLayoutVersion 1.0.0");
    }
    auto idx = sys::read_file(im.dir_fd.get(), "index.json");
    if (idx && !parse_index(*idx, &im.index, error)) return fail(*error);
  }
  for (const char* sub : {"blobs", "blobs/sha256"}) {
    if (Status s = sys::mkdirat(im.dir_fd.get(), sub, 0755); !s && s.code() != EEXIST) {
      return fail(std::string(sub) + ": " + s.error().message());
    }
  }
  auto blobs = sys::openat_beneath(im.dir_fd.get(), "blobs/sha256", O_PATH | O_DIRECTORY);
  if (!blobs) return fail(std::string("blobs/sha256: ") + std::strerror(blobs.code()));
  im.blobs_fd = std::move(*blobs);
  return w;
}

Result<UniqueFd> LayoutWriter::create_blob(std::string* name) {
  *name = temp_name("blob");
  return sys::openat(impl_->blobs_fd.get(), name->c_str(), O_CREAT | O_EXCL | O_RDWR, 0644);
}

Status LayoutWriter::commit_blob(const std::string& name, const std::string& digest) {
  if (!valid_digest(digest)) return Error{EINVAL, "blob digest"};
  std::string hex(digest_hex(digest));
  Status s = sys::renameat2(impl_->blobs_fd.get(), name.c_str(), impl_->blobs_fd.get(), hex.c_str(),
                            RENAME_NOREPLACE);
  if (!s && s.code() == EEXIST) {
    // Content-addressed: the blob there has these bytes.
    abort_blob(name);
    return {};
  }
  return s;
}

void LayoutWriter::abort_blob(const std::string& name) {
  (void)sys::unlinkat(impl_->blobs_fd.get(), name.c_str(), 0);
}

Result<Descriptor> LayoutWriter::put_blob(std::string_view bytes, std::string_view media_type) {
  std::string name;
  auto fd = create_blob(&name);
  if (!fd) return fd.error();
  if (Status s = sys::write_all(fd->get(), bytes); !s) {
    abort_blob(name);
    return s.error();
  }
  Descriptor d;
  d.media_type = std::string(media_type);
  d.digest = sha256_digest(bytes);
  d.size = static_cast<int64_t>(bytes.size());
  if (Status s = commit_blob(name, d.digest); !s) {
    abort_blob(name);
    return s.error();
  }
  return d;
}

Status LayoutWriter::set_tag(const std::string& tag, const Descriptor& manifest) {
  Index& idx = impl_->index;
  std::vector<Descriptor> kept;
  for (auto& m : idx.manifests) {
    auto it = m.annotations.find(std::string(kRefNameAnnotation));
    if (it != m.annotations.end() && it->second == tag) continue;
    kept.push_back(std::move(m));
  }
  Descriptor d = manifest;
  if (!tag.empty()) d.annotations[std::string(kRefNameAnnotation)] = tag;
  kept.push_back(std::move(d));
  idx.manifests = std::move(kept);
  const std::string tmp = temp_name("index");
  auto fd = sys::openat(impl_->dir_fd.get(), tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (!fd) return fd.error();
  Status s = sys::write_all(fd->get(), to_json(idx));
  if (s) s = sys::fsync(fd->get());
  if (s) s = sys::renameat2(impl_->dir_fd.get(), tmp.c_str(), impl_->dir_fd.get(), "index.json", 0);
  if (!s) (void)sys::unlinkat(impl_->dir_fd.get(), tmp.c_str(), 0);
  return s;
}

// ---- LayoutReader ----------------------------------------------------------------------

struct LayoutReader::Impl {
  std::string dir;
  UniqueFd dir_fd;
  UniqueFd blobs_fd;
  Index index;
};

LayoutReader::~LayoutReader() = default;

std::unique_ptr<LayoutReader> LayoutReader::open(const std::string& dir, std::string* error) {
  auto fail = [&](const std::string& why) {
    *error = "OCI layout '" + dir + "': " + why;
    return nullptr;
  };
  auto fd = sys::openat(AT_FDCWD, dir.c_str(), O_PATH | O_DIRECTORY);
  if (!fd) return fail(std::strerror(fd.code()));
  std::unique_ptr<LayoutReader> r(new LayoutReader());
  r->impl_ = std::make_unique<Impl>();
  Impl& im = *r->impl_;
  im.dir = dir;
  im.dir_fd = std::move(*fd);
  auto layout = sys::read_file(im.dir_fd.get(), "oci-layout");
  if (!layout) return fail("not an OCI image layout (no oci-layout file)");
  auto j = json::parse(*layout, nullptr, false);
  if (j.is_discarded() || !j.is_object() || string_field(j, "imageLayoutVersion") != "1.0.0") {
    return fail("oci-layout does not say imageLayoutVersion 1.0.0");
  }
  auto idx = sys::read_file(im.dir_fd.get(), "index.json");
  if (!idx) return fail(std::string("index.json: ") + std::strerror(idx.code()));
  std::string why;
  if (!parse_index(*idx, &im.index, &why)) return fail(why);
  auto blobs = sys::openat_beneath(im.dir_fd.get(), "blobs/sha256", O_PATH | O_DIRECTORY);
  if (!blobs) return fail(std::string("blobs/sha256: ") + std::strerror(blobs.code()));
  im.blobs_fd = std::move(*blobs);
  return r;
}

const Index& LayoutReader::index() const { return impl_->index; }

bool LayoutReader::resolve(const std::string& tag, Descriptor* manifest, std::string* error) const {
  const auto& ms = impl_->index.manifests;
  const Descriptor* found = nullptr;
  if (tag.empty()) {
    if (ms.size() != 1) {
      *error = "OCI layout '" + impl_->dir + "' holds " + std::to_string(ms.size()) +
               " manifests: name one with DIR:TAG";
      return false;
    }
    found = &ms[0];
  } else {
    for (const auto& m : ms) {
      auto it = m.annotations.find(std::string(kRefNameAnnotation));
      if (it != m.annotations.end() && it->second == tag) found = &m;
    }
    if (found == nullptr) {
      *error = "OCI layout '" + impl_->dir + "' has no image tagged '" + tag + "'";
      return false;
    }
  }
  Descriptor d = *found;
  // A nested index (several platforms): take linux/amd64.
  for (int depth = 0;
       depth < 4 && (d.media_type == kMediaIndex || d.media_type == kMediaDockerManifestList);
       ++depth) {
    std::string bytes;
    if (!read_blob(d, &bytes, error)) return false;
    Index nested;
    if (!parse_index(bytes, &nested, error)) return false;
    const Descriptor* pick = nullptr;
    for (const auto& m : nested.manifests) {
      json p = json::parse(m.platform_json.empty() ? "{}" : m.platform_json, nullptr, false);
      if (p.is_object() && string_field(p, "os") == "linux" &&
          string_field(p, "architecture") == "amd64") {
        pick = &m;
        break;
      }
    }
    if (pick == nullptr) {
      *error = "image index " + d.digest + " has no linux/amd64 manifest";
      return false;
    }
    d = *pick;
  }
  if (d.media_type != kMediaManifest && d.media_type != kMediaDockerManifest) {
    *error =
        "manifest " + d.digest + " has media type '" + d.media_type + "', not an image manifest";
    return false;
  }
  *manifest = d;
  return true;
}

Result<UniqueFd> LayoutReader::open_blob(const Descriptor& d) const {
  if (!valid_digest(d.digest)) return Error{EINVAL, "blob digest"};
  std::string hex(digest_hex(d.digest));
  // O_NONBLOCK: a fifo planted as a blob must not block the import (regular files ignore it).
  auto fd = sys::openat(impl_->blobs_fd.get(), hex.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!fd) return fd.error();
  auto st = sys::fstat(fd->get());
  if (!st) return st.error();
  if (!S_ISREG(st->st_mode)) return Error{EINVAL, "blob is not a regular file"};
  if (st->st_size != d.size) return Error{EBADMSG, "blob size differs from its descriptor"};
  return fd;
}

bool LayoutReader::read_blob(const Descriptor& d, std::string* bytes, std::string* error) const {
  if (d.size > (64 << 20)) {
    *error = "blob " + d.digest + " is too large for a manifest or config";
    return false;
  }
  auto fd = open_blob(d);
  if (!fd) {
    *error = "blob " + d.digest + ": " + fd.error().message();
    return false;
  }
  std::string hex(digest_hex(d.digest));
  auto data = sys::read_file(impl_->blobs_fd.get(), hex.c_str());
  if (!data) {
    *error = "blob " + d.digest + ": " + data.error().message();
    return false;
  }
  if (static_cast<int64_t>(data->size()) != d.size || sha256_digest(*data) != d.digest) {
    *error = "blob " + d.digest + ": its bytes do not match its digest";
    return false;
  }
  *bytes = std::move(*data);
  return true;
}

}  // namespace lamina::oci
