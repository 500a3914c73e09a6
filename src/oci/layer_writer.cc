// SPDX-License-Identifier: Apache-2.0
// A store layer -> an OCI layer tar (the writing half of include/lamina/oci/layer_tar.h).
//
// Design: libarchive writes a PAX tar ("pax restricted": a PAX extended header only where ustar
// cannot say it, xattrs as SCHILY.xattr.* only) into our write callback. The callback hashes
// the tar bytes (diff_id), feeds them to a compressor we drive ourselves (zlib with a fixed
// gzip header, or zstd at a fixed level), hashes the compressed bytes (digest) and writes them.
// Driving the compressor ourselves, rather than libarchive's filters, keeps the gzip header
// free of a timestamp, a name and OS-dependent bytes.
//
// Entry order: a depth-first walk of the manifest tree. For each directory: the directory, its
// opaque marker, the whiteouts of its children, then its other children in manifest order
// (recursively). So parents come before children, a directory's whiteouts before the entries
// that may replace what they hide, and a hard link after the file it names (whiteouts are never
// link targets, and the other entries keep their manifest order).
//
// Entry rules (documented in docs/formats.md, "OCI layer tars"):
//  - names are relative ("etc/passwd"); the root is "./"; directories end in '/';
//  - mode bits, numeric uid/gid, mtime in whole seconds (nanoseconds dropped; with
//    `exact`, a PAX mtime record keeps them where they are not 0); no uname, gname,
//    atime or ctime;
//  - a whiteout `w /a/b` is an empty regular file "a/.wh.b" and an opaque directory gets an
//    empty regular file "DIR/.wh..wh..opq", both with mode 0, uid/gid 0 and mtime 0;
//  - a hard link is a link entry to the first name of its file, with that file's metadata;
//  - sockets are left out (tar cannot hold them);
//  - with `exact` (volume snapshots), a file with holes is a sparse entry (PAX GNU.sparse
//    1.0), so that its holes survive the round trip;
//  - xattrs as SCHILY.xattr.NAME, except the private overlay ones (trusted.overlay.*,
//    user.overlay.*, user.fuseoverlayfs.*) and security.selinux;
//  - the tar ends with exactly two zero blocks (no padding to a 10 KiB record).

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lamina/base/sys.h"
#include "lamina/oci/digest.h"
#include "lamina/oci/layer_tar.h"

namespace lamina::oci {
namespace {

using store::Entry;
using store::EntryKind;
using store::Manifest;

constexpr size_t kChunk = 1 << 20;
constexpr int kGzipLevel = Z_DEFAULT_COMPRESSION;
constexpr int kGzipOsUnknown = 255;  // the gzip OS byte: fixed, so every host writes the same
constexpr int kZstdLevel = 3;

bool excluded_xattr(std::string_view name) {
  return store::is_overlay_xattr(name) || name == "security.selinux";
}

// The compressed stream: hashes what goes in (diff_id) and what comes out (digest), writes out.
class Sink {
 public:
  Sink(Compression c, int out_fd) : compression_(c), out_fd_(out_fd) {}
  ~Sink() {
    if (zlib_ready_) deflateEnd(&zs_);
    ZSTD_freeCCtx(zstd_);
  }
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  bool init(std::string* error) {
    if (compression_ == Compression::kGzip) {
      // windowBits 15 + 16: a gzip wrapper. Its header: no name, no comment, mtime 0, OS 255.
      if (deflateInit2(&zs_, kGzipLevel, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        *error = "deflateInit2 failed";
        return false;
      }
      zlib_ready_ = true;
      std::memset(&header_, 0, sizeof header_);
      header_.os = kGzipOsUnknown;
      if (deflateSetHeader(&zs_, &header_) != Z_OK) {
        *error = "deflateSetHeader failed";
        return false;
      }
    } else if (compression_ == Compression::kZstd) {
      zstd_ = ZSTD_createCCtx();
      if (zstd_ == nullptr ||
          ZSTD_isError(ZSTD_CCtx_setParameter(zstd_, ZSTD_c_compressionLevel, kZstdLevel)) ||
          ZSTD_isError(ZSTD_CCtx_setParameter(zstd_, ZSTD_c_checksumFlag, 1))) {
        *error = "zstd: cannot set up the compressor";
        return false;
      }
    }
    out_.resize(kChunk);
    return true;
  }

  // The tar bytes, in order. False with *error set on failure.
  bool put(const void* data, size_t size, std::string* error) {
    diff_id_.update(data, size);
    if (compression_ == Compression::kNone) return emit(data, size, error);
    return compress(data, size, false, error);
  }

  bool finish(std::string* error) {
    if (compression_ == Compression::kNone) return true;
    return compress(nullptr, 0, true, error);
  }

  std::string diff_id() { return diff_id_.digest(); }
  std::string digest() { return digest_.digest(); }
  uint64_t written() const { return written_; }

 private:
  bool emit(const void* data, size_t size, std::string* error) {
    digest_.update(data, size);
    written_ += size;
    if (Status s = sys::write_all(out_fd_, std::string_view(static_cast<const char*>(data), size));
        !s) {
      *error = "writing the layer blob: " + s.error().message();
      return false;
    }
    return true;
  }

  bool compress(const void* data, size_t size, bool end, std::string* error) {
    if (compression_ == Compression::kGzip) {
      zs_.next_in = static_cast<Bytef*>(const_cast<void*>(data));
      zs_.avail_in = static_cast<uInt>(size);
      for (;;) {
        zs_.next_out = reinterpret_cast<Bytef*>(out_.data());
        zs_.avail_out = static_cast<uInt>(out_.size());
        int rc = deflate(&zs_, end ? Z_FINISH : Z_NO_FLUSH);
        if (rc == Z_STREAM_ERROR) {
          *error = "deflate failed";
          return false;
        }
        size_t n = out_.size() - zs_.avail_out;
        if (n > 0 && !emit(out_.data(), n, error)) return false;
        if (end ? rc == Z_STREAM_END : (zs_.avail_in == 0 && zs_.avail_out != 0)) return true;
      }
    }
    ZSTD_inBuffer in{data, size, 0};
    for (;;) {
      ZSTD_outBuffer out{out_.data(), out_.size(), 0};
      size_t rc = ZSTD_compressStream2(zstd_, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(rc)) {
        *error = std::string("zstd: ") + ZSTD_getErrorName(rc);
        return false;
      }
      if (out.pos > 0 && !emit(out_.data(), out.pos, error)) return false;
      if (end ? rc == 0 : in.pos == in.size) return true;
    }
  }

  Compression compression_;
  int out_fd_;
  Sha256 diff_id_, digest_;
  uint64_t written_ = 0;
  z_stream zs_{};
  gz_header header_{};
  bool zlib_ready_ = false;
  ZSTD_CCtx* zstd_ = nullptr;
  std::vector<char> out_;
};

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;
using EntryPtr = std::unique_ptr<archive_entry, EntryDeleter>;

struct CallbackState {
  Sink* sink;
  std::string error;
};

la_ssize_t write_cb(archive* a, void* client, const void* buf, size_t size) {
  auto* st = static_cast<CallbackState*>(client);
  if (!st->sink->put(buf, size, &st->error)) {
    archive_set_error(a, EIO, "%s", st->error.c_str());
    return -1;
  }
  return static_cast<la_ssize_t>(size);
}

// The tar name of a manifest path: relative, the root as ".".
std::string tar_name(std::string_view path) {
  return path == "/" ? std::string(".") : std::string(path.substr(1));
}

// The entries' order in the tar (see the design note): indexes into m.entries, with whiteouts
// as they are (the writer turns them into ".wh." files).
std::vector<size_t> tar_order(const Manifest& m) {
  std::unordered_map<std::string_view, size_t> dir_index;
  std::vector<std::vector<size_t>> children(m.entries.size());
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    if (e.kind == EntryKind::kDir) dir_index.emplace(e.path, i);
    if (i == 0) continue;
    auto parent = dir_index.find(store::parent_path(e.path));
    if (parent != dir_index.end()) children[parent->second].push_back(i);
  }
  std::vector<size_t> order;
  order.reserve(m.entries.size());
  // An explicit stack: manifests can be deep.
  std::vector<size_t> stack = {0};
  while (!stack.empty()) {
    size_t d = stack.back();
    stack.pop_back();
    order.push_back(d);
    const auto& kids = children[d];
    for (size_t k : kids) {
      if (m.entries[k].kind == EntryKind::kWhiteout) order.push_back(k);
    }
    // The others in manifest order: pushed in reverse; non-directories go straight out only
    // when they come up, so directories and files keep their relative order.
    for (auto it = kids.rbegin(); it != kids.rend(); ++it) {
      if (m.entries[*it].kind != EntryKind::kWhiteout) stack.push_back(*it);
    }
  }
  return order;
}

void set_times_and_owner(archive_entry* ae, const Entry& e, bool exact) {
  archive_entry_set_uid(ae, e.uid);
  archive_entry_set_gid(ae, e.gid);
  archive_entry_set_mtime(ae, e.mtime_sec, exact ? e.mtime_nsec : 0);
}

// An empty regular file with mode 0, root-owned, mtime 0: a whiteout or the opaque marker.
EntryPtr marker_entry(const std::string& name) {
  EntryPtr ae(archive_entry_new());
  archive_entry_set_pathname(ae.get(), name.c_str());
  archive_entry_set_filetype(ae.get(), AE_IFREG);
  archive_entry_set_perm(ae.get(), 0);
  archive_entry_set_size(ae.get(), 0);
  archive_entry_set_mtime(ae.get(), 0, 0);
  return ae;
}

class Writer {
 public:
  Writer(const store::Store& st, const Manifest& m, archive* a, bool exact,
         const std::function<void(uint64_t)>& progress)
      : store_(st), m_(m), a_(a), exact_(exact), progress_(progress) {}

  bool write_all(std::string* error) {
    for (size_t i = 0; i < m_.entries.size(); ++i) {
      if (m_.entries[i].kind == EntryKind::kFile) files_.emplace(m_.entries[i].path, i);
    }
    for (size_t i : tar_order(m_)) {
      if (!write_entry(m_.entries[i], error)) return false;
    }
    return true;
  }

 private:
  bool header(archive_entry* ae, const std::string& what, std::string* error) {
    if (archive_write_header(a_, ae) != ARCHIVE_OK) {
      *error = what + ": " + archive_error_string(a_);
      return false;
    }
    return true;
  }

  bool write_entry(const Entry& e, std::string* error) {
    const std::string name = tar_name(e.path);
    if (e.kind == EntryKind::kWhiteout) {
      std::string_view parent = store::parent_path(e.path);
      std::string wh = (parent == "/" ? std::string() : tar_name(parent) + "/") + ".wh." +
                       std::string(store::base_name(e.path));
      return header(marker_entry(wh).get(), e.path, error);
    }
    if (e.kind == EntryKind::kSocket) return true;
    EntryPtr ae(archive_entry_new());
    archive_entry_set_pathname(ae.get(), name.c_str());
    if (e.kind == EntryKind::kHardlink) {
      auto it = files_.find(e.target);
      if (it == files_.end()) {
        *error = e.path + ": hard link to '" + e.target + "', which is not a file of the layer";
        return false;
      }
      const Entry& f = m_.entries[it->second];
      archive_entry_set_filetype(ae.get(), AE_IFREG);
      archive_entry_set_perm(ae.get(), f.mode);
      set_times_and_owner(ae.get(), f, exact_);
      archive_entry_set_hardlink(ae.get(), tar_name(f.path).c_str());
      archive_entry_set_size(ae.get(), 0);
      return header(ae.get(), e.path, error);
    }
    archive_entry_set_perm(ae.get(), e.mode);
    set_times_and_owner(ae.get(), e, exact_);
    for (const auto& [k, v] : e.xattrs) {
      if (!excluded_xattr(k))
        archive_entry_xattr_add_entry(ae.get(), k.c_str(), v.data(), v.size());
    }
    switch (e.kind) {
      case EntryKind::kDir: archive_entry_set_filetype(ae.get(), AE_IFDIR); break;
      case EntryKind::kFile:
        archive_entry_set_filetype(ae.get(), AE_IFREG);
        archive_entry_set_size(ae.get(), static_cast<la_int64_t>(e.size));
        break;
      case EntryKind::kSymlink:
        archive_entry_set_filetype(ae.get(), AE_IFLNK);
        archive_entry_set_symlink(ae.get(), e.target.c_str());
        break;
      case EntryKind::kChar:
      case EntryKind::kBlock:
        archive_entry_set_filetype(ae.get(), e.kind == EntryKind::kChar ? AE_IFCHR : AE_IFBLK);
        archive_entry_set_rdevmajor(ae.get(), e.rdev_major);
        archive_entry_set_rdevminor(ae.get(), e.rdev_minor);
        break;
      case EntryKind::kFifo: archive_entry_set_filetype(ae.get(), AE_IFIFO); break;
      default: break;  // handled above
    }
    if (exact_ && e.kind == EntryKind::kFile && e.size > 0 && !add_sparse_map(ae.get(), e, error)) {
      return false;
    }
    if (!header(ae.get(), e.path, error)) return false;
    if (e.kind == EntryKind::kDir && e.opaque) {
      std::string opq = (e.path == "/" ? std::string() : name + "/") + ".wh..wh..opq";
      if (!header(marker_entry(opq).get(), e.path + " (opaque marker)", error)) return false;
    }
    if (e.kind == EntryKind::kFile && e.size > 0) return file_data(e, error);
    return true;
  }

  // Volume snapshots: a file with holes becomes a sparse entry (a PAX GNU.sparse 1.0 map of its
  // object's data extents; libarchive then writes only the bytes inside them), so the holes
  // survive export and import. A file without holes gets no map.
  bool add_sparse_map(archive_entry* ae, const Entry& e, std::string* error) {
    auto fd = store_.open_object(e.object);
    if (!fd) {
      *error = e.path + ": object " + e.object + ": " + fd.error().message();
      return false;
    }
    const auto size = static_cast<off_t>(e.size);
    std::vector<std::pair<off_t, off_t>> extents;  // offset, length
    for (off_t pos = 0; pos < size;) {
      auto data = sys::lseek(fd->get(), pos, SEEK_DATA);
      if (!data && data.code() == ENXIO) break;  // only a hole from pos on
      if (!data) return true;                    // no SEEK_DATA here: written densely
      if (*data >= size) break;
      auto hole = sys::lseek(fd->get(), *data, SEEK_HOLE);
      if (!hole) return true;
      const off_t end = std::min(*hole, size);
      extents.emplace_back(*data, end - *data);
      pos = end;
    }
    if (extents.size() == 1 && extents[0].first == 0 && extents[0].second == size) return true;
    if (extents.empty()) extents.emplace_back(size, 0);  // all hole: an empty extent at the end
    for (const auto& [offset, length] : extents) {
      archive_entry_sparse_add_entry(ae, offset, length);
    }
    return true;
  }

  bool file_data(const Entry& e, std::string* error) {
    auto fd = store_.open_object(e.object);
    if (!fd) {
      *error = e.path + ": object " + e.object + ": " + fd.error().message();
      return false;
    }
    if (buf_.empty()) buf_.resize(kChunk);
    uint64_t off = 0;
    while (off < e.size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf_.size(), e.size - off));
      auto n = sys::pread_full(fd->get(), buf_.data(), want, static_cast<off_t>(off));
      if (!n) {
        *error = e.path + ": object " + e.object + ": " + n.error().message();
        return false;
      }
      if (*n != want) {
        *error = e.path + ": object " + e.object + " is shorter than the manifest says";
        return false;
      }
      if (archive_write_data(a_, buf_.data(), want) != static_cast<la_ssize_t>(want)) {
        *error = e.path + ": " + archive_error_string(a_);
        return false;
      }
      off += want;
      file_bytes_ += want;
      if (progress_) progress_(file_bytes_);
    }
    return true;
  }

  const store::Store& store_;
  const Manifest& m_;
  archive* a_;
  bool exact_;
  const std::function<void(uint64_t)>& progress_;
  std::unordered_map<std::string_view, size_t> files_;  // path of each kFile -> index
  std::vector<char> buf_;
  uint64_t file_bytes_ = 0;
};

}  // namespace

bool write_layer_tar(const store::Store& store, const store::Manifest& manifest,
                     Compression compression, int out_fd, LayerBlob* blob, std::string* error,
                     const std::function<void(uint64_t)>& progress, bool exact) {
  std::string why;
  if (!store::validate(manifest, &why)) {
    *error = "layer manifest: " + why;
    return false;
  }
  Sink sink(compression, out_fd);
  if (!sink.init(error)) return false;
  ArchivePtr a(archive_write_new());
  if (!a) {
    *error = "archive_write_new failed";
    return false;
  }
  auto fail = [&](const char* step) {
    const char* msg = archive_error_string(a.get());
    *error = std::string(step) + ": " + (msg != nullptr ? msg : "failed");
    return false;
  };
  // Exact mode needs the interchange format: restricted pax adds an mtime record (with the
  // nanoseconds) only to entries that need an extended header anyway. Entries without
  // nanoseconds encode the same in both.
  const int format = exact ? archive_write_set_format_pax(a.get())
                           : archive_write_set_format_pax_restricted(a.get());
  if (format != ARCHIVE_OK) return fail("tar format");
  if (archive_write_set_option(a.get(), "pax", "xattrheader", "SCHILY") != ARCHIVE_OK) {
    return fail("tar xattr header option");
  }
  // Blocks of 10 KiB for the callback, but the last one is not padded: the tar ends right after
  // its two zero blocks.
  archive_write_set_bytes_per_block(a.get(), 10240);
  archive_write_set_bytes_in_last_block(a.get(), 1);
  CallbackState cb{&sink, {}};
  if (archive_write_open2(a.get(), &cb, nullptr, write_cb, nullptr, nullptr) != ARCHIVE_OK) {
    return fail("opening the tar writer");
  }
  Writer w(store, manifest, a.get(), exact, progress);
  bool ok = w.write_all(error);
  if (ok && archive_write_close(a.get()) != ARCHIVE_OK) ok = fail("finishing the tar");
  if (!ok) {
    if (!cb.error.empty()) *error += " (" + cb.error + ")";
    return false;
  }
  if (!sink.finish(error)) return false;
  blob->diff_id = sink.diff_id();
  blob->digest = sink.digest();
  blob->size = static_cast<int64_t>(sink.written());
  blob->media_type = std::string(layer_media_type(compression));
  return true;
}

}  // namespace lamina::oci
