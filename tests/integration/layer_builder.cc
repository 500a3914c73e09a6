// SPDX-License-Identifier: Apache-2.0
#include "integration/layer_builder.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <stdexcept>

#include "integration/mount_helpers.h"

namespace lamina::it {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::runtime_error(fmt::format("layer builder: {} {}: {}", what, path, errno_name(errno)));
}

std::string parent_of(const std::string& rel) {
  auto slash = rel.find_last_of('/');
  return slash == std::string::npos ? "" : rel.substr(0, slash);
}

std::string base_of(const std::string& rel) {
  auto slash = rel.find_last_of('/');
  return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

std::string join(const std::string& root, const std::string& rel) {
  return rel.empty() ? root : root + "/" + rel;
}

// mkdir -p of rel's directories inside root, each new one 0755 root:root.
void ensure_dir(const std::string& root, const std::string& rel) {
  if (rel.empty()) return;
  ensure_dir(root, parent_of(rel));
  std::string full = join(root, rel);
  struct stat st;
  if (::lstat(full.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      errno = ENOTDIR;
      fail("parent is not a directory:", full);
    }
    return;
  }
  if (::mkdir(full.c_str(), 0755) != 0) fail("mkdir", full);
  if (::chmod(full.c_str(), 0755) != 0) fail("chmod", full);
}

void set_xattr(const std::string& full, const std::string& name, const std::string& value) {
  if (::lsetxattr(full.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
    fail("setxattr " + name + " on", full);
  }
}

void set_owner_mode(const std::string& full, Owner owner, mode_t mode) {
  // chown first: it clears set-id bits.
  if (::lchown(full.c_str(), owner.uid, owner.gid) != 0) fail("lchown", full);
  if (::chmod(full.c_str(), mode) != 0) fail("chmod", full);
}

constexpr uint64_t kChunk = 1 << 20;

// Chunk i of big_file(size, seed): chunks are generated independently so a big file never has
// to be held in memory whole.
std::string big_file_chunk(uint64_t size, uint64_t seed, uint64_t i) {
  uint64_t off = i * kChunk;
  return generated_content(std::min(kChunk, size - off), seed * 1000003 + i);
}

void write_generated(const std::string& full, uint64_t size, uint64_t seed, mode_t mode) {
  int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) fail("create", full);
  for (uint64_t i = 0; i * kChunk < size; ++i) {
    std::string chunk = big_file_chunk(size, seed, i);
    if (::write(fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
      fail("write", full);
    }
  }
  ::close(fd);
}

void make_whiteout(const std::string& root, const std::string& rel, WhiteoutForm form,
                   const std::map<std::string, OpaqueForm>& opaque_dirs) {
  const std::string parent = parent_of(rel);
  ensure_dir(root, parent);
  // An opaque=y directory cannot also say opaque=x; a whiteout there hides nothing anyway.
  if ((form == WhiteoutForm::kTrustedXattr || form == WhiteoutForm::kUserXattr) &&
      opaque_dirs.count(parent) != 0) {
    form = WhiteoutForm::kWhFile;
  }
  const std::string full = join(root, rel);
  switch (form) {
    case WhiteoutForm::kCharDev:
      if (::mknod(full.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) fail("mknod whiteout", full);
      break;
    case WhiteoutForm::kWhFile: {
      std::string wh = join(root, parent.empty() ? ".wh." + rel : parent + "/.wh." + base_of(rel));
      int fd = ::open(wh.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) fail("create", wh);
      ::close(fd);
      break;
    }
    case WhiteoutForm::kTrustedXattr:
    case WhiteoutForm::kUserXattr: {
      const std::string ns = form == WhiteoutForm::kTrustedXattr ? "trusted." : "user.";
      int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) fail("create xattr whiteout", full);
      ::close(fd);
      set_xattr(full, ns + "overlay.whiteout", "");
      set_xattr(join(root, parent), ns + "overlay.opaque", "x");
      break;
    }
  }
}

void make_opaque(const std::string& root, const std::string& rel, OpaqueForm form) {
  const std::string full = join(root, rel);
  switch (form) {
    case OpaqueForm::kTrustedY: set_xattr(full, "trusted.overlay.opaque", "y"); break;
    case OpaqueForm::kUserY: set_xattr(full, "user.overlay.opaque", "y"); break;
    case OpaqueForm::kWhOpq: {
      std::string marker = full + "/.wh..wh..opq";
      int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) fail("create", marker);
      ::close(fd);
      break;
    }
  }
}

}  // namespace

std::string_view name_of(WhiteoutForm f) {
  switch (f) {
    case WhiteoutForm::kCharDev: return "chardev-0/0";
    case WhiteoutForm::kWhFile: return ".wh.NAME";
    case WhiteoutForm::kTrustedXattr: return "trusted.overlay.whiteout";
    case WhiteoutForm::kUserXattr: return "user.overlay.whiteout";
  }
  return "?";
}

std::string_view name_of(OpaqueForm f) {
  switch (f) {
    case OpaqueForm::kTrustedY: return "trusted.overlay.opaque=y";
    case OpaqueForm::kUserY: return "user.overlay.opaque=y";
    case OpaqueForm::kWhOpq: return ".wh..wh..opq";
  }
  return "?";
}

std::string generated_content(uint64_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
  for (uint64_t i = 0; i < size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (uint64_t k = 0; k < 8 && i + k < size; ++k) out[i + k] = static_cast<char>(x >> (8 * k));
  }
  return out;
}

std::string big_file_bytes(uint64_t size, uint64_t seed) {
  std::string out;
  out.reserve(size);
  for (uint64_t i = 0; i * kChunk < size; ++i) out += big_file_chunk(size, seed, i);
  return out;
}

std::string many_name(const std::string& prefix, uint64_t i) {
  return fmt::format("{}{:06}", prefix, i);
}

LayerSpec& LayerSpec::file(std::string path, std::string content, mode_t mode, Owner owner,
                           Xattrs xattrs) {
  Op op;
  op.kind = Op::kFile;
  op.path = std::move(path);
  op.data = std::move(content);
  op.mode = mode;
  op.owner = owner;
  op.xattrs = std::move(xattrs);
  ops_.push_back(std::move(op));
  return *this;
}

LayerSpec& LayerSpec::big_file(std::string path, uint64_t size, uint64_t seed) {
  Op op;
  op.kind = Op::kFile;
  op.path = std::move(path);
  op.count = size;
  op.seed = seed;
  ops_.push_back(std::move(op));
  return *this;
}

LayerSpec& LayerSpec::dir(std::string path, mode_t mode, Owner owner, Xattrs xattrs) {
  Op op;
  op.kind = Op::kDir;
  op.path = std::move(path);
  op.mode = mode;
  op.owner = owner;
  op.xattrs = std::move(xattrs);
  ops_.push_back(std::move(op));
  return *this;
}

LayerSpec& LayerSpec::opaque_dir(std::string path, mode_t mode, Owner owner) {
  dir(path, mode, owner);
  Op op;
  op.kind = Op::kOpaque;
  op.path = std::move(path);
  ops_.push_back(std::move(op));
  return *this;
}

LayerSpec& LayerSpec::symlink(std::string path, std::string target, Owner owner) {
  Op op;
  op.kind = Op::kSymlink;
  op.path = std::move(path);
  op.data = std::move(target);
  op.owner = owner;
  ops_.push_back(std::move(op));
  return *this;
}

LayerSpec& LayerSpec::hardlink(std::string path, std::string existing) {
  Op op;
  op.kind = Op::kHardlink;
  op.path = std::move(path);
  op.data = std::move(existing);
  ops_.push_back(std::move(op));
  return *this;
}

LayerSpec& LayerSpec::fifo(std::string path, mode_t mode, Owner owner) {
  Op op;
  op.kind = Op::kFifo;
  op.path = std::move(path);
  op.mode = mode;
  op.owner = owner;
  ops_.push_back(std::move(op));
  return *this;
}

LayerSpec& LayerSpec::chardev(std::string path, dev_t rdev, mode_t mode) {
  Op op;
  op.kind = Op::kCharDevice;
  op.path = std::move(path);
  op.rdev = rdev;
  op.mode = mode;
  ops_.push_back(std::move(op));
  return *this;
}

LayerSpec& LayerSpec::whiteout(std::string path) {
  Op op;
  op.kind = Op::kWhiteout;
  op.path = std::move(path);
  ops_.push_back(std::move(op));
  return *this;
}

LayerSpec& LayerSpec::many_files(std::string dir, std::string prefix, uint64_t count) {
  Op op;
  op.kind = Op::kMany;
  op.path = std::move(dir);
  op.data = std::move(prefix);
  op.count = count;
  ops_.push_back(std::move(op));
  return *this;
}

void materialize(const LayerSpec& spec, const std::string& root, size_t layer_index,
                 const FormChooser& forms) {
  if (::chmod(root.c_str(), 0755) != 0) fail("chmod", root);
  // Pass 1: entries and opaque markers. Pass 2: whiteouts, which need to know whether their
  // parent was made opaque in this layer.
  std::map<std::string, OpaqueForm> opaque_dirs;
  for (const Op& op : spec.ops()) {
    if (op.kind == Op::kWhiteout) continue;
    const std::string full = join(root, op.path);
    if (op.kind != Op::kDir && op.kind != Op::kOpaque) ensure_dir(root, parent_of(op.path));
    switch (op.kind) {
      case Op::kFile:
        if (op.count > 0) {
          write_generated(full, op.count, op.seed, op.mode);
        } else {
          int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
          if (fd < 0) fail("create", full);
          if (::write(fd, op.data.data(), op.data.size()) != static_cast<ssize_t>(op.data.size())) {
            fail("write", full);
          }
          ::close(fd);
        }
        set_owner_mode(full, op.owner, op.mode);
        for (const auto& [k, v] : op.xattrs) set_xattr(full, k, v);
        break;
      case Op::kDir:
        ensure_dir(root, op.path);
        set_owner_mode(full, op.owner, op.mode);
        for (const auto& [k, v] : op.xattrs) set_xattr(full, k, v);
        break;
      case Op::kSymlink:
        if (::symlink(op.data.c_str(), full.c_str()) != 0) fail("symlink", full);
        if (::lchown(full.c_str(), op.owner.uid, op.owner.gid) != 0) fail("lchown", full);
        break;
      case Op::kHardlink: {
        std::string src = join(root, op.data);
        if (::link(src.c_str(), full.c_str()) != 0) fail("link " + src + " ->", full);
        break;
      }
      case Op::kFifo:
        if (::mkfifo(full.c_str(), 0600) != 0) fail("mkfifo", full);
        set_owner_mode(full, op.owner, op.mode);
        break;
      case Op::kCharDevice:
        if (::mknod(full.c_str(), S_IFCHR | 0600, op.rdev) != 0) fail("mknod", full);
        set_owner_mode(full, op.owner, op.mode);
        break;
      case Op::kOpaque: {
        ensure_dir(root, op.path);
        OpaqueForm f = forms(layer_index, op.path).opaque;
        make_opaque(root, op.path, f);
        opaque_dirs[op.path] = f;
        break;
      }
      case Op::kMany:
        ensure_dir(root, op.path);
        for (uint64_t i = 0; i < op.count; ++i) {
          std::string p = join(root, op.path) + "/" + many_name(op.data, i);
          int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
          if (fd < 0) fail("create", p);
          ::close(fd);
        }
        break;
      case Op::kWhiteout: break;
    }
  }
  for (const Op& op : spec.ops()) {
    if (op.kind != Op::kWhiteout) continue;
    make_whiteout(root, op.path, forms(layer_index, op.path).whiteout, opaque_dirs);
  }
}

std::vector<std::string> materialize_stack(const StackSpec& stack, const std::string& dir,
                                           const FormChooser& forms) {
  make_dirs(dir);
  std::vector<std::string> top_first;
  for (size_t i = 0; i < stack.size(); ++i) {
    std::string root = fmt::format("{}/L{}", dir, i);
    make_dirs(root);
    materialize(stack.layers[i], root, i, forms);
    top_first.insert(top_first.begin(), root);
  }
  return top_first;
}

}  // namespace lamina::it
