// SPDX-License-Identifier: Apache-2.0
// The store's bookkeeping commands through the real tool: images, layers, inspect, tag, rm,
// gc, fsck (human and --json output, exit statuses, what they leave on disk).

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "store/store_support.h"

namespace lamina::st {
namespace {

using nlohmann::json;

json run_json(const std::string& root, std::vector<std::string> args) {
  args.push_back("--json");
  auto r = lamina(root, args);
  INFO(r.describe());
  REQUIRE(r.succeeded());
  return json::parse(r.out);
}

std::string commit(const std::string& root, const std::string& upper, const std::string& tag,
                   const std::string& parent = "") {
  std::vector<std::string> args = {"commit", "-q", "--upper", upper, "--tag", tag};
  if (!parent.empty()) {
    args.push_back("--image");
    args.push_back(parent);
  }
  auto r = lamina(root, args);
  INFO(r.describe());
  REQUIRE(r.succeeded());
  return r.out.substr(0, 32);
}

TEST_CASE("store bookkeeping: images layers inspect tag rm", "[store]") {
  it::TempDir t;
  const std::string root = t.sub("store");
  SECTION("a store that does not exist lists nothing and is not created") {
    CHECK(run_json(root, {"images"}) == json::array());
    CHECK(run_json(root, {"layers"}) == json::array());
    CHECK_FALSE(std::filesystem::exists(root));
  }
  const std::string a = t.mkdir("a"), b = t.mkdir("b");
  std::ofstream(a + "/file") << "base content\n";
  std::ofstream(b + "/more") << "more content\n";
  const std::string base = commit(root, a, "app/base");
  const std::string top = commit(root, b, "app:1", "app/base");
  SECTION("images and layers") {
    json imgs = run_json(root, {"images"});
    REQUIRE(imgs.size() == 2);
    auto human = lamina(root, {"images"});
    CHECK(human.out.find("app:1") != std::string::npos);
    CHECK(human.out.find("app/base") != std::string::npos);
    json layers = run_json(root, {"layers"});
    CHECK(layers.size() == 2);
    json img = run_json(root, {"inspect", "app:1"});
    CHECK(img.dump().find(base) != std::string::npos);
    CHECK(img.dump().find(top) != std::string::npos);
    // A layer by a prefix of its id.
    auto r = lamina(root, {"inspect", top.substr(0, 8), "--entries"});
    INFO(r.describe());
    CHECK(r.succeeded());
    CHECK(r.out.find("/more") != std::string::npos);
  }
  SECTION("tag: a second name; never over an existing one without --force") {
    CHECK(lamina(root, {"tag", "app:1", "app:latest"}).succeeded());
    CHECK(run_json(root, {"images"}).size() == 3);
    auto r = lamina(root, {"tag", "app/base", "app:latest"});
    CHECK(r.exit_code() == 1);
    CHECK(r.err.find("exists") != std::string::npos);
    CHECK(lamina(root, {"tag", "app/base", "app:latest", "--force"}).succeeded());
    auto nope = lamina(root, {"tag", "missing", "x"});
    CHECK(nope.exit_code() != 0);
    CHECK(nope.err.find("missing") != std::string::npos);
  }
  SECTION("rm: removes the names given, reports the unknown ones, layers stay until gc") {
    auto r = lamina(root, {"rm", "nope", "app:1"});
    CHECK(r.exit_code() == 1);
    CHECK(r.err.find("nope") != std::string::npos);
    CHECK(run_json(root, {"images"}).size() == 1);
    CHECK(run_json(root, {"layers"}).size() == 2);
    json dry = run_json(root, {"gc", "--dry-run"});
    CHECK(run_json(root, {"layers"}).size() == 2);
    json gc = run_json(root, {"gc"});
    CHECK(gc.dump() == dry.dump().replace(dry.dump().find("true"), 4, "false"));
    CHECK(run_json(root, {"layers"}).size() == 1);
    CHECK(lamina(root, {"fsck"}).succeeded());
  }
}

TEST_CASE("gc frees what no image names; fsck names what is broken", "[store]") {
  it::TempDir t;
  const std::string root = t.sub("store");
  const std::string a = t.mkdir("a"), b = t.mkdir("b");
  std::ofstream(a + "/shared") << "in both\n";
  std::ofstream(b + "/shared") << "in both\n";
  std::ofstream(b + "/only-b") << std::string(100000, 'b');
  commit(root, a, "keep");
  const std::string gone = commit(root, b, "drop");
  REQUIRE(lamina(root, {"rm", "drop"}).succeeded());
  json gc = run_json(root, {"gc"});
  INFO(gc.dump(2));
  CHECK(gc.dump().find(gone) != std::string::npos);
  auto fsck = lamina(root, {"fsck"});
  INFO(fsck.describe() << fsck.out);
  REQUIRE(fsck.succeeded());
  // "keep" still reads: its shared object survived.
  json layers = run_json(root, {"layers"});
  REQUIRE(layers.size() == 1);

  // Corrupt the one object: fsck names it and fails.
  std::string object;
  for (auto& e : std::filesystem::recursive_directory_iterator(root + "/objects")) {
    if (e.is_regular_file()) object = e.path().string();
  }
  REQUIRE(!object.empty());
  ::chmod(object.c_str(), 0644);
  {
    std::fstream f(object, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.put('X');
  }
  auto bad = lamina(root, {"fsck"});
  CHECK(bad.exit_code() == 1);
  std::string name = std::filesystem::path(object).parent_path().filename().string() +
                     std::filesystem::path(object).filename().string();
  CHECK((bad.out + bad.err).find(name) != std::string::npos);
}

}  // namespace
}  // namespace lamina::st
