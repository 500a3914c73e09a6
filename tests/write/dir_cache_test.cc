// SPDX-License-Identifier: Apache-2.0
// The kernel keeps directory listings across opens (laminafs opens directories with
// cache_readdir + keep_cache): every change made through the mount must still show in the next
// listing, as on a plain directory. Each step runs on a plain directory and on the mount, and
// the listings (names, d_type, and d_ino against lstat's st_ino) are compared after each.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "integration/fs_util.h"
#include "integration/mount_helpers.h"

namespace lamina::it {
namespace {

struct Listed {
  unsigned char type;
  bool ino_matches;  // d_ino == lstat's st_ino
  bool operator==(const Listed&) const = default;
};
using Listing = std::map<std::string, Listed>;

Listing read_listing(DIR* d, const std::string& path) {
  Listing out;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st {};
    INFO(path << "/" << name << ": " << std::strerror(errno));
    REQUIRE(::lstat((path + "/" + name).c_str(), &st) == 0);
    out[name] = Listed{e->d_type, e->d_ino == st.st_ino};
  }
  INFO(path << ": " << std::strerror(errno));
  REQUIRE(errno == 0);
  return out;
}

Listing list(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  INFO(path << ": " << std::strerror(errno));
  REQUIRE(d != nullptr);
  Listing out = read_listing(d, path);
  ::closedir(d);
  return out;
}

std::string describe(const Listing& l) {
  std::string s;
  for (const auto& [name, e] : l) {
    s += name + "(" + std::to_string(e.type) + (e.ino_matches ? "" : ",d_ino!=st_ino") + ") ";
  }
  return s;
}

void check(int rc, const std::string& what) {
  INFO(what << ": " << std::strerror(errno));
  REQUIRE(rc == 0);
}

}  // namespace

TEST_CASE("cached directory listings follow every change made through the mount", "[dircache]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  const std::string lower = tmp.mkdir("lower"), upper = tmp.mkdir("upper");
  const std::string work = tmp.mkdir("work"), mnt = tmp.mkdir("mnt"), plain = tmp.mkdir("plain");
  for (const std::string& root : {lower, plain}) {
    make_dirs(root + "/d/sub");
    make_dirs(root + "/e");
    write_file(root + "/d/a", "a");
    write_file(root + "/d/b", "b");
    write_file(root + "/d/sub/x", "x");
    write_file(root + "/e/y", "y");
  }
  Mount m(mnt, StackPaths{{lower}, upper, work, {}});
  REQUIRE(m.ok());

  // Each step on both trees, then every directory listed twice (the second from the cache).
  using Step = std::pair<const char*, std::function<void(const std::string&)>>;
  const std::vector<Step> steps = {
      {"create d/c", [](const std::string& r) { write_file(r + "/d/c", "c"); }},
      {"unlink lower d/a",
       [](const std::string& r) { check(::unlink((r + "/d/a").c_str()), "unlink"); }},
      {"chmod d/b (copy-up: same st_ino)",
       [](const std::string& r) { check(::chmod((r + "/d/b").c_str(), 0600), "chmod"); }},
      {"rename d/b -> d/b2",
       [](const std::string& r) {
         check(::rename((r + "/d/b").c_str(), (r + "/d/b2").c_str()), "rename");
       }},
      {"rename d/c -> e/c",
       [](const std::string& r) {
         check(::rename((r + "/d/c").c_str(), (r + "/e/c").c_str()), "rename");
       }},
      {"rename e/y over d/b2",
       [](const std::string& r) {
         check(::rename((r + "/e/y").c_str(), (r + "/d/b2").c_str()), "rename");
       }},
      {"mkdir d/new, symlink d/s, link d/h",
       [](const std::string& r) {
         check(::mkdir((r + "/d/new").c_str(), 0755), "mkdir");
         check(::symlink("b2", (r + "/d/s").c_str()), "symlink");
         check(::link((r + "/d/b2").c_str(), (r + "/d/h").c_str()), "link");
       }},
      {"mknod fifo d/p",
       [](const std::string& r) { check(::mkfifo((r + "/d/p").c_str(), 0644), "mkfifo"); }},
      {"rm -r lower d/sub",
       [](const std::string& r) {
         check(::unlink((r + "/d/sub/x").c_str()), "unlink");
         check(::rmdir((r + "/d/sub").c_str()), "rmdir");
       }},
      {"mkdir d/sub again (opaque)",
       [](const std::string& r) {
         check(::mkdir((r + "/d/sub").c_str(), 0755), "mkdir");
         write_file(r + "/d/sub/z", "z");
       }},
      {"rename dir e -> d/e2 (redirect)",
       [](const std::string& r) {
         check(::rename((r + "/e").c_str(), (r + "/d/e2").c_str()), "rename");
       }},
  };
  const std::vector<std::string> dirs = {"", "/d", "/d/sub", "/e", "/d/e2"};
  auto compare_all = [&](const std::string& when) {
    for (int pass = 0; pass < 2; ++pass) {
      for (const std::string& dir : dirs) {
        struct stat st {};
        if (::lstat((plain + dir).c_str(), &st) != 0) continue;
        const Listing want = list(plain + dir);
        const Listing got = list(mnt + dir);
        INFO("after " << when << ", pass " << pass << ", dir '" << dir
                      << "'\nplain: " << describe(want) << "\nmount: " << describe(got));
        CHECK(got == want);
      }
    }
  };
  compare_all("mount");
  for (const auto& [what, step] : steps) {
    step(plain);
    step(mnt);
    compare_all(what);
  }

  SECTION("the listing comes from the kernel's cache (what this test is about)") {
    // Behind the mount's back (not supported, as with kernel overlayfs): the daemon would list
    // it, the cached listing does not.
    REQUIRE(list(mnt + "/d").count("behind") == 0);
    write_file(upper + "/d/behind", "b");
    CHECK(list(mnt + "/d").count("behind") == 0);
  }
  SECTION("an open stream sees the changes after rewinddir") {
    DIR* d = ::opendir((mnt + "/d").c_str());
    REQUIRE(d != nullptr);
    const Listing before = read_listing(d, mnt + "/d");
    write_file(mnt + "/d/late", "l");
    write_file(plain + "/d/late", "l");
    ::rewinddir(d);
    const Listing after = read_listing(d, mnt + "/d");
    ::closedir(d);
    CHECK(before.count("late") == 0);
    CHECK(after.count("late") == 1);
    CHECK(after == list(plain + "/d"));
  }
}

}  // namespace lamina::it
