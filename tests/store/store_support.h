// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared by the store integration tests: running the lamina tool, mounting images with
// `lamina mount` (always unmounted), and listings of a store's files.

#include <string>
#include <vector>

#include "integration/mount_helpers.h"
#include "integration/process.h"

namespace lamina::st {

// The lamina tool under test ($LAMINA_BIN, else the one built next to this test).
std::string lamina_bin();

// `lamina --root ROOT ARGS...` to completion.
it::ProcResult lamina(const std::string& root, const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout = std::chrono::seconds(120));

// `lamina --root ROOT mount ARGS...`; the destructor unmounts. REQUIREs success.
class ImageMount {
 public:
  ImageMount(const std::string& root, const std::string& image, std::string mountpoint,
             const std::vector<std::string>& extra = {});
  ~ImageMount();
  ImageMount(const ImageMount&) = delete;
  ImageMount& operator=(const ImageMount&) = delete;
  const std::string& path() const { return mnt_; }
  void unmount() noexcept;

 private:
  std::string mnt_;
  bool mounted_ = false;
};

// Every file under a store root with its size ("objects/ab/cd… 12"), sorted: "nothing was
// written" means two listings are equal. The lock file is left out.
std::vector<std::string> store_files(const std::string& root);

// The layer ids of an image, read with `lamina inspect --json`-free means: images/NAME.json.
std::vector<std::string> image_layers(const std::string& root, const std::string& image);

// lamina(root, args), REQUIRE'd to succeed (the message shows the command and its output).
void lamina_ok(const std::string& root, const std::vector<std::string>& args);

// `sh -c cmd`, REQUIRE'd to succeed.
void sh_ok(const std::string& cmd);

// Empty when the tree `actual` (a restored volume) equals `expected`, else a report naming the
// differences: wt::compare_trees (kinds, modes, owners, sizes, contents, user xattrs, link
// counts) plus every mtime (ns), the allocated blocks of regular files (holes kept) and which
// names are one inode (hard links).
std::string restored_tree_diff(const std::string& expected, const std::string& actual);
// CHECKs that restored_tree_diff(expected, actual) is empty, with the report as the message.
void check_restored(const std::string& expected, const std::string& actual);

}  // namespace lamina::st
