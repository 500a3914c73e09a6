// SPDX-License-Identifier: Apache-2.0
// UpperDiff and commit on hand-made uppers in every on-disk form (no mount).
#include "lamina/diff/upper_diff.h"

#include <sys/time.h>

#include <catch2/catch.hpp>
#include <map>

#include "../test_util.h"
#include "lamina/core/dir_layer.h"
#include "lamina/diff/commit.h"

namespace lamina::diff {
namespace {

using store::EntryKind;
using test::make_char_whiteout;
using test::make_dir;
using test::set_xattr;
using test::TempDir;
using test::write_file;

LayerFactory dirs(std::vector<std::string> paths) {
  return [paths](std::vector<std::unique_ptr<core::Layer>>* out, std::string* error) {
    for (const auto& p : paths) {
      auto l = core::DirLayer::open(p);
      if (!l) {
        *error = p;
        return false;
      }
      out->push_back(std::move(*l));
    }
    return true;
  };
}

// path -> change, for the walk of `upper` over `lowers`.
std::map<std::string, Change> walk(const std::string& upper, std::vector<std::string> lowers) {
  std::string error;
  auto d = UpperDiff::open(upper, dirs(std::move(lowers)), &error);
  REQUIRE(d != nullptr);
  std::vector<Change> changes;
  bool ok = d->walk(&changes, &error);
  INFO(error);
  REQUIRE(ok);
  std::map<std::string, Change> out;
  for (auto& c : changes) {
    REQUIRE(out.count(c.entry.path) == 0);
    out.emplace(c.entry.path, std::move(c));
  }
  return out;
}

bool whiteout(const std::map<std::string, Change>& m, const std::string& path) {
  auto it = m.find(path);
  return it != m.end() && it->second.entry.kind == EntryKind::kWhiteout && it->second.in_layer &&
         it->second.kind == ChangeKind::kDeleted;
}

TEST_CASE("every whiteout form becomes a whiteout entry, only where something is below") {
  TempDir t;
  for (const char* n : {"a", "b", "c", "d"}) write_file(t / (std::string("lower/etc/") + n), n);
  make_dir(t / "upper/etc");
  make_char_whiteout(t / "upper/etc/a");
  write_file(t / "upper/etc/.wh.b", "");
  set_xattr(t / "upper/etc", "trusted.overlay.opaque", "x");
  write_file(t / "upper/etc/c", "");
  set_xattr(t / "upper/etc/c", "trusted.overlay.whiteout", "");
  write_file(t / "upper/etc/.wh.nothing-below", "");
  make_char_whiteout(t / "upper/etc/also-nothing");

  auto m = walk(t / "upper", {t / "lower"});
  CHECK(whiteout(m, "/etc/a"));
  CHECK(whiteout(m, "/etc/b"));
  CHECK(whiteout(m, "/etc/c"));
  CHECK(m.count("/etc/nothing-below") == 0);
  CHECK(m.count("/etc/also-nothing") == 0);
  CHECK(m.count("/etc/d") == 0);
  REQUIRE(m.count("/etc") == 1);
  CHECK(m.at("/etc").entry.kind == EntryKind::kDir);
  CHECK_FALSE(m.at("/etc").entry.opaque);
  CHECK(m.at("/etc").kind == ChangeKind::kChanged);
}

TEST_CASE("every opaque form makes an opaque directory, and diff lists what it hides") {
  struct Form {
    const char* name;
    std::function<void(const std::string& upper_dir, const std::string& upper_parent)> make;
  };
  std::vector<Form> forms = {
      {"trusted.overlay.opaque",
       [](const std::string& d, const std::string&) {
         set_xattr(d, "trusted.overlay.opaque", "y");
       }},
      {"user.overlay.opaque",
       [](const std::string& d, const std::string&) { set_xattr(d, "user.overlay.opaque", "y"); }},
      {"user.fuseoverlayfs.opaque",
       [](const std::string& d, const std::string&) {
         set_xattr(d, "user.fuseoverlayfs.opaque", "y");
       }},
      {".wh..wh..opq",
       [](const std::string& d, const std::string&) { write_file(d + "/.wh..wh..opq", ""); }},
      {"whiteout beside",
       [](const std::string&, const std::string& p) { write_file(p + "/.wh.dir", ""); }},
  };
  for (const auto& form : forms) {
    SECTION(form.name) {
      TempDir t;
      write_file(t / "lower/dir/old1", "1");
      write_file(t / "lower/dir/kept", "lower");
      write_file(t / "upper/dir/kept", "upper");
      form.make(t / "upper/dir", t / "upper");
      auto m = walk(t / "upper", {t / "lower"});
      REQUIRE(m.count("/dir") == 1);
      CHECK(m.at("/dir").entry.opaque);
      REQUIRE(m.count("/dir/old1") == 1);
      CHECK_FALSE(m.at("/dir/old1").in_layer);
      CHECK(m.at("/dir/old1").kind == ChangeKind::kDeleted);
      CHECK(m.at("/dir/kept").kind == ChangeKind::kChanged);
      CHECK(m.count("/dir/.wh..wh..opq") == 0);
      CHECK(m.count("/.wh.dir") == 0);
      CHECK(m.count("/dir") == 1);
    }
  }
}

TEST_CASE("an opaque mark with no directory below is dropped (one encoding per change)") {
  TempDir t;
  make_dir(t / "lower");
  write_file(t / "upper/new/f", "x");
  set_xattr(t / "upper/new", "trusted.overlay.opaque", "y");
  auto m = walk(t / "upper", {t / "lower"});
  CHECK_FALSE(m.at("/new").entry.opaque);
  CHECK(m.at("/new").kind == ChangeKind::kAdded);
  CHECK(m.at("/new/f").kind == ChangeKind::kAdded);
}

TEST_CASE("a redirected directory becomes its whole merged tree") {
  TempDir t;
  write_file(t / "lower/old/f1", "one");
  write_file(t / "lower/old/sub/f2", "two");
  make_dir(t / "upper/new");
  set_xattr(t / "upper/new", "trusted.overlay.redirect", "/old");
  write_file(t / "upper/new/added", "three");
  make_char_whiteout(t / "upper/old");
  auto m = walk(t / "upper", {t / "lower"});
  CHECK(whiteout(m, "/old"));
  for (const char* p : {"/new", "/new/f1", "/new/sub", "/new/sub/f2", "/new/added"}) {
    INFO(p);
    REQUIRE(m.count(p) == 1);
    CHECK(m.at(p).in_layer);
    CHECK(m.at(p).kind == ChangeKind::kAdded);
  }
  CHECK(m.at("/new/sub").entry.kind == EntryKind::kDir);
  CHECK(m.at("/new/sub/f2").entry.size == 3);
}

TEST_CASE("a metadata-only copy-up commits the lower data with the upper metadata") {
  TempDir t, root;
  write_file(t / "lower/big", "lower data");
  write_file(t / "upper/big", "");
  REQUIRE(::truncate((t / "upper/big").c_str(), 10) == 0);
  REQUIRE(::chmod((t / "upper/big").c_str(), 0600) == 0);
  set_xattr(t / "upper/big", "trusted.overlay.metacopy", "");
  std::string error;
  auto st = store::Store::open(root / "store", true, &error);
  REQUIRE(st != nullptr);
  auto d = UpperDiff::open(t / "upper", dirs({t / "lower"}), &error);
  REQUIRE(d != nullptr);
  auto lock = st->lock_shared();
  REQUIRE(lock.ok());
  CommitResult r;
  REQUIRE(commit_layer(*st, *d, {}, &r, &error));
  store::Manifest mf;
  REQUIRE(st->read_manifest(r.layer_id, &mf, &error));
  REQUIRE(mf.entries.size() == 2);
  const store::Entry& big = mf.entries[1];
  CHECK(big.path == "/big");
  CHECK(big.mode == 0600);
  CHECK(big.xattrs.empty());  // overlay.metacopy is private
  auto obj = st->open_object(big.object);
  REQUIRE(obj.ok());
  char buf[32] = {};
  CHECK(::pread(obj->get(), buf, sizeof buf, 0) == 10);
  CHECK(std::string(buf) == "lower data");
}

TEST_CASE("an unknown whiteout form is refused, naming the directory") {
  TempDir t;
  make_dir(t / "lower");
  make_dir(t / "upper/sub/.wh..wh.plnk");  // aufs's hard-link directory
  std::string error;
  auto d = UpperDiff::open(t / "upper", dirs({t / "lower"}), &error);
  REQUIRE(d != nullptr);
  std::vector<Change> changes;
  CHECK_FALSE(d->walk(&changes, &error));
  CHECK(error.find("'/sub'") != std::string::npos);
  CHECK(error.find("whiteout") != std::string::npos);
}

TEST_CASE("commit: same change, same id; dedup; clamped mtimes; hard links; private xattrs") {
  TempDir t, root;
  write_file(t / "upper/a", "same bytes");
  write_file(t / "upper/b", "same bytes");
  write_file(t / "upper/dir/c", "other");
  REQUIRE(::link((t / "upper/dir/c").c_str(), (t / "upper/dir/d").c_str()) == 0);
  set_xattr(t / "upper/a", "user.note", std::string("v\0w", 3));
  set_xattr(t / "upper/a", "trusted.overlay.origin", "xyz");
  std::string error;
  auto st = store::Store::open(root / "store", true, &error);
  REQUIRE(st != nullptr);
  auto lock = st->lock_shared();
  REQUIRE(lock.ok());
  CommitOptions opts;
  opts.clamp_mtime = 1000;
  CommitResult r1, r2;
  {
    auto d = UpperDiff::open(t / "upper", {}, &error);
    REQUIRE(d != nullptr);
    REQUIRE(commit_layer(*st, *d, opts, &r1, &error));
  }
  CHECK(r1.files == 3);
  CHECK(r1.objects_added == 2);
  CHECK(r1.bytes_added == 10 + 5);
  // Touch everything: the clamp makes the layer the same.
  REQUIRE(::utimes((t / "upper/a").c_str(), nullptr) == 0);
  {
    auto d = UpperDiff::open(t / "upper", {}, &error);
    REQUIRE(d != nullptr);
    REQUIRE(commit_layer(*st, *d, opts, &r2, &error));
  }
  CHECK(r2.layer_id == r1.layer_id);
  CHECK(r2.objects_added == 0);
  CHECK(r2.bytes_added == 0);
  store::Manifest mf;
  REQUIRE(st->read_manifest(r1.layer_id, &mf, &error));
  std::map<std::string, store::Entry> by_path;
  for (const auto& e : mf.entries) by_path[e.path] = e;
  CHECK(by_path.at("/a").mtime_sec == 1000);
  CHECK(by_path.at("/a").object == by_path.at("/b").object);
  REQUIRE(by_path.at("/a").xattrs.size() == 1);
  CHECK(by_path.at("/a").xattrs[0].first == "user.note");
  CHECK(by_path.at("/a").xattrs[0].second == std::string("v\0w", 3));
  CHECK(by_path.at("/dir/c").kind == EntryKind::kFile);
  CHECK(by_path.at("/dir/d").kind == EntryKind::kHardlink);
  CHECK(by_path.at("/dir/d").target == "/dir/c");
}

}  // namespace
}  // namespace lamina::diff
