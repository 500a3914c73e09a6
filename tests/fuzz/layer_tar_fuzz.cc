// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: the layer tar importer (oci/layer_tar.h read_layer_stream), into a real
// store in a temp dir made once per run. Each input is read twice: as it is (a tar, or a
// gzip/zstd stream that libarchive detects) and gzip-compressed here, so the decompressing
// half of the pipeline always sees a valid stream; both readings must agree. Checked on every
// input, besides ASan/UBSan/LSan:
//   - a refusal says why; an accepted layer is a valid manifest whose files are stored
//     objects of the sizes it names;
//   - the store's tmp/ is empty afterwards and no descriptor on the store is left open;
//   - nothing but objects appears in the store (the objects are removed after each input,
//     so each iteration starts from the same empty store).
// The layers below hold symlinks (/lib -> usr/lib, /etc/ssl -> /), so paths through them are
// exercised; device nodes are allowed (they are only recorded, never made).
#include <dirent.h>
#include <fcntl.h>
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lamina/base/sys.h"
#include "lamina/oci/layer_tar.h"
#include "lamina/store/store.h"
#include "unit/test_util.h"

namespace {

using lamina::store::Entry;
using lamina::store::EntryKind;
using lamina::store::Manifest;
using lamina::store::Store;

Manifest below_manifest() {
  auto entry = [](const char* path, EntryKind kind, const char* target = "") {
    Entry e;
    e.path = path;
    e.kind = kind;
    e.mode = kind == EntryKind::kSymlink ? 0777 : 0755;
    e.target = target;
    return e;
  };
  Manifest m;
  m.entries = {entry("/", EntryKind::kDir),
               entry("/etc", EntryKind::kDir),
               entry("/etc/ssl", EntryKind::kSymlink, "/"),
               entry("/lib", EntryKind::kSymlink, "usr/lib"),
               entry("/usr", EntryKind::kDir),
               entry("/usr/lib", EntryKind::kDir)};
  std::string why;
  if (!lamina::store::normalize(&m, &why)) __builtin_trap();
  return m;
}

// Descriptors open on something under `root` (libFuzzer's own come and go: its symbolizer).
int count_fds(const std::string& root) {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) __builtin_trap();
  while (dirent* e = ::readdir(d)) {
    auto target = lamina::sys::readlinkat(::dirfd(d), e->d_name);
    if (target && target->starts_with(root)) ++n;
  }
  ::closedir(d);
  return n;
}

struct Fixture {
  lamina::test::TempDir dir;
  std::unique_ptr<Store> store;
  lamina::store::StoreLock lock;  // read_layer_stream wants the shared lock held
  Manifest below = below_manifest();
  int fds = 0;

  Fixture() {
    std::string error;
    store = Store::open(dir / "store", true, &error);
    if (!store) __builtin_trap();
    auto l = store->lock_shared();
    if (!l) __builtin_trap();
    lock = std::move(*l);
    fds = count_fds(dir.path().string());
  }
};

std::string gzip(std::string_view in) {
  z_stream z{};
  if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) __builtin_trap();
  std::string out(deflateBound(&z, in.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) __builtin_trap();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

struct Outcome {
  bool ok = false;
  Manifest manifest;
  std::string diff_id;
};

Outcome read_layer(Fixture& f, std::string_view bytes) {
  size_t pos = 0;
  lamina::oci::ReadFn read = [&](void* buf, size_t size) -> lamina::Result<size_t> {
    // Odd-sized reads, so the pipeline's buffers see pieces that do not line up with blocks.
    size_t n = std::min({size, bytes.size() - pos, size_t{4093}});
    std::memcpy(buf, bytes.data() + pos, n);
    pos += n;
    return n;
  };
  lamina::oci::ReadLayerOptions options;
  options.below = {&f.below};
  options.allow_devices = true;
  Outcome out;
  std::string error;
  out.ok =
      lamina::oci::read_layer_stream(*f.store, read, options, &out.manifest, &out.diff_id, &error);
  if (!out.ok && error.empty()) __builtin_trap();
  if (!out.ok) return out;
  if (!lamina::store::validate(out.manifest, &error)) __builtin_trap();
  for (const Entry& e : out.manifest.entries) {
    if (e.kind != EntryKind::kFile) continue;
    auto st = f.store->stat_object(e.object);
    if (!st || static_cast<uint64_t>(st->st_size) != e.size) __builtin_trap();
  }
  return out;
}

// Checks that tmp/ is empty and only objects/ANY/NAME files were added, and removes them.
void check_and_empty(Fixture& f) {
  auto tmp = lamina::sys::read_dir(
      f.store->tmp_fd(), [](std::string_view name, unsigned char, ino_t) -> lamina::Status {
        if (name != "." && name != "..") __builtin_trap();  // a temp file left behind
        return {};
      });
  if (!tmp) __builtin_trap();
  std::vector<std::string> objects;
  auto listed = f.store->list_objects([&](const std::string& name, uint64_t) -> lamina::Status {
    objects.push_back(name);
    return {};
  });
  if (!listed) __builtin_trap();
  for (const std::string& o : objects) {
    if (!f.store->remove_object(o)) __builtin_trap();
    // The emptied fan-out directory goes too, or every later input lists 256 of them.
    (void)lamina::sys::unlinkat(f.store->objects_fd(), o.substr(0, 2).c_str(), AT_REMOVEDIR);
  }
  for (int fd : {f.store->layers_fd(), f.store->images_fd()}) {
    auto s = lamina::sys::read_dir(fd, [](std::string_view name, unsigned char, ino_t) {
      if (name != "." && name != "..") __builtin_trap();  // the reader publishes nothing
      return lamina::Status{};
    });
    if (!s) __builtin_trap();
  }
  if (count_fds(f.dir.path().string()) != f.fds) __builtin_trap();  // a descriptor leaked
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture f;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Outcome plain = read_layer(f, bytes);
  check_and_empty(f);
  Outcome gz = read_layer(f, gzip(bytes));
  check_and_empty(f);
  if (plain.ok != gz.ok) __builtin_trap();
  if (plain.ok &&
      (plain.diff_id != gz.diff_id || !(plain.manifest.entries == gz.manifest.entries))) {
    __builtin_trap();
  }
  return 0;
}
