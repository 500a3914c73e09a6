// SPDX-License-Identifier: Apache-2.0
// Volume backup through a registry: a snapshot chain pushed tag by tag to docker-registry
// (started on 127.0.0.1 by the test), pulled into a second store (another --root, standing in
// for another host), restored there: each snapshot equals the directory it was made of
// (owners, modes, mtimes, xattrs, hard links, holes). Then the chain goes on in the second
// store: a further snapshot there holds only what changed.
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "oci/registry_support.h"
#include "store/store_support.h"

namespace lamina::oci {
namespace {

using it::TempDir;

TEST_CASE("a snapshot chain pushed to a registry and pulled into a second store restores the same",
          "[oci][registry][volume]") {
  TempDir tmp;
  Registry reg;
  const std::string root = tmp.sub("store");
  const std::string root2 = tmp.sub("store2");
  const std::string vol = tmp.mkdir("vol");
  it::make_dirs(vol + "/etc/conf.d");
  it::write_file(vol + "/etc/conf.d/a.conf", "a = 1\n", 0600);
  it::write_file(vol + "/data", "data, first\n");
  it::write_file(vol + "/linked", "one inode, two names\n");
  REQUIRE(::link((vol + "/linked").c_str(), (vol + "/etc/linked-too").c_str()) == 0);
  REQUIRE(::setxattr((vol + "/data").c_str(), "user.backup", "yes", 3, 0) == 0);
  REQUIRE(::chown((vol + "/etc/conf.d/a.conf").c_str(), 1000, 1001) == 0);
  REQUIRE(::chown((vol + "/etc").c_str(), 1002, 1003) == 0);
  REQUIRE(::chmod((vol + "/etc/conf.d").c_str(), 0750) == 0);
  REQUIRE(::symlink("data", (vol + "/data-link").c_str()) == 0);
  st::sh_ok(
      fmt::format("truncate -s 4M {0}/sparse && printf head | dd of={0}/sparse conv=notrunc "
                  "status=none && printf tail | dd of={0}/sparse bs=1 seek=3000000 conv=notrunc "
                  "status=none",
                  vol));
  const std::string expected1 = tmp.sub("expected1");
  st::sh_ok(fmt::format("cp -a {} {}", vol, expected1));
  st::lamina_ok(root, {"snapshot", vol, "--tag", "vol", "-q"});
  // Change: modify, delete, add, a directory replaced by a file, an xattr, a hole filled.
  it::write_file(vol + "/data", "data, second\n");
  REQUIRE(::setxattr((vol + "/data").c_str(), "user.backup", "again", 5, 0) == 0);
  REQUIRE(::unlink((vol + "/etc/linked-too").c_str()) == 0);
  st::sh_ok(fmt::format("rm -r {0}/etc/conf.d && echo now-a-file > {0}/etc/conf.d", vol));
  it::write_file(vol + "/new", "new in the second\n");
  st::sh_ok(
      fmt::format("printf mid | dd of={}/sparse bs=1 seek=1000000 conv=notrunc status=none", vol));
  const std::string expected2 = tmp.sub("expected2");
  st::sh_ok(fmt::format("cp -a {} {}", vol, expected2));
  st::lamina_ok(root, {"snapshot", vol, "--tag", "vol", "-q"});

  for (const std::string tag : {"1", "2"}) {
    st::lamina_ok(root,
                  {"push", "vol:" + tag, reg.host() + "/backup/vol:" + tag, "--insecure", "-q"});
    st::lamina_ok(root2, {"pull", reg.host() + "/backup/vol:" + tag, "--tag", "vol:" + tag,
                          "--insecure", "-q"});
  }
  // The pulled images form the same chain: 2's layers extend 1's.
  const auto l1 = st::image_layers(root2, "vol:1");
  const auto l2 = st::image_layers(root2, "vol:2");
  REQUIRE(l1.size() == 1);
  REQUIRE(l2.size() == 2);
  CHECK(l2[0] == l1[0]);
  CHECK(l2 == st::image_layers(root, "vol:2"));  // the same manifests, so the same layer ids

  st::lamina_ok(root2, {"restore", "vol:1", tmp.sub("restored1"), "-q"});
  st::check_restored(expected1, tmp.sub("restored1"));
  st::lamina_ok(root2, {"restore", "vol:2", tmp.sub("restored2"), "-q"});
  st::check_restored(expected2, tmp.sub("restored2"));

  // The chain goes on in the second store, from the restored directory. It has no volume index
  // yet, so every file is read once; the delta holds only the change.
  const std::string work = tmp.sub("restored2");
  it::write_file(work + "/new", "changed on the second host\n");
  auto r = st::lamina(root2, {"snapshot", work, "--tag", "vol", "--json"});
  INFO(r.describe());
  REQUIRE(r.succeeded());
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["image"] == "vol:3");
  CHECK(j["changed"] == 1);
  CHECK(j["added"] == 0);
  CHECK(j["deleted"] == 0);
  CHECK(j["files_read"] == 5);  // data, linked, new, sparse, etc/conf.d
  st::lamina_ok(root2, {"restore", "vol:3", tmp.sub("restored3"), "-q"});
  st::check_restored(work, tmp.sub("restored3"));
}

}  // namespace
}  // namespace lamina::oci
