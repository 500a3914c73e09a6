// SPDX-License-Identifier: Apache-2.0
#include "integration/parity.h"

#include <dirent.h>
#include <fmt/format.h>

#include <catch2/catch.hpp>

namespace lamina::it {
namespace {

StackPaths split_stack(const std::vector<std::string>& top_first, bool use_upper,
                       const std::string& work) {
  StackPaths p;
  if (use_upper) {
    p.upper = top_first.front();
    p.lowers.assign(top_first.begin() + 1, top_first.end());
    p.work = work;
  } else {
    p.lowers = top_first;
  }
  return p;
}

std::string first_lines(const std::vector<std::string>& lines, size_t n) {
  std::string s;
  for (size_t i = 0; i < lines.size() && i < n; ++i) s += "  " + lines[i] + "\n";
  if (lines.size() > n) s += fmt::format("  ... {} more\n", lines.size() - n);
  return s;
}

// Kernel overlayfs reads a directory that is not merged (only one layer contributes, e.g. it is
// opaque or nothing below has that name) straight from the layer, so a whiteout inside it shows
// up in readdir as a DT_CHR name whose lookup fails with ENOENT. That is a kernel shortcut, not
// the semantics: whiteouts are never visible. Drop those names from the reference.
std::vector<Entry> drop_kernel_whiteout_leaks(std::vector<Entry> entries) {
  std::vector<Entry> out;
  for (auto& e : entries) {
    bool leak = !e.stat_ok && e.d_type == DT_CHR && e.errors.size() == 1 &&
                e.errors[0].rfind("lstat: ENOENT", 0) == 0;
    if (!leak) out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

ParityMounts::ParityMounts(const TempDir& tmp, const StackSpec& stack,
                           const FormChooser& lamina_forms, const ParityOptions& opts) {
  k_layers_ = materialize_stack(stack, tmp.sub("k"), constant_forms(kKernelForms));
  c_layers_ = materialize_stack(stack, tmp.sub("c"), lamina_forms);

  StackPaths kp = split_stack(k_layers_, opts.use_upper, opts.use_upper ? tmp.mkdir("k-work") : "");
  StackPaths cp = split_stack(c_layers_, opts.use_upper, opts.use_upper ? tmp.mkdir("c-work") : "");
  if (opts.symlink_lower && !cp.lowers.empty()) {
    size_t mid = cp.lowers.size() / 2;
    // tmp/l/SHORT -> ../c/Lk, like containers-storage's l/ directory.
    std::string real = cp.lowers[mid];
    std::string link = tmp.mkdir("l") + "/" + fmt::format("SHORT{}", mid);
    make_symlink("../c/" + real.substr(real.find_last_of('/') + 1), link);
    cp.lowers[mid] = link;
  }
  cp.extra = opts.extra_opts;

  kernel_ = std::make_unique<KernelOverlay>(tmp.mkdir("k-mnt"), kp);
  INFO("kernel overlayfs reference mount failed (test environment problem): " << kernel_->error());
  REQUIRE(kernel_->ok());
  lamina_ = std::make_unique<Mount>(tmp.mkdir("c-mnt"), cp);
  INFO("laminafs mount failed:\n" << lamina_->describe());
  REQUIRE(lamina_->ok());
}

void check_parity(ParityMounts& mounts, const std::string& label) {
  auto k_entries = drop_kernel_whiteout_leaks(walk_tree(mounts.kernel_root()));
  auto l_entries = walk_tree(mounts.lamina_root());
  auto k_list = listing(k_entries);
  auto l_list = listing(l_entries);

  // Harness sanity: the kernel reference itself must be clean.
  auto k_leaks = overlay_leaks(mounts.kernel_root(), k_entries);
  if (!k_leaks.empty()) {
    FAIL_CHECK("[" << label << "] TEST BUG: the kernel reference shows overlay artifacts:\n"
                   << first_lines(k_leaks, 20));
  }
  for (const auto& line : k_list) {
    if (line.find("ERROR") != std::string::npos) {
      FAIL_CHECK("[" << label << "] TEST BUG: error walking the kernel reference: " << line);
      break;
    }
  }

  std::string diff = diff_listings(k_list, l_list, "kernel", "laminafs");
  if (!diff.empty()) {
    FAIL_CHECK("[" << label << "] laminafs shows a different tree than kernel overlayfs\n"
                   << diff << "laminafs command: " << mounts.lamina().describe());
  }
  auto leaks = overlay_leaks(mounts.lamina_root(), l_entries);
  if (!leaks.empty()) {
    FAIL_CHECK("[" << label << "] laminafs shows overlay artifacts:\n" << first_lines(leaks, 30));
  }
  // Harness sanity: the stack is not empty.
  CHECK(k_list.size() > 1);
}

void run_parity(const StackSpec& stack, const FormChooser& lamina_forms, const ParityOptions& opts,
                const std::string& label) {
  TempDir tmp;
  ParityMounts mounts(tmp, stack, lamina_forms, opts);
  check_parity(mounts, label);
}

}  // namespace lamina::it
