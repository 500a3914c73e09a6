// SPDX-License-Identifier: Apache-2.0
// read_layer_tar: tars built here with libarchive (uncompressed, gzip, zstd) -> the expected
// manifest and objects; every hostile input refused with the entry named.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "../test_util.h"
#include "lamina/base/sys.h"
#include "lamina/oci/digest.h"
#include "lamina/oci/layer_tar.h"

namespace lamina::oci {
namespace {

using Catch::Matchers::Contains;
using store::Entry;
using store::EntryKind;
using store::Manifest;
using test::TempDir;

struct TarEntry {
  std::string path;
  char type = 'f';  // f d l h c b p
  std::string data;
  std::string link;  // symlink target or hard link target
  unsigned mode = 0644;
  int64_t uid = 0;
  int64_t gid = 0;
  int64_t mtime = 1700000000;
  long nsec = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<std::pair<int64_t, int64_t>> sparse;  // data regions (offset, length)
  int64_t size = -1;                                // for sparse files: the logical size
};

TarEntry node(std::string p, char type, unsigned mode = 0644, std::string data = "",
              std::string link = "") {
  TarEntry t;
  t.path = std::move(p);
  t.type = type;
  t.mode = mode;
  t.data = std::move(data);
  t.link = std::move(link);
  return t;
}
TarEntry file(std::string p, std::string data, unsigned mode = 0644) {
  return node(std::move(p), 'f', mode, std::move(data));
}
TarEntry dir(std::string p, unsigned mode = 0755) { return node(std::move(p), 'd', mode); }
TarEntry symlink(std::string p, std::string target) {
  return node(std::move(p), 'l', 0777, "", std::move(target));
}
TarEntry hardlink(std::string p, std::string target) {
  return node(std::move(p), 'h', 0644, "", std::move(target));
}

la_ssize_t append_cb(archive*, void* data, const void* buf, size_t n) {
  static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// `format`: "pax" or "ustar" (ustar: no xattrs, whole seconds).
std::string make_tar(const std::vector<TarEntry>& entries, Compression c = Compression::kNone,
                     const char* format = "pax") {
  std::string out;
  archive* a = archive_write_new();
  if (std::string(format) == "pax") {
    archive_write_set_format_pax(a);
  } else {
    archive_write_set_format_ustar(a);
  }
  // No padding of the last block: compressed and uncompressed tars then have the same tar bytes.
  archive_write_set_bytes_in_last_block(a, 1);
  if (c == Compression::kGzip) archive_write_add_filter_gzip(a);
  if (c == Compression::kZstd) archive_write_add_filter_zstd(a);
  REQUIRE(archive_write_open(a, &out, nullptr, append_cb, nullptr) == ARCHIVE_OK);
  for (const TarEntry& t : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.path.c_str());
    archive_entry_set_perm(e, t.mode);
    archive_entry_set_uid(e, t.uid);
    archive_entry_set_gid(e, t.gid);
    archive_entry_set_mtime(e, t.mtime, t.nsec);
    for (const auto& [k, v] : t.xattrs)
      archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    switch (t.type) {
      case 'd': archive_entry_set_filetype(e, AE_IFDIR); break;
      case 'l':
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, t.link.c_str());
        break;
      case 'h':
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, t.link.c_str());
        break;
      case 'c':
      case 'b':
        archive_entry_set_filetype(e, t.type == 'c' ? AE_IFCHR : AE_IFBLK);
        archive_entry_set_rdevmajor(e, 1);
        archive_entry_set_rdevminor(e, 3);
        break;
      case 'p': archive_entry_set_filetype(e, AE_IFIFO); break;
      default:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, t.size >= 0 ? t.size : static_cast<int64_t>(t.data.size()));
        for (const auto& [off, len] : t.sparse) archive_entry_sparse_add_entry(e, off, len);
        break;
    }
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    if (t.type == 'f' && !t.data.empty()) {
      REQUIRE(archive_write_data(a, t.data.data(), t.data.size()) ==
              static_cast<la_ssize_t>(t.data.size()));
    }
    archive_entry_free(e);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

struct Fixture {
  TempDir tmp;
  std::unique_ptr<store::Store> st;
  store::StoreLock lock;
  Fixture() {
    std::string error;
    st = store::Store::open(tmp / "store", true, &error);
    REQUIRE(st);
    auto l = st->lock_shared();
    REQUIRE(l);
    lock = std::move(*l);
  }

  bool read(const std::string& bytes, const ReadLayerOptions& options, Manifest* m,
            std::string* diff_id, std::string* error) {
    size_t pos = 0;
    ReadFn fn = [&](void* buf, size_t size) -> Result<size_t> {
      size_t n = std::min(size, bytes.size() - pos);
      std::memcpy(buf, bytes.data() + pos, n);
      pos += n;
      return n;
    };
    return read_layer_stream(*st, fn, options, m, diff_id, error);
  }

  Manifest ok(const std::string& bytes, const ReadLayerOptions& options = {}) {
    Manifest m;
    std::string diff_id;
    std::string error;
    INFO(error);
    bool r = read(bytes, options, &m, &diff_id, &error);
    INFO(error);
    REQUIRE(r);
    return m;
  }

  std::string object(const Entry& e) {
    auto fd = st->open_object(e.object);
    REQUIRE(fd);
    auto data = sys::read_file(fd->get(), "");
    std::string out(e.size, '\0');
    auto n = sys::pread_full(fd->get(), out.data(), out.size(), 0);
    REQUIRE(n);
    out.resize(*n);
    return out;
  }
};

const Entry& find(const Manifest& m, const std::string& path) {
  for (const Entry& e : m.entries) {
    if (e.path == path) return e;
  }
  FAIL("no entry " << path);
  throw std::logic_error("unreachable");
}

bool has(const Manifest& m, const std::string& path) {
  for (const Entry& e : m.entries) {
    if (e.path == path) return true;
  }
  return false;
}

std::vector<TarEntry> every_kind() {
  TarEntry x = file("./etc/conf", "key=value\n");
  x.xattrs = {{"user.k", "v"}, {"trusted.overlay.opaque", "y"}, {"user.overlay.redirect", "r"}};
  x.nsec = 123456789;
  x.uid = 1000;
  x.gid = 100;
  TarEntry sp = file("data/sparse", "");
  sp.size = 8 << 20;
  sp.data = std::string(8 << 20, '\0');
  sp.data.replace(4096, 4, "head");
  sp.data.replace((6 << 20) + 5, 4, "tail");
  sp.sparse = {{4096, 4}, {(6 << 20) + 5, 4}};
  return {
      dir("./", 0700),
      dir("./etc"),
      x,
      file("./etc/big", std::string(300 * 1024, 'b'), 0600),
      symlink("./bin/sh", "busybox"),  // missing parent "bin"
      file("./bin/busybox", "#!/bin/sh\n", 0755),
      hardlink("./bin/ls", "./bin/busybox"),
      hardlink("./a-first-link", "./bin/busybox"),  // sorts before its file
      node("./run/fifo", 'p', 0600),
      file("./etc/.wh.removed", ""),
      file("./opq/.wh..wh..opq", ""),
      file("./opq/kept", "k"),
      sp,
  };
}

TEST_CASE("read_layer_tar: every entry kind, any compression", "[oci]") {
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    CAPTURE(static_cast<int>(c));
    Fixture fx;
    const std::string tar = make_tar(every_kind(), c);
    Manifest m;
    std::string diff_id;
    std::string error;
    REQUIRE(fx.read(tar, {}, &m, &diff_id, &error));
    // The diff_id is the SHA-256 of the uncompressed tar.
    CHECK(diff_id == sha256_digest(make_tar(every_kind())));

    const Entry& root = find(m, "/");
    CHECK(root.kind == EntryKind::kDir);
    CHECK(root.mode == 0700);
    const Entry& conf = find(m, "/etc/conf");
    CHECK(conf.kind == EntryKind::kFile);
    CHECK(fx.object(conf) == "key=value\n");
    CHECK(conf.uid == 1000);
    CHECK(conf.gid == 100);
    CHECK(conf.mtime_sec == 1700000000);
    CHECK(conf.mtime_nsec == 123456789);
    CHECK(conf.xattrs == std::vector<std::pair<std::string, std::string>>{{"user.k", "v"}});
    CHECK(fx.object(find(m, "/etc/big")) == std::string(300 * 1024, 'b'));
    CHECK(find(m, "/etc/big").mode == 0600);
    const Entry& bin = find(m, "/bin");  // synthesized
    CHECK(bin.kind == EntryKind::kDir);
    CHECK(bin.mode == 0755);
    CHECK(bin.mtime_sec == 0);
    CHECK(find(m, "/bin/sh").kind == EntryKind::kSymlink);
    CHECK(find(m, "/bin/sh").target == "busybox");
    // Hard links: the first name in manifest order holds the file.
    const Entry& first = find(m, "/a-first-link");
    CHECK(first.kind == EntryKind::kFile);
    CHECK(fx.object(first) == "#!/bin/sh\n");
    CHECK(first.mode == 0755);
    CHECK(find(m, "/bin/busybox").kind == EntryKind::kHardlink);
    CHECK(find(m, "/bin/busybox").target == "/a-first-link");
    CHECK(find(m, "/bin/ls").target == "/a-first-link");
    CHECK(find(m, "/run/fifo").kind == EntryKind::kFifo);
    CHECK(find(m, "/etc/removed").kind == EntryKind::kWhiteout);
    CHECK_FALSE(has(m, "/etc/.wh.removed"));
    CHECK(find(m, "/opq").opaque);
    CHECK_FALSE(has(m, "/opq/.wh..wh..opq"));
    CHECK(fx.object(find(m, "/opq/kept")) == "k");
    // The sparse file keeps its holes.
    const Entry& sparse = find(m, "/data/sparse");
    CHECK(sparse.size == (8u << 20));
    auto fd = fx.st->open_object(sparse.object);
    REQUIRE(fd);
    struct stat s;
    REQUIRE(::fstat(fd->get(), &s) == 0);
    CHECK(s.st_blocks * 512 < (1 << 20));
    CHECK(fx.object(sparse).substr(4096, 4) == "head");
    CHECK(fx.object(sparse).substr((6 << 20) + 5, 4) == "tail");
    std::string why;
    CHECK(store::validate(m, &why));
  }
}

TEST_CASE("read_layer_tar: whiteout beside an entry of its name, devices when allowed", "[oci]") {
  Fixture fx;
  ReadLayerOptions o;
  o.allow_devices = true;
  Manifest m = fx.ok(make_tar({file(".wh.d", ""), dir("d"), file("d/x", "x"), file(".wh.f", ""),
                               file("f", "new"), node("dev/null", 'c')}),
                     o);
  CHECK(find(m, "/d").opaque);
  CHECK(find(m, "/f").kind == EntryKind::kFile);
  CHECK(find(m, "/dev/null").kind == EntryKind::kChar);
  CHECK(find(m, "/dev/null").rdev_major == 1);
  CHECK(find(m, "/dev/null").rdev_minor == 3);
}

TEST_CASE("read_layer_tar: a directory after its children takes its own metadata", "[oci]") {
  Fixture fx;
  Manifest m = fx.ok(make_tar({file("a/b/c", "c"), dir("a/b", 0700), dir("a", 0711)}));
  CHECK(find(m, "/a").mode == 0711);
  CHECK(find(m, "/a/b").mode == 0700);
}

TEST_CASE("read_layer_tar: paths through a symlink of a layer below", "[oci]") {
  Fixture fx;
  Manifest below =
      fx.ok(make_tar({symlink("etc", "/host/etc"), dir("usr"), symlink("usr/lib", "x")}));
  ReadLayerOptions o;
  o.below = {&below};
  std::string error;
  Manifest m;
  std::string diff_id;
  CHECK_FALSE(fx.read(make_tar({file("etc/passwd", "x")}), o, &m, &diff_id, &error));
  CHECK_THAT(error, Contains("etc/passwd") && Contains("symlink of a layer below"));
  // Re-created as a directory in this layer: fine.
  CHECK(fx.read(make_tar({dir("etc"), file("etc/passwd", "x")}), o, &m, &diff_id, &error));
  // Deleted in this layer, then a directory: fine.
  CHECK(fx.read(make_tar({file(".wh.etc", ""), file("etc/passwd", "x")}), o, &m, &diff_id, &error));
  CHECK(find(m, "/etc").opaque);
  // Under an opaque directory of this layer the symlink below is hidden.
  CHECK(fx.read(make_tar({file("usr/.wh..wh..opq", ""), file("usr/lib/x", "x")}), o, &m, &diff_id,
                &error));
  CHECK_FALSE(fx.read(make_tar({file("usr/lib/x", "x")}), o, &m, &diff_id, &error));
  CHECK_THAT(error, Contains("usr/lib"));
}

struct Hostile {
  const char* name;
  std::vector<TarEntry> entries;
  const char* message;
};

TEST_CASE("read_layer_tar: hostile entries are refused, naming the entry", "[oci]") {
  const std::vector<Hostile> cases = {
      {"absolute path", {file("/etc/passwd", "x")}, "'/etc/passwd': absolute path"},
      {"dot-dot", {file("a/../../etc/passwd", "x")}, "'a/../../etc/passwd': '..'"},
      {"through a symlink of this layer",
       {symlink("etc", "/etc"), file("etc/passwd", "x")},
       "etc/passwd': reached through 'etc', a symlink of this layer"},
      {"symlink after its children",
       {file("etc/passwd", "x"), symlink("etc", "/etc")},
       "'etc': not a directory"},
      {"hard link to outside", {hardlink("ln", "/etc/shadow")}, "ln': hard link"},
      {"hard link with '..' in its target",
       {file("a", "x"), hardlink("ln", "d/../../a")},
       "'ln': hard link target: '..'"},
      {"hard link through a symlink of this layer",
       {symlink("etc", "/etc"), hardlink("ln", "etc/shadow")},
       "'ln': hard link to outside the layer"},
      {"relative symlink parent, then a file through it",
       {symlink("up", "../.."), file("up/etc/passwd", "x")},
       "reached through 'up', a symlink of this layer"},
      {"hard link to a symlink, then a file through it",
       {symlink("s", "/etc"), hardlink("h", "s"), file("h/passwd", "x")},
       "reached through 'h', a symlink of this layer"},
      {"absolute symlink, then a directory and a file through it",
       {symlink("s", "/"), dir("s/etc"), file("s/etc/passwd", "x")},
       "a symlink of this layer"},
      {"name longer than NAME_MAX", {file(std::string(256, 'n'), "x")}, "invalid path"},
      {"hard link to a missing entry", {hardlink("ln", "etc/shadow")}, "hard link to outside"},
      {"hard link to a later entry",
       {hardlink("ln", "f"), file("f", "x")},
       "'ln': hard link to outside the layer"},
      {"hard link to a directory", {dir("d"), hardlink("ln", "d")}, "hard link to a directory"},
      {"duplicate path", {file("f", "1"), file("./f", "2")}, "'./f': duplicate path"},
      {"duplicate directory", {dir("d"), dir("d/")}, "duplicate path"},
      {"device when not root", {node("dev/sda", 'b')}, "'dev/sda': device node when not root"},
      {"bare whiteout", {file("etc/.wh.", "")}, "'etc/.wh.': bare '.wh.'"},
      {"whiteout of dot-dot", {file("etc/.wh...", "")}, "bare '.wh.'"},
      {"aufs whiteout", {file(".wh..wh.plnk", "")}, "unknown whiteout form"},
      {"whiteout name as directory", {file(".wh.x/y", "")}, "whiteout name used as a directory"},
      {"duplicate whiteout", {file(".wh.x", ""), file("./.wh.x", "")}, "duplicate whiteout"},
      {"root not a directory", {file(".", "")}, "the root is not a directory"},
  };
  for (const Hostile& h : cases) {
    SECTION(h.name) {
      Fixture fx;
      Manifest m;
      std::string diff_id;
      std::string error;
      CHECK_FALSE(fx.read(make_tar(h.entries), {}, &m, &diff_id, &error));
      CHECK_THAT(error, Contains(h.message));
      auto images = fx.st->list_image_names();
      REQUIRE(images);
      CHECK(images->empty());
    }
  }
}

TEST_CASE("read_layer_tar: damaged streams and wrong digests", "[oci]") {
  Fixture fx;
  Manifest m;
  std::string diff_id;
  std::string error;
  const std::vector<TarEntry> entries = {file("a", std::string(512, 'a')),
                                         file("b", std::string(512, 'b'))};
  const std::string plain = make_tar(entries, Compression::kNone, "ustar");
  // ustar: a 512-byte header and 512 bytes of data per entry.
  SECTION("truncated in an entry's data") {
    CHECK_FALSE(fx.read(plain.substr(0, 1024 + 700), {}, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("truncated"));
  }
  SECTION("truncated at an entry boundary (no end marker)") {
    CHECK_FALSE(fx.read(plain.substr(0, 2048), {}, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("end-of-archive marker"));
    CHECK_FALSE(fx.read(plain.substr(0, 2048 + 512), {}, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("end-of-archive marker"));
    CHECK(fx.read(plain.substr(0, 2048 + 1024), {}, &m, &diff_id, &error));
  }
  SECTION("no end marker, but the diff_id says these are the published bytes (umoci 0.4)") {
    // Cut right after the last entry's data (no padding, no end marker), as umoci writes.
    const std::vector<TarEntry> odd = {file("a", std::string(512, 'a')), file("b", "tail")};
    const std::string full = make_tar(odd, Compression::kNone, "ustar");
    const std::string cut = full.substr(0, 2048 + 4);
    ReadLayerOptions o;
    o.expected_diff_id = sha256_digest(cut);
    REQUIRE(fx.read(cut, o, &m, &diff_id, &error));
    CHECK(diff_id == o.expected_diff_id);
    CHECK(m.entries.back().path == "/b");
    CHECK(m.entries.back().size == 4);
    // Without a diff_id to vouch for them, the same bytes look truncated.
    CHECK_FALSE(fx.read(cut, {}, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("end-of-archive marker"));
  }
  SECTION("the zeros that end a tar never fill a file's data, diff_id or not") {
    const std::string cut = plain.substr(0, 1024 + 700);
    ReadLayerOptions o;
    o.expected_diff_id = sha256_digest(cut);
    CHECK_FALSE(fx.read(cut, o, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("truncated"));
    CHECK_THAT(error, Contains("'b'"));
  }
  SECTION("truncated gzip") {
    const std::string gz = make_tar(entries, Compression::kGzip);
    CHECK_FALSE(fx.read(gz.substr(0, gz.size() / 2), {}, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("truncated"));
  }
  SECTION("truncated zstd") {
    const std::string zs = make_tar(entries, Compression::kZstd);
    CHECK_FALSE(fx.read(zs.substr(0, zs.size() / 2), {}, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("truncated"));
  }
  SECTION("corrupt gzip") {
    std::string gz = make_tar(entries, Compression::kGzip);
    for (size_t i = 12; i < gz.size() - 8; i += 7) gz[i] = static_cast<char>(gz[i] ^ 0x5a);
    ReadLayerOptions o;
    o.expected_diff_id = sha256_digest(make_tar(entries));
    CHECK_FALSE(fx.read(gz, o, &m, &diff_id, &error));
    CHECK_FALSE(error.empty());
  }
  SECTION("empty stream") {
    CHECK_FALSE(fx.read("", {}, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("empty"));
  }
  SECTION("wrong diff_id") {
    ReadLayerOptions o;
    o.expected_diff_id = sha256_digest("something else");
    CHECK_FALSE(fx.read(plain, o, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("diff_id mismatch"));
    o.expected_diff_id = sha256_digest(plain);
    CHECK(fx.read(plain, o, &m, &diff_id, &error));
  }
  SECTION("wrong blob digest and size") {
    const std::string gz = make_tar(entries, Compression::kGzip);
    ReadLayerOptions o;
    o.expected_digest = sha256_digest("other");
    CHECK_FALSE(fx.read(gz, o, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("digest mismatch"));
    o.expected_digest = sha256_digest(gz);
    o.expected_size = static_cast<int64_t>(gz.size()) + 1;
    CHECK_FALSE(fx.read(gz, o, &m, &diff_id, &error));
    CHECK_THAT(error, Contains("size"));
    o.expected_size = static_cast<int64_t>(gz.size());
    CHECK(fx.read(gz, o, &m, &diff_id, &error));
    CHECK(diff_id == sha256_digest(make_tar(entries)));
  }
  auto images = fx.st->list_image_names();
  REQUIRE(images);
  CHECK(images->empty());
}

TEST_CASE("read_layer_tar: from a file descriptor", "[oci]") {
  Fixture fx;
  const std::string tar = make_tar({file("f", "hello")}, Compression::kGzip);
  test::write_file(fx.tmp / "layer.tgz", tar);
  int raw = ::open((fx.tmp / "layer.tgz").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(raw >= 0);
  UniqueFd fd(raw);
  Manifest m;
  std::string diff_id;
  std::string error;
  ReadLayerOptions o;
  o.expected_digest = sha256_digest(tar);
  REQUIRE(read_layer_tar(*fx.st, fd.get(), o, &m, &diff_id, &error));
  CHECK(fx.object(find(m, "/f")) == "hello");
}

}  // namespace
}  // namespace lamina::oci

namespace lamina::oci {
namespace {

// One raw ustar header block (what libarchive's writer cannot make: names with a NUL inside).
std::string ustar_header(const std::string& name, char type, size_t size) {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(h.data() + 100, 8, "%07o", 0644);
  std::snprintf(h.data() + 108, 8, "%07o", 0);
  std::snprintf(h.data() + 116, 8, "%07o", 0);
  std::snprintf(h.data() + 124, 12, "%011zo", size);
  std::snprintf(h.data() + 136, 12, "%011o", 1700000000);
  h[156] = type;
  std::memcpy(h.data() + 257, "ustar", 6);
  std::memcpy(h.data() + 263, "00", 2);
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  return h;
}

std::string padded(std::string data) {
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return data;
}

TEST_CASE("read_layer_tar: a NUL inside a name ends it, so it cannot hide '..' or '/'",
          "[oci][security]") {
  // A pax "path" record carrying "a\0/../../etc/passwd", and a ustar name field with the same.
  const std::string value = std::string("a\0/../../etc/passwd", 19);
  std::string record = " path=" + value + "\n";
  std::string len = std::to_string(record.size() + 2);
  record = len + record;
  REQUIRE(record.size() == std::stoul(len));
  std::string tar = ustar_header("PaxHeaders/x", 'x', record.size()) + padded(record) +
                    ustar_header("placeholder", '0', 1) + padded("x") +
                    ustar_header(std::string("b\0/../../etc/shadow", 19), '0', 1) + padded("y") +
                    std::string(1024, '\0');
  Fixture fx;
  Manifest m;
  std::string diff_id, error;
  if (fx.read(tar, {}, &m, &diff_id, &error)) {
    for (const Entry& e : m.entries) {
      INFO(e.path);
      CHECK(e.path.find("etc") == std::string::npos);
      CHECK(e.path.find('\0') == std::string::npos);
    }
    CHECK(has(m, "/b"));
  } else {
    CHECK_FALSE(error.empty());  // refused outright is fine too
  }
}

}  // namespace
}  // namespace lamina::oci
