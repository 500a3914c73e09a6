// SPDX-License-Identifier: Apache-2.0
// write_layer_tar: a manifest with every entry kind -> a layer tar, read back two ways: a small
// raw tar walker of our own (entry order, header fields, PAX records, end blocks) and
// libarchive (xattrs, hard link targets, devices, contents).
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

using store::Entry;
using store::EntryKind;
using store::Manifest;
using test::TempDir;

constexpr uint64_t kSparseSize = 3 << 20;

Entry entry(std::string path, EntryKind kind, uint32_t mode = 0644) {
  Entry e;
  e.path = std::move(path);
  e.kind = kind;
  e.mode = mode;
  e.mtime_sec = 1700000000;
  e.mtime_nsec = 123456789;
  return e;
}

std::string sparse_bytes() {
  std::string s(kSparseSize, '\0');
  s.replace(4096, 4, "head");
  s.replace(kSparseSize - 4, 4, "tail");
  return s;
}

// Every kind of entry, with its objects stored in `st`.
Manifest every_kind(store::Store& st) {
  auto put = [&](const std::string& bytes) {
    auto r = st.put_bytes(bytes);
    REQUIRE(r);
    return r->name;
  };
  Manifest m;
  m.entries.push_back(entry("/", EntryKind::kDir, 0755));
  Entry a = entry("/a", EntryKind::kDir, 0750);
  a.opaque = true;
  a.uid = 3000000;  // beyond ustar's octal field: a PAX uid record
  a.gid = 42;
  a.xattrs = {{"security.selinux", "system_u:object_r:foo_t:s0"},
              {"trusted.overlay.opaque", "y"},
              {"user.fuseoverlayfs.opaque", "y"},
              {"user.overlay.opaque", "y"},
              {"user.x", std::string("v\0w", 3)}};
  m.entries.push_back(a);
  m.entries.push_back(entry("/a/gone", EntryKind::kWhiteout, 0));
  Entry x = entry("/a/x", EntryKind::kFile, 04755);
  x.size = 6;
  x.object = put("hello\n");
  x.xattrs = {{"security.capability", std::string("\x01\x00\x00\x02", 4)}};
  m.entries.push_back(x);
  Entry y = entry("/a/y", EntryKind::kSymlink, 0777);
  y.target = "x";
  m.entries.push_back(y);
  Entry empty = entry("/a.b", EntryKind::kFile);
  empty.object = put("");
  m.entries.push_back(empty);
  m.entries.push_back(entry("/b", EntryKind::kDir, 01777));
  Entry c = entry("/b/c", EntryKind::kChar, 0666);
  c.rdev_major = 1;
  c.rdev_minor = 3;
  m.entries.push_back(c);
  Entry d = entry("/b/d", EntryKind::kBlock, 0660);
  d.rdev_major = 8;
  d.rdev_minor = 1;
  m.entries.push_back(d);
  m.entries.push_back(entry("/b/fifo", EntryKind::kFifo));
  Entry link = entry("/b/link", EntryKind::kHardlink, 0);
  link.target = "/a/x";
  m.entries.push_back(link);
  m.entries.push_back(entry("/b/sock", EntryKind::kSocket, 0755));
  m.entries.push_back(entry("/b/zz", EntryKind::kWhiteout, 0));
  Entry big = entry("/big", EntryKind::kFile);
  big.size = kSparseSize;
  {
    // A sparse object: holes in the store, zeros in the tar.
    TempDir tmp;
    std::string path = tmp / "sparse";
    int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    UniqueFd owned(fd);
    REQUIRE(::ftruncate(fd, kSparseSize) == 0);
    REQUIRE(::pwrite(fd, "head", 4, 4096) == 4);
    REQUIRE(::pwrite(fd, "tail", 4, kSparseSize - 4) == 4);
    auto r = st.put_object(fd);
    REQUIRE(r);
    big.object = r->name;
  }
  m.entries.push_back(big);
  Entry z = entry("/z", EntryKind::kSymlink, 0777);
  z.target = "/a/x";
  z.mtime_sec = -5;  // before 1970: a PAX mtime record, still whole seconds
  m.entries.push_back(z);
  std::string error;
  INFO(error);
  REQUIRE(store::validate(m, &error));
  return m;
}

// ---- a raw tar walker ------------------------------------------------------------------

struct RawEntry {
  std::string name;
  char type = 0;
  std::string linkname;
  uint64_t size = 0;
  std::string uname, gname;
  std::map<std::string, std::string> pax;  // the PAX records that applied to it
};

uint64_t octal(const char* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '7'; ++i) v = v * 8 + (p[i] - '0');
  return v;
}

std::string field(const char* p, size_t n) { return std::string(p, strnlen(p, n)); }

std::map<std::string, std::string> pax_records(std::string_view data) {
  std::map<std::string, std::string> out;
  while (!data.empty()) {
    size_t sp = data.find(' ');
    REQUIRE(sp != std::string_view::npos);
    size_t len = std::stoul(std::string(data.substr(0, sp)));
    REQUIRE(len <= data.size());
    std::string_view rec = data.substr(sp + 1, len - sp - 2);  // without the '\n'
    size_t eq = rec.find('=');
    out[std::string(rec.substr(0, eq))] = std::string(rec.substr(eq + 1));
    data.remove_prefix(len);
  }
  return out;
}

// Walks a whole uncompressed tar; *end_zero_blocks: the all-zero blocks after the last entry.
std::vector<RawEntry> walk_raw(const std::string& tar, size_t* end_zero_blocks) {
  REQUIRE(tar.size() % 512 == 0);
  std::vector<RawEntry> out;
  std::map<std::string, std::string> pending;
  size_t off = 0;
  while (off < tar.size()) {
    const char* h = tar.data() + off;
    if (std::string_view(h, 512) == std::string(512, '\0')) break;
    RawEntry e;
    e.name = field(h + 345, 155);
    if (!e.name.empty()) e.name += "/";
    e.name += field(h, 100);
    e.size = octal(h + 124, 12);
    e.type = h[156];
    e.linkname = field(h + 157, 100);
    e.uname = field(h + 265, 32);
    e.gname = field(h + 297, 32);
    size_t data_blocks = (e.size + 511) / 512;
    std::string_view data(tar.data() + off + 512, e.size);
    off += 512 * (1 + data_blocks);
    if (e.type == 'x') {
      pending = pax_records(data);
      continue;
    }
    REQUIRE(e.type != 'g');
    e.pax = std::move(pending);
    pending.clear();
    if (auto p = e.pax.find("path"); p != e.pax.end()) e.name = p->second;
    if (auto l = e.pax.find("linkpath"); l != e.pax.end()) e.linkname = l->second;
    out.push_back(std::move(e));
  }
  size_t zeros = 0;
  for (; off < tar.size(); off += 512) {
    REQUIRE(std::string_view(tar.data() + off, 512) == std::string(512, '\0'));
    ++zeros;
  }
  *end_zero_blocks = zeros;
  return out;
}

// ---- libarchive reading ----------------------------------------------------------------

struct ReadEntry {
  std::string name;
  mode_t type = 0;
  mode_t perm = 0;
  int64_t uid = 0, gid = 0, mtime = 0;
  long mtime_nsec = 0;
  std::string hardlink, symlink;
  dev_t rdev_major = 0, rdev_minor = 0;
  std::map<std::string, std::string> xattrs;
  std::string data;
};

// Decompresses any supported compression; with `raw`, returns the bytes instead of entries.
std::vector<ReadEntry> read_archive(const std::string& blob, std::string* raw = nullptr) {
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  if (raw != nullptr) {
    archive_read_support_format_raw(a);
  } else {
    archive_read_support_format_tar(a);
  }
  REQUIRE(archive_read_open_memory(a, blob.data(), blob.size()) == ARCHIVE_OK);
  std::vector<ReadEntry> out;
  archive_entry* ae = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
    ReadEntry e;
    e.name = archive_entry_pathname(ae);
    e.type = archive_entry_filetype(ae);
    e.perm = archive_entry_perm(ae);
    e.uid = archive_entry_uid(ae);
    e.gid = archive_entry_gid(ae);
    e.mtime = archive_entry_mtime(ae);
    e.mtime_nsec = archive_entry_mtime_nsec(ae);
    CHECK_FALSE(archive_entry_atime_is_set(ae));
    CHECK_FALSE(archive_entry_ctime_is_set(ae));
    if (const char* h = archive_entry_hardlink(ae)) e.hardlink = h;
    if (const char* s = archive_entry_symlink(ae)) e.symlink = s;
    e.rdev_major = archive_entry_rdevmajor(ae);
    e.rdev_minor = archive_entry_rdevminor(ae);
    archive_entry_xattr_reset(ae);
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK) {
      e.xattrs[name] = std::string(static_cast<const char*>(value), size);
    }
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) e.data.append(buf, n);
    REQUIRE(n == 0);
    out.push_back(std::move(e));
  }
  INFO(archive_error_string(a));
  REQUIRE(rc == ARCHIVE_EOF);
  if (raw != nullptr) *raw = out.empty() ? std::string() : out[0].data;
  archive_read_free(a);
  return out;
}

struct Written {
  LayerBlob blob;
  std::string bytes;  // as written
  std::string tar;    // uncompressed
};

Written write(const store::Store& st, const Manifest& m, Compression c, const TempDir& tmp,
              const std::string& name, uint64_t expect_progress = 6 + kSparseSize,
              bool exact = false) {
  const std::string path = tmp / name;
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  UniqueFd owned(fd);
  Written w;
  std::string error;
  uint64_t last_progress = 0;
  bool ok = write_layer_tar(
      st, m, c, fd, &w.blob, &error, [&](uint64_t bytes) { last_progress = bytes; }, exact);
  INFO(error);
  REQUIRE(ok);
  CHECK(last_progress == expect_progress);
  w.bytes = test::read_file(path);
  if (c == Compression::kNone) {
    w.tar = w.bytes;
  } else {
    read_archive(w.bytes, &w.tar);
  }
  return w;
}

std::unique_ptr<store::Store> make_store(const std::string& root) {
  std::string error;
  auto st = store::Store::open(root, true, &error);
  INFO(error);
  REQUIRE(st);
  return st;
}

TEST_CASE("layer writer: every entry kind, in OCI order, with the OCI header rules", "[oci]") {
  TempDir tmp;
  auto st = make_store(tmp / "store");
  Manifest m = every_kind(*st);
  auto c = GENERATE(Compression::kNone, Compression::kGzip, Compression::kZstd);
  INFO("compression " << static_cast<int>(c));
  Written w = write(*st, m, c, tmp, "layer");

  // Digests over the exact bytes.
  CHECK(w.blob.size == static_cast<int64_t>(w.bytes.size()));
  CHECK(w.blob.digest == sha256_digest(w.bytes));
  CHECK(w.blob.diff_id == sha256_digest(w.tar));
  CHECK(w.blob.media_type == layer_media_type(c));
  if (c == Compression::kNone) CHECK(w.blob.digest == w.blob.diff_id);
  if (c == Compression::kGzip) {
    // gzip header: magic, deflate, no flags (no name, comment, extra), mtime 0, OS 255.
    REQUIRE(w.bytes.size() > 10);
    CHECK(w.bytes.substr(0, 4) == std::string("\x1f\x8b\x08\x00", 4));
    CHECK(w.bytes.substr(4, 4) == std::string(4, '\0'));
    CHECK(static_cast<unsigned char>(w.bytes[9]) == 255);
  }
  if (c == Compression::kZstd) CHECK(w.bytes.substr(0, 4) == std::string("\x28\xb5\x2f\xfd", 4));

  // Order, names, and no uname/gname/atime/ctime, raw.
  size_t zeros = 0;
  auto raw = walk_raw(w.tar, &zeros);
  CHECK(zeros == 2);
  std::vector<std::string> names;
  names.reserve(raw.size());
  for (const auto& e : raw) names.push_back(e.name);
  const std::vector<std::string> expected = {
      "./",  "a/",  "a/.wh..wh..opq", "a/.wh.gone", "a/x", "a/y", "a.b", "b/", "b/.wh.zz",
      "b/c", "b/d", "b/fifo",         "b/link",     "big", "z",
  };
  CHECK(names == expected);
  for (const auto& e : raw) {
    INFO(e.name);
    CHECK(e.uname.empty());
    CHECK(e.gname.empty());
    for (const auto& [k, v] : e.pax) {
      INFO("PAX record " << k << "=" << v);
      CHECK(k != "atime");
      CHECK(k != "ctime");
      CHECK(k != "uname");
      CHECK(k != "gname");
      CHECK(k.rfind("LIBARCHIVE.", 0) != 0);
      if (k == "mtime") CHECK(v.find('.') == std::string::npos);
      if (k.rfind("SCHILY.xattr.", 0) == 0) {
        std::string x = k.substr(13);
        CHECK(x.rfind("trusted.overlay.", 0) != 0);
        CHECK(x.rfind("user.overlay.", 0) != 0);
        CHECK(x.rfind("user.fuseoverlayfs.", 0) != 0);
        CHECK(x != "security.selinux");
      }
    }
  }
  CHECK(raw[1].pax.count("SCHILY.xattr.user.x") == 1);
  CHECK(raw[12].type == '1');
  CHECK(raw[12].linkname == "a/x");
  CHECK(raw[12].size == 0);

  // Values, through libarchive.
  auto entries = read_archive(w.bytes);
  REQUIRE(entries.size() == expected.size());
  std::map<std::string, ReadEntry> by;
  for (auto& e : entries) by[e.name] = e;
  for (const auto& e : entries) {
    INFO(e.name);
    CHECK(e.mtime_nsec == 0);
  }
  CHECK(by["./"].type == AE_IFDIR);
  CHECK(by["./"].mtime == 1700000000);
  CHECK(by["a/"].uid == 3000000);
  CHECK(by["a/"].gid == 42);
  CHECK(by["a/"].perm == 0750);
  CHECK(by["a/"].xattrs == std::map<std::string, std::string>{{"user.x", std::string("v\0w", 3)}});
  for (const char* wh : {"a/.wh..wh..opq", "a/.wh.gone", "b/.wh.zz"}) {
    INFO(wh);
    CHECK(by[wh].type == AE_IFREG);
    CHECK(by[wh].perm == 0);
    CHECK(by[wh].uid == 0);
    CHECK(by[wh].mtime == 0);
    CHECK(by[wh].data.empty());
  }
  CHECK(by["a/x"].perm == 04755);
  CHECK(by["a/x"].data == "hello\n");
  CHECK(by["a/x"].xattrs.at("security.capability") == std::string("\x01\x00\x00\x02", 4));
  CHECK(by["a/y"].type == AE_IFLNK);
  CHECK(by["a/y"].symlink == "x");
  CHECK(by["a.b"].type == AE_IFREG);
  CHECK(by["a.b"].data.empty());
  CHECK(by["b/"].perm == 01777);
  CHECK(by["b/c"].type == AE_IFCHR);
  CHECK(by["b/c"].rdev_major == 1);
  CHECK(by["b/c"].rdev_minor == 3);
  CHECK(by["b/d"].type == AE_IFBLK);
  CHECK(by["b/d"].rdev_major == 8);
  CHECK(by["b/d"].rdev_minor == 1);
  CHECK(by["b/fifo"].type == AE_IFIFO);
  CHECK(by["b/link"].hardlink == "a/x");
  CHECK(by["big"].data == sparse_bytes());
  CHECK(by["z"].symlink == "/a/x");
  CHECK(by["z"].mtime == -5);

  // Deterministic: a second write gives the same bytes.
  Written again = write(*st, m, c, tmp, "again");
  CHECK(again.bytes == w.bytes);
  CHECK(again.blob.digest == w.blob.digest);
}

TEST_CASE("layer writer: exact mode (volume snapshots) keeps nanoseconds and holes", "[oci]") {
  TempDir tmp;
  auto st = make_store(tmp / "store");
  Manifest m = every_kind(*st);
  Written w = write(*st, m, Compression::kNone, tmp, "exact", 6 + kSparseSize, true);
  auto entries = read_archive(w.bytes);
  std::map<std::string, ReadEntry> by;
  for (auto& e : entries) by[e.name] = e;
  CHECK(by["./"].mtime == 1700000000);
  CHECK(by["./"].mtime_nsec == 123456789);
  CHECK(by["a/x"].mtime_nsec == 123456789);
  CHECK(by["b/link"].mtime_nsec == 123456789);
  CHECK(by["a/.wh.gone"].mtime_nsec == 0);
  // The sparse object is a sparse entry: only its data extents are in the tar.
  CHECK(by["big"].data == sparse_bytes());
  CHECK(w.tar.size() < kSparseSize / 4);
  size_t zeros = 0;
  bool sparse_seen = false;
  for (const auto& e : walk_raw(w.tar, &zeros)) {
    INFO(e.name);
    CHECK(e.pax.count("atime") == 0);
    CHECK(e.pax.count("ctime") == 0);
    if (e.pax.count("GNU.sparse.name") != 0U) {
      CHECK(e.pax.at("GNU.sparse.name") == "big");
      sparse_seen = true;
    }
  }
  CHECK(sparse_seen);
  // Without nanoseconds and holes, exact and whole-second layers are the same bytes.
  std::erase_if(m.entries, [](const Entry& e) { return e.path == "/big"; });
  for (Entry& e : m.entries) e.mtime_nsec = 0;
  Written a = write(*st, m, Compression::kNone, tmp, "whole", 6, false);
  Written b = write(*st, m, Compression::kNone, tmp, "exact0", 6, true);
  CHECK(a.bytes == b.bytes);
}

TEST_CASE("layer writer: a directory's whiteouts come before its other entries, deep too",
          "[oci]") {
  TempDir tmp;
  auto st = make_store(tmp / "store");
  auto obj = st->put_bytes("x");
  REQUIRE(obj);
  Manifest m;
  m.entries.push_back(entry("/", EntryKind::kDir, 0755));
  for (const char* p : {"/d", "/d/a", "/d/a/b"}) m.entries.push_back(entry(p, EntryKind::kDir));
  Entry f = entry("/d/a/b/f", EntryKind::kFile);
  f.size = 1;
  f.object = obj->name;
  m.entries.push_back(f);
  m.entries.push_back(entry("/d/a/w", EntryKind::kWhiteout, 0));
  m.entries.push_back(entry("/d/b", EntryKind::kFile));
  m.entries.back().object = st->put_bytes("")->name;
  m.entries.push_back(entry("/d/c", EntryKind::kWhiteout, 0));
  m.entries.push_back(entry("/e", EntryKind::kWhiteout, 0));
  std::string error;
  INFO(error);
  REQUIRE(store::normalize(&m, &error));
  Written w = write(*st, m, Compression::kNone, tmp, "layer", 1);
  size_t zeros = 0;
  std::vector<std::string> names;
  for (const auto& e : walk_raw(w.tar, &zeros)) names.push_back(e.name);
  CHECK(names == std::vector<std::string>{"./", ".wh.e", "d/", "d/.wh.c", "d/a/", "d/a/.wh.w",
                                          "d/a/b/", "d/a/b/f", "d/b"});
}

TEST_CASE("layer writer: errors name the entry", "[oci]") {
  TempDir tmp;
  auto st = make_store(tmp / "store");
  Manifest m;
  m.entries.push_back(entry("/", EntryKind::kDir, 0755));
  Entry f = entry("/missing", EntryKind::kFile);
  f.size = 3;
  f.object = std::string(32, 'a');
  m.entries.push_back(f);
  int fd = ::open((tmp / "out").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  UniqueFd owned(fd);
  LayerBlob blob;
  std::string error;
  CHECK_FALSE(write_layer_tar(*st, m, Compression::kGzip, fd, &blob, &error));
  CHECK_THAT(error, Catch::Matchers::Contains("/missing"));

  // An object shorter than the manifest says.
  m.entries[1].object = st->put_bytes("ab")->name;
  CHECK_FALSE(write_layer_tar(*st, m, Compression::kGzip, fd, &blob, &error));
  CHECK_THAT(error, Catch::Matchers::Contains("shorter"));

  // Not a valid manifest.
  Manifest bad;
  CHECK_FALSE(write_layer_tar(*st, bad, Compression::kNone, fd, &blob, &error));
}

}  // namespace
}  // namespace lamina::oci
