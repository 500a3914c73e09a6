// SPDX-License-Identifier: Apache-2.0
// export_image without mounts: the config it writes from the store's image record, the same
// digests on re-export, errors, default tags.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "../test_util.h"
#include "lamina/oci/image_io.h"

namespace lamina::oci {
namespace {

using Catch::Matchers::Contains;
using test::TempDir;

struct Fixture {
  TempDir tmp;
  std::unique_ptr<store::Store> st;

  Fixture() {
    std::string error;
    st = store::Store::open(tmp / "store", true, &error);
    REQUIRE(st);
    auto obj = st->put_bytes("data\n");
    REQUIRE(obj);
    store::Manifest m;
    store::Entry root;
    root.path = "/";
    root.kind = store::EntryKind::kDir;
    root.mode = 0755;
    store::Entry f;
    f.path = "/f";
    f.kind = store::EntryKind::kFile;
    f.mode = 0644;
    f.size = 5;
    f.object = obj->name;
    m.entries = {root, f};
    auto id = st->publish_layer(m, {});
    REQUIRE(id);
    layer = *id;
  }

  void image(const std::string& name, const std::string& config_json) {
    store::Image img;
    img.name = name;
    img.layers = {layer};
    img.created = "2024-01-02T03:04:05Z";
    img.config_json = config_json;
    REQUIRE(st->write_image(img, true));
  }

  // Exports and returns the config document.
  nlohmann::json export_config(const std::string& name, const std::string& dir,
                               Descriptor* manifest = nullptr) {
    Descriptor d;
    std::string error;
    bool ok = export_image(*st, name, dir, "t", {}, &d, &error);
    INFO(error);
    REQUIRE(ok);
    if (manifest != nullptr) *manifest = d;
    auto reader = LayoutReader::open(dir, &error);
    REQUIRE(reader);
    std::string bytes;
    REQUIRE(reader->read_blob(d, &bytes, &error));
    ImageManifest im;
    REQUIRE(parse_manifest(bytes, &im, &error));
    REQUIRE(im.layers.size() == 1);
    CHECK(im.layers[0].media_type == kMediaLayerGzip);
    REQUIRE(reader->read_blob(im.config, &bytes, &error));
    return nlohmann::json::parse(bytes);
  }

  std::string layer;
};

TEST_CASE("export: a config object of the image record becomes the config's config", "[oci]") {
  Fixture fx;
  fx.image("plain", R"({"Cmd":["/bin/sh"],"Env":["A=1"]})");
  auto c = fx.export_config("plain", fx.tmp / "l1");
  CHECK(c["config"]["Cmd"][0] == "/bin/sh");
  CHECK(c["created"] == "2024-01-02T03:04:05Z");
  CHECK(c["architecture"] == "amd64");
  CHECK(c["os"] == "linux");
  CHECK(c["rootfs"]["diff_ids"].size() == 1);
  CHECK(c["history"].size() == 1);
}

TEST_CASE("export: a whole OCI config of the image record keeps config, platform, history",
          "[oci]") {
  Fixture fx;
  fx.image("whole", R"({"architecture":"arm64","os":"linux","config":{"Env":["B=2"]},)"
                    R"("history":[{"created_by":"base"},{"created_by":"ENV","empty_layer":true}],)"
                    R"("rootfs":{"type":"layers","diff_ids":[]}})");
  auto c = fx.export_config("whole", fx.tmp / "l1");
  CHECK(c["config"]["Env"][0] == "B=2");
  CHECK(c["architecture"] == "arm64");
  CHECK(c["history"][0]["created_by"] == "base");
  CHECK(c["history"].size() == 2);

  // History that does not describe these layers is replaced.
  fx.image("stale", R"({"config":{},"history":[{"created_by":"a"},{"created_by":"b"}]})");
  auto s = fx.export_config("stale", fx.tmp / "l2");
  REQUIRE(s["history"].size() == 1);
  CHECK(s["history"][0]["created_by"] == "lamina layer " + fx.layer);
  CHECK_FALSE(s.contains("config"));
}

TEST_CASE("export: twice gives the same manifest digest; missing image fails cleanly", "[oci]") {
  Fixture fx;
  fx.image("img", "{}");
  Descriptor a, b;
  fx.export_config("img", fx.tmp / "a", &a);
  fx.export_config("img", fx.tmp / "b", &b);
  CHECK(a.digest == b.digest);
  CHECK(test::read_file(fx.tmp / "a/index.json") == test::read_file(fx.tmp / "b/index.json"));

  Descriptor d;
  std::string error;
  CHECK_FALSE(export_image(*fx.st, "missing", fx.tmp / "c", "", {}, &d, &error));
  CHECK_THAT(error, Contains("no image named 'missing'"));
}

TEST_CASE("export: default tags", "[oci]") {
  CHECK(default_layout_tag("app") == "app");
  CHECK(default_layout_tag("library/app:1.0") == "library-app-1.0");
  CHECK(default_layout_tag("a@b") == "a-b");
  CHECK(default_layout_tag(std::string(200, 'x')).size() == 128);
}

}  // namespace
}  // namespace lamina::oci
