// SPDX-License-Identifier: Apache-2.0
// gc, fsck: the store's maintenance commands (the work is in lamina/store/maintenance.h).
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "lamina/store/maintenance.h"

namespace lamina::tool {
namespace {

using nlohmann::json;

// Non-UTF-8 bytes (a path in a note) must not make dump() throw.
void print_json(const json& j) {
  std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
}

std::string plural(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

int run_gc(const Globals& g, bool dry_run) {
  auto st = open_store(g, false);
  auto r = store::gc(*st, dry_run);
  if (!r) throw Failure("gc of store '" + st->root() + "': " + r.error().message());
  if (g.json) {
    print_json({{"root", st->root()},
                {"dry_run", r->dry_run},
                {"layers_removed", r->layers_removed},
                {"objects_removed", r->objects_removed},
                {"bytes_freed", r->bytes_freed},
                {"tmp_removed", r->tmp_removed},
                {"layers_kept", r->layers_kept},
                {"objects_kept", r->objects_kept},
                {"layers_in_use", r->layers_in_use},
                {"swept_layers", r->swept_layers},
                {"swept_objects", r->swept_objects},
                {"notes", r->notes}});
    return 0;
  }
  const char* verb = dry_run ? "would remove" : "removed";
  for (const std::string& note : r->notes) std::fprintf(stderr, "note: %s\n", note.c_str());
  for (const std::string& id : r->layers_removed) std::printf("%s layer %s\n", verb, id.c_str());
  // Freed bytes are the removed objects' allocated blocks (what df will show), not their sizes.
  std::printf("%s %s, %s, %s, %s %s\n", verb,
              plural(r->layers_removed.size(), "layer", "layers").c_str(),
              plural(r->objects_removed, "object", "objects").c_str(),
              plural(r->tmp_removed, "tmp entry", "tmp entries").c_str(),
              dry_run ? "and free" : "freed", human_bytes(r->bytes_freed).c_str());
  return 0;
}

int run_fsck(const Globals& g, bool quick) {
  auto st = open_store(g, false);
  auto r = store::fsck(*st, quick);
  if (!r) throw Failure("fsck of store '" + st->root() + "': " + r.error().message());
  int status = r->clean() ? 0 : 1;
  if (g.json) {
    print_json({{"root", st->root()},
                {"clean", r->clean()},
                {"problems", r->problems},
                {"notes", r->notes},
                {"objects", r->objects},
                {"layers", r->layers},
                {"images", r->images},
                {"hashed", r->hashed}});
    return status;
  }
  for (const std::string& note : r->notes) std::fprintf(stderr, "note: %s\n", note.c_str());
  for (const std::string& p : r->problems) std::printf("%s\n", p.c_str());
  if (r->clean()) {
    std::printf("store %s: clean (%s, %s, %s%s)\n", st->root().c_str(),
                plural(r->objects, "object", "objects").c_str(),
                plural(r->layers, "layer", "layers").c_str(),
                plural(r->images, "image", "images").c_str(), quick ? "; contents not hashed" : "");
  } else {
    std::printf("store %s: %s\n", st->root().c_str(),
                plural(r->problems.size(), "problem", "problems").c_str());
  }
  return status;
}

}  // namespace

void add_maintenance(CLI::App& app, Globals& g, Action& action) {
  auto dry_run = std::make_shared<bool>(false);
  auto* gc = app.add_subcommand(
      "gc", "remove layers no image names and no mount uses, their objects, and tmp/ leftovers");
  gc->add_flag("--dry-run,-n", *dry_run, "report what would be removed, remove nothing");
  gc->add_flag("--json", g.json, "print the report as JSON");
  gc->callback([&g, &action, dry_run] { action = [&g, dry_run] { return run_gc(g, *dry_run); }; });

  auto quick = std::make_shared<bool>(false);
  auto* fsck = app.add_subcommand(
      "fsck", "check every object, layer and image of the store (exit status 1 on problems)");
  fsck->add_flag("--quick", *quick, "do not hash object contents (names, sizes, references only)");
  fsck->add_flag("--json", g.json, "print the report as JSON");
  fsck->callback([&g, &action, quick] { action = [&g, quick] { return run_fsck(g, *quick); }; });
}

}  // namespace lamina::tool
