// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared by the write-path tests: the stack under test (layers and plain reference built from
// one TreeSpec, laminafs mounted), kernel overlayfs mounts with explicit options, and tree
// comparison. See tree_spec.h for initial trees and steps.h for lockstep syscalls.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "integration/mount_helpers.h"
#include "integration/tree_walker.h"
#include "write/steps.h"
#include "write/tree_spec.h"

namespace lamina::wt {

using it::Mount;
using it::StackPaths;
using it::TempDir;

// ---- the stack under test ---------------------------------------------------------------

// tmp/{l1,l2,upper,work,mnt,plain}: the layers and the plain reference built from one spec,
// laminafs mounted on mnt (with allow_other, so a setuid child can use it).
class Stack {
 public:
  explicit Stack(const TreeSpec& spec, std::vector<std::string> extra_opts = {"allow_other"},
                 bool mount_now = true);
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  const std::string& mnt() const { return mnt_; }
  const std::string& plain() const { return plain_; }
  const std::string& upper() const { return upper_; }
  const std::string& work() const { return work_; }
  std::vector<std::string> lowers() const { return {l1_, l2_}; }  // topmost first
  const TempDir& tmp() const { return *tmp_; }
  // A new empty directory below the temp dir (fresh work dirs for kernel mounts).
  std::string fresh_dir(const std::string& prefix);
  StackPaths paths() const;

  // Mounts laminafs (REQUIREs success); unmounts the previous mount first.
  void mount();
  void unmount();
  bool mounted() const { return mount_ != nullptr; }
  Mount* current() { return mount_.get(); }

 private:
  std::unique_ptr<TempDir> tmp_;
  std::string l1_, l2_, upper_, work_, mnt_, plain_;
  std::vector<std::string> extra_;
  std::unique_ptr<Mount> mount_;
  int fresh_counter_ = 0;
};

// Kernel overlayfs with explicit options (redirect_dir=on etc.), for interop checks.
class KernelMount {
 public:
  KernelMount(std::string mountpoint, const std::vector<std::string>& lowers,
              const std::string& upper, const std::string& work, const std::string& options);
  ~KernelMount();
  KernelMount(const KernelMount&) = delete;
  KernelMount& operator=(const KernelMount&) = delete;
  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }
  void unmount();

 private:
  std::string mountpoint_;
  bool mounted_ = false;
  std::string error_;
};

// Kernel log lines that appeared since `since_lines` (dmesg line count), for failure messages.
size_t dmesg_line_count();
std::string dmesg_since(size_t since_lines);

// ---- tree comparison --------------------------------------------------------------------

// Listing of the tree under root (see tree_walker.h), minus paths for which `skip` is true.
std::vector<std::string> tree_listing(const std::string& root,
                                      const std::function<bool(const std::string&)>& skip = {});
// Empty when equal, else a report naming both sides. Also reports overlay artifacts visible
// in `actual_root` (whiteout names, overlay xattrs).
std::string compare_trees(const std::string& expected_root, const std::string& actual_root,
                          const std::string& expected_name, const std::string& actual_name,
                          const std::function<bool(const std::string&)>& skip = {});

}  // namespace lamina::wt
