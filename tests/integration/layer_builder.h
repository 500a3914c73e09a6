// SPDX-License-Identifier: Apache-2.0
#pragma once
// One abstract description of a layer stack, materialized on disk in different encodings:
// the kernel's own (whiteout = char device 0/0, opaque = trusted.overlay.opaque=y) for the
// kernel overlayfs reference, and the forms container tools write for laminafs. A parity test
// mounts both and requires identical listings.
//
// A LayerSpec lists what one layer contains, as a tar layer would: entries, whiteouts and
// opaque markers. Parent directories are created implicitly (0755 root:root). Paths are
// relative to the layer root; "" is the root itself.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lamina::it {

enum class WhiteoutForm {
  kCharDev,       // char device 0/0 named NAME (kernel, fuse-overlayfs as root)
  kWhFile,        // empty regular file .wh.NAME (OCI tar layers, rootless tools)
  kTrustedXattr,  // empty file NAME with trusted.overlay.whiteout, parent trusted.overlay.opaque=x
  kUserXattr,     // the same in the user.overlay.* namespace (kernel "userxattr" layout)
};
enum class OpaqueForm {
  kTrustedY,  // trusted.overlay.opaque=y
  kUserY,     // user.overlay.opaque=y
  kWhOpq,     // an empty .wh..wh..opq file inside
};
std::string_view name_of(WhiteoutForm f);
std::string_view name_of(OpaqueForm f);

struct Forms {
  WhiteoutForm whiteout = WhiteoutForm::kCharDev;
  OpaqueForm opaque = OpaqueForm::kTrustedY;
};
inline constexpr Forms kKernelForms{WhiteoutForm::kCharDev, OpaqueForm::kTrustedY};

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};
using Xattrs = std::vector<std::pair<std::string, std::string>>;

struct Op {
  enum Kind { kFile, kDir, kSymlink, kHardlink, kFifo, kCharDevice, kWhiteout, kOpaque, kMany };
  Kind kind = kFile;
  std::string path;
  std::string data;  // file content, symlink target, hard link source, kMany name prefix
  mode_t mode = 0644;
  Owner owner;
  Xattrs xattrs;
  dev_t rdev = 0;
  uint64_t count = 0;  // kMany: number of empty files; kFile with empty data: generated size
  uint64_t seed = 0;   // kFile with count > 0: generated content seed
};

class LayerSpec {
 public:
  LayerSpec& file(std::string path, std::string content, mode_t mode = 0644, Owner owner = {},
                  Xattrs xattrs = {});
  // A file of `size` pseudo-random bytes from `seed` (generated while writing).
  LayerSpec& big_file(std::string path, uint64_t size, uint64_t seed);
  LayerSpec& dir(std::string path, mode_t mode = 0755, Owner owner = {}, Xattrs xattrs = {});
  // A directory of this layer that hides everything below it.
  LayerSpec& opaque_dir(std::string path, mode_t mode = 0755, Owner owner = {});
  LayerSpec& symlink(std::string path, std::string target, Owner owner = {});
  // path becomes another name of `existing`, a file of this layer.
  LayerSpec& hardlink(std::string path, std::string existing);
  LayerSpec& fifo(std::string path, mode_t mode = 0644, Owner owner = {});
  LayerSpec& chardev(std::string path, dev_t rdev, mode_t mode = 0644);
  // Deletes path of the layers below.
  LayerSpec& whiteout(std::string path);
  // `count` empty files dir/PREFIX000000 ... (for huge directories).
  LayerSpec& many_files(std::string dir, std::string prefix, uint64_t count);

  const std::vector<Op>& ops() const { return ops_; }

 private:
  std::vector<Op> ops_;
};

// Pseudo-random bytes (xorshift) of one chunk.
std::string generated_content(uint64_t size, uint64_t seed);
// The exact bytes big_file(path, size, seed) writes.
std::string big_file_bytes(uint64_t size, uint64_t seed);
// Name i of many_files.
std::string many_name(const std::string& prefix, uint64_t i);

// Chooses the encoding of each whiteout / opaque marker: (layer index, path) -> forms.
using FormChooser = std::function<Forms(size_t layer, const std::string& path)>;
inline FormChooser constant_forms(Forms f) {
  return [f](size_t, const std::string&) { return f; };
}

// Writes `spec` into the existing empty directory `root`. Throws std::runtime_error naming the
// path on any failure (a bug in the test's description). An xattr whiteout whose parent is made
// opaque in the same layer (opaque=y cannot also be opaque=x) is written as .wh.NAME; it hides
// nothing there anyway.
void materialize(const LayerSpec& spec, const std::string& root, size_t layer_index,
                 const FormChooser& forms);

// A stack, bottom layer first.
struct StackSpec {
  std::vector<LayerSpec> layers;
  explicit StackSpec(size_t n = 0) : layers(n) {}
  LayerSpec& operator[](size_t i) { return layers.at(i); }
  size_t size() const { return layers.size(); }
};

// Materializes every layer into dir/L0 ... dir/L{n-1}; returns their paths TOPMOST FIRST, the
// order of lowerdir=.
std::vector<std::string> materialize_stack(const StackSpec& stack, const std::string& dir,
                                           const FormChooser& forms);

}  // namespace lamina::it
