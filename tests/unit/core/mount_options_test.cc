// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/mount_options.h"

#include <catch2/catch.hpp>

using lamina::core::parse_command_line;
using lamina::core::ParsedCommandLine;
using lamina::core::split_lowerdirs;
using lamina::core::split_options;
using lamina::core::XattrPermissions;

namespace {

std::optional<ParsedCommandLine> parse(std::vector<std::string> args, std::string* err) {
  return parse_command_line(args, err);
}

}  // namespace

TEST_CASE("split_options honours escapes, quotes and empty items", "[core][options]") {
  using V = std::vector<std::string>;
  CHECK(split_options("a,b,,c") == V{"a", "b", "c"});
  CHECK(split_options("lowerdir=x\\,y,ro") == V{"lowerdir=x,y", "ro"});
  CHECK(split_options("context=\"system_u:object_r:t:s0:c1,c2\",ro") ==
        V{"context=\"system_u:object_r:t:s0:c1,c2\"", "ro"});
  CHECK(split_options("lowerdir=a\\:b:c") == V{"lowerdir=a\\:b:c"});
  CHECK(split_options(",,") == V{});
}

TEST_CASE("split_lowerdirs: topmost first, \\: escapes a colon", "[core][options]") {
  using V = std::vector<std::string>;
  CHECK(split_lowerdirs("/a:/b:/c") == V{"/a", "/b", "/c"});
  CHECK(split_lowerdirs("/a\\:1:/b") == V{"/a:1", "/b"});
  CHECK(split_lowerdirs("/a\\\\:/b") == V{"/a\\", "/b"});
}

TEST_CASE("what containers-storage passes is accepted", "[core][options]") {
  std::string lowers;
  for (int i = 0; i < 500; ++i) {
    if (i) lowers += ':';
    lowers +=
        "/var/lib/containers/storage/overlay/l/ABCDEFGHIJKLMNOPQRSTUVWXYZ" + std::to_string(i);
  }
  std::string opts = "lowerdir=" + lowers +
                     ",upperdir=/u,workdir=/w,,volatile,fsync=0,"
                     "context=\"system_u:object_r:container_file_t:s0:c1,c2\","
                     "uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1:1:100000:65536,"
                     "xattr_permissions=2,noacl,allow_other";
  REQUIRE(opts.size() > 20000);
  std::string err;
  auto p = parse({"-o", opts, "/mnt"}, &err);
  REQUIRE(p.has_value());
  const auto& o = p->options;
  CHECK(o.lowerdirs.size() == 500);
  CHECK(o.upperdir == "/u");
  CHECK(o.workdir == "/w");
  CHECK(o.volatile_mode);
  CHECK_FALSE(o.fsync);
  CHECK_FALSE(o.acl);
  CHECK(o.xattr_permissions == XattrPermissions::kContainers);
  CHECK(o.uid_map.to_shown(0) == 1000);
  CHECK(o.mountpoint == "/mnt");
  CHECK(o.fuse_options ==
        std::vector<std::string>{"context=\"system_u:object_r:container_file_t:s0:c1,c2\"",
                                 "allow_other"});
}

TEST_CASE("flags and actions", "[core][options]") {
  std::string err;
  auto p = parse({"-f", "-olowerdir=/a", "-o", "ro,squash_to_uid=5,squash_to_gid=6", "/m"}, &err);
  REQUIRE(p.has_value());
  CHECK(p->options.foreground);
  CHECK(p->options.read_only);
  CHECK(p->options.uid_map.to_shown(0) == 5);
  CHECK(p->options.gid_map.to_shown(0) == 6);
  auto d = parse({"-d", "-o", "lowerdir=/a", "/m"}, &err);
  REQUIRE(d.has_value());
  CHECK(d->options.debug);
  CHECK(d->options.foreground);
  CHECK(parse({"--version"}, &err)->action == ParsedCommandLine::Action::kVersion);
  CHECK(parse({"-h"}, &err)->action == ParsedCommandLine::Action::kHelp);
}

TEST_CASE("bad command lines name the problem", "[core][options]") {
  struct Case {
    std::vector<std::string> args;
    const char* needle;
  };
  const Case cases[] = {
      {{"-o", "lowerdir=/a"}, "mountpoint"},
      {{"-o", "upperdir=/u,workdir=/w", "/m"}, "lowerdir"},
      {{"-o", "lowerdir=/a,upperdir=/u", "/m"}, "workdir"},
      {{"-o", "lowerdir=/a,workdir=/w", "/m"}, "workdir"},
      {{"-o", "lowerdir=/a,bogus=1", "/m"}, "bogus"},
      {{"-o", "lowerdir=/a,plugins=/x.so", "/m"}, "plugins"},
      {{"-o", "lowerdir=/a,redirect_dir=on", "/m"}, "redirect_dir"},
      {{"-o", "lowerdir=/a,xattr_permissions=3", "/m"}, "xattr_permissions"},
      {{"-o", "lowerdir=/a,metacopy=maybe", "/m"}, "metacopy"},
      {{"-o", "lowerdir=/a,uidmapping=0:1", "/m"}, "uidmapping"},
      {{"-o", "lowerdir=/a,timeout=soon", "/m"}, "timeout"},
      {{"-o", "lowerdir=/a,fsync=2", "/m"}, "fsync"},
      {{"-o", "lowerdir=/a,writeback=yes", "/m"}, "writeback"},
      {{"-o", "lowerdir=", "/m"}, "lowerdir"},
      {{"-o", "lowerdir=::", "/m"}, "lowerdir"},
      {{"-o", "lowerdir=/a,ro=1", "/m"}, "ro"},
      {{"-o", "lowerdir=/a", "/m", "/n"}, "too many"},
      {{"-x", "-o", "lowerdir=/a", "/m"}, "-x"},
      {{"-o"}, "-o"},
  };
  for (const Case& c : cases) {
    std::string err;
    INFO(c.needle);
    CHECK_FALSE(parse(c.args, &err).has_value());
    CHECK_THAT(err, Catch::Contains(c.needle));
  }
}

TEST_CASE("metacopy=on|off", "[core][options]") {
  std::string err;
  CHECK(parse({"-o", "lowerdir=/a", "/m"}, &err)->options.metacopy);
  CHECK_FALSE(parse({"-o", "lowerdir=/a,metacopy=off", "/m"}, &err)->options.metacopy);
  CHECK(parse({"-o", "lowerdir=/a,metacopy=on", "/m"}, &err)->options.metacopy);
}

TEST_CASE("writeback=0|1 and passthrough=0|1", "[core][options]") {
  std::string err;
  auto plain = parse({"-o", "lowerdir=/a", "/m"}, &err);
  REQUIRE(plain);
  CHECK_FALSE(plain->options.writeback);
  CHECK(plain->options.passthrough);
  auto wb =
      parse({"-o", "lowerdir=/a,upperdir=/u,workdir=/w,writeback=1,passthrough=0", "/m"}, &err);
  REQUIRE(wb);
  CHECK(wb->options.writeback);
  CHECK_FALSE(wb->options.passthrough);
  CHECK_FALSE(parse({"-o", "lowerdir=/a,writeback=0", "/m"}, &err)->options.writeback);
}
