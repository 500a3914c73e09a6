// SPDX-License-Identifier: Apache-2.0
// Pull: registry → OCI layout. Nothing from the registry is trusted: the manifest is checked
// against the digest it was asked by (and against Docker-Content-Digest when the registry sends
// one), every blob is hashed while it is written and kept only if its digest and size match the
// manifest's descriptor.
#include <nlohmann/json.hpp>

#include "lamina/base/sys.h"
#include "lamina/oci/digest.h"
#include "lamina/oci/registry.h"
#include "registry_client.h"

namespace lamina::oci {
namespace {

constexpr size_t kMaxManifest = 4u << 20;

const char kAccept[] =
    "Accept: application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

bool is_index(const std::string& media_type) {
  return media_type == kMediaIndex || media_type == kMediaDockerManifestList;
}

// GET /v2/REPO/manifests/REFERENCE: its bytes and media type, verified against `expected`
// (a digest, or empty when fetched by tag).
bool fetch_manifest(RegistryClient& client, const std::string& repo, const std::string& reference,
                    const std::string& expected, std::string* bytes, std::string* media_type,
                    std::string* error) {
  const std::string step = "pull of manifest " + reference;
  HttpRequest get;
  get.url = client.url("/v2/" + repo + "/manifests/" + reference);
  get.headers = {kAccept};
  HttpResponse resp;
  if (!client.send(step, get, &resp, error)) return false;
  if (resp.status != 200) {
    *error = RegistryClient::describe(step, get, resp);
    return false;
  }
  if (resp.body.size() > kMaxManifest) {
    *error = step + ": " + get.url + ": the manifest is larger than 4 MiB";
    return false;
  }
  const std::string digest = sha256_digest(resp.body);
  if (!expected.empty() && digest != expected) {
    *error = step + ": " + get.url + ": the registry sent a manifest whose digest is " + digest;
    return false;
  }
  std::string answered = resp.header("docker-content-digest");
  if (!answered.empty() && answered != digest) {
    *error = step + ": " + get.url + ": Docker-Content-Digest says " + answered +
             " but the bytes hash to " + digest;
    return false;
  }
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (j.is_object() && j.contains("mediaType") && j["mediaType"].is_string()) {
    *media_type = j["mediaType"].get<std::string>();
  } else {
    std::string ct = resp.header("content-type");
    *media_type = ct.substr(0, ct.find(';'));
  }
  *bytes = std::move(resp.body);
  return true;
}

class Puller {
 public:
  Puller(RegistryClient& client, const Reference& ref, const RegistryOptions& options,
         LayoutWriter& layout, uint64_t total)
      : client_(client), ref_(ref), options_(options), layout_(layout), total_(total) {}

  bool pull_blob(const Descriptor& d, std::string* error) {
    const std::string step = "pull of blob " + d.digest;
    std::string temp;
    auto fd = layout_.create_blob(&temp);
    if (!fd) {
      *error = step + ": cannot create a file in the layout: " + fd.error().message();
      return false;
    }
    const uint64_t size = static_cast<uint64_t>(d.size);
    Sha256 hash;
    uint64_t got = 0;
    bool too_long = false;
    Status written;
    HttpRequest get;
    get.url = client_.url("/v2/" + ref_.repo + "/blobs/" + d.digest);
    get.follow_redirects = true;  // registries hand blobs to their storage backends
    get.sink = [&](const char* data, size_t n) {
      if (got + n > size) {
        too_long = true;
        return false;
      }
      written = sys::write_all(fd->get(), std::string_view(data, n));
      if (!written) return false;
      hash.update(data, n);
      got += n;
      if (options_.progress) options_.progress(done_ + got, total_);
      return true;
    };
    HttpResponse resp;
    bool ok = client_.send(step, get, &resp, error);
    if (ok && resp.status != 200) {
      *error = RegistryClient::describe(step, get, resp);
      ok = false;
    }
    if (too_long) {
      *error = step + ": " + get.url + ": the registry sent more than the " + std::to_string(size) +
               " bytes the manifest gives";
      ok = false;
    } else if (!written) {
      *error = step + ": writing the layout: " + written.error().message();
      ok = false;
    } else if (ok && got != size) {
      *error = step + ": " + get.url + ": the registry sent " + std::to_string(got) + " of " +
               std::to_string(size) + " bytes";
      ok = false;
    }
    if (ok) {
      std::string actual = hash.digest();
      if (actual != d.digest) {
        *error = step + ": " + get.url + ": the bytes the registry sent hash to " + actual +
                 ", not " + d.digest;
        ok = false;
      }
    }
    if (ok) {
      if (Status s = layout_.commit_blob(temp, d.digest); !s) {
        *error = step + ": " + s.error().message();
        return false;
      }
      done_ += size;
      return true;
    }
    layout_.abort_blob(temp);
    return false;
  }

 private:
  RegistryClient& client_;
  const Reference& ref_;
  const RegistryOptions& options_;
  LayoutWriter& layout_;
  uint64_t total_;
  uint64_t done_ = 0;
};

// The linux/amd64 entry of an index.
bool pick_platform(const std::string& bytes, const std::string& digest, Descriptor* out,
                   std::string* error) {
  Index index;
  if (!parse_index(bytes, &index, error)) {
    *error = "image index " + digest + ": " + *error;
    return false;
  }
  for (const auto& m : index.manifests) {
    auto p =
        nlohmann::json::parse(m.platform_json.empty() ? "{}" : m.platform_json, nullptr, false);
    // Not json::value(): it throws when the member holds another type.
    auto is = [&p](const char* key, const char* want) {
      auto it = p.find(key);
      return it != p.end() && it->is_string() && it->get<std::string>() == want;
    };
    if (p.is_object() && is("os", "linux") && is("architecture", "amd64")) {
      *out = m;
      return true;
    }
  }
  *error = "image index " + digest + " has no linux/amd64 manifest";
  return false;
}

}  // namespace

bool pull_to_layout(const Reference& ref, const std::string& layout_dir, const std::string& tag,
                    const RegistryOptions& options, std::string* error) {
  RegistryClient client(ref, options);
  client.add_scope("repository:" + ref.repo + ":pull");
  if (!client.ping(error)) return false;
  std::string bytes, media_type;
  const std::string reference = ref.digest.empty() ? ref.tag : ref.digest;
  if (!fetch_manifest(client, ref.repo, reference, ref.digest, &bytes, &media_type, error)) {
    return false;
  }
  if (is_index(media_type)) {
    Descriptor pick;
    if (!pick_platform(bytes, sha256_digest(bytes), &pick, error)) return false;
    if (!fetch_manifest(client, ref.repo, pick.digest, pick.digest, &bytes, &media_type, error)) {
      return false;
    }
  }
  const std::string digest = sha256_digest(bytes);
  if (media_type != kMediaManifest && media_type != kMediaDockerManifest) {
    *error = "manifest " + digest + " of " + ref.host + "/" + ref.repo + " has media type '" +
             media_type + "', not an image manifest lamina reads";
    return false;
  }
  ImageManifest manifest;
  if (!parse_manifest(bytes, &manifest, error)) {
    *error = "manifest " + digest + ": " + *error;
    return false;
  }
  auto layout = LayoutWriter::open(layout_dir, error);
  if (!layout) return false;
  std::vector<Descriptor> blobs = manifest.layers;
  blobs.insert(blobs.begin(), manifest.config);
  uint64_t total = 0;
  for (const auto& b : blobs) total += static_cast<uint64_t>(b.size);
  Puller puller(client, ref, options, *layout, total);
  for (const auto& b : blobs) {
    if (!puller.pull_blob(b, error)) return false;
  }
  auto put = layout->put_blob(bytes, media_type);
  if (!put) {
    *error = "manifest " + digest + ": writing the layout: " + put.error().message();
    return false;
  }
  if (Status s = layout->set_tag(tag, *put); !s) {
    *error = "OCI layout '" + layout_dir + "': index.json: " + s.error().message();
    return false;
  }
  return true;
}

}  // namespace lamina::oci
