// SPDX-License-Identifier: Apache-2.0
// OCI layout documents (JSON round trips, determinism, strict parsing) and the layout
// directory (LayoutWriter / LayoutReader) on real temp dirs.
#include "lamina/oci/layout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "../test_util.h"
#include "lamina/oci/digest.h"

namespace lamina::oci {
namespace {

using Catch::Matchers::Contains;
using test::TempDir;

const std::string kD1 = "sha256:" + std::string(64, 'a');
const std::string kD2 = "sha256:" + std::string(64, 'b');
const std::string kD3 = "sha256:" + std::string(64, 'c');

Descriptor desc(std::string_view media, const std::string& digest, int64_t size) {
  Descriptor d;
  d.media_type = std::string(media);
  d.digest = digest;
  d.size = size;
  return d;
}

ImageManifest sample_manifest() {
  ImageManifest m;
  m.media_type = std::string(kMediaManifest);
  m.config = desc(kMediaConfig, kD1, 123);
  m.layers = {desc(kMediaLayerGzip, kD2, 4567), desc(kMediaLayerZstd, kD3, 89)};
  m.layers[1].annotations["org.example.note"] = "x";
  m.annotations["org.opencontainers.image.created"] = "2024-01-01T00:00:00Z";
  return m;
}

TEST_CASE("layout: sha256 of known bytes", "[oci]") {
  CHECK(sha256_digest("") ==
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_digest("abc") ==
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(valid_digest(kD1));
  CHECK_FALSE(valid_digest("sha256:" + std::string(64, 'A')));
  CHECK_FALSE(valid_digest("sha512:" + std::string(64, 'a')));
  CHECK_FALSE(valid_digest("sha256:" + std::string(63, 'a')));
}

TEST_CASE("layout: manifest round trip, deterministic bytes", "[oci]") {
  ImageManifest m = sample_manifest();
  std::string j = to_json(m);
  CHECK(j == to_json(sample_manifest()));
  CHECK(j.find('\n') == std::string::npos);
  CHECK(j.find("\"schemaVersion\":2") != std::string::npos);
  ImageManifest back;
  std::string error;
  REQUIRE(parse_manifest(j, &back, &error));
  CHECK(back.media_type == m.media_type);
  CHECK(back.config.digest == kD1);
  CHECK(back.config.size == 123);
  REQUIRE(back.layers.size() == 2);
  CHECK(back.layers[0].media_type == kMediaLayerGzip);
  CHECK(back.layers[1].annotations.at("org.example.note") == "x");
  CHECK(back.annotations == m.annotations);
  CHECK(to_json(back) == j);
}

TEST_CASE("layout: config round trip keeps config and history verbatim", "[oci]") {
  ImageConfig c;
  c.created = "2024-05-06T07:08:09Z";
  c.config_json = R"({"Cmd":["/bin/sh"],"Env":["A=1"]})";
  c.diff_ids = {kD1, kD2};
  c.history_json = R"([{"created_by":"x"},{"created_by":"y"}])";
  std::string j = to_json(c);
  CHECK(j == to_json(c));
  ImageConfig back;
  back.created = "stale";
  std::string error;
  REQUIRE(parse_config(j, &back, &error));
  CHECK(back.created == c.created);
  CHECK(back.architecture == "amd64");
  CHECK(back.os == "linux");
  CHECK(back.diff_ids == c.diff_ids);
  CHECK(back.config_json == c.config_json);
  CHECK(back.history_json == c.history_json);
  CHECK(to_json(back) == j);

  // Regression: parse_config left fields of an earlier parse in place.
  REQUIRE(parse_config(R"({"rootfs":{"type":"layers","diff_ids":[]}})", &back, &error));
  CHECK(back.created.empty());
  CHECK(back.config_json.empty());
  CHECK(back.history_json.empty());
}

TEST_CASE("layout: index round trip", "[oci]") {
  Index i;
  i.manifests = {desc(kMediaManifest, kD1, 10)};
  i.manifests[0].annotations[std::string(kRefNameAnnotation)] = "v1";
  i.manifests[0].platform_json = R"({"architecture":"amd64","os":"linux"})";
  std::string j = to_json(i);
  Index back;
  std::string error;
  REQUIRE(parse_index(j, &back, &error));
  REQUIRE(back.manifests.size() == 1);
  CHECK(back.manifests[0].annotations.at(std::string(kRefNameAnnotation)) == "v1");
  CHECK(back.manifests[0].platform_json == i.manifests[0].platform_json);
  CHECK(to_json(back) == j);
}

TEST_CASE("layout: parse errors name the document and the field", "[oci]") {
  const std::string l = R"({"mediaType":"m","digest":")" + kD1 + R"(","size":1})";
  std::string error;
  ImageManifest m;
  auto check_manifest = [&](const std::string& text, const std::string& expect) {
    INFO(text);
    error = "stale error from an earlier call";
    bool ok = true;
    REQUIRE_NOTHROW(ok = parse_manifest(text, &m, &error));
    CHECK_FALSE(ok);
    CHECK_THAT(error, Contains(expect));
  };
  check_manifest("[]", "manifest: not a JSON object");
  check_manifest("{", "manifest: not a JSON object");
  check_manifest(R"({"schemaVersion":1})", "schemaVersion");
  // Regression: a schemaVersion of another type threw out of parse_manifest.
  check_manifest(R"({"schemaVersion":"2"})", "schemaVersion");
  // Regression: with *error already holding text, a missing config was not reported.
  check_manifest(R"({"schemaVersion":2,"layers":[]})", "manifest: no config");
  check_manifest(R"({"schemaVersion":2,"config":{"digest":"x"},"layers":[]})",
                 "manifest config: no mediaType");
  check_manifest(
      R"({"schemaVersion":2,"config":{"mediaType":"m","digest":"sha256:12","size":1},"layers":[]})",
      "manifest config: digest");
  check_manifest(R"({"schemaVersion":2,"config":)" + l + "}", "no layers array");
  check_manifest(R"({"schemaVersion":2,"config":)" + l + R"(,"layers":[)" + l +
                     R"(,{"mediaType":"m","digest":")" + kD1 + R"(","size":-1}]})",
                 "manifest layer 1: size");

  ImageConfig c;
  error.clear();
  CHECK_FALSE(parse_config("{}", &c, &error));
  CHECK_THAT(error, Contains("rootfs.diff_ids"));
  CHECK_FALSE(parse_config(R"({"rootfs":{"diff_ids":["sha256:zz"]}})", &c, &error));
  CHECK_THAT(error, Contains("diff_id"));

  Index i;
  CHECK_FALSE(parse_index(R"({"schemaVersion":2})", &i, &error));
  CHECK_THAT(error, Contains("index.json: no manifests array"));
  CHECK_FALSE(parse_index(R"({"schemaVersion":2,"manifests":[{"mediaType":"m"}]})", &i, &error));
  CHECK_THAT(error, Contains("index.json manifest 0: digest"));
}

TEST_CASE("layout: split_layout_ref", "[oci]") {
  struct Case {
    const char* ref;
    const char* dir;
    const char* tag;
  };
  const Case cases[] = {
      {"dir", "dir", ""},
      {"dir:tag", "dir", "tag"},
      {"/a/b/dir:v1.0", "/a/b/dir", "v1.0"},
      {"/a:b/dir", "/a:b/dir", ""},
      {"/a:b/dir:t", "/a:b/dir", "t"},
      {"./x:y:z", "./x:y", "z"},
      {"/abs/path", "/abs/path", ""},
  };
  for (const auto& c : cases) {
    std::string dir, tag;
    split_layout_ref(c.ref, &dir, &tag);
    INFO(c.ref);
    CHECK(dir == c.dir);
    CHECK(tag == c.tag);
  }
}

TEST_CASE("layout: media types and compressions", "[oci]") {
  for (auto c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    CHECK(compression_of(layer_media_type(c)) == c);
  }
  CHECK(compression_of(kMediaDockerLayerGzip) == Compression::kGzip);
  CHECK_FALSE(compression_of("application/octet-stream").has_value());
}

std::unique_ptr<LayoutWriter> open_writer(const std::string& dir) {
  std::string error;
  auto w = LayoutWriter::open(dir, &error);
  INFO(error);
  REQUIRE(w);
  return w;
}

std::unique_ptr<LayoutReader> open_reader(const std::string& dir) {
  std::string error;
  auto r = LayoutReader::open(dir, &error);
  INFO(error);
  REQUIRE(r);
  return r;
}

size_t count_files(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

TEST_CASE("layout: writer creates a layout, blobs by digest, tags replace", "[oci]") {
  TempDir tmp;
  const std::string dir = tmp / "layout";
  auto w = open_writer(dir);
  CHECK(test::read_file(dir + "/oci-layout") == R"({"imageLayoutVersion":"1.0.0"})");
  auto b = w->put_blob("hello", kMediaConfig);
  REQUIRE(b);
  CHECK(b->digest == sha256_digest("hello"));
  CHECK(b->size == 5);
  CHECK(test::read_file(dir + "/blobs/sha256/" + std::string(digest_hex(b->digest))) == "hello");
  // Same bytes again: kept, no temp file left.
  REQUIRE(w->put_blob("hello", kMediaConfig));
  CHECK(count_files(dir + "/blobs/sha256") == 1);

  // A blob through create/commit.
  std::string temp;
  auto fd = w->create_blob(&temp);
  REQUIRE(fd);
  REQUIRE(::write(fd->get(), "layer", 5) == 5);
  REQUIRE(w->commit_blob(temp, sha256_digest("layer")));
  CHECK(count_files(dir + "/blobs/sha256") == 2);
  CHECK_FALSE(w->commit_blob(temp, "sha256:nothex"));
  // abort removes the temp file.
  auto fd2 = w->create_blob(&temp);
  REQUIRE(fd2);
  w->abort_blob(temp);
  CHECK(count_files(dir + "/blobs/sha256") == 2);

  auto m1 = w->put_blob("manifest one", kMediaManifest);
  auto m2 = w->put_blob("manifest two", kMediaManifest);
  REQUIRE(m1);
  REQUIRE(m2);
  REQUIRE(w->set_tag("a", *m1));
  REQUIRE(w->set_tag("b", *m1));
  REQUIRE(w->set_tag("a", *m2));  // replaces a's manifest

  // A second writer on the same layout keeps the tags.
  auto w2 = open_writer(dir);
  REQUIRE(w2->set_tag("c", *m2));

  auto r = open_reader(dir);
  REQUIRE(r->index().manifests.size() == 3);
  std::string error;
  Descriptor d;
  // resolve needs image manifests: these blobs have the manifest media type.
  REQUIRE(r->resolve("a", &d, &error));
  CHECK(d.digest == m2->digest);
  REQUIRE(r->resolve("b", &d, &error));
  CHECK(d.digest == m1->digest);
  CHECK_FALSE(r->resolve("nope", &d, &error));
  CHECK_THAT(error, Contains("no image tagged 'nope'"));
  CHECK_FALSE(r->resolve("", &d, &error));
  CHECK_THAT(error, Contains("holds 3 manifests"));

  std::string bytes;
  REQUIRE(r->read_blob(*m1, &bytes, &error));
  CHECK(bytes == "manifest one");
}

TEST_CASE("layout: resolve without a tag takes the only manifest", "[oci]") {
  TempDir tmp;
  const std::string dir = tmp / "layout";
  auto w = open_writer(dir);
  auto m = w->put_blob("{}", kMediaManifest);
  REQUIRE(m);
  REQUIRE(w->set_tag("only", *m));
  auto r = open_reader(dir);
  Descriptor d;
  std::string error;
  REQUIRE(r->resolve("", &d, &error));
  CHECK(d.digest == m->digest);
  CHECK(d.annotations.at(std::string(kRefNameAnnotation)) == "only");
}

TEST_CASE("layout: read_blob rejects a wrong digest or size", "[oci]") {
  TempDir tmp;
  const std::string dir = tmp / "layout";
  auto w = open_writer(dir);
  auto b = w->put_blob("content", kMediaConfig);
  REQUIRE(b);
  REQUIRE(w->set_tag("t", *b));
  auto r = open_reader(dir);
  std::string bytes, error;

  Descriptor wrong_size = *b;
  wrong_size.size = 6;
  CHECK_FALSE(r->read_blob(wrong_size, &bytes, &error));
  CHECK_THAT(error, Contains(b->digest));
  CHECK_FALSE(r->open_blob(wrong_size));

  // Same size, other bytes under the name.
  test::write_file(dir + "/blobs/sha256/" + std::string(digest_hex(b->digest)), "CONTENT");
  CHECK_FALSE(r->read_blob(*b, &bytes, &error));
  CHECK_THAT(error, Contains("do not match its digest"));

  Descriptor missing = desc(kMediaConfig, kD1, 1);
  CHECK_FALSE(r->read_blob(missing, &bytes, &error));
}

TEST_CASE("layout: directories that are not layouts", "[oci]") {
  TempDir tmp;
  std::string error;
  test::write_file(tmp / "full/some-file", "x");
  CHECK_FALSE(LayoutWriter::open(tmp / "full", &error));
  CHECK_THAT(error, Contains("not an OCI layout"));
  CHECK_FALSE(LayoutReader::open(tmp / "full", &error));
  CHECK_THAT(error, Contains("no oci-layout"));
  test::write_file(tmp / "file", "x");
  CHECK_FALSE(LayoutWriter::open(tmp / "file", &error));
  // Regression: an oci-layout that is JSON but not an object threw out of open().
  test::write_file(tmp / "weird/oci-layout", "[1]");
  REQUIRE_NOTHROW(LayoutWriter::open(tmp / "weird", &error));
  CHECK_FALSE(LayoutWriter::open(tmp / "weird", &error));
  CHECK_THAT(error, Contains("imageLayoutVersion"));
  CHECK_FALSE(LayoutReader::open(tmp / "weird", &error));
  // An empty directory becomes a layout.
  test::make_dir(tmp / "empty");
  CHECK(LayoutWriter::open(tmp / "empty", &error));
}

// Found by the oci_json fuzzer's deep inputs: a config nested a few hundred thousand levels
// deep parsed fine, then overflowed the stack in dump() (recursive) while its "config" object
// was copied out. Deeper than kMaxJsonDepth is now refused before parsing.
TEST_CASE("layout: documents nested too deep are refused, not a stack overflow",
          "[oci][regression]") {
  const int deep = 200000;
  const std::string bomb = std::string(deep, '[') + std::string(deep, ']');
  std::string error;
  ImageConfig c;
  CHECK_FALSE(parse_config(
      R"({"rootfs":{"type":"layers","diff_ids":[]},"config":{"a":)" + bomb + "}}", &c, &error));
  CHECK_THAT(error, Contains("image config: nested deeper than"));
  ImageManifest m;
  CHECK_FALSE(parse_manifest(R"({"schemaVersion":2,"annotations":)" + bomb + "}", &m, &error));
  CHECK_THAT(error, Contains("manifest: nested deeper than"));
  Index i;
  CHECK_FALSE(parse_index(R"({"schemaVersion":2,"manifests":)" + bomb + "}", &i, &error));
  CHECK_THAT(error, Contains("index.json: nested deeper than"));
  // Real documents are far from the limit.
  const std::string ok = std::string(100, '[') + std::string(100, ']');
  CHECK(parse_config(R"({"rootfs":{"type":"layers","diff_ids":[]},"config":{"a":)" + ok + "}}", &c,
                     &error));
}

}  // namespace
}  // namespace lamina::oci
