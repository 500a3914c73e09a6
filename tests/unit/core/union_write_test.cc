// SPDX-License-Identifier: Apache-2.0
// The write path on real temp dirs, without mounting: what lands in the upper, in kernel
// overlayfs's format, and what the merged view shows afterwards.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <set>
#include <utility>

#include "../test_util.h"
#include "lamina/base/sys.h"
#include "lamina/core/dir_layer.h"
#include "lamina/core/union_fs.h"
#include "union_fixture.h"

using lamina::core::Caller;
using lamina::core::DirLayer;
using lamina::core::Layer;
using lamina::core::Node;
using lamina::core::SetAttr;
using lamina::core::UnionConfig;
using lamina::core::UnionFs;
using lamina::test::TempDir;
namespace t = lamina::test;

namespace {

struct Stack {
  TempDir tmp;
  std::unique_ptr<UnionFs> fs;

  std::string upper() const { return tmp / "upper"; }
  std::string lower() const { return tmp / "lower"; }

  void mount() { fs = t::make_writable_union(tmp); }

  Node* walk(const std::string& path) { return t::walk(*fs, path); }

  std::set<std::string> names(const std::string& path) { return t::names(*fs, path); }

  std::string read(const std::string& path) { return t::read_path(*fs, path); }
};

bool is_whiteout(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0;
}

std::string xattr(const std::string& path, const char* name) {
  char buf[256];
  ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof buf);
  return n < 0 ? "<absent>" : std::string(buf, static_cast<size_t>(n));
}

}  // namespace

TEST_CASE("writing a lower file copies it up whole, parents first", "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/a/b/f", "lower data");
  REQUIRE(::chmod((s.lower() + "/a/b").c_str(), 0750) == 0);
  s.mount();
  Node* f = s.walk("a/b/f");
  REQUIRE(f != nullptr);
  uint64_t ino_before = f->ino;
  auto fd = s.fs->open(f, O_WRONLY | O_APPEND);
  REQUIRE(fd.ok());
  REQUIRE(::write(fd->get(), "+more", 5) == 5);
  CHECK(s.read("a/b/f") == "lower data+more");
  CHECK(f->ino == ino_before);  // st_ino survives copy-up
  struct stat st;
  REQUIRE(::lstat((s.upper() + "/a/b").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0750);  // the parent came up with the lower's metadata
  CHECK(xattr(s.upper() + "/a/b", "trusted.overlay.opaque") == "<absent>");
  CHECK(t::read_file(s.lower() + "/a/b/f") == "lower data");  // lowers never change
}

TEST_CASE("chmod of a lower file is a metadata-only copy-up", "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/big", std::string(1 << 20, 'x'));
  s.mount();
  Node* n = s.walk("big");
  REQUIRE(n != nullptr);
  SetAttr a;
  a.valid = SetAttr::kMode;
  a.mode = 0600;
  auto st = s.fs->setattr(n, a, -1);
  REQUIRE(st.ok());
  CHECK((st->st_mode & 07777) == 0600);
  CHECK(st->st_size == 1 << 20);
  struct stat up;
  REQUIRE(::lstat((s.upper() + "/big").c_str(), &up) == 0);
  CHECK(up.st_blocks == 0);  // no data copied
  CHECK(xattr(s.upper() + "/big", "trusted.overlay.metacopy").empty());
  CHECK(s.read("big") == std::string(1 << 20, 'x'));
  // The first write brings the data up and drops the mark.
  auto fd = s.fs->open(n, O_WRONLY);
  REQUIRE(fd.ok());
  REQUIRE(::pwrite(fd->get(), "y", 1, 0) == 1);
  CHECK(xattr(s.upper() + "/big", "trusted.overlay.metacopy") == "<absent>");
  CHECK(s.read("big").substr(0, 3) == "yxx");
}

TEST_CASE("a chmod done by its own copy-up keeps owner, setuid bits and xattrs", "[core][write]") {
  if (::geteuid() != 0) {
    WARN("not root: the lower file cannot be given another owner");
    return;
  }
  Stack s;
  const std::string f = s.lower() + "/prog";
  t::write_file(f, "#!/bin/sh\n");
  REQUIRE(::chown(f.c_str(), 1000, 1000) == 0);
  REQUIRE(::chmod(f.c_str(), 0755) == 0);
  REQUIRE(::setxattr(f.c_str(), "user.note", "kept", 4, 0) == 0);
  s.mount();
  SetAttr a;
  a.valid = SetAttr::kMode;
  a.mode = 06755;
  auto st = s.fs->setattr(s.walk("prog"), a, -1);
  REQUIRE(st.ok());
  CHECK((st->st_mode & 07777) == 06755);
  struct stat up;
  REQUIRE(::lstat((s.upper() + "/prog").c_str(), &up) == 0);
  CHECK((up.st_mode & 07777) == 06755);  // set after the chown that would clear it
  CHECK(up.st_uid == 1000);
  CHECK(up.st_gid == 1000);
  CHECK(xattr(s.upper() + "/prog", "user.note") == "kept");
  // Once in the upper, a chmod is an ordinary one.
  a.mode = 0700;
  REQUIRE(s.fs->setattr(s.walk("prog"), a, -1).ok());
  REQUIRE(::lstat((s.upper() + "/prog").c_str(), &up) == 0);
  CHECK((up.st_mode & 07777) == 0700);
}

TEST_CASE("unlink and rmdir of lower objects leave whiteouts", "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/f", "f");
  t::write_file(s.lower() + "/d/child", "c");
  t::write_file(s.lower() + "/e/child", "c");
  s.mount();
  REQUIRE(s.fs->unlink(s.fs->root(), "f").ok());
  CHECK(is_whiteout(s.upper() + "/f"));
  CHECK(s.fs->rmdir(s.fs->root(), "d").code() == ENOTEMPTY);
  REQUIRE(s.fs->unlink(s.walk("d"), "child").ok());
  REQUIRE(s.fs->rmdir(s.fs->root(), "d").ok());  // empty through the mount
  CHECK(is_whiteout(s.upper() + "/d"));
  CHECK(s.names("") == std::set<std::string>{"e"});
  CHECK(s.fs->unlink(s.fs->root(), "f").code() == ENOENT);
}

namespace {

// The names in a directory (no "." and "..").
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename());
  }
  return out;
}

struct stat lstat_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

}  // namespace

TEST_CASE("whiteout devices are hard links to one shared inode in the work dir", "[core][write]") {
  Stack s;
  for (int i = 0; i < 5; ++i) t::write_file(s.lower() + "/d/f" + std::to_string(i), "x");
  t::write_file(s.lower() + "/g", "g");
  s.mount();
  Node* d = s.walk("d");
  for (int i = 0; i < 4; ++i) REQUIRE(s.fs->unlink(d, "f" + std::to_string(i)).ok());
  // An upper object over a lower one is swapped for a whiteout too.
  SetAttr chmod;
  chmod.valid = SetAttr::kMode;
  chmod.mode = 0600;
  REQUIRE(s.fs->setattr(s.walk("g"), chmod, -1).ok());
  REQUIRE(s.fs->unlink(s.fs->root(), "g").ok());
  auto work = entries(s.tmp / "work");
  REQUIRE(work.size() == 1);  // the shared inode, under a temp name
  const struct stat shared = lstat_of(s.tmp / "work" + "/" + work[0]);
  CHECK(shared.st_nlink == 6);
  for (int i = 0; i < 4; ++i) {
    const std::string w = s.upper() + "/d/f" + std::to_string(i);
    CHECK(is_whiteout(w));
    CHECK(lstat_of(w).st_ino == shared.st_ino);
  }
  CHECK(is_whiteout(s.upper() + "/g"));
  CHECK(lstat_of(s.upper() + "/g").st_ino == shared.st_ino);
  CHECK(s.names("d") == std::set<std::string>{"f4"});
  CHECK(s.names("").count("g") == 0);

  SECTION("its work dir name gone: the next whiteout gets a fresh shared inode") {
    REQUIRE(::unlink((s.tmp / "work" + "/" + work[0]).c_str()) == 0);
    REQUIRE(s.fs->unlink(d, "f4").ok());
    CHECK(is_whiteout(s.upper() + "/d/f4"));
    CHECK(lstat_of(s.upper() + "/d/f4").st_ino != shared.st_ino);
    CHECK(s.names("d").empty());
  }
  SECTION("at the link limit (EMLINK) a fresh shared inode takes over") {
    const std::string full = s.tmp / "work" + "/" + work[0];
    t::make_dir(s.tmp / "links");
    nlink_t n = shared.st_nlink;
    for (; n < 100000; ++n) {  // ext4: 65,000; xfs and btrfs: more; tmpfs: none
      if (::link(full.c_str(), (s.tmp / "links" + "/" + std::to_string(n)).c_str()) != 0) {
        REQUIRE(errno == EMLINK);
        break;
      }
    }
    if (n == 100000) {
      WARN("the temp dir's filesystem allows 100,000 links: the EMLINK case is not reached");
      return;
    }
    REQUIRE(s.fs->unlink(d, "f4").ok());
    CHECK(is_whiteout(s.upper() + "/d/f4"));
    CHECK(lstat_of(s.upper() + "/d/f4").st_ino != shared.st_ino);
    auto now = entries(s.tmp / "work");
    REQUIRE(now.size() == 1);
    CHECK(now[0] != work[0]);
    CHECK(lstat_of(s.tmp / "work" + "/" + now[0]).st_nlink == 2);
  }
}

TEST_CASE("mkdir over a whiteout makes an opaque directory", "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/d/old", "old");
  s.mount();
  REQUIRE(s.fs->unlink(s.walk("d"), "old").ok());
  REQUIRE(s.fs->rmdir(s.fs->root(), "d").ok());
  auto d = s.fs->mkdir(s.fs->root(), "d", 0755, Caller{});
  REQUIRE(d.ok());
  CHECK(xattr(s.upper() + "/d", "trusted.overlay.opaque") == "y");
  CHECK(s.names("d").empty());
  // A file made over a whiteout replaces it.
  REQUIRE(s.fs->unlink(s.fs->root(), "d").code() == EISDIR);
  t::write_file(s.lower() + "/g", "g");
  REQUIRE(s.fs->unlink(s.fs->root(), "g").ok());
  auto g = s.fs->create(s.fs->root(), "g", 0644, O_WRONLY, Caller{});
  REQUIRE(g.ok());
  CHECK(s.read("g").empty());
  struct stat st;
  REQUIRE(::lstat((s.upper() + "/g").c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
}

TEST_CASE("renaming a lower directory is O(1) with a redirect", "[core][write]") {
  Stack s;
  for (int i = 0; i < 50; ++i) t::write_file(s.lower() + "/src/f" + std::to_string(i), "x");
  t::write_file(s.lower() + "/src/sub/deep", "deep");
  s.mount();
  REQUIRE(s.fs->rename(s.fs->root(), "src", s.fs->root(), "dst", 0).ok());
  CHECK(xattr(s.upper() + "/dst", "trusted.overlay.redirect") == "/src");
  CHECK(is_whiteout(s.upper() + "/src"));
  struct stat st;
  CHECK(::lstat((s.upper() + "/dst/f0").c_str(), &st) != 0);  // nothing was copied
  CHECK(s.names("dst").size() == 51);
  CHECK(s.read("dst/sub/deep") == "deep");
  CHECK(s.walk("src") == nullptr);
  // Moving it again keeps pointing at the lower origin.
  REQUIRE(s.fs->mkdir(s.fs->root(), "p", 0755, Caller{}).ok());
  REQUIRE(s.fs->rename(s.fs->root(), "dst", s.walk("p"), "moved", 0).ok());
  CHECK(xattr(s.upper() + "/p/moved", "trusted.overlay.redirect") == "/src");
  CHECK(s.read("p/moved/sub/deep") == "deep");
}

TEST_CASE("rename flags and errors", "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/a", "A");
  t::write_file(s.lower() + "/b", "B");
  t::write_file(s.lower() + "/full/x", "x");
  t::make_dir(s.lower() + "/empty");
  s.mount();
  Node* root = s.fs->root();
  CHECK(s.fs->rename(root, "a", root, "b", RENAME_NOREPLACE).code() == EEXIST);
  REQUIRE(s.fs->rename(root, "a", root, "b", RENAME_EXCHANGE).ok());
  CHECK(s.read("a") == "B");
  CHECK(s.read("b") == "A");
  CHECK(s.fs->rename(root, "empty", root, "full", 0).code() == ENOTEMPTY);
  CHECK(s.fs->rename(root, "missing", root, "z", 0).code() == ENOENT);
  REQUIRE(s.fs->rename(root, "full", root, "empty", 0).ok());
  CHECK(s.names("empty") == std::set<std::string>{"x"});
  CHECK(s.names("") == std::set<std::string>{"a", "b", "empty"});
}

TEST_CASE(".wh. names and overlay xattrs are refused", "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/f", "f");
  s.mount();
  CHECK(s.fs->create(s.fs->root(), ".wh.x", 0644, O_WRONLY, Caller{}).code() == EPERM);
  CHECK(s.fs->mkdir(s.fs->root(), ".wh..wh..opq", 0755, Caller{}).code() == EPERM);
  Node* f = s.walk("f");
  CHECK(s.fs->setxattr(f, "trusted.overlay.opaque", "y", 1, 0).code() == EPERM);
  CHECK(s.fs->setxattr(f, "user.overlay.redirect", "/x", 2, 0).code() == EPERM);
  REQUIRE(s.fs->setxattr(f, "user.ok", "1", 1, 0).ok());
  CHECK(xattr(s.upper() + "/f", "user.ok") == "1");
}

TEST_CASE("a read-only union refuses every change", "[core][write]") {
  TempDir tmp;
  t::write_file(tmp / "l/f", "f");
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::move(*DirLayer::open(tmp / "l")));
  auto fs = UnionFs::create(std::move(layers), UnionConfig{});
  REQUIRE(fs.ok());
  Node* root = (*fs)->root();
  CHECK((*fs)->mkdir(root, "d", 0755, Caller{}).code() == EROFS);
  CHECK((*fs)->unlink(root, "f").code() == EROFS);
  CHECK((*fs)->rename(root, "f", root, "g", 0).code() == EROFS);
}

TEST_CASE("lower hard links stay one file through copy-up", "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/a", "data");
  REQUIRE(::link((s.lower() + "/a").c_str(), (s.lower() + "/b").c_str()) == 0);
  REQUIRE(::link((s.lower() + "/a").c_str(), (s.lower() + "/c").c_str()) == 0);
  s.mount();
  auto stat_of = [&](const std::string& name) {
    auto st = s.fs->getattr(s.walk(name));
    REQUIRE(st.ok());
    return *st;
  };
  Node* a = s.walk("a");
  REQUIRE(a != nullptr);
  auto fd = s.fs->open(a, O_WRONLY | O_APPEND);
  REQUIRE(fd.ok());
  REQUIRE(::write(fd->get(), "+", 1) == 1);
  for (const char* n : {"a", "b", "c"}) {
    INFO(n);
    CHECK(s.read(n) == "data+");
    CHECK(stat_of(n).st_ino == stat_of("a").st_ino);
    CHECK(stat_of(n).st_nlink == 3);
  }
  REQUIRE(s.fs->unlink(s.fs->root(), "c").ok());
  CHECK(stat_of("a").st_nlink == 2);
  CHECK(stat_of("b").st_nlink == 2);
  REQUIRE(s.fs->rename(s.fs->root(), "b", s.fs->root(), "b2", 0).ok());
  CHECK(s.read("b2") == "data+");
  CHECK(stat_of("b2").st_nlink == 2);
  CHECK(s.names("") == std::set<std::string>{"a", "b2"});
}

// Regression: unlinking one name of an untouched lower group left the others showing 1 link
// (the index inode's own count, without the recorded offset) instead of 2.
TEST_CASE("unlinking a name of a lower hard-link group: the others show one link fewer",
          "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/a", "data");
  REQUIRE(::link((s.lower() + "/a").c_str(), (s.lower() + "/b").c_str()) == 0);
  REQUIRE(::link((s.lower() + "/a").c_str(), (s.lower() + "/c").c_str()) == 0);
  s.mount();
  REQUIRE(s.fs->unlink(s.fs->root(), "c").ok());
  for (const char* n : {"a", "b"}) {
    INFO(n);
    auto st = s.fs->getattr(s.walk(n));
    REQUIRE(st.ok());
    CHECK(st->st_nlink == 2);
    CHECK(s.read(n) == "data");
  }
  s.fs.reset();
  s.mount();  // a fresh union over the same upper and index: the offset is on disk
  for (const char* n : {"a", "b"}) {
    INFO(n << " after remount");
    auto st = s.fs->getattr(s.walk(n));
    REQUIRE(st.ok());
    CHECK(st->st_nlink == 2);
  }
}

TEST_CASE("open(O_TRUNC) of a lower file copies no data", "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/big", std::string(4 << 20, 'x'));
  REQUIRE(::chmod((s.lower() + "/big").c_str(), 0640) == 0);
  s.mount();
  Node* n = s.walk("big");
  REQUIRE(n != nullptr);
  auto fd = s.fs->open(n, O_WRONLY | O_TRUNC);
  REQUIRE(fd.ok());
  REQUIRE(::write(fd->get(), "new", 3) == 3);
  CHECK(s.read("big") == "new");
  CHECK(xattr(s.upper() + "/big", "trusted.overlay.metacopy") == "<absent>");
  auto st = s.fs->getattr(n);
  REQUIRE(st.ok());
  CHECK((st->st_mode & 07777) == 0640);
  CHECK(st->st_size == 3);
}

TEST_CASE("st_ino of a copied-up file survives a remount; readdir agrees", "[core][write]") {
  Stack s;
  t::write_file(s.lower() + "/dir/f", "data");
  t::write_file(s.lower() + "/dir/m", "meta");
  t::write_file(s.lower() + "/dir/untouched", "u");
  s.mount();
  uint64_t f_ino = s.walk("dir/f")->ino;
  uint64_t m_ino = s.walk("dir/m")->ino;
  auto fd = s.fs->open(s.walk("dir/f"), O_WRONLY | O_APPEND);
  REQUIRE(fd.ok());
  REQUIRE(::write(fd->get(), "+", 1) == 1);
  SetAttr a;
  a.valid = SetAttr::kMode;
  a.mode = 0600;
  REQUIRE(s.fs->setattr(s.walk("dir/m"), a, -1).ok());
  CHECK(xattr(s.upper() + "/dir", "trusted.overlay.impure") == "y");

  s.fs.reset();  // unmount
  s.mount();
  CHECK(s.fs->getattr(s.walk("dir/f"))->st_ino == f_ino);
  CHECK(s.fs->getattr(s.walk("dir/m"))->st_ino == m_ino);
  auto entries = s.fs->list(s.walk("dir"));
  REQUIRE(entries.ok());
  for (const auto& e : *entries) {
    if (e.name == "." || e.name == "..") continue;
    INFO(e.name);
    CHECK(e.ino == s.fs->getattr(s.walk("dir/" + e.name))->st_ino);
  }
}

namespace {

// The upper layer, with a hook that runs just before one lookup of a chosen name: a stand-in
// for another thread changing the name between resolve()'s stat and its open.
class RacyLayer final : public lamina::core::Layer {
 public:
  RacyLayer(std::unique_ptr<Layer> inner, std::string name, std::function<void()> before)
      : inner_(std::move(inner)), name_(std::move(name)), before_(std::move(before)) {}
  const std::string& describe() const override { return inner_->describe(); }
  dev_t dev() const override { return inner_->dev(); }
  lamina::Result<lamina::core::ObjRef> root() const override { return inner_->root(); }
  lamina::Result<lamina::core::ObjRef> lookup(const lamina::core::ObjRef& dir,
                                              const char* name) const override {
    if (before_ && name_ == name) std::exchange(before_, nullptr)();
    return inner_->lookup(dir, name);
  }
  lamina::Result<struct stat> stat_at(const lamina::core::ObjRef& dir,
                                      const char* name) const override {
    return inner_->stat_at(dir, name);
  }
  lamina::Result<bool> contains(const lamina::core::ObjRef& dir, const char* name) const override {
    return inner_->contains(dir, name);
  }
  lamina::Result<struct stat> stat(const lamina::core::ObjRef& obj) const override {
    return inner_->stat(obj);
  }
  lamina::Result<std::string> readlink(const lamina::core::ObjRef& obj) const override {
    return inner_->readlink(obj);
  }
  lamina::Result<lamina::UniqueFd> open(const lamina::core::ObjRef& obj, int flags) const override {
    return inner_->open(obj, flags);
  }
  lamina::Status list(const lamina::core::ObjRef& dir,
                      const lamina::sys::DirentFn& fn) const override {
    return inner_->list(dir, fn);
  }
  lamina::Result<size_t> getxattr(const lamina::core::ObjRef& obj, const char* name, void* buf,
                                  size_t size) const override {
    return inner_->getxattr(obj, name, buf, size);
  }
  lamina::Result<std::string> getxattr(const lamina::core::ObjRef& obj,
                                       const char* name) const override {
    return inner_->getxattr(obj, name);
  }
  lamina::Result<std::string> listxattr(const lamina::core::ObjRef& obj) const override {
    return inner_->listxattr(obj);
  }
  lamina::Result<struct statvfs> statfs() const override { return inner_->statfs(); }
  lamina::Result<std::string> link_key(const lamina::core::ObjRef& obj) const override {
    return inner_->link_key(obj);
  }
  lamina::Result<std::vector<std::string>> link_names(
      const lamina::core::ObjRef& obj) const override {
    return inner_->link_names(obj);
  }

 private:
  std::unique_ptr<Layer> inner_;
  std::string name_;
  mutable std::function<void()> before_;
};

}  // namespace

// Regression (load test in CI: one open(O_WRONLY) failed with ENXIO): an upper file with two
// links keeps a descriptor, opened by name after the stat; an unlink in between put a whiteout
// device there, and the node held the device.
TEST_CASE("a name that becomes a whiteout between lookup's stat and open is looked up again",
          "[core][write]") {
  TempDir tmp;
  for (const char* d : {"upper", "lower", "work"}) t::make_dir(tmp / d);
  t::write_file(tmp / "lower" + "/f", "lower");
  t::write_file(tmp / "upper" + "/f", "upper");
  REQUIRE(::link((tmp / "upper" + "/f").c_str(), (tmp / "upper" + "/g").c_str()) == 0);
  const std::string f = tmp / "upper" + "/f";
  auto unlink_f = [f] {
    REQUIRE(::unlink(f.c_str()) == 0);  // as remove_name() leaves it: a 0/0 device
    REQUIRE(::mknod(f.c_str(), S_IFCHR | 0, 0) == 0);
  };
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(
      std::make_unique<RacyLayer>(std::move(*DirLayer::open(tmp / "upper")), "f", unlink_f));
  layers.push_back(std::move(*DirLayer::open(tmp / "lower")));
  UnionConfig cfg;
  cfg.has_upper = true;
  cfg.read_only = false;
  cfg.fsync = false;
  auto work = lamina::sys::open_path(AT_FDCWD, (tmp / "work").c_str());
  REQUIRE(work.ok());
  auto fs = UnionFs::create(std::move(layers), cfg, std::move(*work));
  REQUIRE(fs.ok());
  auto node = (*fs)->lookup((*fs)->root(), "f");
  CHECK(node.code() == ENOENT);  // not a node holding the whiteout device
  auto g = (*fs)->lookup((*fs)->root(), "g");
  REQUIRE(g.ok());
  auto fd = (*fs)->open(*g, O_RDONLY);
  REQUIRE(fd.ok());
}
