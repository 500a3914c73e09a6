// SPDX-License-Identifier: Apache-2.0
// lamina snapshot:  a plain directory (a volume) becomes the next snapshot of a chain: an image
//                   NAME:TAG whose last layer holds what changed since the previous snapshot.
// lamina restore:   a snapshot materialized as a new directory.
// lamina snapshots: the chain of a volume.
//
// The chain of NAME is the images named NAME:TAG; the latest is the one with the most layers
// (each snapshot adds exactly one to its predecessor's), then the newest. The default TAG is the
// new image's layer count: 1 for the first snapshot, 2 for the next ...
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <tuple>

#include "commands.h"
#include "lamina/diff/snapshot.h"

namespace lamina::tool {
namespace {

struct VolumeArgs {
  std::string dir;
  std::string tag;  // NAME[:TAG]
  std::string dest;
  std::string comment;
  bool into_existing = false;
};

// Splits NAME[:TAG] at the last ':'.
void split_ref(const std::string& ref, std::string* name, std::string* tag) {
  const size_t colon = ref.rfind(':');
  if (colon == std::string::npos) {
    *name = ref;
    tag->clear();
  } else {
    *name = ref.substr(0, colon);
    *tag = ref.substr(colon + 1);
  }
  std::string why;
  if (name->empty() || name->find(':') != std::string::npos ||
      !store::Store::valid_image_name(*name + ":1", &why)) {
    throw Failure("invalid volume name '" + ref + "'" + (why.empty() ? "" : ": " + why));
  }
  if (colon != std::string::npos && (tag->empty() || tag->find('/') != std::string::npos ||
                                     !store::Store::valid_image_name(*name + ":" + *tag, &why))) {
    throw Failure("invalid snapshot tag '" + ref + "'" + (why.empty() ? "" : ": " + why));
  }
}

// The snapshots of volume `name`, oldest first (fewest layers, then created, then tag).
std::vector<store::Image> chain_of(const store::Store& st, const std::string& name) {
  auto images = st.list_images();
  if (!images) throw Failure("cannot list images: " + images.error().message());
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

int run_snapshot(const Globals& g, const VolumeArgs& a) {
  std::string name, tag;
  split_ref(a.tag, &name, &tag);
  std::shared_ptr<store::Store> st = open_store(g, true);
  auto lock = st->lock_shared();
  if (!lock) throw Failure("cannot lock store " + st->root() + ": " + lock.error().message());
  auto chain = chain_of(*st, name);
  std::vector<std::string> layers;
  if (!chain.empty()) layers = chain.back().layers;
  if (tag.empty()) tag = std::to_string(layers.size() + 1);
  const std::string image_name = name + ":" + tag;
  if (st->read_image(image_name)) throw Failure("snapshot '" + image_name + "' exists");
  std::string error;
  diff::TreeView previous;
  if (!diff::merge_layers(*st, layers, &previous, &error)) throw Failure(error);
  diff::VolumeIndex index;
  auto idx = diff::read_volume_index(*st, name);
  // The index is trusted only for the chain it was written for.
  if (idx && !chain.empty() && idx->image == chain.back().name) index = std::move(*idx);
  diff::SnapshotOptions options;
  options.comment = a.comment.empty() ? "snapshot of " + a.dir : a.comment;
  options.index = &index;
  diff::SnapshotResult r;
  if (!diff::snapshot_dir(*st, a.dir, previous, options, &r, &error)) {
    throw Failure("snapshot of '" + a.dir + "': " + error);
  }
  store::Image img;
  img.name = image_name;
  img.layers = layers;
  img.layers.push_back(r.layer_id);
  if (Status s = st->write_image(img, false); !s) {
    throw Failure("cannot write image '" + image_name + "': " + s.error().message());
  }
  r.index.image = image_name;
  if (Status s = diff::write_volume_index(*st, name, r.index); !s) {
    std::fprintf(stderr, "lamina: warning: cannot write the volume index: %s\n",
                 s.error().message().c_str());
  }
  if (g.json) {
    nlohmann::json j = {{"layer", r.layer_id},          {"image", image_name},
                        {"entries", r.entries},         {"files", r.files},
                        {"whiteouts", r.whiteouts},     {"content_bytes", r.content_bytes},
                        {"files_read", r.files_read},   {"objects_added", r.objects_added},
                        {"bytes_added", r.bytes_added}, {"added", r.added},
                        {"changed", r.changed},         {"deleted", r.deleted}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s\n", image_name.c_str());
  if (!g.quiet) {
    std::fprintf(stderr,
                 "%s: layer %.12s, %llu added, %llu changed, %llu deleted; %llu files read, %s "
                 "added\n",
                 image_name.c_str(), r.layer_id.c_str(), static_cast<unsigned long long>(r.added),
                 static_cast<unsigned long long>(r.changed),
                 static_cast<unsigned long long>(r.deleted),
                 static_cast<unsigned long long>(r.files_read), human_bytes(r.bytes_added).c_str());
  }
  return 0;
}

int run_restore(const Globals& g, const VolumeArgs& a) {
  std::string name, tag;
  split_ref(a.tag, &name, &tag);
  std::shared_ptr<store::Store> st = open_store(g, false);
  auto lock = st->lock_shared();
  if (!lock) throw Failure("cannot lock store " + st->root() + ": " + lock.error().message());
  store::Image img;
  if (tag.empty()) {
    auto chain = chain_of(*st, name);
    if (chain.empty()) throw Failure("no snapshot of volume '" + name + "'");
    img = chain.back();
  } else {
    auto r = st->read_image(name + ":" + tag);
    if (!r) throw Failure("snapshot '" + name + ":" + tag + "': " + r.error().message());
    img = *r;
  }
  std::string error;
  diff::TreeView view;
  if (!diff::merge_layers(*st, img.layers, &view, &error)) throw Failure(error);
  const bool ok = a.into_existing ? diff::restore_into_existing(*st, view, a.dest, &error)
                                  : diff::restore_tree(*st, view, a.dest, &error);
  if (!ok) {
    throw Failure("restore of '" + img.name + "' to '" + a.dest + "': " + error);
  }
  if (!g.quiet) {
    std::fprintf(stderr, "%s restored to %s (%zu entries)\n", img.name.c_str(), a.dest.c_str(),
                 view.size());
  }
  return 0;
}

int run_snapshots(const Globals& g, const VolumeArgs& a) {
  std::string name, tag;
  split_ref(a.tag, &name, &tag);
  std::shared_ptr<store::Store> st = open_store(g, false);
  auto chain = chain_of(*st, name);
  if (chain.empty()) throw Failure("no snapshot of volume '" + name + "'");
  nlohmann::json j = nlohmann::json::array();
  if (!g.json)
    std::printf("%-12s %-14s %-21s %8s %10s  %s\n", "TAG", "LAYER", "CREATED", "ENTRIES", "SIZE",
                "CHANGES");
  for (const store::Image& img : chain) {
    const std::string& id = img.layers.back();
    auto info = st->read_layer_info(id);
    store::LayerInfo li = info ? *info : store::LayerInfo{};
    std::string changes = li.comment;
    const size_t open = changes.rfind(" (");
    if (open != std::string::npos && changes.back() == ')') {
      changes = changes.substr(open + 2, changes.size() - open - 3);
    }
    const std::string t = img.name.substr(name.size() + 1);
    if (g.json) {
      j.push_back({{"tag", t},
                   {"image", img.name},
                   {"layer", id},
                   {"created", img.created},
                   {"entries", li.entries},
                   {"content_bytes", li.content_bytes},
                   {"changes", changes}});
    } else {
      std::printf("%-12s %-14.12s %-21s %8llu %10s  %s\n", t.c_str(), id.c_str(),
                  img.created.c_str(), static_cast<unsigned long long>(li.entries),
                  human_bytes(li.content_bytes).c_str(), changes.c_str());
    }
  }
  if (g.json) std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

}  // namespace

void add_volume(CLI::App& app, Globals& g, Action& action) {
  auto args = std::make_shared<VolumeArgs>();
  CLI::App* snap = app.add_subcommand(
      "snapshot", "snapshot a directory: the whole tree first, then only what changed");
  snap->add_option("dir", args->dir, "the directory")->required();
  snap->add_option("--tag", args->tag, "NAME[:TAG] (TAG default: the snapshot's number)")
      ->required();
  snap->add_option("--comment", args->comment, "a note kept in the layer's info");
  snap->add_flag("--json", g.json, "print the result as JSON");
  snap->add_flag("-q,--quiet", g.quiet, "no summary");
  snap->callback([&g, &action, args] { action = [&g, args] { return run_snapshot(g, *args); }; });

  CLI::App* rest = app.add_subcommand(
      "restore", "materialize a snapshot (default: the latest) as a new directory DEST");
  rest->add_option("snapshot", args->tag, "NAME[:TAG]")->required();
  rest->add_option("dest", args->dest, "the directory to create (must not exist)")->required();
  rest->add_flag("--into-existing", args->into_existing,
                 "update an existing DEST in place to match (removes what the snapshot lacks)");
  rest->add_flag("-q,--quiet", g.quiet, "no summary");
  rest->callback([&g, &action, args] { action = [&g, args] { return run_restore(g, *args); }; });

  CLI::App* list = app.add_subcommand("snapshots", "list the snapshots of a volume");
  list->add_option("name", args->tag, "the volume's NAME")->required();
  list->add_flag("--json", g.json, "print the chain as JSON");
  list->callback([&g, &action, args] { action = [&g, args] { return run_snapshots(g, *args); }; });
}

}  // namespace lamina::tool
