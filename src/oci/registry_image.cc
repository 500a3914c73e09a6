// SPDX-License-Identifier: Apache-2.0
// push_image and pull_image: the store's images to and from a registry through a temp OCI
// layout under the store's tmp/ (export_image + push_layout, pull_to_layout + import_image), so
// that the layer tar encoding stays in one place.
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "lamina/oci/registry.h"

namespace lamina::oci {
namespace {

// A temp directory under the store's tmp/, removed with everything in it on destruction.
class TempLayout {
 public:
  TempLayout(const store::Store& store, const char* what) {
    std::string pattern = store.root() + "/tmp/" + what + "-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempLayout() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempLayout(const TempLayout&) = delete;
  TempLayout& operator=(const TempLayout&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

bool push_image(store::Store& store, const std::string& image, const Reference& ref,
                const RegistryOptions& options, std::string* error) {
  TempLayout tmp(store, "push");
  if (tmp.path().empty()) {
    *error = "cannot make a temp directory in " + store.root() + "/tmp: " + std::strerror(errno);
    return false;
  }
  ExportOptions eo;
  eo.compression = options.compression;
  eo.progress = options.progress;
  Descriptor manifest;
  if (!export_image(store, image, tmp.path(), "push", eo, &manifest, error)) return false;
  return push_layout(tmp.path(), "push", ref, options, error);
}

bool pull_image(store::Store& store, const Reference& ref, const std::string& name, bool replace,
                const RegistryOptions& options, std::string* error) {
  TempLayout tmp(store, "pull");
  if (tmp.path().empty()) {
    *error = "cannot make a temp directory in " + store.root() + "/tmp: " + std::strerror(errno);
    return false;
  }
  if (!pull_to_layout(ref, tmp.path(), "pull", options, error)) return false;
  ImportOptions io;
  io.replace = replace;
  io.progress = options.progress;
  return import_image(store, tmp.path(), "pull", name, io, error);
}

}  // namespace lamina::oci
