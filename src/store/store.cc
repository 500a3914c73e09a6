// SPDX-License-Identifier: Apache-2.0
// The store's layout and publishing rules. Design notes:
//  - An object is written to an O_TMPFILE in tmp/ (an unnamed inode: a crash leaves nothing
//    behind), hashed as it is written, then given its name with linkat, which never replaces:
//    EEXIST means the name is taken, and the bytes are compared before the existing object is
//    trusted as equal.
//  - A layer is a directory built in tmp/ and renamed into layers/ with RENAME_NOREPLACE; two
//    commits of the same change race harmlessly (the loser compares and drops its copy).
//  - syncfs before each publishing rename: what a manifest or image names is on disk first.
#include "lamina/store/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <vector>

#include "lamina/base/json_depth.h"
#include "lamina/base/log.h"
#include "lamina/base/sys.h"

namespace lamina::store {
namespace {

using nlohmann::json;

constexpr size_t kCopyChunk = 1 << 20;
constexpr const char* kStoreJson = "store.json";

std::atomic<uint64_t> temp_counter{0};

std::string temp_name(const char* what) {
  return std::string(what) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(temp_counter.fetch_add(1)) + "-" + std::to_string(::time(nullptr));
}

// Writes `data` to tmp/NAME (fsynced), returns NAME.
Result<std::string> write_temp(int tmp_fd, const char* what, std::string_view data, mode_t mode) {
  std::string name = temp_name(what);
  auto fd = sys::openat(tmp_fd, name.c_str(), O_CREAT | O_EXCL | O_WRONLY, mode);
  if (!fd) return fd.error();
  Status s = sys::write_all(fd->get(), data);
  if (s) s = sys::fsync(fd->get());
  if (!s) {
    (void)sys::unlinkat(tmp_fd, name.c_str(), 0);
    return s.error();
  }
  return name;
}

bool is_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// images/ file name of an image name: '/' cannot be in a file name.
std::string image_file(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  return out + ".json";
}

std::string image_name_of_file(std::string_view file) {
  file.remove_suffix(5);  // ".json"
  std::string out;
  for (size_t i = 0; i < file.size(); ++i) {
    if (file.substr(i, 3) == "%2F") {
      out += '/';
      i += 2;
    } else {
      out += file[i];
    }
  }
  return out;
}

Status mkdir_ok(int dirfd, const char* name, mode_t mode) {
  Status s = sys::mkdirat(dirfd, name, mode);
  if (!s && s.code() != EEXIST) return s;
  return {};
}

// mkdir -p for the parents of a new store root (0755), the root itself 0700.
bool make_root(std::string root, std::string* error) {
  // "DIR/" names DIR: without this the root would be made 0755 as one of its own parents.
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::string path;
  size_t pos = 0;
  while (pos != std::string::npos) {
    size_t slash = root.find('/', pos + 1);
    path = root.substr(0, slash);
    pos = slash;
    if (path.empty()) continue;
    mode_t mode = slash == std::string::npos ? 0700 : 0755;
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
      *error = "cannot create store directory '" + path + "': " + std::strerror(errno);
      return false;
    }
  }
  return true;
}

Result<bool> same_bytes(int a, int b) {
  auto sa = sys::fstat(a);
  auto sb = sys::fstat(b);
  if (!sa) return sa.error();
  if (!sb) return sb.error();
  if (sa->st_size != sb->st_size) return false;
  std::vector<char> ba(kCopyChunk), bb(kCopyChunk);
  for (off_t off = 0; off < sa->st_size;) {
    auto na = sys::pread_full(a, ba.data(), ba.size(), off);
    if (!na) return na.error();
    auto nb = sys::pread_full(b, bb.data(), bb.size(), off);
    if (!nb) return nb.error();
    if (*na != *nb || std::memcmp(ba.data(), bb.data(), *na) != 0) return false;
    if (*na == 0) break;
    off += static_cast<off_t>(*na);
  }
  return true;
}

// Copies src into dst while hashing; data extents only (holes stay holes, hashed as zeros).
Result<Hash128> copy_hashing(int src, int dst, off_t size) {
  Hasher h;
  std::vector<char> buf(kCopyChunk);
  off_t pos = 0;
  while (pos < size) {
    auto data = sys::lseek(src, pos, SEEK_DATA);
    off_t data_start = data ? *data : (data.code() == ENXIO ? size : pos);
    if (!data && data.code() != ENXIO && data.code() != EINVAL && data.code() != EOPNOTSUPP) {
      return data.error();
    }
    if (data_start > size) data_start = size;
    if (data_start > pos) {
      h.update_zeros(static_cast<uint64_t>(data_start - pos));
      pos = data_start;
      if (pos >= size) break;
    }
    auto hole = sys::lseek(src, pos, SEEK_HOLE);
    off_t data_end = hole ? std::min(*hole, size) : size;
    while (pos < data_end) {
      size_t want = static_cast<size_t>(std::min<off_t>(data_end - pos, kCopyChunk));
      auto n = sys::pread_full(src, buf.data(), want, pos);
      if (!n) return n.error();
      if (*n == 0) return Error{EAGAIN, "source file shrank while read"};
      h.update(buf.data(), *n);
      if (Status s = sys::pwrite_full(dst, buf.data(), *n, pos); !s) return s.error();
      pos += static_cast<off_t>(*n);
    }
  }
  // A file that grew while read: its new bytes are not in the copy (the caller re-checks).
  if (Status s = sys::ftruncate(dst, size); !s) return s.error();
  return h.digest();
}

// Reads j[key] into *out when present. json::value() throws when the stored type differs; a
// damaged record must come back as an error instead (fsck and gc read damaged stores).
bool get_field(const json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

bool get_field(const json& j, const char* key, uint64_t* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_number_unsigned()) return false;
  *out = it->get<uint64_t>();
  return true;
}

std::string info_to_json(const LayerInfo& i) {
  json j = {{"id", i.id},
            {"created", i.created},
            {"entries", i.entries},
            {"files", i.files},
            {"whiteouts", i.whiteouts},
            {"content_bytes", i.content_bytes},
            {"manifest_bytes", i.manifest_bytes},
            {"comment", i.comment}};
  return j.dump(2) + "\n";
}

}  // namespace

std::string Store::default_root() {
  if (const char* r = std::getenv("LAMINA_ROOT"); r != nullptr && *r != '\0') return r;
  if (::geteuid() == 0) return "/var/lib/lamina";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x != nullptr && *x == '/') {
    return std::string(x) + "/lamina";
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + "/.local/share/lamina";
}

std::string Store::now_rfc3339() {
  char buf[32];
  time_t t = ::time(nullptr);
  struct tm tm;
  ::gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::unique_ptr<Store> Store::open(const std::string& root, bool create, std::string* error) {
  auto fail = [&](const std::string& why) {
    *error = "store '" + root + "': " + why;
    return nullptr;
  };
  auto fd = sys::openat(AT_FDCWD, root.c_str(), O_PATH | O_DIRECTORY);
  if (!fd && fd.code() == ENOENT && create) {
    if (!make_root(root, error)) return nullptr;
    fd = sys::openat(AT_FDCWD, root.c_str(), O_PATH | O_DIRECTORY);
  }
  if (!fd) {
    if (fd.code() == ENOENT) return fail("does not exist (commit or import something first)");
    return fail(std::strerror(fd.code()));
  }
  std::unique_ptr<Store> st(new Store());
  st->root_ = root;
  st->root_fd_ = std::move(*fd);
  auto meta = sys::read_file(st->root_fd(), kStoreJson);
  if (!meta) {
    if (meta.code() != ENOENT)
      return fail(std::string("store.json: ") + std::strerror(meta.code()));
    // A new store: only in an empty directory (never scribble over someone's data). What a
    // store being created by another process at this moment holds counts as empty, store.json
    // included: it may have been renamed in since the read above (then our rename below fails
    // with EEXIST and we read theirs).
    bool empty = true;
    (void)sys::read_dir(st->root_fd(), [&](std::string_view name, unsigned char, ino_t) {
      if (name != "lock" && name != "objects" && name != "layers" && name != "images" &&
          name != "tmp" && name != kStoreJson) {
        empty = false;
      }
      return Status{};
    });
    if (!empty) return fail("not a lamina store (no store.json, and the directory is not empty)");
    if (!create) return fail("not a lamina store (no store.json)");
    json j = {{"version", kStoreVersion}, {"object_hash", "xxh3-128"}};
    auto dir = sys::openat(st->root_fd(), ".", O_RDONLY | O_DIRECTORY);
    if (!dir) return fail(std::strerror(dir.code()));
    for (const char* sub : {"objects", "layers", "images", "tmp"}) {
      if (Status s = mkdir_ok(st->root_fd(), sub, 0700); !s) {
        return fail(std::string("cannot create ") + sub + "/: " + s.error().message());
      }
    }
    auto tmp = sys::openat(st->root_fd(), "tmp", O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!tmp) return fail(std::strerror(tmp.code()));
    auto name = write_temp(tmp->get(), "store-json", j.dump(2) + "\n", 0644);
    if (!name) return fail(name.error().message());
    Status s =
        sys::renameat2(tmp->get(), name->c_str(), st->root_fd(), kStoreJson, RENAME_NOREPLACE);
    if (!s && s.code() != EEXIST) return fail("cannot write store.json: " + s.error().message());
    if (!s) (void)sys::unlinkat(tmp->get(), name->c_str(), 0);
    (void)sys::fsync(dir->get());
    meta = sys::read_file(st->root_fd(), kStoreJson);
    if (!meta) return fail(std::string("store.json: ") + std::strerror(meta.code()));
  }
  json j = json::parse(*meta, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("version") ||
      !j["version"].is_number_integer()) {
    return fail("store.json is not valid (expected {\"version\": N, ...})");
  }
  int version = j["version"].get<int>();
  if (version != kStoreVersion) {
    return fail("store version " + std::to_string(version) +
                " is not supported (this lamina reads version " + std::to_string(kStoreVersion) +
                ")");
  }
  std::string object_hash;
  if (!get_field(j, "object_hash", &object_hash) || object_hash != "xxh3-128") {
    return fail("store.json names an object hash other than xxh3-128");
  }
  struct Sub {
    const char* name;
    UniqueFd* fd;
  };
  for (Sub sub : {Sub{"objects", &st->objects_fd_}, Sub{"layers", &st->layers_fd_},
                  Sub{"images", &st->images_fd_}, Sub{"tmp", &st->tmp_fd_}}) {
    if (create) (void)mkdir_ok(st->root_fd(), sub.name, 0700);
    auto d = sys::openat(st->root_fd(), sub.name, O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!d) return fail(std::string(sub.name) + "/: " + std::strerror(d.code()));
    *sub.fd = std::move(*d);
  }
  return st;
}

Result<StoreLock> Store::lock_shared(bool wait) const {
  auto fd = sys::openat(root_fd(), "lock", O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
  if (!fd && (fd.code() == EACCES || fd.code() == EROFS)) {
    fd = sys::openat(root_fd(), "lock", O_RDONLY | O_NOFOLLOW);
  }
  if (!fd) return fd.error();
  if (Status s = sys::flock(fd->get(), LOCK_SH | (wait ? 0 : LOCK_NB)); !s) return s.error();
  return StoreLock(std::move(*fd));
}

Result<StoreLock> Store::lock_exclusive(bool wait) const {
  auto fd = sys::openat(root_fd(), "lock", O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
  if (!fd) return fd.error();
  if (Status s = sys::flock(fd->get(), LOCK_EX | (wait ? 0 : LOCK_NB)); !s) return s.error();
  return StoreLock(std::move(*fd));
}

std::string Store::object_path(std::string_view name) {
  return "objects/" + std::string(name.substr(0, 2)) + "/" + std::string(name.substr(2));
}

Result<UniqueFd> Store::open_object(std::string_view name, int flags) const {
  if (!valid_object_name(name)) return Error{EINVAL, "object name"};
  std::string rel = std::string(name.substr(0, 2)) + "/" + std::string(name.substr(2));
  return sys::openat_beneath(objects_fd(), rel.c_str(),
                             (flags != 0 ? flags : O_RDONLY) | O_NOFOLLOW);
}

Result<struct stat> Store::stat_object(std::string_view name) const {
  if (!valid_object_name(name)) return Error{EINVAL, "object name"};
  std::string rel = std::string(name.substr(0, 2)) + "/" + std::string(name.substr(2));
  auto fd = sys::openat_beneath(objects_fd(), rel.c_str(), O_PATH | O_NOFOLLOW);
  if (!fd) return fd.error();
  return sys::fstat(fd->get());
}

Result<PutResult> Store::put_object(int src_fd) {
  auto before = sys::fstat(src_fd);
  if (!before) return before.error();
  if (!S_ISREG(before->st_mode)) return Error{EINVAL, "object source is not a regular file"};
  // An unnamed inode in tmp/: nothing to clean up after a crash.
  std::string tmp_name;
  auto tmp = sys::openat(tmp_fd(), ".", O_TMPFILE | O_RDWR, 0444);
  if (!tmp) {
    if (tmp.code() != EOPNOTSUPP && tmp.code() != EISDIR && tmp.code() != EINVAL) {
      return tmp.error();
    }
    tmp_name = temp_name("object");
    tmp = sys::openat(tmp_fd(), tmp_name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0444);
    if (!tmp) return tmp.error();
  }
  auto hash = copy_hashing(src_fd, tmp->get(), before->st_size);
  Status ok;
  if (!hash) ok = hash.error();
  auto after = sys::fstat(src_fd);
  if (ok && !after) ok = after.error();
  if (ok && (after->st_size != before->st_size || after->st_mtim.tv_sec != before->st_mtim.tv_sec ||
             after->st_mtim.tv_nsec != before->st_mtim.tv_nsec ||
             after->st_ctim.tv_sec != before->st_ctim.tv_sec ||
             after->st_ctim.tv_nsec != before->st_ctim.tv_nsec)) {
    ok = Error{EAGAIN, "file changed while it was read"};
  }
  if (!ok) {
    if (!tmp_name.empty()) (void)sys::unlinkat(tmp_fd(), tmp_name.c_str(), 0);
    return ok.error();
  }
  auto r = link_object(tmp->get(), tmp_name, *hash, static_cast<uint64_t>(before->st_size));
  if (!tmp_name.empty()) (void)sys::unlinkat(tmp_fd(), tmp_name.c_str(), 0);
  return r;
}

Result<PutResult> Store::put_bytes(std::string_view bytes) {
  auto tmp = sys::openat(tmp_fd(), ".", O_TMPFILE | O_RDWR, 0444);
  std::string tmp_name;
  if (!tmp) {
    tmp_name = temp_name("object");
    tmp = sys::openat(tmp_fd(), tmp_name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0444);
    if (!tmp) return tmp.error();
  }
  Status s = sys::pwrite_full(tmp->get(), bytes.data(), bytes.size(), 0);
  Result<PutResult> r = s ? link_object(tmp->get(), tmp_name, hash_bytes(bytes), bytes.size())
                          : Result<PutResult>(s.error());
  if (!tmp_name.empty()) (void)sys::unlinkat(tmp_fd(), tmp_name.c_str(), 0);
  return r;
}

Result<PutResult> Store::link_object(int tmp_fd, const std::string& tmp_name, const Hash128& hash,
                                     uint64_t size) {
  const std::string hex = hash.hex();
  const std::string fan = hex.substr(0, 2);
  if (Status s = mkdir_ok(objects_fd(), fan.c_str(), 0755); !s) return s.error();
  auto dir = sys::openat(objects_fd(), fan.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) return dir.error();
  const std::string proc = sys::proc_fd_path(tmp_fd);
  for (unsigned n = 0;; ++n) {
    std::string name = n == 0 ? hex : hex + "-" + std::to_string(n);
    std::string rest = name.substr(2);
    Status s =
        tmp_name.empty()
            ? sys::linkat(AT_FDCWD, proc.c_str(), dir->get(), rest.c_str(), AT_SYMLINK_FOLLOW)
            : sys::linkat(this->tmp_fd(), tmp_name.c_str(), dir->get(), rest.c_str(), 0);
    if (s) return PutResult{name, size, true};
    if (s.code() != EEXIST) return s.error();
    // The name is taken: the same bytes, or (rarely) a collision of the hash.
    auto existing = sys::openat(dir->get(), rest.c_str(), O_RDONLY | O_NOFOLLOW);
    if (!existing) return existing.error();
    auto same = same_bytes(tmp_fd, existing->get());
    if (!same) return same.error();
    if (*same) return PutResult{name, size, false};
    log::warn("object {}: same XXH3-128, different bytes; storing the new bytes as {}-{}", name,
              hex, n + 1);
  }
}

Status Store::list_objects(const std::function<Status(const std::string&, uint64_t)>& fn) const {
  std::vector<std::string> fans;
  Status s = sys::read_dir(objects_fd(), [&](std::string_view name, unsigned char, ino_t) {
    if (name.size() == 2 && is_hex(name)) fans.emplace_back(name);
    return Status{};
  });
  if (!s) return s;
  for (const std::string& fan : fans) {
    auto dir = sys::openat(objects_fd(), fan.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!dir) return dir.error();
    std::vector<std::string> names;
    s = sys::read_dir(dir->get(), [&](std::string_view name, unsigned char, ino_t) {
      names.push_back(fan + std::string(name));
      return Status{};
    });
    if (!s) return s;
    for (const std::string& name : names) {
      auto st = sys::fstatat(dir->get(), name.c_str() + 2);
      if (!st) {
        if (st.code() == ENOENT) continue;
        return st.error();
      }
      if (Status f = fn(name, static_cast<uint64_t>(st->st_size)); !f) return f;
    }
  }
  return {};
}

Status Store::remove_object(std::string_view name) {
  // The name becomes a path: never let "../x" or "/x" through.
  if (!valid_object_name(name)) return Error{EINVAL, "object name"};
  std::string fan(name.substr(0, 2)), rest(name.substr(2));
  auto dir = sys::openat(objects_fd(), fan.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) return dir.error();
  return sys::unlinkat(dir->get(), rest.c_str(), 0);
}

std::string Store::layer_id(std::string_view manifest_bytes) {
  return hash_bytes(manifest_bytes).hex();
}

bool Store::valid_layer_id(std::string_view id) { return id.size() == 32 && is_hex(id); }

bool Store::has_layer(std::string_view id) const {
  if (!valid_layer_id(id)) return false;
  auto e = sys::exists_at(layers_fd_.get(), std::string(id).c_str());
  return e && *e;
}

Result<std::string> Store::publish_layer(const Manifest& manifest, LayerInfo info) {
  // A manifest that breaks the rules would be published under an id no reader can open.
  std::string why;
  if (!validate(manifest, &why)) return Error{EINVAL, "publish_layer: invalid manifest"};
  const std::string bytes = encode(manifest);
  const std::string id = layer_id(bytes);
  info.id = id;
  info.manifest_bytes = bytes.size();
  if (info.created.empty()) info.created = now_rfc3339();
  auto same_as_stored = [&]() -> Result<std::string> {
    auto stored = read_manifest_bytes(id);
    if (!stored) return stored.error();
    if (*stored != bytes) return Error{EEXIST, "layer id collision (different manifest bytes)"};
    return id;
  };
  if (has_layer(id)) return same_as_stored();
  // Build layers/ID in tmp/, then rename it into place.
  const std::string dir_name = temp_name("layer");
  if (Status s = sys::mkdirat(tmp_fd(), dir_name.c_str(), 0755); !s) return s.error();
  auto cleanup = [&] {
    auto d = sys::openat(tmp_fd(), dir_name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (d) {
      (void)sys::unlinkat(d->get(), "manifest", 0);
      (void)sys::unlinkat(d->get(), "info.json", 0);
    }
    (void)sys::unlinkat(tmp_fd(), dir_name.c_str(), AT_REMOVEDIR);
  };
  auto dir = sys::openat(tmp_fd(), dir_name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    cleanup();
    return dir.error();
  }
  for (auto [file, data] : {std::pair<const char*, std::string>{"manifest", bytes},
                            std::pair<const char*, std::string>{"info.json", info_to_json(info)}}) {
    auto fd = sys::openat(dir->get(), file, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0444);
    Status s = fd ? sys::write_all(fd->get(), data) : Status(fd.error());
    if (!s) {
      cleanup();
      return s.error();
    }
  }
  // Objects, then manifest: everything the manifest names reaches the disk before it does.
  if (Status s = sync(); !s) {
    cleanup();
    return s.error();
  }
  Status s =
      sys::renameat2(tmp_fd(), dir_name.c_str(), layers_fd_.get(), id.c_str(), RENAME_NOREPLACE);
  if (!s) {
    cleanup();
    if (s.code() == EEXIST || s.code() == ENOTEMPTY) return same_as_stored();
    return s.error();
  }
  auto layers = sys::openat(layers_fd_.get(), ".", O_RDONLY | O_DIRECTORY);
  if (layers) (void)sys::fsync(layers->get());
  return id;
}

Result<std::string> Store::read_manifest_bytes(std::string_view id) const {
  if (!valid_layer_id(id)) return Error{EINVAL, "layer id"};
  auto dir =
      sys::openat(layers_fd_.get(), std::string(id).c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) return dir.error();
  return sys::read_file(dir->get(), "manifest");
}

Result<UniqueFd> Store::open_manifest(std::string_view id) const {
  if (!valid_layer_id(id)) return Error{EINVAL, "layer id"};
  std::string rel = std::string(id) + "/manifest";
  return sys::openat_beneath(layers_fd_.get(), rel.c_str(), O_RDONLY | O_NOFOLLOW);
}

bool Store::read_manifest(std::string_view id, Manifest* m, std::string* error) const {
  auto bytes = read_manifest_bytes(id);
  if (!bytes) {
    *error = "layer " + std::string(id) + ": " +
             (bytes.code() == ENOENT ? std::string("not in the store")
                                     : std::string(std::strerror(bytes.code())));
    return false;
  }
  if (layer_id(*bytes) != id) {
    *error = "layer " + std::string(id) + ": manifest does not match its id (corrupted)";
    return false;
  }
  std::string why;
  if (!decode(*bytes, m, &why)) {
    *error = "layer " + std::string(id) + ": manifest " + why;
    return false;
  }
  return true;
}

Result<LayerInfo> Store::read_layer_info(std::string_view id) const {
  if (!valid_layer_id(id)) return Error{EINVAL, "layer id"};
  std::string rel = std::string(id) + "/info.json";
  auto text = sys::read_file(layers_fd_.get(), rel.c_str());
  if (!text) return text.error();
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Error{EBADMSG, "info.json"};
  LayerInfo i;
  i.id = std::string(id);
  if (!get_field(j, "created", &i.created) || !get_field(j, "entries", &i.entries) ||
      !get_field(j, "files", &i.files) || !get_field(j, "whiteouts", &i.whiteouts) ||
      !get_field(j, "content_bytes", &i.content_bytes) ||
      !get_field(j, "manifest_bytes", &i.manifest_bytes) || !get_field(j, "comment", &i.comment)) {
    return Error{EBADMSG, "info.json"};
  }
  return i;
}

Result<std::vector<std::string>> Store::list_layers() const {
  std::vector<std::string> ids;
  Status s = sys::read_dir(layers_fd_.get(), [&](std::string_view name, unsigned char, ino_t) {
    if (valid_layer_id(name)) ids.emplace_back(name);
    return Status{};
  });
  if (!s) return s.error();
  std::sort(ids.begin(), ids.end());
  return ids;
}

Status Store::remove_layer(std::string_view id) {
  if (!valid_layer_id(id)) return Error{EINVAL, "layer id"};
  // Moved out of layers/ first (atomic), then emptied: a crash leaves junk in tmp/ only.
  const std::string junk = temp_name("dead-layer");
  if (Status s = sys::renameat2(layers_fd_.get(), std::string(id).c_str(), tmp_fd(), junk.c_str(),
                                RENAME_NOREPLACE);
      !s) {
    return s;
  }
  auto d = sys::openat(tmp_fd(), junk.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (d) {
    (void)sys::unlinkat(d->get(), "manifest", 0);
    (void)sys::unlinkat(d->get(), "info.json", 0);
  }
  return sys::unlinkat(tmp_fd(), junk.c_str(), AT_REMOVEDIR);
}

Result<std::string> Store::resolve_layer(std::string_view prefix) const {
  if (valid_layer_id(prefix)) {
    if (has_layer(prefix)) return std::string(prefix);
    return Error{ENOENT, "layer"};
  }
  if (prefix.size() < 4 || !is_hex(prefix)) return Error{ENOENT, "layer"};
  auto ids = list_layers();
  if (!ids) return ids.error();
  std::string found;
  for (const auto& id : *ids) {
    if (id.compare(0, prefix.size(), prefix) == 0) {
      if (!found.empty()) return Error{EINVAL, "ambiguous layer id prefix"};
      found = id;
    }
  }
  if (found.empty()) return Error{ENOENT, "layer"};
  return found;
}

bool Store::valid_image_name(std::string_view name, std::string* why) {
  auto bad = [&](const char* w) {
    *why = w;
    return false;
  };
  if (name.empty()) return bad("empty name");
  if (name.size() > 200) return bad("longer than 200 bytes");
  if (name.front() == '/' || name.front() == '.' || name.front() == '-') {
    return bad("must not start with '/', '.' or '-'");
  }
  if (name.back() == '/') return bad("must not end with '/'");
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '/' || c == ':' || c == '@';
    if (!ok) return bad("only letters, digits and . _ - / : @ are allowed");
  }
  if (name.find("..") != std::string_view::npos) return bad("must not contain '..'");
  if (name.find("//") != std::string_view::npos) return bad("must not contain '//'");
  if (name.find("/.") != std::string_view::npos) return bad("a component must not start with '.'");
  // Each '/' is stored as "%2F", and a file name holds at most 255 bytes.
  if (image_file(name).size() > 255) return bad("too long once each '/' is stored as %2F");
  return true;
}

Result<Image> Store::read_image(std::string_view name) const {
  std::string why;
  if (!valid_image_name(name, &why)) return Error{EINVAL, "image name"};
  auto text = sys::read_file(images_fd_.get(), image_file(name).c_str());
  if (!text) return text.error();
  // Its "config" is copied out with dump(), which recurses once per nesting level.
  if (!json_depth_within(*text)) return Error{EBADMSG, "image record"};
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("layers") || !j["layers"].is_array()) {
    return Error{EBADMSG, "image record"};
  }
  Image img;
  img.name = std::string(name);
  for (const auto& l : j["layers"]) {
    if (!l.is_string() || !valid_layer_id(l.get<std::string>())) {
      return Error{EBADMSG, "image record"};
    }
    img.layers.push_back(l.get<std::string>());
  }
  if (!get_field(j, "created", &img.created)) return Error{EBADMSG, "image record"};
  if (j.contains("config")) img.config_json = j["config"].dump();
  return img;
}

Status Store::write_image(const Image& image, bool replace) {
  std::string why;
  if (!valid_image_name(image.name, &why)) return Error{EINVAL, "image name"};
  json config = json::parse(image.config_json, nullptr, false);
  if (config.is_discarded()) config = json::object();
  json j = {{"name", image.name},
            {"layers", image.layers},
            {"created", image.created.empty() ? now_rfc3339() : image.created},
            {"config", config}};
  auto tmp = write_temp(tmp_fd(), "image", j.dump(2) + "\n", 0644);
  if (!tmp) return tmp.error();
  // The layers it names reach the disk first.
  if (Status s = sync(); !s) {
    (void)sys::unlinkat(tmp_fd(), tmp->c_str(), 0);
    return s;
  }
  const std::string file = image_file(image.name);
  Status s = sys::renameat2(tmp_fd(), tmp->c_str(), images_fd_.get(), file.c_str(),
                            replace ? 0 : RENAME_NOREPLACE);
  if (!s) {
    (void)sys::unlinkat(tmp_fd(), tmp->c_str(), 0);
    return s;
  }
  auto images = sys::openat(images_fd_.get(), ".", O_RDONLY | O_DIRECTORY);
  if (images) (void)sys::fsync(images->get());
  return {};
}

Status Store::remove_image(std::string_view name) {
  std::string why;
  if (!valid_image_name(name, &why)) return Error{EINVAL, "image name"};
  Status s = sys::unlinkat(images_fd_.get(), image_file(name).c_str(), 0);
  if (!s) return s;
  auto images = sys::openat(images_fd_.get(), ".", O_RDONLY | O_DIRECTORY);
  if (images) (void)sys::fsync(images->get());
  return {};
}

Result<std::vector<std::string>> Store::list_image_names() const {
  std::vector<std::string> names;
  Status s = sys::read_dir(images_fd_.get(), [&](std::string_view name, unsigned char, ino_t) {
    if (name.size() > 5 && name.substr(name.size() - 5) == ".json") {
      names.push_back(image_name_of_file(name));
    }
    return Status{};
  });
  if (!s) return s.error();
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::vector<Image>> Store::list_images() const {
  auto names = list_image_names();
  if (!names) return names.error();
  std::vector<Image> out;
  for (const auto& name : *names) {
    auto img = read_image(name);
    if (img) out.push_back(std::move(*img));
  }
  std::sort(out.begin(), out.end(), [](const Image& a, const Image& b) { return a.name < b.name; });
  return out;
}

Status Store::sync() const {
  auto fd = sys::openat(root_fd(), ".", O_RDONLY | O_DIRECTORY);  // syncfs refuses O_PATH
  if (!fd) return fd.error();
  return sys::syncfs(fd->get());
}

}  // namespace lamina::store
