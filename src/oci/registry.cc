// SPDX-License-Identifier: Apache-2.0
// References and push (layout → registry). Pull is in registry_pull.cc, the store-level
// push_image/pull_image in registry_image.cc.
//
// Push order: layers bottom first, then the config, then the manifest, so a registry never
// holds a manifest whose blobs are missing. A blob the registry already has (HEAD 200) is not
// sent again. Upload URLs come from the registry's Location answers and are used verbatim
// (they carry the upload's state, often in their query string).
#include "lamina/oci/registry.h"

#include <algorithm>
#include <cctype>

#include "lamina/oci/digest.h"
#include "registry_client.h"

namespace lamina::oci {
namespace {

bool valid_repo(const std::string& repo) {
  if (repo.empty() || repo.size() > 255) return false;
  size_t start = 0;
  while (start <= repo.size()) {
    size_t end = repo.find('/', start);
    if (end == std::string::npos) end = repo.size();
    std::string_view part(repo.data() + start, end - start);
    if (part.empty()) return false;
    auto alnum = [](char c) { return std::islower(c) || std::isdigit(c); };
    if (!alnum(part.front()) || !alnum(part.back())) return false;
    for (char c : part) {
      if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
    }
    start = end + 1;
  }
  return true;
}

bool valid_tag(const std::string& tag) {
  if (tag.empty() || tag.size() > 128 || tag[0] == '.' || tag[0] == '-') return false;
  return std::all_of(tag.begin(), tag.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

std::string with_query(const std::string& url, const std::string& param) {
  return url + (url.find('?') == std::string::npos ? '?' : '&') + param;
}

// One push: the client, and the bytes done for the progress callback.
class Pusher {
 public:
  Pusher(const Reference& ref, const RegistryOptions& options)
      : client_(ref, options), ref_(ref), options_(options) {
    client_.add_scope("repository:" + ref.repo + ":pull,push");
    if (!options.mount_from.empty())
      client_.add_scope("repository:" + options.mount_from + ":pull");
  }

  RegistryClient& client() { return client_; }
  void set_total(uint64_t total) { total_ = total; }

  bool push_blob(const Descriptor& d, int fd, std::string* error) {
    const std::string step = "push of blob " + d.digest;
    const std::string blob_url = client_.url("/v2/" + ref_.repo + "/blobs/" + d.digest);
    HttpRequest head;
    head.method = "HEAD";
    head.url = blob_url;
    head.follow_redirects = true;  // some registries answer blob HEADs from their storage
    HttpResponse resp;
    if (!client_.send(step, head, &resp, error)) return false;
    if (resp.status == 200) return advance(static_cast<uint64_t>(d.size));
    if (resp.status != 404) {
      *error = RegistryClient::describe(step, head, resp);
      return false;
    }
    HttpRequest start;
    start.method = "POST";
    start.url = client_.url("/v2/" + ref_.repo + "/blobs/uploads/");
    if (!options_.mount_from.empty()) {
      start.url += "?mount=" + url_escape(d.digest) + "&from=" + url_escape(options_.mount_from);
    }
    if (!client_.send(step, start, &resp, error)) return false;
    if (resp.status == 201 && !options_.mount_from.empty()) {
      return advance(static_cast<uint64_t>(d.size));  // mounted
    }
    std::string location = resp.header("location");
    if (resp.status != 202 || location.empty()) {
      *error = RegistryClient::describe(step + " (start of upload)", start, resp);
      if (resp.status == 202) *error += ": no Location header";
      return false;
    }
    location = client_.resolve(location);
    uint64_t size = static_cast<uint64_t>(d.size);
    HttpRequest put;
    put.method = "PUT";
    put.headers = {"Content-Type: application/octet-stream"};
    if (options_.chunk_size == 0) {
      put.body_fd = fd;
      put.body_size = size;
      const uint64_t base = done_;
      put.on_upload = [this, base](uint64_t sent) { report(base + sent); };
    } else if (!send_chunks(step, fd, size, &location, error)) {
      return false;
    }
    put.url = with_query(location, "digest=" + url_escape(d.digest));
    if (!client_.send(step, put, &resp, error)) return false;
    if (resp.status != 201) {
      *error = RegistryClient::describe(step, put, resp);
      return false;
    }
    std::string answered = resp.header("docker-content-digest");
    if (!answered.empty() && answered != d.digest) {
      *error = step + ": the registry stored it as " + answered;
      return false;
    }
    if (options_.chunk_size == 0) return advance(size);
    return true;
  }

  bool push_manifest(const std::string& bytes, const std::string& media_type, std::string* error) {
    const std::string digest = sha256_digest(bytes);
    const std::string reference = ref_.digest.empty() ? ref_.tag : ref_.digest;
    const std::string step = "push of manifest " + digest;
    if (!ref_.digest.empty() && ref_.digest != digest) {
      *error = step + ": the destination names digest " + ref_.digest;
      return false;
    }
    HttpRequest put;
    put.method = "PUT";
    put.url = client_.url("/v2/" + ref_.repo + "/manifests/" + reference);
    put.headers = {"Content-Type: " + media_type};
    put.body = bytes;
    HttpResponse resp;
    if (!client_.send(step, put, &resp, error)) return false;
    if (resp.status != 201) {
      *error = RegistryClient::describe(step, put, resp);
      return false;
    }
    std::string answered = resp.header("docker-content-digest");
    if (!answered.empty() && answered != digest) {
      *error = step + ": the registry answered digest " + answered;
      return false;
    }
    return true;
  }

 private:
  // PATCHes [0, size) in chunks, resuming from where the registry's Range answer says it is.
  bool send_chunks(const std::string& step, int fd, uint64_t size, std::string* location,
                   std::string* error) {
    const uint64_t base = done_;
    uint64_t offset = 0;
    int stalls = 0;
    while (offset < size) {
      uint64_t n = std::min<uint64_t>(options_.chunk_size, size - offset);
      HttpRequest patch;
      patch.method = "PATCH";
      patch.url = *location;
      patch.headers = {
          "Content-Type: application/octet-stream",
          "Content-Range: " + std::to_string(offset) + "-" + std::to_string(offset + n - 1)};
      patch.body_fd = fd;
      patch.body_offset = offset;
      patch.body_size = n;
      patch.on_upload = [this, base, offset](uint64_t sent) { report(base + offset + sent); };
      HttpResponse resp;
      if (!client_.send(step, patch, &resp, error)) return false;
      if (resp.status != 202) {
        *error = RegistryClient::describe(step + " (chunk at " + std::to_string(offset) + ")",
                                          patch, resp);
        return false;
      }
      if (std::string l = resp.header("location"); !l.empty()) *location = client_.resolve(l);
      uint64_t next = offset + n;
      std::string range = resp.header("range");  // "0-N": bytes 0..N are stored
      if (auto dash = range.find('-'); dash != std::string::npos) {
        next = std::strtoull(range.c_str() + dash + 1, nullptr, 10) + 1;
      }
      if (next > size) {
        *error = step + ": the registry says it holds " + std::to_string(next) + " of " +
                 std::to_string(size) + " bytes";
        return false;
      }
      if (next <= offset && ++stalls > 3) {
        *error = step;
        *error += ": the registry keeps answering Range ";
        *error += range;
        *error += " (no progress)";
        return false;
      }
      offset = next;
      report(base + offset);
    }
    done_ = base + size;
    return true;
  }

  bool advance(uint64_t bytes) {
    done_ += bytes;
    report(done_);
    return true;
  }
  void report(uint64_t done) {
    if (options_.progress) options_.progress(done, total_);
  }

  RegistryClient client_;
  const Reference& ref_;
  const RegistryOptions& options_;
  uint64_t done_ = 0;
  uint64_t total_ = 0;
};

}  // namespace

bool parse_reference(const std::string& text, Reference* ref, std::string* error) {
  auto fail = [&](const std::string& why) {
    *error = "registry reference '" + text + "': " + why;
    return false;
  };
  size_t slash = text.find('/');
  if (slash == std::string::npos) return fail("write HOST[:PORT]/REPO[:TAG]");
  Reference r;
  r.host = text.substr(0, slash);
  if (r.host.find_first_of(".:") == std::string::npos && r.host != "localhost") {
    return fail("'" + r.host +
                "' is not a registry host (a host has a '.' or a ':' or is localhost; "
                "there is no default registry: write e.g. docker.io/library/NAME)");
  }
  std::string rest = text.substr(slash + 1);
  if (size_t at = rest.find('@'); at != std::string::npos) {
    r.digest = rest.substr(at + 1);
    rest.resize(at);
    if (!valid_digest(r.digest)) return fail("the digest is not sha256:<64 hex digits>");
  }
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    r.tag = rest.substr(colon + 1);
    rest.resize(colon);
    if (!valid_tag(r.tag)) return fail("'" + r.tag + "' is not a valid tag");
  }
  if (!valid_repo(rest)) {
    return fail("'" + rest +
                "' is not a valid repository name (lower-case letters, digits, '.', '_', '-', "
                "'/'-separated)");
  }
  r.repo = rest;
  if (r.tag.empty() && r.digest.empty()) r.tag = "latest";
  *ref = std::move(r);
  return true;
}

bool push_layout(const std::string& layout_dir, const std::string& tag, const Reference& ref,
                 const RegistryOptions& options, std::string* error) {
  auto layout = LayoutReader::open(layout_dir, error);
  if (!layout) return false;
  Descriptor md;
  if (!layout->resolve(tag, &md, error)) return false;
  std::string manifest_bytes;
  if (!layout->read_blob(md, &manifest_bytes, error)) return false;
  ImageManifest manifest;
  if (!parse_manifest(manifest_bytes, &manifest, error)) {
    *error = "manifest " + md.digest + ": " + *error;
    return false;
  }
  std::vector<Descriptor> blobs = manifest.layers;
  blobs.push_back(manifest.config);
  Pusher pusher(ref, options);
  uint64_t total = 0;
  for (const auto& b : blobs) total += static_cast<uint64_t>(b.size);
  pusher.set_total(total);
  if (!pusher.client().ping(error)) return false;
  for (const auto& b : blobs) {
    auto fd = layout->open_blob(b);
    if (!fd) {
      *error =
          "blob " + b.digest + " of the OCI layout '" + layout_dir + "': " + fd.error().message();
      return false;
    }
    if (!pusher.push_blob(b, fd->get(), error)) return false;
  }
  return pusher.push_manifest(manifest_bytes, manifest.media_type, error);
}

}  // namespace lamina::oci
