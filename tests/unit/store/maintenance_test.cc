// SPDX-License-Identifier: Apache-2.0
#include "lamina/store/maintenance.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "../test_util.h"

namespace lamina::store {
namespace {

using Catch::Matchers::Contains;
using test::TempDir;

bool any_contains(const std::vector<std::string>& lines, const std::string& what) {
  for (const auto& l : lines) {
    if (l.find(what) != std::string::npos) return true;
  }
  return false;
}

// A store with two layers, `kept` (named by image "app") and `dead` (named by nothing), and
// junk in tmp/.
struct Fixture {
  TempDir tmp;
  std::unique_ptr<Store> st;
  std::string shared, only_kept, only_dead;  // objects
  std::string kept, dead;                    // layers

  Fixture() {
    std::string error;
    st = Store::open(tmp / "s", true, &error);
    REQUIRE(st);
    shared = put("shared bytes");
    only_kept = put("kept bytes");
    only_dead = put(std::string(100000, 'd'));
    kept = layer({{"/a", shared, 12}, {"/b", only_kept, 10}});
    dead = layer({{"/a", shared, 12}, {"/c", only_dead, 100000}});
    Image img;
    img.name = "app";
    img.layers = {kept};
    REQUIRE(st->write_image(img, false));
    test::write_file(tmp / "s/tmp/junk-file", "x");
    test::write_file(tmp / "s/tmp/junk-dir/sub/f", "y");
  }

  std::string put(const std::string& bytes) {
    auto r = st->put_bytes(bytes);
    REQUIRE(r);
    return r->name;
  }

  struct F {
    std::string path, object;
    uint64_t size;
  };
  std::string layer(const std::vector<F>& files) {
    Manifest m;
    Entry root;
    root.path = "/";
    root.kind = EntryKind::kDir;
    root.mode = 0755;
    m.entries.push_back(root);
    for (const F& f : files) {
      Entry e;
      e.path = f.path;
      e.kind = EntryKind::kFile;
      e.mode = 0644;
      e.object = f.object;
      e.size = f.size;
      m.entries.push_back(e);
    }
    auto id = st->publish_layer(m, {});
    REQUIRE(id);
    return *id;
  }

  bool exists(const std::string& rel) { return std::filesystem::exists(tmp / ("s/" + rel)); }
  bool has_object(const std::string& name) { return exists(Store::object_path(name)); }
};

TEST_CASE("gc: removes what nothing references, keeps the rest", "[gc]") {
  Fixture f;
  auto dry = gc(*f.st, true);
  REQUIRE(dry);
  CHECK(dry->dry_run);
  // A dry run deletes nothing.
  CHECK(f.st->has_layer(f.dead));
  CHECK(f.has_object(f.only_dead));
  CHECK(f.exists("tmp/junk-dir"));

  auto real = gc(*f.st, false);
  REQUIRE(real);
  CHECK_FALSE(real->dry_run);
  for (const GcReport* r : {&*dry, &*real}) {
    CHECK(r->layers_removed == std::vector<std::string>{f.dead});
    CHECK(r->objects_removed == 1);
    CHECK(r->bytes_freed >= 100000);
    CHECK(r->tmp_removed == 2);
    CHECK(r->layers_kept == 1);
    CHECK(r->objects_kept == 2);
    CHECK(r->swept_objects);
    CHECK(r->layers_in_use.empty());
  }
  CHECK_FALSE(f.st->has_layer(f.dead));
  CHECK(f.st->has_layer(f.kept));
  CHECK_FALSE(f.has_object(f.only_dead));
  CHECK(f.has_object(f.shared));
  CHECK(f.has_object(f.only_kept));
  CHECK_FALSE(f.exists("tmp/junk-file"));
  CHECK_FALSE(f.exists("tmp/junk-dir"));

  auto again = gc(*f.st, false);
  REQUIRE(again);
  CHECK(again->layers_removed.empty());
  CHECK(again->objects_removed == 0);
  CHECK(again->tmp_removed == 0);
  auto check = fsck(*f.st, false);
  REQUIRE(check);
  CHECK(check->clean());
}

TEST_CASE("gc: a layer whose manifest a mount holds is kept", "[gc]") {
  Fixture f;
  auto fd = f.st->open_manifest(f.dead);
  REQUIRE(fd);
  REQUIRE(::flock(fd->get(), LOCK_SH) == 0);
  auto r = gc(*f.st, false);
  REQUIRE(r);
  CHECK(r->layers_removed.empty());
  CHECK(r->layers_in_use == std::vector<std::string>{f.dead});
  CHECK(any_contains(r->notes, "in use"));
  CHECK(f.st->has_layer(f.dead));
  CHECK(f.has_object(f.only_dead));
  fd->reset();
  r = gc(*f.st, false);
  REQUIRE(r);
  CHECK(r->layers_removed == std::vector<std::string>{f.dead});
}

TEST_CASE("gc: an unreadable live manifest keeps every object", "[gc]") {
  Fixture f;
  const std::string path = f.tmp / ("s/layers/" + f.kept + "/manifest");
  ::chmod(path.c_str(), 0644);
  test::write_file(path, "garbage\n");
  auto r = gc(*f.st, false);
  REQUIRE(r);
  CHECK_FALSE(r->swept_objects);
  CHECK(r->objects_removed == 0);
  CHECK(any_contains(r->notes, f.kept));
  CHECK(f.st->has_layer(f.kept));
  CHECK(f.has_object(f.only_dead));
  CHECK(f.has_object(f.only_kept));
  // The unreferenced layer itself is still removed: nothing names it.
  CHECK(r->layers_removed == std::vector<std::string>{f.dead});
}

TEST_CASE("gc: an unreadable image keeps every layer and object", "[gc]") {
  Fixture f;
  test::write_file(f.tmp / "s/images/broken.json", "{");
  auto r = gc(*f.st, false);
  REQUIRE(r);
  CHECK_FALSE(r->swept_layers);
  CHECK(r->layers_removed.empty());
  CHECK(r->objects_removed == 0);
  CHECK(f.st->has_layer(f.dead));
  CHECK(any_contains(r->notes, "image broken"));
}

TEST_CASE("gc: an image naming a missing layer is reported and kept", "[gc]") {
  Fixture f;
  Image img;
  img.name = "lost";
  img.layers = {std::string(32, 'e'), f.dead};
  REQUIRE(f.st->write_image(img, false));
  auto r = gc(*f.st, false);
  REQUIRE(r);
  CHECK(any_contains(r->notes, "image lost: names layer " + std::string(32, 'e')));
  CHECK(f.st->read_image("lost"));
  CHECK(r->layers_removed.empty());  // dead is named by "lost" now
  CHECK(f.st->has_layer(f.dead));
}

TEST_CASE("fsck: a clean store is clean", "[fsck]") {
  Fixture f;
  auto r = fsck(*f.st, false);
  REQUIRE(r);
  CHECK(r->problems.empty());
  CHECK(r->clean());
  CHECK(r->objects == 3);
  CHECK(r->layers == 2);
  CHECK(r->images == 1);
  CHECK(any_contains(r->notes, "tmp/junk-file"));
}

TEST_CASE("fsck: finds what is wrong", "[fsck]") {
  Fixture f;
  SECTION("a corrupted object") {
    const std::string path = f.tmp / ("s/" + Store::object_path(f.only_kept));
    REQUIRE(::chmod(path.c_str(), 0644) == 0);
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    UniqueFd owner(fd);
    REQUIRE(::pwrite(fd, "K", 1, 0) == 1);
    auto r = fsck(*f.st, false);
    REQUIRE(r);
    REQUIRE(r->problems.size() == 1);
    CHECK_THAT(r->problems[0], Contains("object " + f.only_kept) && Contains("corrupted"));
    auto quick = fsck(*f.st, true);
    REQUIRE(quick);
    CHECK(quick->clean());  // same size: only hashing sees it
    CHECK_FALSE(quick->hashed);
  }
  SECTION("a missing object") {
    REQUIRE(f.st->remove_object(f.only_dead));
    auto r = fsck(*f.st, true);
    REQUIRE(r);
    REQUIRE(r->problems.size() == 1);
    CHECK_THAT(r->problems[0], Contains("layer " + f.dead) && Contains("/c") &&
                                   Contains(f.only_dead + " is missing"));
  }
  SECTION("an object of the wrong size") {
    const std::string path = f.tmp / ("s/" + Store::object_path(f.only_kept));
    ::chmod(path.c_str(), 0644);
    test::write_file(path, "kept bytes!");
    auto r = fsck(*f.st, false);
    REQUIRE(r);
    CHECK(any_contains(r->problems, "holds 11 bytes, the manifest says 10"));
    CHECK(any_contains(r->problems, "corrupted"));
  }
  SECTION("an edited manifest") {
    const std::string path = f.tmp / ("s/layers/" + f.dead + "/manifest");
    ::chmod(path.c_str(), 0644);
    std::string bytes = test::read_file(path);
    bytes.replace(bytes.find("0644"), 4, "0600");
    test::write_file(path, bytes);
    auto r = fsck(*f.st, false);
    REQUIRE(r);
    REQUIRE(r->problems.size() == 1);
    CHECK_THAT(r->problems[0], Contains("layer " + f.dead) && Contains("does not match its id"));
  }
  SECTION("an image naming a missing layer") {
    REQUIRE(f.st->remove_layer(f.kept));
    auto r = fsck(*f.st, true);
    REQUIRE(r);
    REQUIRE(r->problems.size() == 1);
    CHECK_THAT(r->problems[0], Contains("image app: layer " + f.kept + " is missing"));
  }
  SECTION("junk in layers/ and objects/, a damaged image and info.json") {
    test::make_dir(f.tmp / "s/layers/not-an-id");
    test::write_file(f.tmp / "s/objects/ab/cd", "x");
    test::write_file(f.tmp / "s/images/bad.json", "[]");
    const std::string info = f.tmp / ("s/layers/" + f.kept + "/info.json");
    ::chmod(info.c_str(), 0644);
    test::write_file(info, "{");
    auto r = fsck(*f.st, true);
    REQUIRE(r);
    CHECK(r->problems.size() == 4);
    CHECK(any_contains(r->problems, "layers/not-an-id: not a layer id"));
    CHECK(any_contains(r->problems, "objects/ab/cd: not a valid object name"));
    CHECK(any_contains(r->problems, "image bad: cannot be read"));
    CHECK(any_contains(r->problems, "layer " + f.kept + ": info.json"));
  }
}

}  // namespace
}  // namespace lamina::store
