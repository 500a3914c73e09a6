// SPDX-License-Identifier: Apache-2.0
// lamina import, end to end: layouts written by umoci (gzip) and skopeo (zstd, uncompressed,
// docker-archive) -> `lamina mount` of the imported image shows the tree umoci unpacks; damaged
// layouts (truncated blob, flipped bytes, wrong diff_id) fail with the blob named and no image.
#include <fmt/format.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lamina/oci/digest.h"
#include "store/store_support.h"
#include "write/write_support.h"

namespace lamina::st {
namespace {

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

void sh(const std::string& cmd) {
  auto r = it::run_process({"sh", "-c", cmd}, std::chrono::seconds(120));
  INFO(cmd << ": " << r.describe() << "\n" << r.out);
  REQUIRE(r.succeeded());
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void spill(const std::string& path, const std::string& bytes) {
  fs::permissions(path, fs::perms::owner_write, fs::perm_options::add);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

// A two-layer image made with umoci in layout `dir` tag t: a tree, then a layer deleting a
// file (a whiteout) and a directory, and changing another. Returns the final rootfs, as umoci
// unpacks it again.
std::string make_umoci_image(const it::TempDir& t, const std::string& dir) {
  const std::string b = t.sub("bundle");
  sh(
      fmt::format("umoci init --layout {0} && umoci new --image {0}:t && "
                  "umoci unpack --image {0}:t {1} >/dev/null",
                  dir, b));
  const std::string r = b + "/rootfs";
  sh(fmt::format(
      "cd {0} && mkdir -p etc bin usr/share/doc/x var/empty && echo key=value > etc/conf && "
      "echo old > etc/old && printf '#!/bin/sh\\necho\\n' > bin/tool && chmod 755 bin/tool && "
      "ln bin/tool bin/tool2 && ln -s tool bin/sh && echo doc > usr/share/doc/x/README && "
      "chmod 700 var/empty && head -c 300000 /dev/urandom > usr/blob && "
      "touch -d @1000000000 etc/conf",
      r));
  sh(fmt::format("umoci repack --refresh-bundle --image {0}:t {1}", dir, b));
  sh(fmt::format("cd {0} && rm etc/old && rm -r usr/share && echo changed > etc/conf", r));
  sh(fmt::format("umoci repack --image {0}:t {1}", dir, b));
  const std::string fresh = t.sub("fresh");
  sh(fmt::format("umoci unpack --image {0}:t {1} >/dev/null", dir, fresh));
  return fresh + "/rootfs";
}

void import_ok(const std::string& root, const std::vector<std::string>& args) {
  std::vector<std::string> a = {"import"};
  a.insert(a.end(), args.begin(), args.end());
  auto r = lamina(root, a);
  INFO(r.describe());
  REQUIRE(r.succeeded());
}

void same_tree(const it::TempDir& t, const std::string& root, const std::string& image,
               const std::string& expected) {
  ImageMount m(root, image, t.mkdir("mnt-" + image));
  std::string d = wt::compare_trees(expected, m.path(), "umoci unpack", image);
  INFO(d);
  CHECK(d.empty());
}

TEST_CASE("import: umoci and skopeo layouts and a docker archive mount as umoci unpacks them",
          "[oci]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir t;
  const std::string root = t.sub("store");
  const std::string lay = t.sub("layout");
  const std::string expected = make_umoci_image(t, lay);

  import_ok(root, {"--oci", lay + ":t", "--tag", "umoci"});
  CHECK(image_layers(root, "umoci").size() == 2);
  same_tree(t, root, "umoci", expected);

  // zstd layers (skopeo).
  const std::string zst = t.sub("zstd");
  sh(fmt::format("skopeo copy -q oci:{}:t oci:{}:t --dest-compress-format zstd", lay, zst));
  import_ok(root, {"--oci", zst + ":t", "--tag", "zstd"});
  same_tree(t, root, "zstd", expected);
  // The same tars: the same layers (deduplicated).
  CHECK(image_layers(root, "zstd") == image_layers(root, "umoci"));

  // docker-archive (uncompressed layers).
  const std::string tar = t.sub("image.tar");
  sh(fmt::format("skopeo copy -q oci:{}:t docker-archive:{}:x:t", lay, tar));
  import_ok(root, {"--docker-archive", tar, "--tag", "docker"});
  same_tree(t, root, "docker", expected);
  CHECK(image_layers(root, "docker") == image_layers(root, "umoci"));

  // An uncompressed layout: skopeo 1.9 keeps the docker archive's plain tars with
  // --dest-oci-accept-uncompressed-layers (it labels them tar+gzip all the same: the bytes are
  // what lamina goes by).
  const std::string raw = t.sub("raw");
  sh(fmt::format("skopeo copy -q --dest-oci-accept-uncompressed-layers docker-archive:{} oci:{}:t",
                 tar, raw));
  import_ok(root, {"--oci", raw + ":t", "--tag", "plain"});
  same_tree(t, root, "plain", expected);
  CHECK(image_layers(root, "plain") == image_layers(root, "umoci"));

  // The name is taken now.
  auto again = lamina(root, {"import", "--oci", lay + ":t", "--tag", "umoci"});
  CHECK_FALSE(again.succeeded());
  CHECK_THAT(again.err, Contains("exists"));
  import_ok(root, {"--oci", lay + ":t", "--tag", "umoci", "--force"});
}

// The layout's manifest and its layers (bottom first).
struct LayoutFiles {
  std::string manifest_digest;
  nlohmann::json manifest;
};

LayoutFiles read_layout(const std::string& dir) {
  auto index = nlohmann::json::parse(slurp(dir + "/index.json"));
  LayoutFiles f;
  f.manifest_digest = index["manifests"][0]["digest"];
  f.manifest = nlohmann::json::parse(slurp(dir + "/blobs/sha256/" + f.manifest_digest.substr(7)));
  return f;
}

std::string blob_path(const std::string& dir, const std::string& digest) {
  return dir + "/blobs/sha256/" + digest.substr(7);
}

// Rewrites a JSON blob (new digest) and updates whoever pointed at it.
std::string put_blob(const std::string& dir, const std::string& bytes) {
  std::string d = oci::sha256_digest(bytes);
  std::ofstream(blob_path(dir, d), std::ios::binary) << bytes;
  return d;
}

TEST_CASE("import: damaged layouts are refused, naming the blob, and add no image", "[oci]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir t;
  const std::string root = t.sub("store");
  const std::string lay = t.sub("layout");
  make_umoci_image(t, lay);
  import_ok(root, {"--oci", lay + ":t", "--tag", "good"});
  auto images_before = lamina(root, {"images"});
  REQUIRE(images_before.succeeded());

  auto refused = [&](const std::string& dir, const std::string& what) {
    auto r = lamina(root, {"import", "--oci", dir + ":t", "--tag", "bad"});
    INFO(r.describe());
    CHECK_FALSE(r.succeeded());
    CHECK_THAT(r.err, Contains(what));
    auto images = lamina(root, {"images"});
    CHECK(images.out == images_before.out);
  };
  const LayoutFiles f = read_layout(lay);
  const std::string layer1 = f.manifest["layers"][1]["digest"];

  SECTION("truncated blob") {
    const std::string p = blob_path(lay, layer1);
    std::string bytes = slurp(p);
    spill(p, bytes.substr(0, bytes.size() / 2));
    refused(lay, layer1);
  }
  SECTION("flipped bytes") {
    const std::string p = blob_path(lay, layer1);
    std::string bytes = slurp(p);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x20);
    spill(p, bytes);
    refused(lay, layer1);
  }
  SECTION("blobs/ a symlink to a layout elsewhere") {
    const std::string elsewhere = t.sub("elsewhere");
    fs::rename(lay + "/blobs", elsewhere);
    fs::create_symlink(elsewhere, lay + "/blobs");
    refused(lay, "blobs/sha256");
  }
  SECTION("a layer blob a symlink to a good copy elsewhere") {
    const std::string p = blob_path(lay, layer1);
    const std::string copy = t.sub("copy");
    fs::copy_file(p, copy);
    fs::remove(p);
    fs::create_symlink(copy, p);
    refused(lay, layer1);
  }
  SECTION("a layer blob a fifo (refused, not waited on)") {
    const std::string p = blob_path(lay, layer1);
    fs::remove(p);
    REQUIRE(::mkfifo(p.c_str(), 0644) == 0);
    refused(lay, layer1);
  }
  SECTION("wrong diff_id") {
    std::string cfg_digest = f.manifest["config"]["digest"];
    auto cfg = nlohmann::json::parse(slurp(blob_path(lay, cfg_digest)));
    cfg["rootfs"]["diff_ids"][1] = oci::sha256_digest("not this layer");
    std::string cfg_bytes = cfg.dump();
    nlohmann::json m = f.manifest;
    m["config"]["digest"] = put_blob(lay, cfg_bytes);
    m["config"]["size"] = cfg_bytes.size();
    std::string m_bytes = m.dump();
    auto index = nlohmann::json::parse(slurp(lay + "/index.json"));
    index["manifests"][0]["digest"] = put_blob(lay, m_bytes);
    index["manifests"][0]["size"] = m_bytes.size();
    std::ofstream(lay + "/index.json", std::ios::trunc) << index.dump();
    refused(lay, "diff_id mismatch");
    refused(lay, layer1);
  }
}

}  // namespace
}  // namespace lamina::st
