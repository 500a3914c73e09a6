// SPDX-License-Identifier: Apache-2.0
#include "lamina/store/manifest.h"

#include <catch2/catch.hpp>
#include <climits>
#include <string>
#include <vector>

namespace lamina::store {
namespace {

using Catch::Matchers::Contains;

const std::string kObj = "0123456789abcdef0123456789abcdef";

Entry dir(std::string path, uint32_t mode = 0755) {
  Entry e;
  e.path = std::move(path);
  e.kind = EntryKind::kDir;
  e.mode = mode;
  return e;
}

Entry file(std::string path, uint64_t size = 3, std::string object = kObj) {
  Entry e;
  e.path = std::move(path);
  e.kind = EntryKind::kFile;
  e.mode = 0644;
  e.size = size;
  e.object = std::move(object);
  return e;
}

Entry other(std::string path, EntryKind kind) {
  Entry e;
  e.path = std::move(path);
  e.kind = kind;
  return e;
}

// One entry of every kind, with names that need escaping and metadata at its limits.
Manifest every_kind() {
  Manifest m;
  Entry root = dir("/");
  root.opaque = true;
  root.xattrs = {{"trusted.x", std::string("\0\x01\xff=%\n ", 7)}, {"user.empty", ""}};
  m.entries.push_back(root);
  Entry d = dir("/dir with space", 07777);
  d.uid = 4294967295u;
  d.gid = 1000;
  d.mtime_sec = -1;
  d.mtime_nsec = 999999999;
  m.entries.push_back(d);
  m.entries.push_back(file("/dir with space/new\nline%=.txt", 0, kObj + "-2"));
  Entry f = file("/f", 1ull << 40);
  f.mtime_sec = INT64_MAX;
  f.xattrs = {{"user.k=v", "bin\x7f\x80"}};
  m.entries.push_back(f);
  Entry h = other("/h", EntryKind::kHardlink);
  h.target = "/f";
  m.entries.push_back(h);
  Entry l = other("/l", EntryKind::kSymlink);
  l.mode = 0777;
  l.target = "../t a r%get\xe2\x82\xac";
  l.mtime_sec = INT64_MIN;
  m.entries.push_back(l);
  Entry c = other("/null", EntryKind::kChar);
  c.mode = 0666;
  c.rdev_major = 1;
  c.rdev_minor = 3;
  m.entries.push_back(c);
  Entry b = other("/sda", EntryKind::kBlock);
  b.rdev_major = 4095;
  b.rdev_minor = 1048575;
  m.entries.push_back(b);
  m.entries.push_back(other("/sock", EntryKind::kSocket));
  m.entries.push_back(other("/w", EntryKind::kWhiteout));
  m.entries.push_back(other("/zz-fifo", EntryKind::kFifo));
  m.entries.push_back(file("/\xc3\xa9t\xc3\xa9 \xe2\x98\x83"));
  m.entries.push_back(file("/" + std::string(255, 'n')));
  return m;
}

TEST_CASE("manifest: every entry kind round-trips with hostile names", "[manifest]") {
  Manifest m = every_kind();
  std::string error;
  REQUIRE(normalize(&m, &error));
  const std::string bytes = encode(m);
  // Nothing in a line may break the line structure: one line per entry plus the header.
  CHECK(std::count(bytes.begin(), bytes.end(), '\n') == static_cast<long>(m.entries.size()) + 1);
  Manifest back;
  REQUIRE(decode(bytes, &back, &error));
  REQUIRE(back.entries.size() == m.entries.size());
  for (size_t i = 0; i < m.entries.size(); ++i) {
    INFO("entry " << m.entries[i].path);
    CHECK(back.entries[i] == m.entries[i]);
  }
  CHECK(encode(back) == bytes);
}

TEST_CASE("manifest: the encoding is the documented one", "[manifest]") {
  Manifest m;
  m.entries = {dir("/"), file("/a b", 5)};
  m.entries[1].xattrs = {{"user.x", "1=2"}};
  CHECK(encode(m) ==
        "lamina-manifest 1\n"
        "d / 0755 0 0 0.000000000\n"
        "f /a%20b 0644 0 0 0.000000000 5 " +
            kObj + " x:user.x=1%3D2\n");
}

TEST_CASE("manifest: path_less orders component by component", "[manifest]") {
  std::vector<std::string> sorted = {"/", "/a", "/a/z", "/a/z/y", "/a.b", "/a0", "/b", "/\xc3\xa9"};
  for (size_t i = 0; i < sorted.size(); ++i) {
    for (size_t j = 0; j < sorted.size(); ++j) {
      INFO(sorted[i] << " vs " << sorted[j]);
      CHECK(path_less(sorted[i], sorted[j]) == (i < j));
    }
  }
}

TEST_CASE("manifest: normalize sorts entries and xattrs", "[manifest]") {
  Manifest m;
  m.entries = {file("/a.b"), file("/a/z"), dir("/a"), dir("/")};
  m.entries[0].xattrs = {{"user.b", "2"}, {"user.a", "1"}};
  std::string error;
  REQUIRE(normalize(&m, &error));
  CHECK(m.entries[0].path == "/");
  CHECK(m.entries[1].path == "/a");
  CHECK(m.entries[2].path == "/a/z");
  CHECK(m.entries[3].path == "/a.b");
  CHECK(m.entries[3].xattrs[0].first == "user.a");
}

TEST_CASE("manifest: validate names the entry and the rule", "[manifest]") {
  struct Case {
    const char* what;
    std::vector<Entry> entries;
    const char* message;
  };
  Entry link_later = other("/a", EntryKind::kHardlink);
  link_later.target = "/b";
  Entry link_dir = other("/b", EntryKind::kHardlink);
  link_dir.target = "/a";
  Entry dup_x = file("/a");
  dup_x.xattrs = {{"user.a", "1"}, {"user.a", "2"}};
  std::vector<Case> cases = {
      {"no root", {file("/a")}, "first entry must be the root"},
      {"duplicate", {dir("/"), file("/a"), file("/a")}, "duplicate path"},
      {"unsorted", {dir("/"), file("/b"), file("/a")}, "out of order"},
      {"missing parent", {dir("/"), file("/a/b")}, "parent is not a directory"},
      {"file parent", {dir("/"), file("/a"), file("/a/b")}, "parent is not a directory"},
      {"hard link to a later file", {dir("/"), link_later, file("/b")}, "earlier regular file"},
      {"hard link to a dir", {dir("/"), dir("/a"), link_dir}, "earlier regular file"},
      {"bad object", {dir("/"), file("/a", 1, "xyz")}, "bad object name"},
      {"dot component", {dir("/"), file("/.")}, "invalid path"},
      {"long component", {dir("/"), file("/" + std::string(256, 'x'))}, "invalid path"},
      {"duplicate xattr", {dir("/"), dup_x}, "xattrs not sorted"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    Manifest m;
    m.entries = c.entries;
    std::string error;
    CHECK_FALSE(validate(m, &error));
    CHECK_THAT(error, Contains(c.message));
  }
}

TEST_CASE("manifest: decode rejects non-canonical bytes and names the line", "[manifest]") {
  const std::string head = "lamina-manifest 1\nd / 0755 0 0 0.000000000\n";
  const std::string obj = " " + kObj + "\n";
  struct Case {
    const char* what;
    std::string bytes;
    const char* message;
  };
  std::vector<Case> cases = {
      {"bad version", "lamina-manifest 2\nd / 0755 0 0 0.000000000\n", "line 1: manifest version"},
      {"leading zero version", "lamina-manifest 01\nd / 0755 0 0 0.000000000\n", "line 1:"},
      {"no header", "d / 0755 0 0 0.000000000\n", "line 1: not a lamina manifest"},
      {"no final newline", head + "w /a", "truncated"},
      {"unsorted", head + "w /b\nw /a\n", "line 4: entry '/a': entries out of order"},
      {"duplicate", head + "w /a\nw /a\n", "line 4: entry '/a': duplicate"},
      {"missing parent", head + "w /a/b\n", "line 3: entry '/a/b': its parent"},
      {"hard link to later", head + "h /a /b\nf /b 0644 0 0 0.000000000 1" + obj,
       "line 3: entry '/a': a hard link"},
      {"hard link to symlink", head + "l /a 0777 0 0 0.000000000 t\nh /b /a\n", "line 4:"},
      {"lowercase escape", head + "w /a%2a\n", "line 3: bad escape"},
      {"needless escape", head + "w /%41\n", "line 3: bad escape"},
      {"raw byte", head + "w /\x80\n", "line 3: bad escape"},
      {"short mode", head + "d /a 755 0 0 0.000000000\n", "line 3: bad mode"},
      {"leading zero uid", head + "d /a 0755 01 0 0.000000000\n", "line 3: bad owner"},
      {"short nsec", head + "d /a 0755 0 0 0.0\n", "line 3: bad mtime"},
      {"minus zero", head + "d /a 0755 0 0 -0.000000000\n", "line 3: bad mtime"},
      {"unknown kind", head + "q /a\n", "line 3: unknown entry kind"},
      {"two spaces", head + "w  /a\n", "line 3:"},
      {"trailing space", head + "w /a \n", "line 3:"},
      {"unsorted xattrs", head + "d /a 0755 0 0 0.000000000 x:b=1 x:a=2\n", "line 3:"},
      {"opaque after xattr", head + "d /a 0755 0 0 0.000000000 x:a=1 opaque\n", "line 3:"},
      {"empty line", head + "\n", "line 3:"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    Manifest m;
    std::string error;
    CHECK_FALSE(decode(c.bytes, &m, &error));
    CHECK_THAT(error, Contains(c.message));
  }
}

TEST_CASE("manifest: valid_object_name", "[manifest]") {
  CHECK(valid_object_name(kObj));
  CHECK(valid_object_name(kObj + "-1"));
  CHECK(valid_object_name(kObj + "-12"));
  CHECK_FALSE(valid_object_name(kObj + "-0"));
  CHECK_FALSE(valid_object_name(kObj + "-01"));
  CHECK_FALSE(valid_object_name(kObj + "-"));
  CHECK_FALSE(valid_object_name(kObj + "x"));
  CHECK_FALSE(valid_object_name(kObj.substr(1)));
  CHECK_FALSE(valid_object_name("0123456789ABCDEF0123456789abcdef"));
}

}  // namespace
}  // namespace lamina::store
