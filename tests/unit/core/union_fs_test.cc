// SPDX-License-Identifier: Apache-2.0
// Lookup and readdir merge on real temp dirs, without mounting: every whiteout kind x every
// opaque kind x several layer counts.

#include "lamina/core/union_fs.h"

#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "../test_util.h"
#include "lamina/core/dir_layer.h"

using lamina::core::DirLayer;
using lamina::core::Layer;
using lamina::core::Node;
using lamina::core::UnionConfig;
using lamina::core::UnionFs;
using lamina::test::TempDir;
namespace t = lamina::test;

namespace {

enum class Whiteout { kCharDevice, kWhFile, kXattr };
enum class Opaque { kTrustedXattr, kUserXattr, kMarker };

const char* name_of(Whiteout w) {
  switch (w) {
    case Whiteout::kCharDevice: return "char 0/0";
    case Whiteout::kWhFile: return ".wh.NAME";
    case Whiteout::kXattr: return "xattr whiteout";
  }
  return "?";
}
const char* name_of(Opaque o) {
  switch (o) {
    case Opaque::kTrustedXattr: return "trusted.overlay.opaque";
    case Opaque::kUserXattr: return "user.overlay.opaque";
    case Opaque::kMarker: return ".wh..wh..opq";
  }
  return "?";
}

void whiteout(const std::string& dir, const std::string& name, Whiteout kind) {
  t::make_dir(dir);
  switch (kind) {
    case Whiteout::kCharDevice: t::make_char_whiteout(dir + "/" + name); break;
    case Whiteout::kWhFile: t::write_file(dir + "/.wh." + name, ""); break;
    case Whiteout::kXattr:
      t::write_file(dir + "/" + name, "");
      t::set_xattr(dir + "/" + name, "trusted.overlay.whiteout", "");
      t::set_xattr(dir, "trusted.overlay.opaque", "x");
      break;
  }
}

void opaque(const std::string& dir, Opaque kind) {
  t::make_dir(dir);
  switch (kind) {
    case Opaque::kTrustedXattr: t::set_xattr(dir, "trusted.overlay.opaque", "y"); break;
    case Opaque::kUserXattr: t::set_xattr(dir, "user.overlay.opaque", "y"); break;
    case Opaque::kMarker: t::write_file(dir + "/.wh..wh..opq", ""); break;
  }
}

std::unique_ptr<UnionFs> mount(const std::vector<std::string>& dirs) {
  std::vector<std::unique_ptr<Layer>> layers;
  for (const auto& d : dirs) {
    auto l = DirLayer::open(d);
    REQUIRE(l.ok());
    layers.push_back(std::move(*l));
  }
  auto fs = UnionFs::create(std::move(layers), UnionConfig{});
  REQUIRE(fs.ok());
  return std::move(*fs);
}

// Walks a relative path from the root; nullptr when some component is absent.
Node* walk(UnionFs& fs, const std::string& path) {
  Node* n = fs.root();
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    auto r = fs.lookup(n, path.substr(pos, end - pos));
    if (!r) {
      CHECK(r.code() == ENOENT);
      return nullptr;
    }
    n = *r;
    pos = end + 1;
  }
  return n;
}

std::set<std::string> names(UnionFs& fs, const std::string& path) {
  Node* n = path.empty() ? fs.root() : walk(fs, path);
  REQUIRE(n != nullptr);
  auto entries = fs.list(n);
  REQUIRE(entries.ok());
  std::set<std::string> out;
  for (const auto& e : *entries) {
    if (e.name != "." && e.name != "..") {
      CHECK(out.insert(e.name).second);  // no duplicates
    }
  }
  return out;
}

std::string read_all(UnionFs& fs, const std::string& path) {
  Node* n = walk(fs, path);
  REQUIRE(n != nullptr);
  auto fd = fs.open(n, O_RDONLY);
  REQUIRE(fd.ok());
  std::string out(4096, '\0');
  ssize_t r = ::read(fd->get(), out.data(), out.size());
  REQUIRE(r >= 0);
  out.resize(static_cast<size_t>(r));
  return out;
}

}  // namespace

TEST_CASE("merged view: whiteout kinds x opaque kinds x layer counts", "[core][union]") {
  auto wk = GENERATE(Whiteout::kCharDevice, Whiteout::kWhFile, Whiteout::kXattr);
  auto ok = GENERATE(Opaque::kTrustedXattr, Opaque::kUserXattr, Opaque::kMarker);
  int nlayers = GENERATE(2, 3, 5);
  INFO("whiteout=" << name_of(wk) << " opaque=" << name_of(ok) << " layers=" << nlayers);

  TempDir tmp;
  std::vector<std::string> dirs;
  for (int i = 0; i < nlayers; ++i) dirs.push_back(tmp / ("l" + std::to_string(i)));
  const std::string top = dirs.front(), base = dirs.back();

  // Bottom layer.
  for (const char* f : {"f0", "f1", "f2", "f3"}) t::write_file(base + "/" + f, std::string(f));
  t::write_file(base + "/d/keep", "keep");
  t::write_file(base + "/d/gone", "gone");
  t::write_file(base + "/o/hidden", "hidden");
  t::write_file(base + "/m/base", "base");
  t::write_file(base + "/g/deep/x", "x");
  // Middle layers add to the merged dir m and add top-level files.
  std::set<std::string> m_names = {"base", "top"};
  std::set<std::string> root_names = {"f0", "f2", "f3", "d", "o", "m"};
  for (int i = 1; i + 1 < nlayers; ++i) {
    t::write_file(dirs[i] + "/m/l" + std::to_string(i), "mid");
    t::write_file(dirs[i] + "/mid" + std::to_string(i), "mid");
    t::write_file(dirs[i] + "/f3", "f3 from layer " + std::to_string(i));
    root_names.insert("mid" + std::to_string(i));
    m_names.insert("l" + std::to_string(i));
  }
  // The top layer deletes and replaces.
  whiteout(top, "f1", wk);
  whiteout(top + "/d", "gone", wk);
  opaque(top + "/o", ok);
  t::write_file(top + "/o/new", "new");
  t::write_file(top + "/m/top", "top");
  t::write_file(top + "/f2/inner", "inner");  // a file below replaced by a directory
  whiteout(top, "g", wk);                     // a whole directory deleted
  if (nlayers > 2) {
    whiteout(top, "mid1", wk);
    root_names.erase("mid1");
  }

  auto fs = mount(dirs);
  CHECK(names(*fs, "") == root_names);
  CHECK(names(*fs, "d") == std::set<std::string>{"keep"});
  CHECK(names(*fs, "o") == std::set<std::string>{"new"});
  CHECK(names(*fs, "m") == m_names);
  CHECK(names(*fs, "f2") == std::set<std::string>{"inner"});
  CHECK(walk(*fs, "f1") == nullptr);
  CHECK(walk(*fs, "g") == nullptr);
  CHECK(walk(*fs, "d/gone") == nullptr);
  CHECK(walk(*fs, "o/hidden") == nullptr);
  CHECK(walk(*fs, ".wh.f1") == nullptr);
  CHECK(walk(*fs, "o/.wh..wh..opq") == nullptr);
  CHECK(read_all(*fs, "d/keep") == "keep");
  CHECK(read_all(*fs, "f3") == (nlayers > 2 ? "f3 from layer 1" : "f3"));
  Node* f2 = walk(*fs, "f2");
  REQUIRE(f2 != nullptr);
  CHECK(f2->is_dir());
  CHECK(f2->parts()->size() == 1);  // the file below does not merge
}

TEST_CASE("a non-directory hides a directory below; a directory hides a file below",
          "[core][union]") {
  TempDir tmp;
  t::write_file(tmp / "l1/x", "file below");
  t::write_file(tmp / "l1/y/inner", "below");
  t::write_file(tmp / "l0/x/child", "dir above");
  t::write_file(tmp / "l0/y", "file above");
  auto fs = mount({tmp / "l0", tmp / "l1"});
  CHECK(names(*fs, "x") == std::set<std::string>{"child"});
  Node* y = walk(*fs, "y");
  REQUIRE(y != nullptr);
  CHECK(S_ISREG(y->type));
  CHECK(read_all(*fs, "y") == "file above");
}

TEST_CASE("a whiteout beside a same-layer directory hides only lower layers", "[core][union]") {
  // OCI: whiteouts apply to lower layers; the directory in the same layer stays and acts as
  // an opaque directory.
  TempDir tmp;
  t::write_file(tmp / "l1/d/old", "old");
  t::write_file(tmp / "l0/d/new", "new");
  t::write_file(tmp / "l0/.wh.d", "");
  t::write_file(tmp / "l0/f", "f");
  t::write_file(tmp / "l0/.wh.f", "");
  auto fs = mount({tmp / "l0", tmp / "l1"});
  CHECK(names(*fs, "") == std::set<std::string>{"d", "f"});
  CHECK(names(*fs, "d") == std::set<std::string>{"new"});
}

TEST_CASE("xattr whiteouts count only in directories marked opaque=x", "[core][union]") {
  TempDir tmp;
  t::write_file(tmp / "l1/a/gone", "gone");
  t::write_file(tmp / "l1/b/kept", "kept");
  whiteout(tmp / "l0/a", "gone", Whiteout::kXattr);
  // Unmarked directory: the zero-size file with the xattr is an ordinary empty file.
  t::write_file(tmp / "l0/b/kept", "");
  t::set_xattr(tmp / "l0/b/kept", "trusted.overlay.whiteout", "");
  auto fs = mount({tmp / "l0", tmp / "l1"});
  CHECK(names(*fs, "a").empty());
  CHECK(names(*fs, "b") == std::set<std::string>{"kept"});
  CHECK(read_all(*fs, "b/kept").empty());
}

TEST_CASE("an opaque root hides the layers below it", "[core][union]") {
  TempDir tmp;
  t::write_file(tmp / "l1/below", "x");
  t::write_file(tmp / "l0/above", "y");
  t::set_xattr(tmp / "l0", "trusted.overlay.opaque", "y");
  auto fs = mount({tmp / "l0", tmp / "l1"});
  CHECK(names(*fs, "") == std::set<std::string>{"above"});
}

TEST_CASE("inode numbers: unique, stable, equal in readdir and getattr", "[core][union]") {
  TempDir tmp;
  t::write_file(tmp / "l2/shared/a", "a");
  t::write_file(tmp / "l2/hl", "hard");
  REQUIRE(::link((tmp / "l2/hl").c_str(), (tmp / "l2/hl2").c_str()) == 0);
  t::write_file(tmp / "l1/shared/b", "b");
  t::write_file(tmp / "l0/shared/c", "c");
  t::write_file(tmp / "l0/only_top/d", "d");
  t::write_file(tmp / "l1/plain", "p");
  auto fs = mount({tmp / "l0", tmp / "l1", tmp / "l2"});

  std::map<std::string, uint64_t> ino;
  auto entries = fs->list(fs->root());
  REQUIRE(entries.ok());
  for (const auto& e : *entries) {
    if (e.name == "." || e.name == "..") continue;
    Node* n = walk(*fs, e.name);
    REQUIRE(n != nullptr);
    auto st = fs->getattr(n);
    REQUIRE(st.ok());
    INFO(e.name);
    CHECK(st->st_ino == e.ino);     // readdir's d_ino is what stat shows
    CHECK(n == walk(*fs, e.name));  // the same node every time
    ino[e.name] = st->st_ino;
  }
  CHECK(ino.at("hl") == ino.at("hl2"));
  std::set<uint64_t> distinct;
  for (const auto& [name, i] : ino) distinct.insert(i);
  CHECK(distinct.size() == ino.size() - 1);  // only the hard link pair shares

  Node* hl = walk(*fs, "hl");
  auto st = fs->getattr(hl);
  REQUIRE(st.ok());
  CHECK(st->st_nlink == 2);
  // A merged directory shows st_nlink 1, like kernel overlayfs.
  auto shared = fs->getattr(walk(*fs, "shared"));
  REQUIRE(shared.ok());
  CHECK(shared->st_nlink == 1);
  // "." is the directory itself.
  auto sub = fs->list(walk(*fs, "shared"));
  REQUIRE(sub.ok());
  CHECK((*sub)[0].name == ".");
  CHECK((*sub)[0].ino == shared->st_ino);
  CHECK((*sub)[1].name == "..");
}

TEST_CASE("overlay xattrs are private", "[core][union]") {
  TempDir tmp;
  t::write_file(tmp / "l1/d/x", "x");
  t::make_dir(tmp / "l0/d");
  t::set_xattr(tmp / "l0/d", "trusted.overlay.opaque", "y");
  t::set_xattr(tmp / "l0/d", "user.overlay.redirect", "/elsewhere");
  t::set_xattr(tmp / "l0/d", "user.visible", "yes");
  auto fs = mount({tmp / "l0", tmp / "l1"});
  Node* d = walk(*fs, "d");
  REQUIRE(d != nullptr);
  auto size = fs->listxattr(d, nullptr, 0);
  REQUIRE(size.ok());
  std::string buf(*size, '\0');
  auto n = fs->listxattr(d, buf.data(), buf.size());
  REQUIRE(n.ok());
  CHECK(buf == std::string("user.visible\0", 13));
  char v[16];
  CHECK(fs->getxattr(d, "trusted.overlay.opaque", v, sizeof v).code() == ENODATA);
  CHECK(fs->getxattr(d, "user.overlay.redirect", v, sizeof v).code() == ENODATA);
  auto got = fs->getxattr(d, "user.visible", v, sizeof v);
  REQUIRE(got.ok());
  CHECK(std::string(v, *got) == "yes");
}

TEST_CASE("id mapping and override_stat shape what getattr shows", "[core][union]") {
  TempDir tmp;
  t::write_file(tmp / "l0/f", "f");
  REQUIRE(::chown((tmp / "l0/f").c_str(), 1, 1) == 0);
  t::write_file(tmp / "l0/g", "g");
  t::set_xattr(tmp / "l0/g", "user.containers.override_stat", "42:43:0640");
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::move(*DirLayer::open(tmp / "l0")));
  UnionConfig cfg;
  REQUIRE_FALSE(lamina::core::IdMap::parse("0:1000:1:1:100000:65536", &cfg.uid_map));
  cfg.xattr_permissions = lamina::core::XattrPermissions::kContainers;
  auto fs = UnionFs::create(std::move(layers), cfg);
  REQUIRE(fs.ok());
  auto f = (*fs)->getattr(walk(**fs, "f"));
  REQUIRE(f.ok());
  CHECK(f->st_uid == 100000);
  CHECK(f->st_gid == 1);  // no gid mapping given
  auto g = (*fs)->getattr(walk(**fs, "g"));
  REQUIRE(g.ok());
  CHECK(g->st_uid == 42);
  CHECK(g->st_gid == 43);
  CHECK((g->st_mode & 07777) == 0640);
  CHECK(S_ISREG(g->st_mode));
  char v[8];
  CHECK((*fs)->getxattr(walk(**fs, "g"), "user.containers.override_stat", v, sizeof v).code() ==
        ENODATA);
}

TEST_CASE("open refuses writes; a large directory lists completely", "[core][union]") {
  TempDir tmp;
  for (int i = 0; i < 20000; ++i) t::write_file(tmp / ("l1/big/" + std::to_string(i)), "");
  for (int i = 0; i < 20000; i += 2) t::make_char_whiteout(tmp / ("l0/big/" + std::to_string(i)));
  t::write_file(tmp / "l0/f", "f");
  auto fs = mount({tmp / "l0", tmp / "l1"});
  CHECK(names(*fs, "big").size() == 10000);
  Node* f = walk(*fs, "f");
  REQUIRE(f != nullptr);
  CHECK(fs->open(f, O_WRONLY).code() == EROFS);
  CHECK(fs->open(f, O_RDWR).code() == EROFS);
  CHECK(fs->open(f, O_RDONLY | O_TRUNC).code() == EROFS);
}

TEST_CASE("forget frees nodes; the root stays", "[core][union]") {
  TempDir tmp;
  t::write_file(tmp / "l0/a", "a");
  auto fs = mount({tmp / "l0"});
  size_t before = fs->node_count();
  Node* a = walk(*fs, "a");
  REQUIRE(a != nullptr);
  REQUIRE(*fs->lookup(fs->root(), "a") == a);
  CHECK(fs->node_count() == before + 1);
  fs->forget(a, 2);
  CHECK(fs->node_count() == before);
  fs->forget(fs->root(), 1);
  CHECK(fs->node_count() == before);
}

TEST_CASE("a merged directory with an upper part shows its lower part's st_ino", "[core][union]") {
  TempDir tmp;
  t::write_file(tmp / "upper/d/u", "u");
  t::write_file(tmp / "upper/solo/s", "s");
  t::write_file(tmp / "lower/d/l", "l");
  t::write_file(tmp / "upper/o/u", "u");
  t::write_file(tmp / "lower/o/l", "l");
  opaque(tmp / "upper/o", Opaque::kTrustedXattr);
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::move(*DirLayer::open(tmp / "upper")));
  layers.push_back(std::move(*DirLayer::open(tmp / "lower")));
  UnionConfig cfg;
  cfg.has_upper = true;
  t::make_dir(tmp / "work");
  auto work = lamina::sys::open_path(AT_FDCWD, (tmp / "work").c_str());
  REQUIRE(work.ok());
  auto made = UnionFs::create(std::move(layers), cfg, std::move(*work));
  REQUIRE(made.ok());
  UnionFs& fs = **made;
  struct stat lower_d, upper_o, upper_solo;
  REQUIRE(::lstat((tmp / "lower/d").c_str(), &lower_d) == 0);
  REQUIRE(::lstat((tmp / "upper/o").c_str(), &upper_o) == 0);
  REQUIRE(::lstat((tmp / "upper/solo").c_str(), &upper_solo) == 0);
  std::map<std::string, uint64_t> want = {
      {"d", lower_d.st_ino}, {"o", upper_o.st_ino}, {"solo", upper_solo.st_ino}};
  auto entries = fs.list(fs.root());
  REQUIRE(entries.ok());
  for (const auto& e : *entries) {
    if (e.name == "." || e.name == "..") continue;
    INFO(e.name);
    CHECK(e.ino == want.at(e.name));
    auto st = fs.getattr(walk(fs, e.name));
    REQUIRE(st.ok());
    CHECK(st->st_ino == want.at(e.name));
  }
}

TEST_CASE("regression: names too long for a .wh. probe resolve in lower layers", "[core][union]") {
  // ".wh." + a 252..255-byte name exceeds NAME_MAX: the probe must not turn into an error.
  TempDir tmp;
  std::set<std::string> want;
  for (size_t len : {250, 251, 252, 255}) {
    std::string name(len, 'n');
    name[0] = static_cast<char>('a' + (len % 26));
    t::write_file(tmp / ("l1/d/" + name), "x");
    want.insert(name);
  }
  t::write_file(tmp / "l0/d/top", "t");
  want.insert("top");
  auto fs = mount({tmp / "l0", tmp / "l1"});
  CHECK(names(*fs, "d") == want);
  for (const auto& n : want) CHECK(walk(*fs, "d/" + n) != nullptr);
}

TEST_CASE("fuse-overlayfs's rootless opaque xattr is read and hidden", "[core][union]") {
  TempDir tmp;
  t::write_file(tmp / "l1/d/below", "x");
  t::write_file(tmp / "l0/d/above", "y");
  t::set_xattr(tmp / "l0/d", "user.fuseoverlayfs.opaque", "y");
  t::set_xattr(tmp / "l0/d", "user.fuseoverlayfs.origin", "something");
  auto fs = mount({tmp / "l0", tmp / "l1"});
  CHECK(names(*fs, "d") == std::set<std::string>{"above"});
  Node* d = walk(*fs, "d");
  REQUIRE(d != nullptr);
  auto size = fs->listxattr(d, nullptr, 0);
  REQUIRE(size.ok());
  CHECK(*size == 0);
}

TEST_CASE("regression: cached files hold no descriptor (RLIMIT_NOFILE)", "[core][union]") {
  // The bench walked 30,000 files and the daemon ran out of descriptors: one per cached
  // node. Only directories may hold one now.
  TempDir tmp;
  for (int i = 0; i < 3000; ++i) t::write_file(tmp / ("l1/d/f" + std::to_string(i)), "x");
  t::write_file(tmp / "l0/d/top", "t");
  auto count_fds = [] {
    return std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                         std::filesystem::directory_iterator());
  };
  auto fs = mount({tmp / "l0", tmp / "l1"});
  Node* d = walk(*fs, "d");
  REQUIRE(d != nullptr);
  auto before = count_fds();
  for (int i = 0; i < 3000; ++i) {
    auto n = fs->lookup(d, "f" + std::to_string(i));
    REQUIRE(n.ok());
    REQUIRE(fs->getattr(*n).ok());
  }
  CHECK(count_fds() - before < 10);
  CHECK(fs->node_count() >= 3000);
}
