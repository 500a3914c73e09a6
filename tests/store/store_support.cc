// SPDX-License-Identifier: Apache-2.0
#include "store/store_support.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace lamina::st {

std::string lamina_bin() {
  if (const char* env = std::getenv("LAMINA_BIN"); env && *env) return env;
  return LAMINA_BIN;
}

it::ProcResult lamina(const std::string& root, const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {lamina_bin(), "--root", root};
  argv.insert(argv.end(), args.begin(), args.end());
  return it::run_process(argv, timeout);
}

ImageMount::ImageMount(const std::string& root, const std::string& image, std::string mountpoint,
                       const std::vector<std::string>& extra)
    : mnt_(std::move(mountpoint)) {
  std::vector<std::string> args = {"mount", image, mnt_};
  args.insert(args.end(), extra.begin(), extra.end());
  it::watchdog_track(mnt_);
  auto r = lamina(root, args);
  INFO("lamina mount " << image << " " << mnt_ << ": " << r.describe());
  REQUIRE(r.succeeded());
  mounted_ = true;
}

ImageMount::~ImageMount() { unmount(); }

void ImageMount::unmount() noexcept {
  if (!mounted_) return;
  it::unmount_fuse(mnt_);
  it::watchdog_untrack(mnt_);
  mounted_ = false;
}

std::vector<std::string> store_files(const std::string& root) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    std::string rel = fs::relative(it->path(), root).string();
    if (rel == "lock") continue;
    if (it->is_regular_file()) {
      out.push_back(rel + " " + std::to_string(it->file_size()));
    } else {
      out.push_back(rel + "/");
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> image_layers(const std::string& root, const std::string& image) {
  std::string file = image;
  for (size_t p; (p = file.find('/')) != std::string::npos;) file.replace(p, 1, "%2F");
  std::ifstream in(root + "/images/" + file + ".json");
  if (!in) return {};
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return {};
  return j["layers"].get<std::vector<std::string>>();
}

}  // namespace lamina::st
