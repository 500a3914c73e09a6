// SPDX-License-Identifier: Apache-2.0
#include "write/write_support.h"

#include <fmt/format.h>
#include <sys/mount.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>

namespace lamina::wt {

// ---- Stack -------------------------------------------------------------------------------

Stack::Stack(const TreeSpec& spec, std::vector<std::string> extra_opts, bool mount_now)
    : tmp_(std::make_unique<TempDir>()), extra_(std::move(extra_opts)) {
  l1_ = tmp_->mkdir("l1");
  l2_ = tmp_->mkdir("l2");
  upper_ = tmp_->mkdir("upper");
  work_ = tmp_->mkdir("work");
  mnt_ = tmp_->mkdir("mnt");
  plain_ = tmp_->mkdir("plain");
  spec.build_layer(l2_, kL2);
  spec.build_layer(l1_, kL1);
  spec.build_layer(upper_, kUp);
  spec.build_merged(plain_);
  if (mount_now) mount();
}

std::string Stack::fresh_dir(const std::string& prefix) {
  return tmp_->mkdir(fmt::format("{}{}", prefix, ++fresh_counter_));
}

Stack::~Stack() {
  mount_.reset();
  tmp_.reset();
}

StackPaths Stack::paths() const {
  StackPaths p;
  p.lowers = {l1_, l2_};
  p.upper = upper_;
  p.work = work_;
  p.extra = extra_;
  return p;
}

void Stack::mount() {
  unmount();
  mount_ = std::make_unique<Mount>(mnt_, paths());
  INFO(mount_->describe());
  REQUIRE(mount_->ok());
}

void Stack::unmount() {
  if (mount_) {
    mount_->unmount();
    mount_.reset();
  }
}

// ---- KernelMount -------------------------------------------------------------------------

KernelMount::KernelMount(std::string mountpoint, const std::vector<std::string>& lowers,
                         const std::string& upper, const std::string& work,
                         const std::string& options)
    : mountpoint_(std::move(mountpoint)) {
  std::string data = "lowerdir=";
  for (size_t i = 0; i < lowers.size(); ++i) data += (i ? ":" : "") + it::escape_lower(lowers[i]);
  data += ",upperdir=" + it::escape_lower(upper) + ",workdir=" + it::escape_lower(work);
  if (!options.empty()) data += "," + options;
  it::watchdog_track(mountpoint_);
  if (::mount("lamina-wt", mountpoint_.c_str(), "overlay", 0, data.c_str()) == 0) {
    mounted_ = true;
  } else {
    error_ = fmt::format("mount -t overlay -o {} {}: {}", data, mountpoint_, it::errno_name(errno));
  }
}

KernelMount::~KernelMount() { unmount(); }

void KernelMount::unmount() {
  if (mounted_ && it::is_mountpoint(mountpoint_)) {
    if (::umount2(mountpoint_.c_str(), 0) != 0) ::umount2(mountpoint_.c_str(), MNT_DETACH);
  }
  mounted_ = false;
  it::watchdog_untrack(mountpoint_);
}

size_t dmesg_line_count() {
  auto r = it::run_process({"dmesg"}, std::chrono::seconds(10));
  return static_cast<size_t>(std::count(r.out.begin(), r.out.end(), '\n'));
}

std::string dmesg_since(size_t since_lines) {
  auto r = it::run_process({"dmesg"}, std::chrono::seconds(10));
  size_t line = 0, pos = 0;
  while (line < since_lines && pos < r.out.size()) {
    size_t nl = r.out.find('\n', pos);
    if (nl == std::string::npos) break;
    pos = nl + 1;
    ++line;
  }
  return r.out.substr(pos);
}

// ---- trees -------------------------------------------------------------------------------

std::vector<std::string> tree_listing(const std::string& root,
                                      const std::function<bool(const std::string&)>& skip) {
  auto entries = it::walk_tree(root);
  std::vector<std::string> lines;
  for (const auto& e : entries) {
    if (skip && skip(e.path)) continue;
    lines.push_back(it::format_entry(e));
  }
  return lines;
}

std::string compare_trees(const std::string& expected_root, const std::string& actual_root,
                          const std::string& expected_name, const std::string& actual_name,
                          const std::function<bool(const std::string&)>& skip) {
  auto want = tree_listing(expected_root, skip);
  auto entries = it::walk_tree(actual_root);
  std::vector<std::string> got;
  for (const auto& e : entries) {
    if (skip && skip(e.path)) continue;
    got.push_back(it::format_entry(e));
  }
  std::string report = it::diff_listings(want, got, expected_name, actual_name);
  auto leaks = it::overlay_leaks(actual_root, entries);
  if (!leaks.empty()) {
    report += fmt::format("{} shows overlay artifacts:\n", actual_name);
    for (const auto& l : leaks) report += "  " + l + "\n";
  }
  return report;
}

}  // namespace lamina::wt
