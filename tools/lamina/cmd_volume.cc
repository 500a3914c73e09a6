// SPDX-License-Identifier: Apache-2.0
// lamina snapshot:  a plain directory (a volume) becomes the next snapshot of a chain: an image
//                   NAME:TAG whose last layer holds what changed since the previous snapshot.
// lamina restore:   a snapshot materialized as a new directory.
// lamina snapshots: the chain of a volume.
// --keep N (on snapshot, after the new snapshot; on snapshots, before the listing) prunes the
// chain to its N newest snapshots (lamina/diff/volume_chain.h).
//
// The chain of NAME is the images named NAME:TAG; the latest is the one with the most layers
// (each snapshot adds exactly one to its predecessor's), then the newest. The default TAG is the
// snapshot's number: 1 for the first snapshot, 2 for the next ... (see next_number).
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <tuple>

#include "commands.h"
#include "lamina/diff/snapshot.h"
#include "lamina/diff/volume_chain.h"
#include "lamina/oci/image_io.h"

namespace lamina::tool {
namespace {

struct VolumeArgs {
  std::string dir;
  std::string tag;  // NAME[:TAG]
  std::string dest;
  std::string comment;
  std::string keep;  // --keep N
  bool keep_given = false;
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

// The snapshots of volume `name`, oldest first.
std::vector<store::Image> chain_of(const store::Store& st, const std::string& name) {
  auto chain = diff::volume_chain(st, name);
  if (!chain) throw Failure("cannot list images: " + chain.error().message());
  return std::move(*chain);
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The default TAG of the next snapshot: one more than the chain's largest numeric TAG or the
// latest snapshot's layer count, whichever is larger (they differ once --keep squashed layers).
uint64_t next_number(const std::vector<store::Image>& chain, const std::string& name) {
  uint64_t n = chain.empty() ? 0 : chain.back().layers.size();
  for (const store::Image& img : chain) {
    const std::string t = img.name.substr(name.size() + 1);
    if (t.size() <= 18 && all_digits(t)) {
      n = std::max<uint64_t>(n, std::stoull(t));
    }
  }
  return n + 1;
}

// --keep N: a whole number, at least 1.
size_t parse_keep(const std::string& text) {
  size_t n = 0;
  const bool ok = text.size() <= 9 && all_digits(text);
  if (ok) n = std::stoul(text);
  if (!ok || n == 0) {
    throw Failure("--keep takes the number of snapshots to keep, at least 1, not '" + text + "'");
  }
  return n;
}

// Keeps the `keep` newest snapshots of `name` under the store's exclusive lock; tells what it
// removed on stderr (unless quiet).
diff::PruneResult prune(const Globals& g, store::Store& st, const std::string& name, size_t keep) {
  auto lock = st.lock_exclusive();
  if (!lock) throw Failure("cannot lock store " + st.root() + ": " + lock.error().message());
  diff::PruneResult r;
  std::string error;
  if (!diff::prune_chain(st, name, keep, &r, &error)) {
    throw Failure("pruning volume '" + name + "': " + error);
  }
  if (g.quiet || r.removed.empty()) return r;
  std::string removed;
  for (const std::string& n : r.removed) removed += " " + n;
  std::fprintf(stderr, "%s: kept the %zu newest snapshots, removed%s", name.c_str(), r.kept.size(),
               removed.c_str());
  if (!r.squashed_layer.empty()) {
    std::fprintf(stderr, "; %llu layers squashed into %.12s",
                 static_cast<unsigned long long>(r.layers_squashed), r.squashed_layer.c_str());
  }
  std::fprintf(stderr, " (lamina gc frees what only they held)\n");
  return r;
}

// Takes the next snapshot of volume `name` under the store's shared lock; returns the image's
// name.
std::string snapshot(const VolumeArgs& a, store::Store& st, const std::string& name,
                     std::string tag, diff::SnapshotResult* r) {
  auto lock = st.lock_shared();
  if (!lock) throw Failure("cannot lock store " + st.root() + ": " + lock.error().message());
  auto chain = chain_of(st, name);
  std::vector<std::string> layers;
  if (!chain.empty()) layers = chain.back().layers;
  if (tag.empty()) tag = std::to_string(next_number(chain, name));
  std::string image_name = name + ":" + tag;
  if (st.read_image(image_name)) throw Failure("snapshot '" + image_name + "' exists");
  std::string error;
  diff::TreeView previous;
  if (!diff::merge_layers(st, layers, &previous, &error)) throw Failure(error);
  diff::VolumeIndex index;
  auto idx = diff::read_volume_index(st, name);
  // The index is trusted only for the chain it was written for.
  if (idx && !chain.empty() && idx->image == chain.back().name) index = std::move(*idx);
  diff::SnapshotOptions options;
  options.comment = a.comment.empty() ? "snapshot of " + a.dir : a.comment;
  options.index = &index;
  if (!diff::snapshot_dir(st, a.dir, previous, options, r, &error)) {
    throw Failure("snapshot of '" + a.dir + "': " + error);
  }
  store::Image img;
  img.name = image_name;
  img.layers = layers;
  img.layers.push_back(r->layer_id);
  img.config_json = oci::volume_config_json(name);  // export keeps its exact mtimes
  if (Status s = st.write_image(img, false); !s) {
    throw Failure("cannot write image '" + image_name + "': " + s.error().message());
  }
  r->index.image = image_name;
  if (Status s = diff::write_volume_index(st, name, r->index); !s) {
    std::fprintf(stderr, "lamina: warning: cannot write the volume index: %s\n",
                 s.error().message().c_str());
  }
  return image_name;
}

int run_snapshot(const Globals& g, const VolumeArgs& a) {
  std::string name, tag;
  split_ref(a.tag, &name, &tag);
  const size_t keep = a.keep_given ? parse_keep(a.keep) : 0;
  std::shared_ptr<store::Store> st = open_store(g, true);
  diff::SnapshotResult r;
  const std::string image_name = snapshot(a, *st, name, tag, &r);
  // Pruning takes the exclusive lock once the shared one is released (flock cannot upgrade a
  // lock without letting others in between anyway).
  diff::PruneResult pruned;
  if (keep > 0) pruned = prune(g, *st, name, keep);
  if (g.json) {
    nlohmann::json j = {{"layer", r.layer_id},          {"image", image_name},
                        {"entries", r.entries},         {"files", r.files},
                        {"whiteouts", r.whiteouts},     {"content_bytes", r.content_bytes},
                        {"files_read", r.files_read},   {"objects_added", r.objects_added},
                        {"bytes_added", r.bytes_added}, {"added", r.added},
                        {"changed", r.changed},         {"deleted", r.deleted}};
    if (keep > 0) j["removed"] = pruned.removed;
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
  const size_t keep = a.keep_given ? parse_keep(a.keep) : 0;
  std::shared_ptr<store::Store> st = open_store(g, false);
  if (keep > 0) {
    if (chain_of(*st, name).empty()) throw Failure("no snapshot of volume '" + name + "'");
    prune(g, *st, name, keep);
  }
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
  CLI::Option* snap_keep = snap->add_option(
      "--keep", args->keep,
      "then keep only the N newest snapshots (older ones squashed into the oldest kept one)");
  snap->add_flag("--json", g.json, "print the result as JSON");
  snap->add_flag("-q,--quiet", g.quiet, "no summary");
  snap->callback([&g, &action, args, snap_keep] {
    args->keep_given = snap_keep->count() > 0;
    action = [&g, args] { return run_snapshot(g, *args); };
  });

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
  CLI::Option* list_keep = list->add_option(
      "--keep", args->keep,
      "first keep only the N newest snapshots (older ones squashed into the oldest kept one)");
  list->add_flag("--json", g.json, "print the chain as JSON");
  list->add_flag("-q,--quiet", g.quiet, "no note of what --keep removed");
  list->callback([&g, &action, args, list_keep] {
    args->keep_given = list_keep->count() > 0;
    action = [&g, args] { return run_snapshots(g, *args); };
  });
}

}  // namespace lamina::tool
