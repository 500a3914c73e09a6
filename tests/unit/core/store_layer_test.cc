// SPDX-License-Identifier: Apache-2.0
// StoreLayer on a real temp store: the Layer contract on its own, then inside a UnionFs between
// an upper and a plain lower directory (whiteouts, opaque dirs, copy-up, hard links), and the
// object checks (size always, hash with verify).

#include "lamina/core/store_layer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "../test_util.h"
#include "lamina/base/sys.h"
#include "lamina/core/dir_layer.h"
#include "lamina/core/union_fs.h"
#include "lamina/store/store.h"
#include "union_fixture.h"

using lamina::core::Layer;
using lamina::core::Node;
using lamina::core::ObjRef;
using lamina::core::UnionFs;
using lamina::store::Entry;
using lamina::store::EntryKind;
using lamina::test::TempDir;
namespace core = lamina::core;
namespace store = lamina::store;
namespace sys = lamina::sys;
namespace t = lamina::test;

namespace {

Entry entry(const std::string& path, EntryKind kind, uint32_t mode = 0755) {
  Entry e;
  e.path = path;
  e.kind = kind;
  e.mode = mode;
  e.mtime_sec = 1700000000;
  e.mtime_nsec = 42;
  return e;
}

// A store at TMP/store holding one layer; files are given as path -> content.
struct TestStore {
  TempDir tmp;
  std::shared_ptr<store::Store> st;
  std::map<std::string, std::string> objects;  // path -> object name

  TestStore() {
    std::string error;
    st = store::Store::open(tmp / "store", true, &error);
    REQUIRE(st != nullptr);
  }

  Entry file(const std::string& path, const std::string& content, uint32_t mode = 0644) {
    auto lock = st->lock_shared();
    REQUIRE(lock.ok());
    auto put = st->put_bytes(content);
    REQUIRE(put.ok());
    objects[path] = put->name;
    Entry e = entry(path, EntryKind::kFile, mode);
    e.size = content.size();
    e.object = put->name;
    return e;
  }

  std::string publish(std::vector<Entry> entries) {
    store::Manifest m;
    m.entries = std::move(entries);
    std::string error;
    REQUIRE(store::normalize(&m, &error));
    auto id = st->publish_layer(m, store::LayerInfo{});
    REQUIRE(id.ok());
    return *id;
  }

  std::unique_ptr<Layer> open(const std::string& id, bool verify = false) {
    std::string error;
    auto layer = core::open_store_layer(st, id, core::StoreLayerOptions{verify}, &error);
    INFO(error);
    REQUIRE(layer != nullptr);
    return layer;
  }

  std::string object_file(const std::string& path) {
    return tmp / ("store/" + store::Store::object_path(objects.at(path)));
  }
};

// The layer most tests use.
std::string sample_layer(TestStore& s) {
  std::vector<Entry> e;
  e.push_back(entry("/", EntryKind::kDir));
  Entry a = entry("/a", EntryKind::kDir, 0700);
  a.opaque = true;
  a.xattrs = {{"user.dir", "1"}};
  e.push_back(a);
  e.push_back(s.file("/a/x", "x in a"));
  e.push_back(entry("/d", EntryKind::kDir));
  Entry f = s.file("/d/f", "hello", 0640);
  f.uid = 1;
  f.gid = 2;
  f.xattrs = {{"user.color", "blue"}, {"user.empty", ""}};
  e.push_back(f);
  Entry h = entry("/d/h", EntryKind::kHardlink, 0);
  h.target = "/d/f";
  e.push_back(h);
  e.push_back(entry("/d/sub", EntryKind::kDir));
  Entry l = entry("/link", EntryKind::kSymlink, 0777);
  l.target = "d/f";
  e.push_back(l);
  Entry c = entry("/cdev", EntryKind::kChar, 0600);
  c.rdev_major = 1;
  c.rdev_minor = 3;
  e.push_back(c);
  Entry b = entry("/bdev", EntryKind::kBlock, 0600);
  b.rdev_major = 8;
  b.rdev_minor = 1;
  e.push_back(b);
  e.push_back(entry("/fifo", EntryKind::kFifo, 0644));
  e.push_back(entry("/gone", EntryKind::kWhiteout, 0));
  e.push_back(s.file("/empty", ""));
  return s.publish(std::move(e));
}

ObjRef walk(const Layer& layer, const std::string& path) {
  auto cur = layer.root();
  REQUIRE(cur.ok());
  ObjRef obj = std::move(*cur);
  size_t pos = 1;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    auto next = layer.lookup(obj, path.substr(pos, end - pos).c_str());
    INFO(path);
    REQUIRE(next.ok());
    obj = std::move(*next);
    pos = end + 1;
  }
  return obj;
}

std::string xattr_of(const std::string& path, const char* name) {
  char buf[256];
  ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof buf);
  return n < 0 ? "<absent>" : std::string(buf, static_cast<size_t>(n));
}

struct stat stat_of(const Layer& layer, const std::string& path) {
  auto st = layer.stat(walk(layer, path));
  REQUIRE(st.ok());
  return *st;
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    REQUIRE(n >= 0);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

TEST_CASE("store layer: lookup, stat, readlink, list", "[core][store_layer]") {
  TestStore s;
  auto layer = s.open(sample_layer(s));
  const dev_t dev = layer->dev();
  CHECK(major(dev) == 0xfff);
  CHECK(s.open(sample_layer(s))->dev() != dev);  // unique per instance

  auto root = stat_of(*layer, "/");
  CHECK(S_ISDIR(root.st_mode));
  CHECK(root.st_ino == 1);
  CHECK(root.st_dev == dev);
  CHECK(root.st_nlink == 4);  // ".", its name, a/.., d/..

  auto f = stat_of(*layer, "/d/f");
  CHECK(f.st_mode == (S_IFREG | 0640));
  CHECK(f.st_uid == 1);
  CHECK(f.st_gid == 2);
  CHECK(f.st_size == 5);
  CHECK(f.st_nlink == 2);
  CHECK(f.st_mtim.tv_sec == 1700000000);
  CHECK(f.st_mtim.tv_nsec == 42);
  CHECK(f.st_atim.tv_sec == 1700000000);
  CHECK(f.st_ctim.tv_sec == 1700000000);
  CHECK(f.st_blksize == 4096);
  auto h = stat_of(*layer, "/d/h");
  CHECK(h.st_ino == f.st_ino);
  CHECK(h.st_mode == f.st_mode);
  CHECK(h.st_nlink == 2);
  CHECK(stat_of(*layer, "/d").st_nlink == 3);

  auto l = stat_of(*layer, "/link");
  CHECK(S_ISLNK(l.st_mode));
  CHECK(l.st_size == 3);
  CHECK(*layer->readlink(walk(*layer, "/link")) == "d/f");
  CHECK(layer->readlink(walk(*layer, "/d/f")).code() == EINVAL);

  auto c = stat_of(*layer, "/cdev");
  CHECK(S_ISCHR(c.st_mode));
  CHECK(c.st_rdev == makedev(1, 3));
  CHECK(S_ISBLK(stat_of(*layer, "/bdev").st_mode));
  CHECK(stat_of(*layer, "/bdev").st_rdev == makedev(8, 1));
  CHECK(S_ISFIFO(stat_of(*layer, "/fifo").st_mode));
  auto w = stat_of(*layer, "/gone");
  CHECK(S_ISCHR(w.st_mode));
  CHECK(w.st_rdev == 0);

  auto r = layer->root();
  REQUIRE(r.ok());
  for (const char* bad : {".", "..", "nope", "d/f", ""}) {
    INFO(bad);
    CHECK(layer->lookup(*r, bad).code() == ENOENT);
    CHECK(layer->stat_at(*r, bad).code() == ENOENT);
    CHECK(*layer->contains(*r, bad) == false);
  }
  CHECK(*layer->contains(*r, "gone"));
  CHECK(layer->stat_at(*r, "link")->st_ino == l.st_ino);
  CHECK(layer->lookup(walk(*layer, "/d/f"), "x").code() == ENOTDIR);

  // The form UnionFs uses for non-directories: directory + name.
  ObjRef named(std::make_shared<ObjRef>(walk(*layer, "/d")), "h");
  CHECK(layer->stat(named)->st_ino == f.st_ino);

  std::map<std::string, std::pair<unsigned char, ino_t>> listed;
  REQUIRE(layer
              ->list(walk(*layer, "/d"),
                     [&](std::string_view name, unsigned char type, ino_t ino) {
                       listed[std::string(name)] = {type, ino};
                       return lamina::Status{};
                     })
              .ok());
  CHECK(listed.size() == 3);
  using Listed = std::pair<unsigned char, ino_t>;
  CHECK(listed["f"] == Listed{DT_REG, f.st_ino});
  CHECK(listed["h"] == Listed{DT_REG, f.st_ino});
  CHECK(listed["sub"].first == DT_DIR);
  CHECK(listed["sub"].second == stat_of(*layer, "/d/sub").st_ino);
  CHECK(layer->statfs().ok());
}

TEST_CASE("store layer: xattrs, opaque mark, open", "[core][store_layer]") {
  TestStore s;
  auto layer = s.open(sample_layer(s));
  ObjRef f = walk(*layer, "/d/f");
  CHECK(*layer->getxattr(f, "user.color") == "blue");
  CHECK(*layer->getxattr(f, "user.color", nullptr, 0) == 4);
  char small[2];
  CHECK(layer->getxattr(f, "user.color", small, sizeof small).code() == ERANGE);
  char buf[16];
  REQUIRE(*layer->getxattr(f, "user.color", buf, sizeof buf) == 4);
  CHECK(std::string(buf, 4) == "blue");
  CHECK(layer->getxattr(f, "user.none").code() == ENODATA);
  CHECK(*layer->getxattr(f, "user.empty") == "");
  CHECK(*layer->listxattr(f) == std::string("user.color\0user.empty\0", 22));
  CHECK(*layer->listxattr(walk(*layer, "/d")) == "");
  CHECK(layer->getxattr(walk(*layer, "/d"), "trusted.overlay.opaque").code() == ENODATA);

  ObjRef a = walk(*layer, "/a");
  CHECK(*layer->getxattr(a, "trusted.overlay.opaque") == "y");
  CHECK(*layer->listxattr(a) == std::string("trusted.overlay.opaque\0user.dir\0", 32));

  auto fd = layer->open(walk(*layer, "/d/h"), O_RDONLY | O_NOATIME);
  REQUIRE(fd.ok());
  CHECK(read_all(fd->get()) == "hello");
  auto empty = layer->open(walk(*layer, "/empty"), O_RDONLY);
  REQUIRE(empty.ok());
  CHECK(read_all(empty->get()).empty());
  CHECK(layer->open(f, O_WRONLY).code() == EROFS);
  CHECK(layer->open(f, O_RDWR).code() == EROFS);
  CHECK(layer->open(f, O_RDONLY | O_TRUNC).code() == EROFS);
  CHECK(layer->open(a, O_RDONLY | O_DIRECTORY).code() == EISDIR);
}

TEST_CASE("store layer: a shared flock on the manifest while open", "[core][store_layer]") {
  TestStore s;
  const std::string id = sample_layer(s);
  auto try_exclusive = [&] {
    auto fd = s.st->open_manifest(id);
    REQUIRE(fd.ok());
    return sys::flock(fd->get(), LOCK_EX | LOCK_NB).code();
  };
  {
    auto layer = s.open(id);
    CHECK(try_exclusive() == EWOULDBLOCK);
  }
  CHECK(try_exclusive() == 0);
  std::string error;
  CHECK(core::open_store_layer(s.st, std::string(32, '0'), {}, &error) == nullptr);
  CHECK(error.find("not in the store") != std::string::npos);
  CHECK(core::open_store_layer(s.st, "xyz", {}, &error) == nullptr);
}

TEST_CASE("store layer: object size and hash checks", "[core][store_layer]") {
  TestStore s;
  const std::string id = s.publish({entry("/", EntryKind::kDir), s.file("/f", "0123456789")});
  const std::string obj = s.object_file("/f");
  {
    auto good = s.open(id, true);
    auto fd = good->open(walk(*good, "/f"), O_RDONLY);
    REQUIRE(fd.ok());
    CHECK(read_all(fd->get()) == "0123456789");
  }
  // Same size, one byte changed: only verify sees it.
  REQUIRE(::chmod(obj.c_str(), 0644) == 0);
  {
    int fd = ::open(obj.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, "X", 1, 3) == 1);
    ::close(fd);
  }
  auto verified = s.open(id, true);
  CHECK(verified->open(walk(*verified, "/f"), O_RDONLY).code() == EIO);
  CHECK(verified->open(walk(*verified, "/f"), O_RDONLY).code() == EIO);  // cached verdict
  auto trusting = s.open(id, false);
  CHECK(trusting->open(walk(*trusting, "/f"), O_RDONLY).ok());
  // A size that differs from the manifest's is refused always.
  REQUIRE(::truncate(obj.c_str(), 4) == 0);
  CHECK(trusting->open(walk(*trusting, "/f"), O_RDONLY).code() == EIO);
  // A missing object too.
  REQUIRE(::unlink(obj.c_str()) == 0);
  CHECK(trusting->open(walk(*trusting, "/f"), O_RDONLY).code() == EIO);
}

TEST_CASE("store layer: concurrent lookups and verified opens", "[core][store_layer]") {
  TestStore s;
  auto layer = s.open(sample_layer(s), true);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        auto root = layer->root();
        auto d = root ? layer->lookup(*root, "d") : lamina::Result<ObjRef>(lamina::Error{EIO, ""});
        if (!d) {
          ++failures;
          continue;
        }
        ObjRef named(std::make_shared<ObjRef>(std::move(*d)), i % 2 ? "f" : "h");
        auto st = layer->stat(named);
        auto fd = layer->open(named, O_RDONLY);
        char buf[8];
        if (!st || st->st_size != 5 || !fd || ::pread(fd->get(), buf, sizeof buf, 0) != 5) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
}

namespace {

// upper (DirLayer) / the sample store layer / lower (DirLayer), writable.
struct StoreUnion {
  TestStore s;
  std::unique_ptr<UnionFs> fs;

  std::string upper() const { return s.tmp / "upper"; }
  std::string lower() const { return s.tmp / "lower"; }

  StoreUnion() {
    for (const char* d : {"upper", "lower", "work", "index"}) t::make_dir(s.tmp / d);
    t::write_file(lower() + "/gone", "hidden by the store's whiteout");
    t::write_file(lower() + "/a/old", "hidden by the opaque dir");
    t::write_file(lower() + "/d/low", "merged");
    t::write_file(lower() + "/lowfile", "visible");
    const std::string id = sample_layer(s);
    std::vector<std::unique_ptr<Layer>> layers;
    layers.push_back(std::move(*core::DirLayer::open(upper())));
    layers.push_back(s.open(id));
    layers.push_back(std::move(*core::DirLayer::open(lower())));
    core::UnionConfig cfg;
    cfg.has_upper = true;
    cfg.read_only = false;
    cfg.fsync = false;
    auto work = sys::open_path(AT_FDCWD, (s.tmp / "work").c_str());
    REQUIRE(work.ok());
    auto made = UnionFs::create(std::move(layers), cfg, std::move(*work));
    REQUIRE(made.ok());
    fs = std::move(*made);
    fs->set_upper_format(true, true);
    auto index = sys::open_path(AT_FDCWD, (s.tmp / "index").c_str());
    REQUIRE(index.ok());
    fs->set_index_dir(std::move(*index));
  }

  Node* walk(const std::string& path) { return t::walk(*fs, path); }
  std::set<std::string> names(const std::string& path) { return t::names(*fs, path); }
  std::string read(const std::string& path) { return t::read_path(*fs, path); }
  struct stat attr(const std::string& path) {
    Node* n = walk(path);
    REQUIRE(n != nullptr);
    auto st = fs->getattr(n);
    REQUIRE(st.ok());
    return *st;
  }
};

}  // namespace

TEST_CASE("store layer in a union: whiteouts and opaque dirs hide the layers below",
          "[core][store_layer]") {
  StoreUnion u;
  CHECK(u.names("") ==
        std::set<std::string>{"a", "bdev", "cdev", "d", "empty", "fifo", "link", "lowfile"});
  CHECK(u.walk("gone") == nullptr);
  CHECK(u.names("a") == std::set<std::string>{"x"});
  CHECK(u.walk("a/old") == nullptr);
  CHECK(u.names("d") == std::set<std::string>{"f", "h", "low", "sub"});
  CHECK(u.read("d/low") == "merged");
  CHECK(u.read("d/h") == "hello");
  CHECK(u.read("lowfile") == "visible");
  CHECK(u.attr("d/f").st_ino == u.attr("d/h").st_ino);
  CHECK(u.attr("d/f").st_nlink == 2);
  // readdir's numbers are lookup's.
  auto entries = u.fs->list(u.walk("d"));
  REQUIRE(entries.ok());
  for (const auto& e : *entries) {
    if (e.name == "." || e.name == "..") continue;
    INFO(e.name);
    CHECK(e.ino == u.attr("d/" + e.name).st_ino);
  }
  // The opaque mark is the union's business, never shown.
  char buf[64];
  CHECK(u.fs->getxattr(u.walk("a"), "trusted.overlay.opaque", buf, sizeof buf).code() == ENODATA);
  CHECK(*u.fs->getxattr(u.walk("d/f"), "user.color", buf, sizeof buf) == 4);
  // Removing a store file leaves a whiteout in the upper.
  REQUIRE(u.fs->unlink(u.walk("d"), "f").ok());
  CHECK(u.names("d") == std::set<std::string>{"h", "low", "sub"});
  struct stat wst;
  REQUIRE(::lstat((u.upper() + "/d/f").c_str(), &wst) == 0);
  CHECK(S_ISCHR(wst.st_mode));
}

TEST_CASE("store layer in a union: copy-up of files and hard links", "[core][store_layer]") {
  StoreUnion u;
  const auto before = u.attr("d/f");
  Node* f = u.walk("d/f");
  REQUIRE(f != nullptr);
  auto fd = u.fs->open(f, O_WRONLY | O_APPEND);
  REQUIRE(fd.ok());
  REQUIRE(::write(fd->get(), "+", 1) == 1);
  fd->reset();
  CHECK(t::read_file(u.upper() + "/d/f") == "hello+");
  struct stat up;
  REQUIRE(::lstat((u.upper() + "/d/f").c_str(), &up) == 0);
  CHECK((up.st_mode & 07777) == 0640);
  CHECK(up.st_uid == 1);
  CHECK(up.st_gid == 2);
  CHECK(xattr_of(u.upper() + "/d/f", "user.color") == "blue");
  // The other name shows the same inode, through the index.
  CHECK(u.read("d/h") == "hello+");
  CHECK(u.attr("d/h").st_ino == before.st_ino);
  CHECK(u.attr("d/f").st_ino == before.st_ino);
  CHECK(u.attr("d/h").st_nlink == 2);
  bool indexed = false;
  for (const auto& e : std::filesystem::directory_iterator(u.s.tmp / "index")) {
    indexed = indexed || e.path().filename().string().rfind("s-", 0) == 0;
  }
  CHECK(indexed);
  // The store itself is untouched.
  CHECK(t::read_file(u.s.object_file("/d/f")) == "hello");

  // chmod of a store file copies metadata only: the data still comes from the store.
  Node* x = u.walk("a/x");
  REQUIRE(x != nullptr);
  core::SetAttr chmod;
  chmod.valid = core::SetAttr::kMode;
  chmod.mode = 0600;
  REQUIRE(u.fs->setattr(x, chmod, -1).ok());
  CHECK(xattr_of(u.upper() + "/a/x", "trusted.overlay.metacopy") != "<absent>");
  CHECK(u.read("a/x") == "x in a");
  CHECK((u.attr("a/x").st_mode & 07777) == 0600);
  // A symlink and a file in an opaque directory copy up too.
  auto xfd = u.fs->open(x, O_WRONLY | O_TRUNC);
  REQUIRE(xfd.ok());
  REQUIRE(::write(xfd->get(), "new", 3) == 3);
  CHECK(t::read_file(u.upper() + "/a/x") == "new");
  CHECK(u.names("a") == std::set<std::string>{"x"});
  REQUIRE(u.fs->rename(u.fs->root(), "link", u.fs->root(), "link2", 0).ok());
  CHECK(*u.fs->readlink(u.walk("link2")) == "d/f");
  // A device keeps its number and times (nothing was written to it).
  core::SetAttr chown;
  chown.valid = core::SetAttr::kUid;
  chown.uid = 5;
  REQUIRE(u.fs->setattr(u.walk("cdev"), chown, -1).ok());
  struct stat dev;
  REQUIRE(::lstat((u.upper() + "/cdev").c_str(), &dev) == 0);
  CHECK(S_ISCHR(dev.st_mode));
  CHECK(dev.st_rdev == makedev(1, 3));
  CHECK(dev.st_uid == 5);
  CHECK(dev.st_mtim.tv_sec == 1700000000);
  CHECK(dev.st_mtim.tv_nsec == 42);
}
