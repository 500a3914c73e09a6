// SPDX-License-Identifier: Apache-2.0
// lamina export, end to end, checked by independent clients:
//  - an image of two committed layers (whiteouts and an opaque directory in the upper one)
//    exported with gzip; `umoci unpack` of it gives the same tree as `lamina mount`;
//  - `skopeo inspect` lists the layers' digests; `skopeo copy oci:… dir:…` accepts it;
//  - exporting twice gives byte-identical blobs; zstd and uncompressed layouts that skopeo reads;
//  - bad input: a clear message and a non-zero exit.

#include <fmt/format.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "store/store_support.h"
#include "write/write_support.h"

namespace lamina::st {
namespace {

using wt::kL1;
using wt::kL2;
using wt::TreeSpec;

TreeSpec export_tree() {
  TreeSpec t;
  t.dir("etc", kL2 | kL1)
      .file("etc/conf", "key=value\n", kL2, 0644, 0, 0, {{"user.orig", "o"}})
      .file("etc/conf", "key=upper\n", kL1, 0640, 0, 0, {{"user.new", "n"}})
      .file("etc/old.conf", "old\n", kL2)
      .file("etc/l1.conf", "from l1\n", kL1)
      .whiteout("etc/gone", kL1)
      .file("etc/gone", "deleted by l1\n", kL2)
      .file("bin/tool", "#!/bin/sh\necho tool\n", kL2, 04755)
      .hardlink("bin/tool-link", "bin/tool", kL2)
      .symlink("bin/sh", "tool", kL2)
      .symlink("abs", "/etc/conf", kL1)
      .dir("docs", kL2 | kL1)
      .dir("docs/guide", kL2)
      .file("docs/guide/ch1.txt", "chapter 1\n", kL2)
      .whiteout("docs/guide", kL1)
      .file("docs/readme", "readme\n", kL1)
      .dir("opq", kL2 | kL1)
      .file("opq/hidden", "hidden by l1's opaque dir\n", kL2)
      .dir("opq/sub", kL2)
      .file("opq/sub/deep", "also hidden\n", kL2)
      .file("opq/shown", "l1\n", kL1)
      .opaque("opq", kL1)
      .file("data.bin", wt::pattern_bytes(300 * 1024, 7), kL2, 0640)
      .sparse("sparse.img", kL2, 8 << 20, {{4096, "head"}, {(6 << 20) + 5, "tail"}})
      .fifo("run/fifo", kL1)
      .dir("home/user", kL1, 0700, 1000, 1000)
      .file("home/user/notes", "notes\n", kL1, 0600, 1000, 1000);
  return t;
}

void ok(const it::ProcResult& r, const std::string& what) {
  INFO(what << ": " << r.describe() << "\nstdout: " << r.out);
  REQUIRE(r.succeeded());
}

// name -> bytes of every blob of a layout.
std::map<std::string, std::string> blobs(const std::string& layout) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(layout + "/blobs/sha256")) {
    std::ifstream f(e.path(), std::ios::binary);
    out[e.path().filename().string()] =
        std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  return out;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

// The manifest of the layout's only image.
nlohmann::json layout_manifest(const std::string& layout, const std::string& tag) {
  auto index = read_json(layout + "/index.json");
  for (const auto& m : index["manifests"]) {
    if (m["annotations"]["org.opencontainers.image.ref.name"] == tag) {
      std::string digest = m["digest"];
      return read_json(layout + "/blobs/sha256/" + digest.substr(7));
    }
  }
  FAIL("no tag " << tag << " in " << layout);
  return {};
}

// An image of two layers ("ex/img") in a new store; returns the store root.
std::string make_image(const it::TempDir& t, const TreeSpec& spec) {
  std::string root = t.sub("store");
  const std::string l1 = t.mkdir("l1"), l2 = t.mkdir("l2");
  spec.build_layer(l2, kL2);
  spec.build_layer(l1, kL1);
  ok(lamina(root, {"commit", "-q", "--upper", l2, "--tag", "ex/base", "--timestamp", "1700000000"}),
     "commit base");
  ok(lamina(root, {"commit", "-q", "--upper", l1, "--image", "ex/base", "--tag", "ex/img",
                   "--timestamp", "1700000000"}),
     "commit upper");
  return root;
}

TEST_CASE("export: umoci unpacks the same tree lamina mounts; skopeo reads it", "[oci]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir t;
  TreeSpec spec = export_tree();
  const std::string root = make_image(t, spec);
  const std::string layout = t.sub("layout");
  auto r = lamina(root, {"export", "ex/img", "--oci", layout + ":v1"});
  ok(r, "lamina export");
  const std::string digest = r.out.substr(0, r.out.find('\n'));
  CHECK(digest.rfind("sha256:", 0) == 0);

  auto manifest = layout_manifest(layout, "v1");
  REQUIRE(manifest["layers"].size() == 2);
  for (const auto& l : manifest["layers"]) {
    CHECK(l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip");
  }
  std::string config_digest = manifest["config"]["digest"];
  auto config = read_json(layout + "/blobs/sha256/" + config_digest.substr(7));
  CHECK(config["rootfs"]["diff_ids"].size() == 2);
  CHECK(config["os"] == "linux");

  // umoci unpack vs lamina mount.
  const std::string bundle = t.sub("bundle");
  ok(it::run_process({"umoci", "unpack", "--image", layout + ":v1", bundle},
                     std::chrono::seconds(120)),
     "umoci unpack");
  {
    ImageMount m(root, "ex/img", t.mkdir("mnt"));
    std::string d = wt::compare_trees(m.path(), bundle + "/rootfs", "lamina mount", "umoci unpack");
    INFO("umoci's tree differs from lamina's:\n" << d);
    CHECK(d.empty());
  }

  // skopeo inspect lists the layers' digests.
  auto inspect = it::run_process({"skopeo", "inspect", "oci:" + layout + ":v1"});
  ok(inspect, "skopeo inspect");
  auto ij = nlohmann::json::parse(inspect.out);
  REQUIRE(ij["Layers"].size() == 2);
  for (size_t i = 0; i < 2; ++i) CHECK(ij["Layers"][i] == manifest["layers"][i]["digest"]);

  // skopeo copy to a dir: (it checks every digest on the way).
  const std::string out = t.sub("copy");
  ok(it::run_process({"skopeo", "--insecure-policy", "copy", "oci:" + layout + ":v1", "dir:" + out},
                     std::chrono::seconds(120)),
     "skopeo copy");
  for (const auto& l : manifest["layers"]) {
    std::string d = l["digest"];
    CHECK(std::filesystem::exists(out + "/" + d.substr(7)));
  }
}

TEST_CASE("export: twice gives identical blobs; tags accumulate; zstd and none", "[oci]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir t;
  const std::string root = make_image(t, export_tree());
  const std::string a = t.sub("a"), b = t.sub("b");
  ok(lamina(root, {"export", "-q", "ex/img", "--oci", a + ":x"}), "export a");
  ok(lamina(root, {"export", "-q", "ex/img", "--oci", b + ":x"}), "export b");
  auto ba = blobs(a);
  CHECK(ba.size() == 4);  // two layers, config, manifest
  CHECK(ba == blobs(b));
  CHECK(read_json(a + "/index.json") == read_json(b + "/index.json"));

  // Same layout again, another tag: both tags, still the same blobs. Default tag: the name.
  ok(lamina(root, {"export", "-q", "ex/img", "--oci", a + ":y"}), "export a:y");
  ok(lamina(root, {"export", "-q", "ex/base", "--oci", a}), "export a (default tag)");
  auto index = read_json(a + "/index.json");
  std::vector<std::string> tags;
  for (const auto& m : index["manifests"]) {
    tags.push_back(m["annotations"]["org.opencontainers.image.ref.name"]);
  }
  std::sort(tags.begin(), tags.end());
  CHECK(tags == std::vector<std::string>{"ex-base", "x", "y"});
  ok(it::run_process({"skopeo", "inspect", "oci:" + a + ":ex-base"}), "skopeo inspect ex-base");

  for (const char* c : {"zstd", "none"}) {
    INFO(c);
    const std::string dir = t.sub(std::string("layout-") + c);
    ok(lamina(root, {"export", "-q", "ex/img", "--oci", dir + ":z", "--compress", c}), "export");
    auto manifest = layout_manifest(dir, "z");
    for (const auto& l : manifest["layers"]) {
      CHECK(l["mediaType"] == (std::string(c) == "zstd"
                                   ? "application/vnd.oci.image.layer.v1.tar+zstd"
                                   : "application/vnd.oci.image.layer.v1.tar"));
    }
    auto inspect = it::run_process({"skopeo", "inspect", "oci:" + dir + ":z"});
    ok(inspect, "skopeo inspect");
    auto ij = nlohmann::json::parse(inspect.out);
    CHECK(ij["Layers"].size() == 2);
    ok(it::run_process({"skopeo", "--insecure-policy", "copy", "oci:" + dir + ":z",
                        "dir:" + t.sub(std::string("copy-") + c)},
                       std::chrono::seconds(120)),
       "skopeo copy");
  }
}

TEST_CASE("export: bad input gives a clear message", "[oci]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir t;
  const std::string root = make_image(t, export_tree());
  auto r = lamina(root, {"export", "no/such", "--oci", t.sub("x")});
  CHECK_FALSE(r.succeeded());
  CHECK_THAT(r.err, Catch::Matchers::Contains("no image named 'no/such'"));
  CHECK_FALSE(std::filesystem::exists(t.sub("x")));

  const std::string full = t.mkdir("full");
  std::ofstream(full + "/junk") << "x";
  r = lamina(root, {"export", "ex/img", "--oci", full});
  CHECK_FALSE(r.succeeded());
  CHECK_THAT(r.err, Catch::Matchers::Contains("is not an OCI layout"));

  r = lamina(root, {"export", "ex/img", "--oci", t.sub("y") + ":bad@tag"});
  CHECK_FALSE(r.succeeded());
  CHECK_THAT(r.err, Catch::Matchers::Contains("tag 'bad@tag'"));

  r = lamina(root, {"export", "ex/img", "--oci", t.sub("z"), "--compress", "lz4"});
  CHECK_FALSE(r.succeeded());

  std::ofstream(t.sub("file")) << "x";
  r = lamina(root, {"export", "ex/img", "--oci", t.sub("file") + "/sub"});
  CHECK_FALSE(r.succeeded());
  CHECK_THAT(r.err, Catch::Matchers::Contains("OCI layout"));
}

}  // namespace
}  // namespace lamina::st
