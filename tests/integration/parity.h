// SPDX-License-Identifier: Apache-2.0
#pragma once
// The parity check: one StackSpec materialized twice (kernel forms for kernel overlayfs,
// `lamina_forms` for laminafs), both mounted, walked and compared.

#include <memory>
#include <string>
#include <vector>

#include "integration/layer_builder.h"
#include "integration/mount_helpers.h"
#include "integration/tree_walker.h"

namespace lamina::it {

struct ParityOptions {
  // The top layer becomes upperdir (+ workdir) on both sides instead of the top lower.
  bool use_upper = false;
  // laminafs gets the middle lower through a relative symlink (containers-storage passes
  // l/SHORTID -> ../ID/diff).
  bool symlink_lower = false;
  std::vector<std::string> extra_opts;  // more -o items for laminafs
};

// Both mounts over one stack. Construction REQUIREs both mounts to succeed.
class ParityMounts {
 public:
  ParityMounts(const TempDir& tmp, const StackSpec& stack, const FormChooser& lamina_forms,
               const ParityOptions& opts);

  const std::string& kernel_root() const { return kernel_->path(); }
  const std::string& lamina_root() const { return lamina_->path(); }
  const std::vector<std::string>& kernel_layers() const { return k_layers_; }  // topmost first
  const std::vector<std::string>& lamina_layers() const { return c_layers_; }
  Mount& lamina() { return *lamina_; }

 private:
  std::vector<std::string> k_layers_;
  std::vector<std::string> c_layers_;
  std::unique_ptr<KernelOverlay> kernel_;
  std::unique_ptr<Mount> lamina_;
};

// Walks both mounts and checks: identical listings (printing the first differences), no error
// and no overlay artifact on either side. `label` names the case in failure messages.
void check_parity(ParityMounts& mounts, const std::string& label);

// Convenience: build, mount, check.
void run_parity(const StackSpec& stack, const FormChooser& lamina_forms, const ParityOptions& opts,
                const std::string& label);

}  // namespace lamina::it
