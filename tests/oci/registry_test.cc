// SPDX-License-Identifier: Apache-2.0
// push and pull against real registries: Debian's docker-registry started on 127.0.0.1 by the
// test (storage in a temp dir, killed at the end), checked by skopeo and umoci; and a python3
// fake registry for what a real one never does (wrong blob bytes) and for bearer tokens.
//
// The layout-level API (push_layout, pull_to_layout) is tested on layouts umoci and skopeo
// made. The `lamina push/pull` cases need OCI export and import (other branches): they carry
// the tag [needs-export-import].
#include "lamina/oci/registry.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "lamina/oci/digest.h"
#include "lamina/oci/layout.h"
#include "oci/registry_support.h"
#include "store/store_support.h"

namespace lamina::oci {
namespace {

using it::TempDir;

// REQUIRE(expr) with the `error` string the call filled in as the failure's message.
#define REQUIRE_OK(expr)      \
  do {                        \
    bool ok_ = (expr);        \
    INFO("error: " << error); \
    REQUIRE(ok_);             \
  } while (0)

it::ProcResult run(const std::vector<std::string>& argv) {
  auto r = it::run_process(argv, std::chrono::seconds(120));
  INFO(argv[0] << " " << (argv.size() > 1 ? argv[1] : "") << ": " << r.describe());
  REQUIRE(r.succeeded());
  return r;
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

// A layout made by umoci: DIR:TAG with one layer holding `files` under /data.
void umoci_layout(const TempDir& tmp, const std::string& dir, const std::string& tag,
                  const std::vector<std::pair<std::string, std::string>>& files) {
  if (::access((dir + "/oci-layout").c_str(), F_OK) != 0) {
    run({"umoci", "init", "--layout", dir});
  }
  run({"umoci", "new", "--image", dir + ":" + tag});
  std::string src = tmp.mkdir("src-" + tag);
  for (const auto& [name, content] : files) {
    std::string path = src;
    path += '/';
    path += name;
    it::write_file(path, content);
  }
  run({"umoci", "insert", "--image", dir + ":" + tag, src, "/data"});
}

// The manifest digest tagged `tag` in a layout's index.json.
std::string manifest_digest(const std::string& dir, const std::string& tag) {
  auto j = nlohmann::json::parse(it::read_file(dir + "/index.json"));
  for (const auto& m : j["manifests"]) {
    if (m.contains("annotations") &&
        m["annotations"].value(std::string(kRefNameAnnotation), "") == tag) {
      return m["digest"].get<std::string>();
    }
  }
  FAIL("no tag " << tag << " in " << dir << "/index.json");
  return "";
}

// skopeo copy of the registry's REPO:TAG to a new layout OUT:TAG; the manifest digest.
std::string skopeo_copy_back(const std::string& host, const std::string& repo_tag,
                             const std::string& out, const std::string& creds = "") {
  std::vector<std::string> argv = {"skopeo", "copy", "--src-tls-verify=false"};
  if (!creds.empty()) argv.insert(argv.end(), {"--src-creds", creds});
  std::string tag = repo_tag.substr(repo_tag.rfind(':') + 1);
  argv.insert(argv.end(), {"docker://" + host + "/" + repo_tag, "oci:" + out + ":" + tag});
  run(argv);
  return manifest_digest(out, tag);
}

TEST_CASE("registry references: HOST[:PORT]/REPO[:TAG|@DIGEST], no default registry",
          "[oci][registry]") {
  const std::string d = "sha256:" + std::string(64, 'a');
  struct Case {
    std::string text;
    bool ok;
    Reference want;
  };
  std::vector<Case> cases = {
      {"127.0.0.1:5000/repo:t", true, {"127.0.0.1:5000", "repo", "t", ""}},
      {"localhost/a/b", true, {"localhost", "a/b", "latest", ""}},
      {"registry.example.com/ns/img@" + d, true, {"registry.example.com", "ns/img", "", d}},
      {"[::1]:5000/x:1.0", true, {"[::1]:5000", "x", "1.0", ""}},
      {"ubuntu:22.04", false, {}},
      {"library/ubuntu:22.04", false, {}},
      {"host.io/Upper:t", false, {}},
      {"host.io/repo:bad tag", false, {}},
      {"host.io/repo@sha256:short", false, {}},
      {"host.io/", false, {}},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    Reference r;
    std::string error;
    REQUIRE(parse_reference(c.text, &r, &error) == c.ok);
    if (!c.ok) {
      CHECK(error.find(c.text) != std::string::npos);
      continue;
    }
    CHECK(r.host == c.want.host);
    CHECK(r.repo == c.want.repo);
    CHECK(r.tag == c.want.tag);
    CHECK(r.digest == c.want.digest);
  }
  std::string error;
  Reference r;
  REQUIRE_FALSE(parse_reference("docker/whalesay", &r, &error));
  CHECK(error.find("no default registry") != std::string::npos);
}

TEST_CASE("push_layout of a umoci layout: skopeo copies back the same manifest",
          "[oci][registry]") {
  TempDir tmp;
  Registry reg;
  const std::string layout = tmp.sub("umoci");
  umoci_layout(tmp, layout, "t", {{"hello.txt", "hello\n"}, {"big.bin", random_bytes(200000, 1)}});
  const std::string want = manifest_digest(layout, "t");

  RegistryOptions options;
  options.insecure = true;
  uint64_t last_done = 0, last_total = 0;
  options.progress = [&](uint64_t done, uint64_t total) {
    CHECK(done >= last_done);
    last_done = done;
    last_total = total;
  };
  std::string error;
  REQUIRE_OK(push_layout(layout, "t", reg.ref("repo", "t"), options, &error));
  CHECK(last_total > 200000);
  CHECK(last_done == last_total);
  CHECK(skopeo_copy_back(reg.host(), "repo:t", tmp.sub("back")) == want);

  SECTION("a second push finds every blob there (HEAD) and succeeds") {
    last_done = 0;
    REQUIRE_OK(push_layout(layout, "t", reg.ref("repo", "t2"), options, &error));
    CHECK(skopeo_copy_back(reg.host(), "repo:t2", tmp.sub("back2")) == want);
  }
}

TEST_CASE("chunked upload: PATCH chunks, offsets from the registry's Range", "[oci][registry]") {
  TempDir tmp;
  Registry reg;
  const std::string layout = tmp.sub("umoci");
  umoci_layout(tmp, layout, "t", {{"big.bin", random_bytes(150000, 2)}});
  RegistryOptions options;
  options.insecure = true;
  options.chunk_size = 4096;
  int calls = 0;
  options.progress = [&](uint64_t, uint64_t) { ++calls; };
  std::string error;
  REQUIRE_OK(push_layout(layout, "t", reg.ref("chunked", "t"), options, &error));
  CHECK(calls >= 150000 / 4096);
  CHECK(reg.log().find("PATCH /v2/chunked/blobs/uploads/") != std::string::npos);
  CHECK(skopeo_copy_back(reg.host(), "chunked:t", tmp.sub("back")) == manifest_digest(layout, "t"));
}

TEST_CASE("cross-repository mount: a push to B mounts A's blobs", "[oci][registry]") {
  TempDir tmp;
  Registry reg;
  const std::string layout = tmp.sub("umoci");
  umoci_layout(tmp, layout, "t", {{"a.txt", random_bytes(50000, 3)}});
  RegistryOptions options;
  options.insecure = true;
  std::string error;
  REQUIRE_OK(push_layout(layout, "t", reg.ref("team/a", "t"), options, &error));
  options.mount_from = "team/a";
  REQUIRE_OK(push_layout(layout, "t", reg.ref("team/b", "t"), options, &error));
  CHECK(skopeo_copy_back(reg.host(), "team/b:t", tmp.sub("back")) == manifest_digest(layout, "t"));
  // The registry links every blob into B, and it did so by mount (201 to the POST ?mount=).
  auto reader = LayoutReader::open(layout, &error);
  REQUIRE(reader);
  Descriptor md;
  REQUIRE(reader->resolve("t", &md, &error));
  std::string bytes;
  REQUIRE(reader->read_blob(md, &bytes, &error));
  ImageManifest m;
  REQUIRE(parse_manifest(bytes, &m, &error));
  for (const auto& l : m.layers) {
    std::string link = reg.storage() + "/docker/registry/v2/repositories/team/b/_layers/sha256/" +
                       std::string(digest_hex(l.digest)) + "/link";
    CHECK(::access(link.c_str(), F_OK) == 0);
  }
  CHECK(reg.log().find("mount=") != std::string::npos);

  SECTION("a mount the registry refuses (202) falls back to an upload") {
    options.mount_from = "team/nothing-here";
    REQUIRE_OK(push_layout(layout, "t", reg.ref("team/c", "t"), options, &error));
    CHECK(skopeo_copy_back(reg.host(), "team/c:t", tmp.sub("back-c")) ==
          manifest_digest(layout, "t"));
  }
}

TEST_CASE("pull_to_layout of what skopeo pushed gives skopeo's manifest", "[oci][registry]") {
  TempDir tmp;
  Registry reg;
  const std::string layout = tmp.sub("umoci");
  umoci_layout(tmp, layout, "t", {{"x.txt", "x\n"}, {"y.bin", random_bytes(70000, 4)}});
  run({"skopeo", "copy", "--dest-tls-verify=false", "oci:" + layout + ":t",
       "docker://" + reg.host() + "/repo2:t"});
  auto raw = run(
      {"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + reg.host() + "/repo2:t"});
  const std::string want = sha256_digest(raw.out);

  RegistryOptions options;
  options.insecure = true;
  std::string error;
  const std::string out = tmp.sub("pulled");
  REQUIRE_OK(pull_to_layout(reg.ref("repo2", "t"), out, "mine", options, &error));
  CHECK(manifest_digest(out, "mine") == want);
  // Every blob is there and verifies; skopeo reads the layout.
  auto reader = LayoutReader::open(out, &error);
  REQUIRE(reader);
  Descriptor md;
  REQUIRE(reader->resolve("mine", &md, &error));
  std::string bytes;
  REQUIRE(reader->read_blob(md, &bytes, &error));
  ImageManifest m;
  REQUIRE(parse_manifest(bytes, &m, &error));
  std::string config;
  CHECK(reader->read_blob(m.config, &config, &error));
  for (const auto& l : m.layers) {
    auto fd = reader->open_blob(l);
    REQUIRE(fd);
    auto d = sha256_fd(fd->get());
    REQUIRE(d);
    CHECK(*d == l.digest);
  }
  run({"skopeo", "inspect", "oci:" + out + ":mine"});

  SECTION("pulled by digest") {
    Reference ref = reg.ref("repo2", "");
    ref.digest = want;
    REQUIRE_OK(pull_to_layout(ref, tmp.sub("by-digest"), "d", options, &error));
    CHECK(manifest_digest(tmp.sub("by-digest"), "d") == want);
  }
  SECTION("a Docker schema 2 manifest (skopeo --format v2s2) pulls as it is") {
    run({"skopeo", "copy", "--format", "v2s2", "--dest-tls-verify=false", "oci:" + layout + ":t",
         "docker://" + reg.host() + "/docker2:t"});
    auto raw2 = run({"skopeo", "inspect", "--raw", "--tls-verify=false",
                     "docker://" + reg.host() + "/docker2:t"});
    CHECK(raw2.out.find(kMediaDockerManifest) != std::string::npos);
    REQUIRE_OK(pull_to_layout(reg.ref("docker2", "t"), tmp.sub("d2"), "t", options, &error));
    // (skopeo's oci: transport skips index entries of Docker media types: not checked by it.)
    CHECK(manifest_digest(tmp.sub("d2"), "t") == sha256_digest(raw2.out));
  }
  SECTION("a missing tag: an error naming the URL and the status") {
    CHECK_FALSE(pull_to_layout(reg.ref("repo2", "nope"), tmp.sub("none"), "x", options, &error));
    CHECK(error.find("/v2/repo2/manifests/nope") != std::string::npos);
    CHECK(error.find("HTTP 404") != std::string::npos);
    CHECK(error.find("MANIFEST_UNKNOWN") != std::string::npos);
  }
}

TEST_CASE("basic auth (htpasswd): no or wrong credentials fail clearly, right ones work",
          "[oci][registry]") {
  auto hash = it::run_process({"htpasswd", "-Bbn", "user", "secret"});
  if (!hash.succeeded()) {
    WARN(
        "skipping: htpasswd (apache2-utils) is not installed, no bcrypt entry for the "
        "registry's htpasswd auth: "
        << hash.describe());
    return;
  }
  TempDir tmp;
  Registry reg(hash.out);
  const std::string layout = tmp.sub("umoci");
  umoci_layout(tmp, layout, "t", {{"a.txt", "auth\n"}});
  RegistryOptions options;
  options.insecure = true;
  std::string error;
  CHECK_FALSE(push_layout(layout, "t", reg.ref("private", "t"), options, &error));
  CHECK(error.find("--creds") != std::string::npos);
  options.username = "user";
  options.password = "wrong";
  CHECK_FALSE(push_layout(layout, "t", reg.ref("private", "t"), options, &error));
  CHECK(error.find("HTTP 401") != std::string::npos);
  options.password = "secret";
  REQUIRE_OK(push_layout(layout, "t", reg.ref("private", "t"), options, &error));
  CHECK(skopeo_copy_back(reg.host(), "private:t", tmp.sub("back"), "user:secret") ==
        manifest_digest(layout, "t"));
  REQUIRE_OK(pull_to_layout(reg.ref("private", "t"), tmp.sub("pulled"), "t", options, &error));
  CHECK(manifest_digest(tmp.sub("pulled"), "t") == manifest_digest(layout, "t"));
}

// A python3 registry that serves repository "good" (behind a bearer token in mode "bearer";
// blobs by redirect; tag "multi" an index) and repository "bad" (a layer whose bytes do not
// match its digest).
const char kFakeRegistry[] = R"PY(
import hashlib, http.server, json, sys, urllib.parse
port, mode = int(sys.argv[1]), sys.argv[2]
def digest(b): return "sha256:" + hashlib.sha256(b).hexdigest()
config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
layer = b"L" * 100
named = b"N" * 100
blobs = {digest(config): config, digest(layer): layer, digest(named): b"X" * 100}
def manifest(layer_bytes):
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer_bytes), "size": len(layer_bytes)}]}).encode()
good, bad = manifest(layer), manifest(named)
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(good), "size": len(good), "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
manifests = {("good", "t"): good, ("good", digest(good)): good, ("good", "multi"): index, ("bad", "t"): bad}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): sys.stderr.write(self.requestline + "\n")
    def send(self, code, body=b"", ctype="application/json", headers={}):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items(): self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(body)
    def do_HEAD(self): self.do_GET()
    def do_GET(self):
        p = self.path
        if p.startswith("/token"):
            if self.headers.get("Authorization") != "Basic dXNlcjpzZWNyZXQ=" or "scope=repository%3Agood%3Apull" not in p:
                return self.send(401, b'{"errors":[{"code":"DENIED","message":"bad token request"}]}')
            return self.send(200, b'{"token":"tok-123"}')
        if mode == "bearer" and self.headers.get("Authorization") != "Bearer tok-123":
            return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}', headers={
                "WWW-Authenticate": 'Bearer realm="http://127.0.0.1:%d/token",service="fake",scope="repository:good:pull"' % port})
        if p == "/v2/": return self.send(200, b"{}")
        if p.startswith("/storage/"): return self.send(200, blobs["sha256:" + p[9:]], "application/octet-stream")
        parts = p.split("/")
        if len(parts) == 5 and parts[3] == "blobs" and parts[4] in blobs:
            return self.send(307, headers={"Location": "/storage/" + parts[4][7:]})
        if len(parts) == 5 and parts[3] == "manifests" and (parts[2], parts[4]) in manifests:
            body = manifests[(parts[2], parts[4])]
            return self.send(200, body, json.loads(body).get("mediaType", "application/vnd.oci.image.manifest.v1+json"), {"Docker-Content-Digest": digest(body)})
        self.send(404, b'{"errors":[{"code":"NOT_FOUND","message":"no such thing"}]}')
    # Repository "lossy" takes uploads but keeps only half of each upload's first chunk.
    def body(self): return self.rfile.read(int(self.headers.get("Content-Length", "0")))
    def do_POST(self):
        if self.path != "/v2/lossy/blobs/uploads/": return self.send(404)
        n = str(len(uploads)); uploads[n] = b""
        self.send(202, headers={"Location": "/upload/" + n + "?state=0", "Range": "0-0"})
    def do_PATCH(self):
        n, data = self.path.split("/")[2].split("?")[0], self.body()
        if int(self.headers["Content-Range"].split("-")[0]) != len(uploads[n]):
            return self.send(416, b'{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"wrong offset"}]}')
        uploads[n] += data if uploads[n] else data[:len(data) // 2]
        self.send(202, headers={"Location": "/upload/%s?state=%d" % (n, len(uploads[n])),
                                "Range": "0-%d" % (len(uploads[n]) - 1)})
    def do_PUT(self):
        data = self.body()
        if self.path.startswith("/upload/"):
            n = self.path.split("/")[2].split("?")[0]
            d = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["digest"][0]
            uploads[n] += data
            if digest(uploads[n]) != d:
                return self.send(400, b'{"errors":[{"code":"DIGEST_INVALID","message":"digest mismatch"}]}')
            blobs[d] = uploads[n]
            return self.send(201, headers={"Docker-Content-Digest": d})
        if self.path.startswith("/v2/lossy/manifests/"):
            manifests[("lossy", self.path.split("/")[4])] = data
            return self.send(201, headers={"Docker-Content-Digest": digest(data)})
        self.send(404)
uploads = {}
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
)PY";

class FakeRegistry {
 public:
  explicit FakeRegistry(const std::string& mode) {
    it::write_file(dir_.sub("fake.py"), kFakeRegistry);
    int port = free_port();
    server_ = std::make_unique<Server>(
        std::vector<std::string>{"python3", dir_.sub("fake.py"), std::to_string(port), mode}, port);
  }
  Reference ref(const std::string& repo, const std::string& tag) const {
    return Reference{server_->host(), repo, tag, ""};
  }
  std::string log() const { return server_->log(); }

 private:
  TempDir dir_;
  std::unique_ptr<Server> server_;
};

TEST_CASE("pull rejects a blob whose bytes do not match its digest, naming the digest",
          "[oci][registry]") {
  TempDir tmp;
  FakeRegistry fake("open");
  RegistryOptions options;
  options.insecure = true;
  std::string error;
  const std::string named = sha256_digest(std::string(100, 'N'));
  CHECK_FALSE(pull_to_layout(fake.ref("bad", "t"), tmp.sub("out"), "t", options, &error));
  CHECK(error.find(named) != std::string::npos);
  CHECK(error.find(sha256_digest(std::string(100, 'X'))) != std::string::npos);
  // Nothing half-written: no blob file of that digest, no temp files.
  CHECK(::access((tmp.sub("out") + "/blobs/sha256/" + std::string(digest_hex(named))).c_str(),
                 F_OK) != 0);

  SECTION("the good repository pulls, blobs through redirects; an index resolves to amd64") {
    REQUIRE_OK(pull_to_layout(fake.ref("good", "t"), tmp.sub("good"), "t", options, &error));
    REQUIRE_OK(pull_to_layout(fake.ref("good", "multi"), tmp.sub("multi"), "t", options, &error));
    CHECK(manifest_digest(tmp.sub("multi"), "t") == manifest_digest(tmp.sub("good"), "t"));
  }
}

TEST_CASE("chunked upload resumes from the offset the registry's Range answer gives",
          "[oci][registry]") {
  TempDir tmp;
  FakeRegistry fake("open");
  const std::string layout = tmp.sub("umoci");
  umoci_layout(tmp, layout, "t", {{"big.bin", random_bytes(30000, 7)}});
  RegistryOptions options;
  options.insecure = true;
  options.chunk_size = 1000;
  std::string error;
  REQUIRE_OK(push_layout(layout, "t", fake.ref("lossy", "t"), options, &error));
  INFO(fake.log());
  CHECK(fake.log().find("PATCH /upload/0?state=500 ") != std::string::npos);
  REQUIRE_OK(pull_to_layout(fake.ref("lossy", "t"), tmp.sub("out"), "t", options, &error));
  CHECK(manifest_digest(tmp.sub("out"), "t") == manifest_digest(layout, "t"));
}

TEST_CASE("bearer tokens: fetched from the challenge's realm with the credentials",
          "[oci][registry]") {
  TempDir tmp;
  FakeRegistry fake("bearer");
  RegistryOptions options;
  options.insecure = true;
  std::string error;
  CHECK_FALSE(pull_to_layout(fake.ref("good", "t"), tmp.sub("anon"), "t", options, &error));
  CHECK(error.find("token request") != std::string::npos);
  CHECK(error.find("DENIED") != std::string::npos);
  options.username = "user";
  options.password = "secret";
  REQUIRE_OK(pull_to_layout(fake.ref("good", "t"), tmp.sub("out"), "t", options, &error));
  INFO(fake.log());
  CHECK(fake.log().find("GET /token?service=fake&scope=repository%3Agood%3Apull") !=
        std::string::npos);
}

TEST_CASE("an unreachable registry: a clear error naming it", "[oci][registry]") {
  TempDir tmp;
  int port = free_port();
  Reference ref{"127.0.0.1:" + std::to_string(port), "repo", "t", ""};
  RegistryOptions options;
  options.insecure = true;
  std::string error;
  CHECK_FALSE(pull_to_layout(ref, tmp.sub("out"), "t", options, &error));
  CHECK(error.find("cannot reach the registry") != std::string::npos);
  CHECK(error.find(ref.host) != std::string::npos);
  const std::string layout = tmp.sub("umoci");
  umoci_layout(tmp, layout, "t", {{"a", "a"}});
  CHECK_FALSE(push_layout(layout, "t", ref, options, &error));
  CHECK(error.find("cannot reach the registry") != std::string::npos);
  CHECK(error.find("http://" + ref.host + "/v2/") != std::string::npos);
}

// ---- lamina push / pull (need OCI export and import) ------------------------------------------

TEST_CASE("lamina push of a committed image; skopeo copies it back with the same digests",
          "[oci][registry][needs-export-import]") {
  TempDir tmp;
  Registry reg;
  const std::string root = tmp.sub("store");
  std::string upper = tmp.mkdir("upper");
  it::make_dirs(upper + "/etc");
  it::write_file(upper + "/etc/motd", "pushed by lamina\n");
  it::write_file(upper + "/big.bin", random_bytes(120000, 5));
  auto r = st::lamina(root, {"commit", "--upper", upper, "--tag", "img", "--timestamp", "0"});
  REQUIRE(r.succeeded());
  r = st::lamina(
      root, {"push", "img", reg.host() + "/lamina/img:v1", "--insecure", "--chunk-size", "65536"});
  INFO(r.describe());
  REQUIRE(r.succeeded());
  const std::string back = skopeo_copy_back(reg.host(), "lamina/img:v1", tmp.sub("back"));
  r = st::lamina(root, {"export", "img", "--oci", tmp.sub("export") + ":v1"});
  REQUIRE(r.succeeded());
  CHECK(back == manifest_digest(tmp.sub("export"), "v1"));
  // A second push to another repository mounts the blobs.
  r = st::lamina(root, {"push", "img", reg.host() + "/lamina/copy:v1", "--insecure", "--mount-from",
                        "lamina/img"});
  INFO(r.describe());
  CHECK(r.succeeded());
  CHECK(skopeo_copy_back(reg.host(), "lamina/copy:v1", tmp.sub("back2")) == back);
}

TEST_CASE("lamina pull of what skopeo pushed mounts with the same files",
          "[oci][registry][needs-export-import]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  Registry reg;
  const std::string layout = tmp.sub("umoci");
  const std::string big = random_bytes(90000, 6);
  umoci_layout(tmp, layout, "t", {{"hello.txt", "hello from skopeo\n"}, {"big.bin", big}});
  run({"skopeo", "copy", "--dest-tls-verify=false", "oci:" + layout + ":t",
       "docker://" + reg.host() + "/from/skopeo:t"});
  const std::string root = tmp.sub("store");
  auto r =
      st::lamina(root, {"pull", reg.host() + "/from/skopeo:t", "--tag", "pulled", "--insecure"});
  INFO(r.describe());
  REQUIRE(r.succeeded());
  r = st::lamina(root, {"pull", reg.host() + "/from/skopeo:t", "--tag", "pulled", "--insecure"});
  CHECK_FALSE(r.succeeded());
  CHECK(r.err.find("--force") != std::string::npos);
  st::ImageMount m(root, "pulled", tmp.mkdir("mnt"));
  CHECK(it::read_file(m.path() + "/data/hello.txt") == "hello from skopeo\n");
  CHECK(it::read_file(m.path() + "/data/big.bin") == big);
}

}  // namespace
}  // namespace lamina::oci
