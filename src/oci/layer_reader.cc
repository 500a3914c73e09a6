// SPDX-License-Identifier: Apache-2.0
// Reading a layer tar into the store (the reading half of layer_tar.h).
//
// Two libarchive readers are chained so one pass over the input does everything:
//
//   input --(ReadFn, SHA-256 = blob digest)--> `decomp` (format "raw", filters gzip/zstd)
//         --(archive_read_data, SHA-256 = diff_id)--> `tar` (formats tar/pax/gnutar)
//
// The diff_id is the SHA-256 of the whole uncompressed stream, which libarchive's tar reader
// never hands out: the raw reader gives it, we hash it while feeding the tar reader, and after
// the tar reader's end we drain both the raw reader (trailing record padding) and the input
// (bytes after a compressed stream's end), so both digests cover every byte.
//
// Only gzip and zstd decompression is enabled: archive_read_support_filter_all would also
// accept formats that libarchive decodes by running an external program on hostile input.
//
// Entries are collected in a map by normalized path, then checked as a whole (parents through
// symlinks, hard link groups, whiteouts beside real entries) and turned into a manifest. Nothing
// is published here: the caller publishes the manifest once every layer is verified.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>

#include "lamina/base/log.h"
#include "lamina/base/sys.h"
#include "lamina/oci/digest.h"
#include "lamina/oci/layer_tar.h"

namespace lamina::oci {
namespace {

using store::Entry;
using store::EntryKind;
using store::Manifest;

constexpr size_t kChunk = size_t{1} << 17;
// Files up to this size are gathered in memory and stored with put_bytes.
constexpr int64_t kSmallFile = int64_t{1} << 16;

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveFree>;

// ---- the input side ---------------------------------------------------------------------

struct Pipeline {
  const ReadFn* read = nullptr;
  const ReadLayerOptions* options = nullptr;
  Sha256 blob_hash;
  uint64_t blob_bytes = 0;
  bool input_eof = false;
  std::vector<char> in_buf = std::vector<char>(kChunk);
  std::optional<Error> input_error;

  archive* decomp = nullptr;
  Sha256 tar_hash;
  uint64_t tar_bytes = 0;
  std::vector<char> tar_buf = std::vector<char>(kChunk);
  std::string decomp_error;
  // Zeros handed to the tar parser after the real end of the stream (never hashed): the padding
  // of the last entry and the end marker, for tars that stop right after the last entry's data
  // (what umoci 0.4 writes). Accepted only when the diff_id says those are the published bytes.
  bool end_supplied = false;
  std::vector<char> zeros;
};

// Reads the input into in_buf, hashing it.
la_ssize_t read_input(archive* /*a*/, void* data, const void** buf) {
  auto* p = static_cast<Pipeline*>(data);
  if (p->input_eof) return 0;
  auto n = (*p->read)(p->in_buf.data(), p->in_buf.size());
  if (!n) {
    p->input_error = n.error();
    return ARCHIVE_FATAL;
  }
  if (*n == 0) {
    p->input_eof = true;
    return 0;
  }
  p->blob_hash.update(p->in_buf.data(), *n);
  p->blob_bytes += *n;
  if (p->options->progress) p->options->progress(p->blob_bytes);
  *buf = p->in_buf.data();
  return static_cast<la_ssize_t>(*n);
}

// The tar reader's input: the decompressed stream, hashed.
la_ssize_t read_uncompressed(archive* /*a*/, void* data, const void** buf) {
  auto* p = static_cast<Pipeline*>(data);
  la_ssize_t n = archive_read_data(p->decomp, p->tar_buf.data(), p->tar_buf.size());
  if (n < 0) {
    const char* why = archive_error_string(p->decomp);
    p->decomp_error = why != nullptr ? why : "decompression failed";
    return ARCHIVE_FATAL;
  }
  if (n == 0 && !p->end_supplied) {
    p->end_supplied = true;
    p->zeros.assign((512 - p->tar_bytes % 512) % 512 + 1024, '\0');
    *buf = p->zeros.data();
    return static_cast<la_ssize_t>(p->zeros.size());
  }
  p->tar_hash.update(p->tar_buf.data(), static_cast<size_t>(n));
  p->tar_bytes += static_cast<uint64_t>(n);
  *buf = p->tar_buf.data();
  return n;
}

std::string stream_error(const Pipeline& p, archive* tar) {
  if (p.input_error) return "reading the layer: " + p.input_error->message();
  if (!p.decomp_error.empty()) return "corrupt or truncated layer stream: " + p.decomp_error;
  const char* why = tar != nullptr ? archive_error_string(tar) : nullptr;
  return std::string("corrupt or truncated layer tar: ") + (why != nullptr ? why : "read error");
}

// ---- paths ------------------------------------------------------------------------------

// "./a//b/" -> "/a/b"; "./" -> "/". False for absolute paths, "..", empty names.
bool normalize_path(std::string_view raw, std::string* out, std::string* why) {
  if (raw.empty()) {
    *why = "empty name";
    return false;
  }
  if (raw[0] == '/') {
    *why = "absolute path";
    return false;
  }
  out->clear();
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t end = raw.find('/', pos);
    if (end == std::string_view::npos) end = raw.size();
    std::string_view c = raw.substr(pos, end - pos);
    pos = end + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      *why = "'..' in the path";
      return false;
    }
    *out += '/';
    *out += c;
  }
  if (out->empty()) *out = "/";
  return true;
}

std::string join(std::string_view dir, std::string_view name) {
  std::string p(dir);
  if (p != "/") p += '/';
  p += name;
  return p;
}

// The strict ancestors of a path, shortest first, without "/".
std::vector<std::string> ancestors(std::string_view path) {
  std::vector<std::string> out;
  for (size_t i = 1; i < path.size(); ++i) {
    if (path[i] == '/') out.emplace_back(path.substr(0, i));
  }
  return out;
}

bool base_name_is_whiteout(std::string_view path) {
  return store::base_name(path).starts_with(".wh.");
}

const char* entry_name(archive_entry* e) {
  const char* p = archive_entry_pathname(e);
  return p != nullptr ? p : archive_entry_pathname_utf8(e);
}

// ---- the layer being built --------------------------------------------------------------

struct Node {
  Entry entry;
  bool synthesized = false;  // a missing parent made up (no tar entry yet)
  bool whiteout_seen = false;
  bool whiteout_only = false;  // only a ".wh." entry so far
  std::string link_file;       // a hard link: the path of its regular file
};

class LayerBuilder {
 public:
  LayerBuilder(store::Store& store, const ReadLayerOptions& options, const Pipeline& pipeline)
      : store_(store), options_(options), pipeline_(pipeline) {}

  bool add(archive* tar, archive_entry* e, std::string* error);
  bool finish(Manifest* m, std::string* error);

 private:
  bool ensure_parents(const std::string& path, std::string* error);
  bool store_file(archive* tar, int64_t size, Entry* out, std::string* error);
  // True (with *error) when the entry's data (`tape` bytes from `data_start` in the tar)
  // reached into the zeros supplied after the end of the stream.
  bool data_past_end(int64_t data_start, int64_t tape, std::string* error) const;
  bool metadata(archive_entry* e, Entry* out, std::string* why);
  std::optional<EntryKind> below_kind(const std::string& path) const;

  store::Store& store_;
  const ReadLayerOptions& options_;
  const Pipeline& pipeline_;
  std::map<std::string, Node> nodes_;
};

bool LayerBuilder::metadata(archive_entry* e, Entry* out, std::string* why) {
  out->mode = archive_entry_perm(e) & 07777;
  int64_t uid = archive_entry_uid(e);
  int64_t gid = archive_entry_gid(e);
  if (uid < 0 || uid > 0xfffffffe || gid < 0 || gid > 0xfffffffe) {
    *why = "uid or gid out of range";
    return false;
  }
  out->uid = static_cast<uint32_t>(uid);
  out->gid = static_cast<uint32_t>(gid);
  if (archive_entry_mtime_is_set(e) != 0) {
    out->mtime_sec = archive_entry_mtime(e);
    long ns = archive_entry_mtime_nsec(e);
    out->mtime_nsec = ns >= 0 && ns < 1000000000 ? static_cast<uint32_t>(ns) : 0;
  }
  std::map<std::string, std::string> xattrs;
  archive_entry_xattr_reset(e);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (name == nullptr || *name == '\0' || store::is_overlay_xattr(name)) continue;
    xattrs[name] = std::string(static_cast<const char*>(value), size);
  }
  out->xattrs.assign(xattrs.begin(), xattrs.end());
  return true;
}

// The bytes an entry's data takes in the tar: its size, or for a sparse entry its extents.
int64_t tape_size(archive_entry* e) {
  int64_t size = archive_entry_size_is_set(e) != 0 ? archive_entry_size(e) : 0;
  if (archive_entry_sparse_reset(e) > 0) {
    size = 0;
    la_int64_t offset = 0, length = 0;
    while (archive_entry_sparse_next(e, &offset, &length) == ARCHIVE_OK) size += length;
  }
  return size;
}

bool LayerBuilder::data_past_end(int64_t data_start, int64_t tape, std::string* error) const {
  // The zeros that stand in for a missing end marker may end a tar, never fill a file.
  if (pipeline_.end_supplied && data_start + tape > static_cast<int64_t>(pipeline_.tar_bytes)) {
    *error = "truncated layer tar: the stream ends inside this entry's data";
    return true;
  }
  return false;
}

bool LayerBuilder::store_file(archive* tar, int64_t size, Entry* out, std::string* error) {
  if (size < 0) {
    *error = "negative size";
    return false;
  }
  const void* buf = nullptr;
  size_t len = 0;
  la_int64_t offset = 0;
  Result<store::PutResult> put = Error{EIO, "put"};
  if (size <= kSmallFile) {
    std::string bytes(static_cast<size_t>(size), '\0');
    int r;
    while ((r = archive_read_data_block(tar, &buf, &len, &offset)) == ARCHIVE_OK ||
           r == ARCHIVE_WARN) {
      if (offset < 0 || offset > size || len > static_cast<uint64_t>(size - offset)) {
        *error = "data beyond the entry's size";
        return false;
      }
      if (len > 0) std::memcpy(bytes.data() + offset, buf, len);
    }
    if (r != ARCHIVE_EOF) {
      *error = "";  // the caller reports the stream's error
      return false;
    }
    put = store_.put_bytes(bytes);
  } else {
    // Written at the offsets libarchive gives, so a sparse entry's holes stay holes (and
    // put_object keeps them).
    auto fd = sys::openat(store_.tmp_fd(), ".", O_TMPFILE | O_RDWR, 0600);
    std::string tmp_name;
    if (!fd) {
      tmp_name = ".import-" + std::to_string(::getpid()) + "-" + std::to_string(size);
      fd = sys::openat(store_.tmp_fd(), tmp_name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
      if (!fd) {
        *error = "temp file: " + fd.error().message();
        return false;
      }
      (void)sys::unlinkat(store_.tmp_fd(), tmp_name.c_str(), 0);
    }
    int r;
    while ((r = archive_read_data_block(tar, &buf, &len, &offset)) == ARCHIVE_OK ||
           r == ARCHIVE_WARN) {
      if (offset < 0 || offset > size || len > static_cast<uint64_t>(size - offset)) {
        *error = "data beyond the entry's size";
        return false;
      }
      if (len == 0) continue;
      if (Status s = sys::pwrite_full(fd->get(), buf, len, offset); !s) {
        *error = "temp file: " + s.error().message();
        return false;
      }
    }
    if (r != ARCHIVE_EOF) {
      *error = "";
      return false;
    }
    if (Status s = sys::ftruncate(fd->get(), size); !s) {
      *error = "temp file: " + s.error().message();
      return false;
    }
    put = store_.put_object(fd->get());
  }
  if (!put) {
    *error = "storing its bytes: " + put.error().message();
    return false;
  }
  out->object = put->name;
  out->size = put->size;
  return true;
}

bool LayerBuilder::ensure_parents(const std::string& path, std::string* error) {
  for (const std::string& a : ancestors(path)) {
    if (base_name_is_whiteout(a)) {
      *error = "a whiteout name used as a directory";
      return false;
    }
    auto it = nodes_.find(a);
    if (it == nodes_.end()) {
      Node n;
      n.synthesized = true;
      n.entry.path = a;
      n.entry.kind = EntryKind::kDir;
      n.entry.mode = 0755;
      nodes_.emplace(a, std::move(n));
    } else if (it->second.whiteout_only) {
      // ".wh.a" and "a/x": a new directory over the deleted name (opaque, see finish).
      it->second.whiteout_only = false;
      it->second.synthesized = true;
      it->second.entry.kind = EntryKind::kDir;
      it->second.entry.mode = 0755;
    }
    // A non-directory parent is refused in finish (it may be a symlink: named there).
  }
  return true;
}

bool LayerBuilder::add(archive* tar, archive_entry* e, std::string* error) {
  const char* raw = entry_name(e);
  const std::string shown = raw != nullptr ? raw : "?";
  auto fail = [&](const std::string& why) {
    *error = "entry '" + shown + "': " + why;
    return false;
  };
  if (raw == nullptr) return fail("its name cannot be decoded");
  std::string path;
  std::string why;
  if (!normalize_path(raw, &path, &why)) return fail(why);
  const std::string_view base = store::base_name(path);
  const std::string parent(store::parent_path(path));
  if (path != "/" && base.starts_with(".wh.")) {
    if (base == ".wh..wh..opq") {
      if (!ensure_parents(path, &why)) return fail(why);
      auto [it, inserted] = nodes_.try_emplace(parent);
      Node& d = it->second;
      if (inserted) {
        d.synthesized = true;
        d.entry.path = parent;
        d.entry.kind = EntryKind::kDir;
        d.entry.mode = 0755;
      } else if (d.entry.kind != EntryKind::kDir) {
        return fail("opaque marker in '" + parent + "', which is not a directory");
      }
      d.entry.opaque = true;
      return true;
    }
    if (base.starts_with(".wh..wh.")) {
      return fail("unknown whiteout form '.wh..wh.*' (OCI knows only .wh..wh..opq)");
    }
    const std::string_view name = base.substr(4);
    if (name.empty() || name == "." || name == "..") {
      return fail("bare '.wh.' whiteout (it names nothing)");
    }
    const std::string target = join(parent, name);
    if (!ensure_parents(target, &why)) return fail(why);
    auto [it, inserted] = nodes_.try_emplace(target);
    Node& n = it->second;
    if (inserted) {
      n.whiteout_only = true;
      n.entry.path = target;
      n.entry.kind = EntryKind::kWhiteout;
    } else if (n.whiteout_seen) {
      return fail("duplicate whiteout of '" + target + "'");
    }
    n.whiteout_seen = true;
    return true;
  }
  if (!ensure_parents(path, &why)) return fail(why);
  Node node;
  Entry& entry = node.entry;
  entry.path = path;
  if (const char* link = archive_entry_hardlink(e); link != nullptr) {
    std::string target;
    if (!normalize_path(link, &target, &why)) return fail("hard link target: " + why);
    auto it = nodes_.find(target);
    if (it == nodes_.end() || it->second.synthesized || it->second.whiteout_only) {
      return fail("hard link to outside the layer ('" + target +
                  "' is not an earlier entry of it)");
    }
    const Node& t = it->second;
    switch (t.entry.kind) {
      case EntryKind::kFile:
        entry.kind = EntryKind::kHardlink;
        node.link_file = target;
        break;
      case EntryKind::kHardlink:
        entry.kind = EntryKind::kHardlink;
        node.link_file = t.link_file;
        break;
      case EntryKind::kDir: return fail("hard link to a directory");
      default:
        // A symlink, device or fifo: the manifest links only regular files, so this name gets
        // a copy of the entry (same metadata, no shared identity).
        entry = t.entry;
        entry.path = path;
        entry.opaque = false;
        break;
    }
  } else {
    switch (archive_entry_filetype(e)) {
      case AE_IFDIR: entry.kind = EntryKind::kDir; break;
      case AE_IFREG: entry.kind = EntryKind::kFile; break;
      case AE_IFLNK: {
        entry.kind = EntryKind::kSymlink;
        const char* t = archive_entry_symlink(e);
        if (t == nullptr) t = archive_entry_symlink_utf8(e);
        if (t == nullptr || *t == '\0') return fail("symlink without a target");
        entry.target = t;
        break;
      }
      case AE_IFCHR:
      case AE_IFBLK:
        if (!options_.allow_devices) return fail("device node when not root");
        entry.kind = archive_entry_filetype(e) == AE_IFCHR ? EntryKind::kChar : EntryKind::kBlock;
        entry.rdev_major = archive_entry_rdevmajor(e);
        entry.rdev_minor = archive_entry_rdevminor(e);
        break;
      case AE_IFIFO: entry.kind = EntryKind::kFifo; break;
      case AE_IFSOCK:
        // Not a layer entry type in the OCI spec (and tar cannot carry one): skipped.
        log::warn("layer entry '{}': a socket, skipped", shown);
        return true;
      default: return fail("unsupported entry type");
    }
    if (!metadata(e, &entry, &why)) return fail(why);
    if (entry.kind == EntryKind::kFile) {
      const int64_t data_start = archive_filter_bytes(tar, 0);  // the header is consumed
      if (!store_file(tar, archive_entry_size_is_set(e) != 0 ? archive_entry_size(e) : 0, &entry,
                      &why)) {
        if (why.empty()) why = stream_error(pipeline_, tar);
        return fail(why);
      }
      if (data_past_end(data_start, tape_size(e), &why)) return fail(why);
    }
  }
  if (path == "/" && entry.kind != EntryKind::kDir) return fail("the root is not a directory");
  auto [it, inserted] = nodes_.try_emplace(path);
  Node& n = it->second;
  if (inserted) {
    n = std::move(node);
  } else if (n.whiteout_only) {
    n.whiteout_only = false;
    n.entry = std::move(entry);
    n.link_file = std::move(node.link_file);
  } else if (n.synthesized && entry.kind == EntryKind::kDir) {
    const bool opaque = n.entry.opaque;
    n.entry = std::move(entry);
    n.entry.opaque = opaque;
    n.synthesized = false;
  } else if (n.synthesized) {
    return fail("not a directory, but earlier entries are under it");
  } else {
    return fail("duplicate path '" + path + "'");
  }
  return true;
}

// What the layers below show at `path` (nullopt: nothing), as seen under this layer's opaque
// directories.
std::optional<EntryKind> LayerBuilder::below_kind(const std::string& path) const {
  const std::vector<std::string> up = ancestors(path);
  for (const std::string& a : up) {
    auto it = nodes_.find(a);
    if (it != nodes_.end() && it->second.entry.opaque) return std::nullopt;
  }
  if (auto it = nodes_.find(path); it != nodes_.end() && it->second.entry.opaque) {
    return std::nullopt;  // deleted here, re-created as a directory
  }
  auto find = [](const Manifest& m, const std::string& p) -> const Entry* {
    auto it = std::lower_bound(
        m.entries.begin(), m.entries.end(), p,
        [](const Entry& e, const std::string& key) { return store::path_less(e.path, key); });
    return it != m.entries.end() && it->path == p ? &*it : nullptr;
  };
  for (auto layer = options_.below.rbegin(); layer != options_.below.rend(); ++layer) {
    const Manifest& m = **layer;
    if (const Entry* e = find(m, path); e != nullptr) {
      if (e->kind == EntryKind::kWhiteout) return std::nullopt;
      return e->kind;
    }
    for (const std::string& a : up) {
      const Entry* e = find(m, a);
      if (e != nullptr && (e->kind != EntryKind::kDir || e->opaque)) return std::nullopt;
    }
  }
  return std::nullopt;
}

bool LayerBuilder::finish(Manifest* m, std::string* error) {
  if (nodes_.find("/") == nodes_.end()) {
    Node root;
    root.synthesized = true;
    root.entry.path = "/";
    root.entry.kind = EntryKind::kDir;
    root.entry.mode = 0755;
    nodes_.emplace("/", std::move(root));
  }
  // A whiteout beside a real entry of the same name: the whiteout deletes what is below, the
  // entry is this layer's. For a directory that is an opaque directory.
  for (auto& [path, n] : nodes_) {
    if (n.whiteout_seen && !n.whiteout_only && n.entry.kind == EntryKind::kDir) {
      n.entry.opaque = true;
    }
  }
  // No entry may be reached through a symlink (or any non-directory) of this layer or below.
  std::map<std::string, bool> checked;
  for (const auto& [path, n] : nodes_) {
    for (const std::string& a : ancestors(path)) {
      if (checked.count(a) != 0) continue;
      const Node& p = nodes_.at(a);
      if (!p.synthesized && p.entry.kind != EntryKind::kDir) {
        *error = "entry '" + path.substr(1) + "': " +
                 (p.entry.kind == EntryKind::kSymlink
                      ? "reached through '" + a.substr(1) + "', a symlink of this layer"
                      : "its parent '" + a.substr(1) + "' is not a directory");
        return false;
      }
      if (p.synthesized && below_kind(a) == EntryKind::kSymlink) {
        *error = "entry '" + path.substr(1) + "': reached through '" + a.substr(1) +
                 "', a symlink of a layer below";
        return false;
      }
      checked[a] = true;
    }
  }
  // Hard link groups: the manifest wants the file first in manifest order, the links after it.
  std::map<std::string, std::vector<std::string>> groups;
  for (const auto& [path, n] : nodes_) {
    if (n.entry.kind == EntryKind::kHardlink) groups[n.link_file].push_back(path);
  }
  for (auto& [file, links] : groups) {
    std::string first = file;
    for (const std::string& l : links) {
      if (store::path_less(l, first)) first = l;
    }
    if (first != file) {
      Node& f = nodes_.at(file);
      Node& head = nodes_.at(first);
      head.entry = f.entry;
      head.entry.path = first;
      f.entry = Entry{};
      f.entry.path = file;
      f.entry.kind = EntryKind::kHardlink;
    }
    for (const std::string& p : links) nodes_.at(p).entry.target = first;
    if (first != file) nodes_.at(file).entry.target = first;
  }
  m->entries.clear();
  m->entries.reserve(nodes_.size());
  for (auto& [path, n] : nodes_) m->entries.push_back(std::move(n.entry));
  std::string why;
  if (!store::normalize(m, &why)) {
    *error = "layer: " + why;
    return false;
  }
  return true;
}

// Reads what is left of the input (hashing it), so the blob digest covers every byte.
bool drain_input(Pipeline& p) {
  while (!p.input_eof && !p.input_error) {
    const void* buf = nullptr;
    if (read_input(nullptr, &p, &buf) < 0) return false;
  }
  return !p.input_error;
}

bool digest_ok(Pipeline& p, std::string* blob_digest, std::string* error) {
  *blob_digest = p.blob_hash.digest();
  const ReadLayerOptions& o = *p.options;
  if (o.expected_size >= 0 && p.blob_bytes != static_cast<uint64_t>(o.expected_size)) {
    *error = "size " + std::to_string(p.blob_bytes) + " bytes, expected " +
             std::to_string(o.expected_size);
    return false;
  }
  if (!o.expected_digest.empty() && *blob_digest != o.expected_digest) {
    *error = "digest mismatch: its bytes hash to " + *blob_digest;
    return false;
  }
  return true;
}

}  // namespace

bool read_layer_stream(store::Store& store, const ReadFn& read, const ReadLayerOptions& options,
                       store::Manifest* manifest, std::string* diff_id, std::string* error) {
  Pipeline p;
  p.read = &read;
  p.options = &options;
  std::string blob_digest;
  // On a failure, a wrong digest is the better explanation when there is one.
  auto fail = [&](const std::string& why) {
    std::string digest_why;
    if (!options.expected_digest.empty() && drain_input(p) &&
        !digest_ok(p, &blob_digest, &digest_why)) {
      *error = digest_why + " (" + why + ")";
    } else {
      *error = why;
    }
    return false;
  };
  ArchivePtr decomp(archive_read_new());
  ArchivePtr tar(archive_read_new());
  if (!decomp || !tar) return fail("out of memory");
  archive_read_support_filter_gzip(decomp.get());
  archive_read_support_filter_zstd(decomp.get());
  archive_read_support_format_raw(decomp.get());
  p.decomp = decomp.get();
  if (archive_read_open(decomp.get(), &p, nullptr, read_input, nullptr) != ARCHIVE_OK) {
    if (p.blob_bytes == 0 && !p.input_error) return fail("empty layer stream");
    return fail(stream_error(p, decomp.get()));
  }
  archive_entry* raw = nullptr;
  int r = archive_read_next_header(decomp.get(), &raw);
  if (r == ARCHIVE_EOF) return fail("empty layer stream");
  if (r < ARCHIVE_WARN) return fail(stream_error(p, decomp.get()));
  (void)raw;

  archive_read_support_format_tar(tar.get());
  if (archive_read_open(tar.get(), &p, nullptr, read_uncompressed, nullptr) != ARCHIVE_OK) {
    if (p.tar_bytes == 0 && p.decomp_error.empty() && !p.input_error) {
      return fail("empty layer stream");
    }
    return fail(stream_error(p, tar.get()));
  }
  LayerBuilder builder(store, options, p);
  for (;;) {
    archive_entry* e = nullptr;
    r = archive_read_next_header(tar.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return fail(stream_error(p, tar.get()));
    std::string why;
    if (!builder.add(tar.get(), e, &why)) return fail(why);
  }
  // A tar that stops after its last entry (no padding or end marker) is what a truncated
  // download looks like: refused unless the diff_id below proves these are the bytes the image
  // was published with (umoci 0.4 writes such layers).
  const bool real_end =
      static_cast<int64_t>(p.tar_bytes) - archive_read_header_position(tar.get()) >= 1024;
  if (!real_end && options.expected_diff_id.empty()) {
    return fail("truncated layer tar: no end-of-archive marker (two zero blocks)");
  }
  // Record padding after the end marker, then anything after the compressed stream.
  for (;;) {
    la_ssize_t n = archive_read_data(decomp.get(), p.tar_buf.data(), p.tar_buf.size());
    if (n < 0) {
      p.decomp_error = archive_error_string(decomp.get()) != nullptr
                           ? archive_error_string(decomp.get())
                           : "decompression failed";
      return fail(stream_error(p, nullptr));
    }
    if (n == 0) break;
    p.tar_hash.update(p.tar_buf.data(), static_cast<size_t>(n));
    p.tar_bytes += static_cast<uint64_t>(n);
  }
  if (!drain_input(p)) return fail(stream_error(p, nullptr));
  std::string why;
  if (!digest_ok(p, &blob_digest, &why)) {
    *error = why;
    return false;
  }
  *diff_id = p.tar_hash.digest();
  if (!options.expected_diff_id.empty() && *diff_id != options.expected_diff_id) {
    *error = "diff_id mismatch: the uncompressed tar hashes to " + *diff_id + ", expected " +
             options.expected_diff_id;
    if (!real_end) *error += " (and the tar has no end-of-archive marker: truncated?)";
    return false;
  }
  if (!real_end) {
    log::warn("layer {}: the tar has no end-of-archive marker; accepted, its diff_id matches",
              *diff_id);
  }
  return builder.finish(manifest, error);
}

bool read_layer_tar(store::Store& store, int in_fd, const ReadLayerOptions& options,
                    store::Manifest* manifest, std::string* diff_id, std::string* error) {
  // read(2), not pread: the input may be a pipe.
  ReadFn read = [in_fd](void* buf, size_t size) -> Result<size_t> {
    for (;;) {
      ssize_t n = ::read(in_fd, buf, size);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) return errno_error("read(layer)");
    }
  };
  return read_layer_stream(store, read, options, manifest, diff_id, error);
}

}  // namespace lamina::oci
