// SPDX-License-Identifier: Apache-2.0
#include "store/store_support.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "integration/fs_util.h"
#include "write/write_support.h"

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

namespace {

// Per path: mtime (ns), and for a regular file its blocks and the first path of its inode.
std::map<std::string, std::string> times_and_links(const std::string& root) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> out;
  std::map<std::pair<dev_t, ino_t>, std::string> first;
  std::vector<std::string> paths{"."};
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    paths.push_back(fs::relative(e.path(), root).string());
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) {
    struct stat st {};
    if (::lstat((root + "/" + p).c_str(), &st) != 0) it::throw_errno("lstat " + root + "/" + p);
    std::string v = fmt::format("mtime={}.{:09}", st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) {
      auto [it, fresh] = first.try_emplace({st.st_dev, st.st_ino}, p);
      v += fmt::format(" blocks={} inode-of={}", st.st_blocks, it->second);
    }
    out[p] = v;
  }
  return out;
}

}  // namespace

std::string restored_tree_diff(const std::string& expected, const std::string& actual) {
  std::string report = wt::compare_trees(expected, actual, "expected", "restored");
  auto a = times_and_links(expected);
  auto b = times_and_links(actual);
  for (const auto& [p, v] : a) {
    auto it = b.find(p);
    if (it == b.end()) {
      report += fmt::format("{}: missing in the restored tree\n", p);
    } else if (it->second != v) {
      report += fmt::format("{}: expected {}, restored {}\n", p, v, it->second);
    }
  }
  for (const auto& [p, v] : b) {
    if (a.count(p) == 0) report += fmt::format("{}: only in the restored tree\n", p);
  }
  return report;
}

void check_restored(const std::string& expected, const std::string& actual) {
  const std::string report = restored_tree_diff(expected, actual);
  INFO(report);
  CHECK(report.empty());
}

void lamina_ok(const std::string& root, const std::vector<std::string>& args) {
  auto r = lamina(root, args);
  INFO(fmt::format("lamina {}: {}", fmt::join(args, " "), r.describe()));
  REQUIRE(r.succeeded());
}

void sh_ok(const std::string& cmd) {
  auto r = it::run_process({"sh", "-c", cmd}, std::chrono::seconds(60));
  INFO(cmd << ": " << r.describe());
  REQUIRE(r.succeeded());
}

}  // namespace lamina::st
