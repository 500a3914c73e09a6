// SPDX-License-Identifier: Apache-2.0
// lamina snapshot / restore / snapshots, end to end with the real tool:
//  - a chain of snapshots across every kind of change (add, modify, delete, a directory
//    replaced by a file and back, hard links, xattrs, a sparse file); each snapshot restored
//    into a fresh directory equals a `cp -a` copy taken when it was made (tree, mtimes,
//    hard-link identity, holes);
//  - an incremental snapshot after changing 1 file of 100 holds only that file;
//  - a touched but unchanged file adds no object bytes;
//  - restore refuses an existing DEST and leaves it untouched; a restore killed with SIGKILL
//    leaves DEST absent.

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "store/store_support.h"
#include "write/write_support.h"

namespace lamina::st {
namespace {

namespace fs = std::filesystem;

void write(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
  REQUIRE(f.good());
}

nlohmann::json layer_entries(const std::string& root, const std::string& layer) {
  auto r = lamina(root, {"inspect", layer, "--entries", "--json"});
  INFO(r.describe());
  REQUIRE(r.succeeded());
  return nlohmann::json::parse(r.out);
}

std::vector<std::string> entry_paths(const nlohmann::json& j) {
  std::vector<std::string> out;
  const auto& entries = j["entries_list"];
  for (const auto& e : entries) out.push_back(e["path"].get<std::string>());
  return out;
}

TEST_CASE("snapshot chain: restore of each snapshot equals the directory it was made of",
          "[volume]") {
  it::TempDir tmp;
  const std::string root = tmp.sub("store");
  const std::string vol = tmp.mkdir("vol");
  // State 1.
  fs::create_directories(vol + "/a/b");
  write(vol + "/a/b/one", "one\n");
  write(vol + "/a/two", "two\n");
  write(vol + "/keep", "keep\n");
  write(vol + "/gone", "gone\n");
  fs::create_directories(vol + "/swap/inner");
  write(vol + "/swap/inner/f", "f\n");
  write(vol + "/link1", "linked\n");
  REQUIRE(::link((vol + "/link1").c_str(), (vol + "/link2").c_str()) == 0);
  REQUIRE(::setxattr((vol + "/keep").c_str(), "user.k", "v1", 2, 0) == 0);
  sh_ok(
      fmt::format("truncate -s 8M {0}/sparse && printf head | dd of={0}/sparse conv=notrunc "
                  "status=none && printf tail | dd of={0}/sparse bs=1 seek=6000000 conv=notrunc "
                  "status=none",
                  vol));
  REQUIRE(::symlink("keep", (vol + "/sym").c_str()) == 0);
  REQUIRE(::mkfifo((vol + "/fifo").c_str(), 0640) == 0);
  REQUIRE(::chown((vol + "/a/two").c_str(), 1000, 1001) == 0);
  REQUIRE(::chmod((vol + "/a/b").c_str(), 0750) == 0);
  std::vector<std::string> expected;
  auto take = [&](int n) {
    std::string copy = tmp.sub(fmt::format("expected{}", n));
    sh_ok(fmt::format("cp -a {} {}", vol, copy));
    expected.push_back(copy);
    lamina_ok(root, {"snapshot", vol, "--tag", "vol", "-q"});
  };
  take(1);
  // State 2: add, modify, delete, dir -> file, xattr change, a new hard link, sparse rewrite.
  write(vol + "/new", "new\n");
  write(vol + "/a/two", "two, modified\n");
  fs::remove(vol + "/gone");
  fs::remove_all(vol + "/swap");
  write(vol + "/swap", "now a file\n");
  REQUIRE(::setxattr((vol + "/keep").c_str(), "user.k", "v2", 2, 0) == 0);
  REQUIRE(::link((vol + "/link1").c_str(), (vol + "/a/link3").c_str()) == 0);
  sh_ok(
      fmt::format("printf mid | dd of={0}/sparse bs=1 seek=3000000 conv=notrunc status=none", vol));
  take(2);
  // State 3: file -> dir, a hard link broken up, the whole old content of a dir gone.
  fs::remove(vol + "/swap");
  fs::create_directories(vol + "/swap/again");
  write(vol + "/swap/again/g", "g\n");
  fs::remove(vol + "/link2");
  write(vol + "/link2", "linked\n");
  fs::remove_all(vol + "/a/b");
  fs::remove(vol + "/a/two");
  fs::remove(vol + "/a/link3");
  write(vol + "/a/fresh", "fresh\n");
  take(3);
  // State 4: nothing changed.
  take(4);

  auto list = lamina(root, {"snapshots", "vol", "--json"});
  REQUIRE(list.succeeded());
  auto chain = nlohmann::json::parse(list.out);
  REQUIRE(chain.size() == 4);
  CHECK(chain[0]["tag"] == "1");
  CHECK(chain[3]["tag"] == "4");

  for (int n = 1; n <= 4; ++n) {
    INFO("snapshot " << n);
    const std::string dest = tmp.sub(fmt::format("restored{}", n));
    lamina_ok(root, {"restore", fmt::format("vol:{}", n), dest, "-q"});
    check_restored(expected[n - 1], dest);
  }

  // --into-existing: a directory holding the latest state plus junk becomes each snapshot.
  const std::string upd = tmp.sub("updated");
  sh_ok(
      fmt::format("cp -a {} {} && mkdir -p {}/junk/deep && echo junk > {}/junk/deep/j && echo x "
                  "> {}/keep",
                  vol, upd, upd, upd, upd));
  for (int n : {1, 3, 2}) {
    INFO("into-existing, snapshot " << n);
    lamina_ok(root, {"restore", fmt::format("vol:{}", n), upd, "--into-existing", "-q"});
    check_restored(expected[n - 1], upd);
  }
}

// The objects the files of an image's layers name.
std::set<std::string> objects_of(const std::string& root, const std::string& image) {
  std::set<std::string> out;
  for (const std::string& layer : image_layers(root, image)) {
    const nlohmann::json entries = layer_entries(root, layer);
    for (const auto& e : entries["entries_list"]) {
      if (e.contains("object")) out.insert(e["object"].get<std::string>());
    }
  }
  return out;
}

std::vector<std::string> chain_tags(const std::string& root, const std::string& name) {
  auto r = lamina(root, {"snapshots", name, "--json"});
  INFO(r.describe());
  REQUIRE(r.succeeded());
  std::vector<std::string> out;
  for (const auto& s : nlohmann::json::parse(r.out)) out.push_back(s["tag"].get<std::string>());
  return out;
}

TEST_CASE("--keep N squashes older snapshots: the kept ones restore the same, gc frees the rest",
          "[volume][keep]") {
  it::TempDir tmp;
  const std::string root = tmp.sub("store");
  const std::string vol = tmp.mkdir("vol");
  std::vector<std::string> expected;
  auto take = [&](int n) {
    std::string copy = tmp.sub(fmt::format("expected{}", n));
    sh_ok(fmt::format("cp -a {} {}", vol, copy));
    expected.push_back(copy);
    lamina_ok(root, {"snapshot", vol, "--tag", "vol", "-q"});
  };
  // 1: a tree with a hard link, an xattr and a directory that later becomes a file.
  fs::create_directories(vol + "/dir/sub");
  write(vol + "/dir/sub/inner", "only in 1 and 2\n");
  write(vol + "/keep", "keep, version 1\n");
  write(vol + "/gone-in-2", "only in 1\n");
  write(vol + "/link1", "linked\n");
  REQUIRE(::link((vol + "/link1").c_str(), (vol + "/link2").c_str()) == 0);
  REQUIRE(::setxattr((vol + "/keep").c_str(), "user.k", "v1", 2, 0) == 0);
  fs::create_directories(vol + "/emptied");
  write(vol + "/emptied/old", "old\n");
  take(1);
  // 2: modify, add, delete; a directory's whole content replaced (opaque).
  write(vol + "/keep", "keep, version 2\n");
  write(vol + "/added-in-2", "added in 2, gone in 3\n");
  fs::remove(vol + "/gone-in-2");
  fs::remove(vol + "/emptied/old");
  write(vol + "/emptied/new", "new\n");
  take(2);
  // 3: the directory replaced by a file; a hard link broken up; a delete of 2's addition.
  fs::remove_all(vol + "/dir");
  write(vol + "/dir", "a file now\n");
  fs::remove(vol + "/added-in-2");
  fs::remove(vol + "/link2");
  write(vol + "/link2", "linked, alone\n");
  REQUIRE(::setxattr((vol + "/keep").c_str(), "user.k", "v3", 2, 0) == 0);
  take(3);
  // 4: the file becomes a directory again; a modify.
  fs::remove(vol + "/dir");
  fs::create_directories(vol + "/dir");
  write(vol + "/dir/again", "again\n");
  write(vol + "/keep", "keep, version 4\n");
  take(4);
  const std::set<std::string> before = objects_of(root, "vol:4");  // every layer's

  SECTION("a bad N is a clear error and changes nothing") {
    for (const std::string bad : {"0", "-1", "two", "", "1x"}) {
      INFO("--keep '" << bad << "'");
      auto r = lamina(root, {"snapshots", "vol", "--keep", bad});
      CHECK_FALSE(r.succeeded());
      CHECK(r.err.find("--keep") != std::string::npos);
      auto s = lamina(root, {"snapshot", vol, "--tag", "vol", "--keep", bad});
      CHECK_FALSE(s.succeeded());
      CHECK(s.err.find("--keep") != std::string::npos);
    }
    CHECK(chain_tags(root, "vol") == std::vector<std::string>{"1", "2", "3", "4"});
    CHECK_FALSE(lamina(root, {"snapshots", "nosuchvolume", "--keep", "1"}).succeeded());
  }

  SECTION("keep 2, gc, restore the kept ones, then the chain goes on") {
    auto pruned = lamina(root, {"snapshots", "vol", "--keep", "2"});
    INFO(pruned.describe());
    REQUIRE(pruned.succeeded());
    CHECK(pruned.err.find("removed vol:1 vol:2") != std::string::npos);
    CHECK(chain_tags(root, "vol") == std::vector<std::string>{"3", "4"});
    // The kept snapshots share the squashed bottom layer; 4 adds its own delta to it.
    const auto l3 = image_layers(root, "vol:3");
    const auto l4 = image_layers(root, "vol:4");
    REQUIRE(l3.size() == 1);
    REQUIRE(l4.size() == 2);
    CHECK(l4[0] == l3[0]);
    // What the kept snapshots name now: their trees' objects only.
    std::set<std::string> live = objects_of(root, "vol:3");
    live.merge(objects_of(root, "vol:4"));

    auto gc = lamina(root, {"gc", "--json"});
    INFO(gc.describe());
    REQUIRE(gc.succeeded());
    auto g = nlohmann::json::parse(gc.out);
    CHECK(g["layers_removed"].size() == 3);  // the old layers of 1, 2 and 3
    std::set<std::string> only_pruned;
    for (const std::string& o : before) {
      if (live.count(o) == 0) only_pruned.insert(o);
    }
    CHECK(only_pruned.size() == 5);  // 1: inner, keep, gone-in-2, old; 2: added-in-2
    CHECK(g["objects_removed"] == only_pruned.size());
    for (const std::string& o : only_pruned) {
      INFO(o);
      CHECK_FALSE(fs::exists(root + "/objects/" + o.substr(0, 2) + "/" + o.substr(2)));
    }
    for (int n : {3, 4}) {
      INFO("snapshot " << n);
      const std::string dest = tmp.sub(fmt::format("restored{}", n));
      lamina_ok(root, {"restore", fmt::format("vol:{}", n), dest, "-q"});
      check_restored(expected[n - 1], dest);
    }

    // The next snapshot is an increment on the pruned chain, numbered after the last one.
    write(vol + "/keep", "keep, version 5\n");
    auto next = lamina(root, {"snapshot", vol, "--tag", "vol", "--json", "--keep", "2"});
    INFO(next.describe());
    REQUIRE(next.succeeded());
    auto j = nlohmann::json::parse(next.out);
    CHECK(j["image"] == "vol:5");
    CHECK(j["removed"] == nlohmann::json::array({"vol:3"}));
    CHECK(entry_paths(layer_entries(root, j["layer"].get<std::string>())) ==
          std::vector<std::string>{"/", "/keep"});
    CHECK(chain_tags(root, "vol") == std::vector<std::string>{"4", "5"});
    for (int n : {4, 5}) {
      INFO("snapshot " << n << " after the second prune");
      const std::string dest = tmp.sub(fmt::format("again{}", n));
      lamina_ok(root, {"restore", fmt::format("vol:{}", n), dest, "-q"});
      check_restored(n == 4 ? expected[3] : vol, dest);
    }
  }
}

TEST_CASE("incremental snapshot: 1 changed file of 100, touched files add nothing", "[volume]") {
  it::TempDir tmp;
  const std::string root = tmp.sub("store");
  const std::string vol = tmp.mkdir("vol");
  fs::create_directories(vol + "/d");
  for (int i = 0; i < 100; ++i) write(vol + fmt::format("/d/f{:03}", i), fmt::format("{}\n", i));
  lamina_ok(root, {"snapshot", vol, "--tag", "v:first", "-q"});
  write(vol + "/d/f042", "changed\n");
  auto r = lamina(root, {"snapshot", vol, "--tag", "v:second", "--json"});
  INFO(r.describe());
  REQUIRE(r.succeeded());
  auto j = nlohmann::json::parse(r.out);
  auto paths = entry_paths(layer_entries(root, j["layer"].get<std::string>()));
  CHECK(paths == std::vector<std::string>{"/", "/d", "/d/f042"});
  CHECK(j["changed"] == 1);
  CHECK(j["added"] == 0);

  // Touched, not changed: the same object, no new bytes; only the mtime is in the delta.
  sh_ok(fmt::format("touch -d '2001-01-01 00:00:00' {}/d/f007", vol));
  auto t = lamina(root, {"snapshot", vol, "--tag", "v", "--json"});
  REQUIRE(t.succeeded());
  auto tj = nlohmann::json::parse(t.out);
  CHECK(tj["bytes_added"] == 0);
  CHECK(tj["objects_added"] == 0);
  CHECK(entry_paths(layer_entries(root, tj["layer"].get<std::string>())) ==
        std::vector<std::string>{"/", "/d", "/d/f007"});
  // Nothing changed: nothing is read again once the index covers old files, and only "/".
  auto same = lamina(root, {"snapshot", vol, "--tag", "v", "--json"});
  REQUIRE(same.succeeded());
  auto sj = nlohmann::json::parse(same.out);
  CHECK(sj["objects_added"] == 0);
  CHECK(entry_paths(layer_entries(root, sj["layer"].get<std::string>())) ==
        std::vector<std::string>{"/"});
}

TEST_CASE("the volume index: unchanged files are not read again", "[volume]") {
  it::TempDir tmp;
  const std::string root = tmp.sub("store");
  const std::string vol = tmp.mkdir("vol");
  for (int i = 0; i < 100; ++i) write(vol + fmt::format("/f{:03}", i), fmt::format("{}\n", i));
  // Files whose ctime is within 2 s of a snapshot stay out of its index (racy).
  std::this_thread::sleep_for(std::chrono::milliseconds(3100));
  auto first = lamina(root, {"snapshot", vol, "--tag", "ix", "--json"});
  REQUIRE(first.succeeded());
  CHECK(nlohmann::json::parse(first.out)["files_read"] == 100);
  write(vol + "/f050", "changed\n");
  auto second = lamina(root, {"snapshot", vol, "--tag", "ix", "--json"});
  REQUIRE(second.succeeded());
  auto j = nlohmann::json::parse(second.out);
  CHECK(j["files_read"] == 1);
  CHECK(j["changed"] == 1);
  // A damaged index is ignored: everything is read, the result is the same.
  write(root + "/volumes/ix.index", "garbage\n");
  write(vol + "/f051", "changed too\n");
  auto third = lamina(root, {"snapshot", vol, "--tag", "ix", "--json"});
  INFO(third.describe());
  REQUIRE(third.succeeded());
  auto k = nlohmann::json::parse(third.out);
  CHECK(k["files_read"] == 100);
  CHECK(k["changed"] == 1);
}

TEST_CASE("restore refuses an existing DEST; a killed restore leaves DEST absent", "[volume]") {
  it::TempDir tmp;
  const std::string root = tmp.sub("store");
  const std::string vol = tmp.mkdir("vol");
  write(vol + "/small", "small\n");
  sh_ok(fmt::format("head -c 400M /dev/urandom > {}/big", vol));
  lamina_ok(root, {"snapshot", vol, "--tag", "big", "-q"});

  const std::string dest = tmp.mkdir("dest");
  write(dest + "/mine", "mine\n");
  auto r = lamina(root, {"restore", "big", dest});
  CHECK_FALSE(r.succeeded());
  CHECK(r.err.find("exists") != std::string::npos);
  CHECK(fs::exists(dest + "/mine"));
  CHECK_FALSE(fs::exists(dest + "/big"));

  const std::string dest2 = tmp.sub("dest2");
  it::Child child({lamina_bin(), "--root", root, "restore", "big", dest2});
  // Kill it while the big file is being copied (its temp dir exists).
  bool seen = false;
  for (int i = 0; i < 2000 && !seen; ++i) {
    for (const auto& e : fs::directory_iterator(tmp.path())) {
      if (e.path().filename().string().rfind("dest2.lamina-restore-", 0) == 0) seen = true;
    }
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(seen);
  ::kill(child.pid(), SIGKILL);
  child.wait(std::chrono::seconds(10));
  CHECK_FALSE(fs::exists(dest2));
}

TEST_CASE("restore never writes outside DEST, whatever DEST holds", "[volume][security]") {
  it::TempDir tmp;
  const std::string root = tmp.sub("store");
  const std::string vol = tmp.mkdir("vol");
  fs::create_directories(vol + "/etc/sub");
  write(vol + "/etc/passwd", "image's\n");
  write(vol + "/etc/sub/f", "f\n");
  write(vol + "/file", "file\n");
  lamina_ok(root, {"snapshot", vol, "--tag", "v", "-q"});
  const std::string outside = tmp.mkdir("outside");
  write(outside + "/passwd", "host's\n");
  write(outside + "/file", "host file\n");
  const auto before = wt::tree_listing(outside);

  // DEST's own entries are links leading out where the image has a directory and a file.
  const std::string dest = tmp.mkdir("dest");
  fs::create_symlink(outside, dest + "/etc");
  fs::create_symlink("../outside/file", dest + "/file");
  lamina_ok(root, {"restore", "v:1", dest, "--into-existing", "-q"});
  CHECK(wt::tree_listing(outside) == before);
  CHECK_FALSE(fs::is_symlink(dest + "/etc"));
  CHECK_FALSE(fs::is_symlink(dest + "/file"));
  check_restored(vol, dest);

  // DEST itself a symlink: refused, not followed.
  const std::string linked = tmp.sub("linked");
  fs::create_symlink(outside, linked);
  CHECK_FALSE(lamina(root, {"restore", "v:1", linked, "--into-existing", "-q"}).succeeded());
  CHECK_FALSE(lamina(root, {"restore", "v:1", linked, "-q"}).succeeded());
  CHECK(wt::tree_listing(outside) == before);
}

TEST_CASE("snapshot: a directory swapped for a symlink while it runs stores nothing from outside",
          "[volume][security]") {
  // A volume in use changes under the snapshot: between the walk and the read of a file, a
  // directory on its path becomes a symlink to a host directory holding files of the same
  // names. What the snapshot stores must never be the host's bytes.
  it::TempDir tmp;
  const std::string root = tmp.sub("store");
  const std::string vol = tmp.mkdir("vol");
  const std::string outside = tmp.mkdir("outside");
  constexpr int kFiles = 300;
  fs::create_directories(vol + "/d");
  for (int i = 0; i < kFiles; ++i) {
    write(fmt::format("{}/d/f{}", vol, i), fmt::format("volume {}\n", i));
    write(fmt::format("{}/f{}", outside, i), fmt::format("HOST SECRET {}\n", i));
  }
  std::atomic<bool> stop{false};
  std::thread flipper([&] {
    const std::string d = vol + "/d", away = vol + "/d.away", link = vol + "/d.link";
    ::symlink(outside.c_str(), link.c_str());
    while (!stop) {
      // d -> away, link -> d (a symlink now), back again.
      if (::rename(d.c_str(), away.c_str()) != 0) continue;
      ::rename(link.c_str(), d.c_str());
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      ::rename(d.c_str(), link.c_str());
      ::rename(away.c_str(), d.c_str());
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  int ok = 0;
  for (int i = 0; i < 15; ++i) {
    // A new volume name each round: a full snapshot, every file read (no index).
    auto r = lamina(root, {"snapshot", vol, "--tag", fmt::format("v{}", i), "-q"});
    if (r.succeeded()) ++ok;
  }
  stop = true;
  flipper.join();
  INFO(ok << " of 15 snapshots succeeded");
  // No object in the store holds a host file's bytes.
  int objects = 0;
  for (const auto& e : fs::recursive_directory_iterator(root + "/objects")) {
    if (!e.is_regular_file()) continue;
    ++objects;
    std::ifstream in(e.path(), std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(e.path());
    CHECK(data.find("HOST SECRET") == std::string::npos);
  }
  CHECK(objects > 0);
}

TEST_CASE("a snapshot chain exported and imported into a second store restores the same tree",
          "[volume]") {
  it::TempDir tmp;
  const std::string root = tmp.sub("store");
  const std::string root2 = tmp.sub("store2");
  const std::string vol = tmp.mkdir("vol");
  fs::create_directories(vol + "/d/e");
  write(vol + "/d/e/f", "f\n");
  write(vol + "/g", "g\n");
  REQUIRE(::link((vol + "/g").c_str(), (vol + "/d/g-link").c_str()) == 0);
  REQUIRE(::setxattr((vol + "/g").c_str(), "user.x", "1", 1, 0) == 0);
  lamina_ok(root, {"snapshot", vol, "--tag", "v", "-q"});
  fs::remove_all(vol + "/d/e");
  write(vol + "/g", "g2\n");
  write(vol + "/h", "h\n");
  const std::string expected = tmp.sub("expected");
  sh_ok(fmt::format("cp -a {} {}", vol, expected));
  lamina_ok(root, {"snapshot", vol, "--tag", "v", "-q"});
  const std::string layout = tmp.sub("layout");
  lamina_ok(root, {"export", "-q", "v:2", "--oci", layout + ":v2"});
  lamina_ok(root2, {"import", "--oci", layout + ":v2", "--tag", "v:2"});
  const std::string dest = tmp.sub("restored");
  lamina_ok(root2, {"restore", "v:2", dest, "-q"});
  std::string report = wt::compare_trees(expected, dest, "expected", "restored on store2");
  INFO(report);
  CHECK(report.empty());
}

TEST_CASE("snapshot of a file that keeps changing while read fails, storing nothing torn",
          "[volume]") {
  it::TempDir tmp;
  const std::string root = tmp.sub("store");
  const std::string vol = tmp.mkdir("vol");
  write(vol + "/steady", "steady\n");
  sh_ok(fmt::format("head -c 64M /dev/zero > {}/busy", vol));
  // A writer that rewrites one byte of the busy file without pause.
  it::Child writer({"sh", "-c",
                    fmt::format("while :; do printf x | dd of={}/busy bs=1 seek=100 conv=notrunc "
                                "status=none; done",
                                vol)});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto r = lamina(root, {"snapshot", vol, "--tag", "busy"});
  writer.kill_and_reap();
  INFO(r.describe());
  if (r.succeeded()) {
    // The writer may have paused for the whole read (a busy machine): then the bytes are whole.
    SUCCEED("the busy file was read between two writes");
    return;
  }
  CHECK(r.err.find("'/busy': changed while it was read, 3 times") != std::string::npos);
  CHECK_FALSE(lamina(root, {"inspect", "busy:1"}).succeeded());
}

}  // namespace
}  // namespace lamina::st
