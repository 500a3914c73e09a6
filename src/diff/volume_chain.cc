// SPDX-License-Identifier: Apache-2.0
// The chain of a volume's snapshots and its pruning (design notes in volume_chain.h).
#include "lamina/diff/volume_chain.h"

#include <algorithm>
#include <cstddef>
#include <map>
#include <tuple>

namespace lamina::diff {

using store::Entry;
using store::EntryKind;

Result<std::vector<store::Image>> volume_chain(const store::Store& store, const std::string& name) {
  auto images = store.list_images();
  if (!images) return images.error();
  std::vector<store::Image> out;
  const std::string prefix = name + ":";
  for (auto& img : *images) {
    if (img.name.compare(0, prefix.size(), prefix) == 0 &&
        img.name.find(':', prefix.size()) == std::string::npos) {
      out.push_back(std::move(img));
    }
  }
  std::sort(out.begin(), out.end(), [](const store::Image& a, const store::Image& b) {
    return std::forward_as_tuple(a.layers.size(), a.created, a.name) <
           std::forward_as_tuple(b.layers.size(), b.created, b.name);
  });
  return out;
}

Result<std::string> publish_tree_layer(store::Store& store, const TreeView& view,
                                       const std::string& comment) {
  store::Manifest manifest;
  store::LayerInfo info;
  std::map<std::string, std::string> first_name;  // link group -> its first path
  for (const auto& [path, v] : view) {
    Entry e = v.entry;
    e.opaque = false;  // a bottom layer hides nothing
    if (e.kind == EntryKind::kFile && !v.link_group.empty()) {
      auto [it, fresh] = first_name.try_emplace(v.link_group, path);
      if (!fresh) {
        Entry link;
        link.path = path;
        link.kind = EntryKind::kHardlink;
        link.target = it->second;
        manifest.entries.push_back(std::move(link));
        continue;
      }
    }
    if (e.kind == EntryKind::kFile) {
      ++info.files;
      info.content_bytes += e.size;
    }
    manifest.entries.push_back(std::move(e));
  }
  std::string why;
  if (!store::normalize(&manifest, &why)) return Error{EINVAL, "squashed manifest"};
  info.entries = manifest.entries.size();
  info.comment = comment;
  return store.publish_layer(manifest, std::move(info));
}

bool prune_chain(store::Store& store, const std::string& name, size_t keep, PruneResult* result,
                 std::string* error) {
  *result = PruneResult{};
  if (keep == 0) {
    *error = "at least one snapshot must be kept";
    return false;
  }
  auto chain = volume_chain(store, name);
  if (!chain) {
    *error = "cannot list images: " + chain.error().message();
    return false;
  }
  if (chain->size() <= keep) {
    for (const store::Image& img : *chain) result->kept.push_back(img.name);
    return true;
  }
  const size_t first_kept = chain->size() - keep;
  const store::Image& base = (*chain)[first_kept];
  const size_t n_base = base.layers.size();
  for (size_t k = first_kept + 1; k < chain->size(); ++k) {
    const store::Image& img = (*chain)[k];
    if (img.layers.size() <= n_base ||
        !std::equal(base.layers.begin(), base.layers.end(), img.layers.begin())) {
      *error = "'" + img.name + "' does not extend '" + base.name +
               "' (its layers do not start with that snapshot's): not a chain of snapshots, "
               "nothing pruned";
      return false;
    }
  }

  std::string layer;
  if (n_base > 1) {
    TreeView view;
    if (!merge_layers(store, base.layers, &view, error)) return false;
    const std::string comment = "squash of " + chain->front().name + " .. " + base.name +
                                " (whole tree, " + std::to_string(n_base) + " layers squashed)";
    auto id = publish_tree_layer(store, view, comment);
    if (!id) {
      *error = "cannot publish the squashed layer: " + id.error().message();
      return false;
    }
    layer = *id;
  }
  for (size_t k = 0; k < first_kept; ++k) {
    const std::string& img = (*chain)[k].name;
    if (Status s = store.remove_image(img); !s && s.code() != ENOENT) {
      *error = "cannot remove '" + img + "': " + s.error().message();
      return false;
    }
    result->removed.push_back(img);
  }
  for (size_t k = first_kept; k < chain->size(); ++k) {
    store::Image img = (*chain)[k];
    if (!layer.empty()) {
      std::vector<std::string> layers{layer};
      layers.insert(layers.end(), img.layers.begin() + static_cast<std::ptrdiff_t>(n_base),
                    img.layers.end());
      img.layers = std::move(layers);
      if (Status s = store.write_image(img, true); !s) {
        *error = "cannot rewrite '" + img.name + "': " + s.error().message();
        return false;
      }
    }
    result->kept.push_back(img.name);
  }
  result->squashed_layer = layer;
  result->layers_squashed = layer.empty() ? 0 : n_base;
  return true;
}

}  // namespace lamina::diff
