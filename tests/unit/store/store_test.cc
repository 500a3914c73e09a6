// SPDX-License-Identifier: Apache-2.0
#include "lamina/store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../test_util.h"
#include "lamina/base/hash.h"
#include "lamina/base/sys.h"

namespace lamina::store {
namespace {

using Catch::Matchers::Contains;
using test::TempDir;

std::unique_ptr<Store> make_store(const std::string& root) {
  std::string error;
  auto st = Store::open(root, true, &error);
  INFO(error);
  REQUIRE(st);
  return st;
}

// A regular file with `content`, opened read-only.
UniqueFd source_file(const TempDir& dir, const std::string& name, const std::string& content) {
  test::write_file(dir / name, content);
  int fd = ::open((dir / name).c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  return UniqueFd(fd);
}

Manifest small_manifest(const std::string& object, uint64_t size) {
  Manifest m;
  Entry root;
  root.path = "/";
  root.kind = EntryKind::kDir;
  root.mode = 0755;
  Entry f;
  f.path = "/file";
  f.kind = EntryKind::kFile;
  f.mode = 0644;
  f.size = size;
  f.object = object;
  m.entries = {root, f};
  return m;
}

TEST_CASE("store: create makes a 0700 store, open reads it back", "[store]") {
  TempDir tmp;
  const std::string root = tmp / "a/b/store";
  make_store(root);
  struct stat st;
  REQUIRE(::stat(root.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  std::string error;
  CHECK(Store::open(root, false, &error));
}

TEST_CASE("store: a root given with a trailing slash is still made 0700", "[store][regression]") {
  TempDir tmp;
  make_store(tmp / "s/");
  struct stat st;
  REQUIRE(::stat((tmp / "s").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
}

TEST_CASE("store: open refuses what is not a store", "[store]") {
  TempDir tmp;
  std::string error;
  SECTION("missing, not created") {
    CHECK_FALSE(Store::open(tmp / "none", false, &error));
    CHECK_THAT(error, Contains("does not exist"));
  }
  SECTION("a non-empty directory that is not a store") {
    test::write_file(tmp / "data/precious", "x");
    CHECK_FALSE(Store::open(tmp / "data", true, &error));
    CHECK_THAT(error, Contains("not a lamina store"));
    CHECK(test::read_file(tmp / "data/precious") == "x");
  }
  SECTION("another store version") {
    make_store(tmp / "s");
    ::chmod((tmp / "s/store.json").c_str(), 0644);
    test::write_file(tmp / "s/store.json", R"({"version": 7, "object_hash": "xxh3-128"})");
    CHECK_FALSE(Store::open(tmp / "s", false, &error));
    CHECK_THAT(error, Contains("version 7"));
  }
  SECTION("a damaged store.json is an error, not an exception (regression)") {
    make_store(tmp / "s");
    test::write_file(tmp / "s/store.json", R"({"version": 1, "object_hash": 5})");
    CHECK_FALSE(Store::open(tmp / "s", false, &error));
    CHECK_THAT(error, Contains("object hash"));
  }
}

TEST_CASE("store: put_object stores equal bytes once", "[store]") {
  TempDir tmp;
  auto st = make_store(tmp / "s");
  auto a = source_file(tmp, "a", "hello");
  auto b = source_file(tmp, "b", "hello");
  auto r1 = st->put_object(a.get());
  auto r2 = st->put_object(b.get());
  REQUIRE(r1);
  REQUIRE(r2);
  CHECK(r1->added);
  CHECK_FALSE(r2->added);
  CHECK(r1->name == r2->name);
  CHECK(r1->name == hash_bytes("hello").hex());
  CHECK(r1->size == 5);
  auto obj = st->stat_object(r1->name);
  REQUIRE(obj);
  CHECK((obj->st_mode & 07777) == 0444);
  CHECK(test::read_file(tmp / ("s/" + Store::object_path(r1->name))) == "hello");
  int count = 0;
  REQUIRE(st->list_objects([&](const std::string&, uint64_t) {
    ++count;
    return Status{};
  }));
  CHECK(count == 1);
}

TEST_CASE("store: a sparse file stays sparse in the object", "[store]") {
  TempDir tmp;
  auto st = make_store(tmp / "s");
  const off_t size = 64 << 20;
  {
    int fd = ::open((tmp / "sparse").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    UniqueFd owner(fd);
    REQUIRE(::ftruncate(fd, size) == 0);
    REQUIRE(::pwrite(fd, "end", 3, size - 3) == 3);
  }
  int fd = ::open((tmp / "sparse").c_str(), O_RDONLY | O_CLOEXEC);
  UniqueFd src(fd);
  auto r = st->put_object(src.get());
  REQUIRE(r);
  CHECK(r->size == static_cast<uint64_t>(size));
  auto obj = st->stat_object(r->name);
  REQUIRE(obj);
  CHECK(obj->st_size == size);
  CHECK(obj->st_blocks * 512 < size / 4);
  auto ofd = st->open_object(r->name);
  REQUIRE(ofd);
  auto h = hash_fd(ofd->get());
  REQUIRE(h);
  CHECK(h->hex() == r->name);
}

TEST_CASE("store: a hash collision stores the new bytes under HASH-1", "[store]") {
  TempDir tmp;
  auto st = make_store(tmp / "s");
  const std::string hex = hash_bytes("real bytes").hex();
  // Simulate a colliding object: other bytes under the hash of "real bytes".
  const std::string impostor = tmp / ("s/" + Store::object_path(hex));
  test::write_file(impostor, "other bytes");
  auto r = st->put_bytes("real bytes");
  REQUIRE(r);
  CHECK(r->name == hex + "-1");
  CHECK(r->added);
  CHECK(test::read_file(impostor) == "other bytes");
  CHECK(test::read_file(tmp / ("s/" + Store::object_path(hex + "-1"))) == "real bytes");
  auto again = source_file(tmp, "again", "real bytes");
  auto r2 = st->put_object(again.get());
  REQUIRE(r2);
  CHECK(r2->name == hex + "-1");
  CHECK_FALSE(r2->added);
}

TEST_CASE("store: processes creating one store at once all open it", "[store][regression]") {
  // Regression: an open that read no store.json, then listed the directory after another one
  // had renamed store.json in, called the new store "not a lamina store".
  for (int round = 0; round < 1000; ++round) {
    TempDir tmp;
    constexpr int kThreads = 6;
    std::vector<std::string> errors(kThreads);
    std::vector<char> opened(kThreads, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back(
          [&, i] { opened[i] = Store::open(tmp / "s", true, &errors[i]) != nullptr; });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
      INFO("round " << round << ", opener " << i << ": " << errors[i]);
      CHECK(opened[i]);
    }
  }
}

TEST_CASE("store: concurrent put_object of the same content", "[store]") {
  TempDir tmp;
  auto st = make_store(tmp / "s");
  test::write_file(tmp / "src", std::string(300000, 'q'));
  constexpr int kThreads = 8;
  std::vector<Result<PutResult>> results(kThreads, Error{EIO, "not run"});
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto lock = st->lock_shared();
      int fd = ::open((tmp / "src").c_str(), O_RDONLY | O_CLOEXEC);
      UniqueFd src(fd);
      results[i] = st->put_object(src.get());
    });
  }
  for (auto& t : threads) t.join();
  int added = 0;
  for (auto& r : results) {
    REQUIRE(r);
    CHECK(r->name == results[0]->name);
    added += r->added ? 1 : 0;
  }
  CHECK(added == 1);
  int count = 0;
  REQUIRE(st->list_objects([&](const std::string&, uint64_t) {
    ++count;
    return Status{};
  }));
  CHECK(count == 1);
  // Nothing left behind in tmp/.
  int junk = 0;
  REQUIRE(sys::read_dir(st->tmp_fd(), [&](std::string_view, unsigned char, ino_t) {
    ++junk;
    return Status{};
  }));
  CHECK(junk == 0);
}

TEST_CASE("store: remove_object refuses names that are not object names", "[store][regression]") {
  TempDir tmp;
  auto st = make_store(tmp / "s");
  test::write_file(tmp / "s/victim", "x");
  CHECK(st->remove_object("../victim").code() == EINVAL);
  CHECK(st->remove_object("").code() == EINVAL);
  CHECK(test::read_file(tmp / "s/victim") == "x");
  auto r = st->put_bytes("gone");
  REQUIRE(r);
  CHECK(st->remove_object(r->name));
  CHECK(st->remove_object(r->name).code() == ENOENT);
}

TEST_CASE("store: publish_layer is idempotent and validates", "[store]") {
  TempDir tmp;
  auto st = make_store(tmp / "s");
  auto obj = st->put_bytes("abc");
  REQUIRE(obj);
  Manifest m = small_manifest(obj->name, 3);
  LayerInfo info;
  info.files = 1;
  auto id1 = st->publish_layer(m, info);
  REQUIRE(id1);
  CHECK(*id1 == Store::layer_id(encode(m)));
  auto id2 = st->publish_layer(m, info);
  REQUIRE(id2);
  CHECK(*id2 == *id1);
  Manifest back;
  std::string error;
  REQUIRE(st->read_manifest(*id1, &back, &error));
  CHECK(back.entries == m.entries);
  auto li = st->read_layer_info(*id1);
  REQUIRE(li);
  CHECK(li->files == 1);
  CHECK(li->manifest_bytes == encode(m).size());
  auto resolved = st->resolve_layer(id1->substr(0, 6));
  REQUIRE(resolved);
  CHECK(*resolved == *id1);
  CHECK(st->resolve_layer("abc").code() == ENOENT);
  auto layers = st->list_layers();
  REQUIRE(layers);
  CHECK(layers->size() == 1);

  SECTION("an invalid manifest is refused (regression)") {
    Manifest bad;
    bad.entries = {m.entries[1]};
    CHECK(st->publish_layer(bad, {}).code() == EINVAL);
  }
  SECTION("a damaged info.json is an error, not an exception (regression)") {
    const std::string path = tmp / ("s/layers/" + *id1 + "/info.json");
    ::chmod(path.c_str(), 0644);
    test::write_file(path, R"({"created": 5, "files": "many"})");
    CHECK(st->read_layer_info(*id1).code() == EBADMSG);
  }
  SECTION("remove_layer") {
    REQUIRE(st->remove_layer(*id1));
    CHECK_FALSE(st->has_layer(*id1));
    CHECK(st->remove_layer(*id1).code() == ENOENT);
  }
}

TEST_CASE("store: images write, read, list, remove", "[store]") {
  TempDir tmp;
  auto st = make_store(tmp / "s");
  Image img;
  img.name = "library/app:1.0";
  img.layers = {std::string(32, 'a'), std::string(32, 'b')};
  img.config_json = R"({"Env":["A=1"]})";
  REQUIRE(st->write_image(img, false));
  auto back = st->read_image(img.name);
  REQUIRE(back);
  CHECK(back->layers == img.layers);
  CHECK(back->config_json == img.config_json);
  CHECK_FALSE(back->created.empty());

  CHECK(st->write_image(img, false).code() == EEXIST);
  img.layers.pop_back();
  REQUIRE(st->write_image(img, true));
  CHECK(st->read_image(img.name)->layers.size() == 1);

  Image other = img;
  other.name = "zeta";
  REQUIRE(st->write_image(other, false));
  auto all = st->list_images();
  REQUIRE(all);
  REQUIRE(all->size() == 2);
  CHECK((*all)[0].name == "library/app:1.0");
  CHECK((*all)[1].name == "zeta");

  REQUIRE(st->remove_image("zeta"));
  CHECK(st->remove_image("zeta").code() == ENOENT);
  CHECK(st->read_image("zeta").code() == ENOENT);

  SECTION("a damaged record is skipped by list_images, seen by list_image_names") {
    test::write_file(tmp / "s/images/broken.json", R"({"layers": "no"})");
    CHECK(st->list_images()->size() == 1);
    CHECK(st->list_image_names()->size() == 2);
    CHECK(st->read_image("broken").code() == EBADMSG);
  }
}

TEST_CASE("store: image names", "[store]") {
  std::string why;
  for (const char* good : {"a", "library/app:1.0", "x@sha", "A_b-c.d"}) {
    INFO(good);
    CHECK(Store::valid_image_name(good, &why));
  }
  for (const char* bad : {"", "/a", ".a", "-a", "a/", "a//b", "a/.b", "a..b", "a b", "a%2Fb"}) {
    INFO(bad);
    CHECK_FALSE(Store::valid_image_name(bad, &why));
    CHECK_FALSE(why.empty());
  }
}

TEST_CASE("store: a name too long once stored is refused up front", "[store][regression]") {
  TempDir tmp;
  auto st = make_store(tmp / "s");
  std::string name = "a";
  while (name.size() < 180) name += "/a";
  std::string why;
  CHECK_FALSE(Store::valid_image_name(name, &why));
  CHECK_THAT(why, Contains("too long"));
  Image img;
  img.name = name;
  CHECK(st->write_image(img, false).code() == EINVAL);
}

// The store_json counterpart of the oci_json finding: read_image copies "config" out with
// dump(), which recursed once per level of a record nested deep enough to overflow the stack.
TEST_CASE("store: an image record nested too deep is damaged, not a crash", "[store][regression]") {
  TempDir tmp;
  auto st = make_store(tmp / "s");
  const int deep = 200000;
  test::write_file(tmp / "s/images/deep.json", R"({"layers":[],"created":"","config":{"a":)" +
                                                   std::string(deep, '[') + std::string(deep, ']') +
                                                   "}}");
  CHECK(st->read_image("deep").code() == EBADMSG);
}

}  // namespace
}  // namespace lamina::store
