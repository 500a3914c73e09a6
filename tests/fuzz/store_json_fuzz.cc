// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: the JSON records of a store (store/store.h), read through the real
// readers from real files: each input is written as an image record (images/NAME.json, read
// by read_image), as a layer's info.json (read_layer_info) and as the store.json of a second
// store (Store::open). A bad record is an error code or message, never a crash or a throw.
#include <fcntl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "lamina/base/sys.h"
#include "lamina/store/store.h"
#include "unit/test_util.h"

namespace {

using lamina::store::Store;

constexpr const char* kLayerId = "0123456789abcdef0123456789abcdef";

struct Fixture {
  lamina::test::TempDir dir;
  std::unique_ptr<Store> store;
  lamina::UniqueFd other;  // the second store's root: store.json is written there

  Fixture() {
    std::string error;
    store = Store::open(dir / "store", true, &error);
    if (!store) __builtin_trap();
    std::string other_root = dir / "other";
    if (!Store::open(other_root, true, &error)) __builtin_trap();
    auto fd = lamina::sys::openat(AT_FDCWD, other_root.c_str(), O_PATH | O_DIRECTORY);
    if (!fd) __builtin_trap();
    other = std::move(*fd);
    if (!lamina::sys::mkdirat(store->layers_fd(), kLayerId, 0700)) __builtin_trap();
  }
};

void put(int dir_fd, const char* name, std::string_view bytes) {
  auto fd = lamina::sys::openat(dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!fd || !lamina::sys::write_all(fd->get(), bytes)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture f;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  put(f.store->images_fd(), "fuzz.json", bytes);
  auto image = f.store->read_image("fuzz");
  if (image) {
    // What was read can be written back (and read again to the same record).
    if (!f.store->write_image(*image, true)) __builtin_trap();
    auto again = f.store->read_image("fuzz");
    if (!again || again->layers != image->layers || again->config_json != image->config_json) {
      __builtin_trap();
    }
  }

  const std::string info = std::string(kLayerId) + "/info.json";
  put(f.store->layers_fd(), info.c_str(), bytes);
  (void)f.store->read_layer_info(kLayerId);

  put(f.other.get(), "store.json", bytes);
  std::string error;
  auto other = Store::open(f.dir / "other", false, &error);
  if (!other && error.empty()) __builtin_trap();
  return 0;
}
