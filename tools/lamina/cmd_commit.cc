// SPDX-License-Identifier: Apache-2.0
// lamina commit: an upper dir becomes a layer of the store and a new image.
// lamina diff:   what an upper changed (A/C/D, like `docker diff`).
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.h"
#include "lamina/core/dir_layer.h"
#include "lamina/core/mount_options.h"
#include "lamina/core/store_layer.h"
#include "lamina/diff/commit.h"
#include "progress.h"

namespace lamina::tool {
namespace {

struct Source {
  std::string upper;
  std::string image;   // --image: the parent image in the store
  std::string lowers;  // --lower A:B: plain lower dirs, topmost first
};

void add_source_options(CLI::App* cmd, Source* src) {
  cmd->add_option("--upper", src->upper,
                  "the upper directory (of laminafs, kernel overlayfs or "
                  "fuse-overlayfs), or any plain directory")
      ->required();
  cmd->add_option("--image", src->image, "the image the upper was written over (its parent)");
  cmd->add_option("--lower", src->lowers,
                  "or: the lower directories it was written over, topmost first, ':'-separated");
}

// The lower layers of an upper, opened on demand (UpperDiff opens them twice).
diff::LayerFactory lower_factory(const Source& src, std::shared_ptr<const store::Store> st,
                                 std::vector<std::string>* parent_layers) {
  if (!src.image.empty() && !src.lowers.empty()) {
    throw Failure("give either --image or --lower, not both");
  }
  if (!src.image.empty()) {
    auto img = st->read_image(src.image);
    if (!img) {
      throw Failure(img.code() == ENOENT
                        ? "no image named '" + src.image + "' in store " + st->root()
                        : "image '" + src.image + "': " + img.error().message());
    }
    *parent_layers = img->layers;
    std::vector<std::string> ids = img->layers;
    return [st, ids](std::vector<std::unique_ptr<core::Layer>>* out, std::string* error) {
      for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
        auto layer = core::open_store_layer(st, *it, {}, error);
        if (!layer) return false;
        out->push_back(std::move(layer));
      }
      return true;
    };
  }
  std::vector<std::string> dirs = core::split_lowerdirs(src.lowers);
  return [dirs](std::vector<std::unique_ptr<core::Layer>>* out, std::string* error) {
    for (const auto& d : dirs) {
      auto layer = core::DirLayer::open(d);
      if (!layer) {
        *error = "lower '" + d + "': " + std::strerror(layer.code());
        return false;
      }
      out->push_back(std::move(*layer));
    }
    return true;
  };
}

std::optional<int64_t> parse_epoch(const std::string& text, const char* what) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0) {
    throw Failure(std::string(what) + " '" + text + "' is not a number of seconds since 1970");
  }
  return v;
}

struct CommitArgs {
  Source src;
  std::string tag;
  std::string comment;
  std::string timestamp;
  bool force = false;
};

int run_commit(const Globals& g, const CommitArgs& a) {
  std::string why;
  if (!store::Store::valid_image_name(a.tag, &why)) {
    throw Failure("invalid image name '" + a.tag + "': " + why);
  }
  diff::CommitOptions options;
  if (!a.timestamp.empty()) {
    options.clamp_mtime = parse_epoch(a.timestamp, "--timestamp");
  } else if (const char* sde = std::getenv("SOURCE_DATE_EPOCH"); sde != nullptr && *sde) {
    options.clamp_mtime = parse_epoch(sde, "SOURCE_DATE_EPOCH");
  }
  options.comment = a.comment.empty() ? "commit of " + a.src.upper : a.comment;
  std::shared_ptr<store::Store> st = open_store(g, true);
  auto lock = st->lock_shared();
  if (!lock) throw Failure("cannot lock store " + st->root() + ": " + lock.error().message());
  if (!a.force && st->read_image(a.tag)) {
    throw Failure("image '" + a.tag + "' exists (use --force to replace it)");
  }
  std::vector<std::string> layers;
  auto factory = lower_factory(a.src, st, &layers);
  std::string error;
  auto diff = diff::UpperDiff::open(a.src.upper, factory, &error);
  if (!diff) throw Failure(error);
  Progress progress("commit", !g.quiet);
  options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
  diff::CommitResult r;
  if (!diff::commit_layer(*st, *diff, options, &r, &error)) {
    progress.finish();
    throw Failure("commit of '" + a.src.upper + "': " + error);
  }
  progress.finish();
  store::Image img;
  img.name = a.tag;
  if (!a.src.image.empty()) {
    auto parent = st->read_image(a.src.image);
    if (parent) img.config_json = parent->config_json;
  }
  img.layers = layers;
  img.layers.push_back(r.layer_id);
  if (Status s = st->write_image(img, a.force); !s) {
    if (s.code() == EEXIST)
      throw Failure("image '" + a.tag + "' exists (use --force to replace it)");
    throw Failure("cannot write image '" + a.tag + "': " + s.error().message());
  }
  if (g.json) {
    nlohmann::json j = {{"layer", r.layer_id},
                        {"image", a.tag},
                        {"entries", r.entries},
                        {"files", r.files},
                        {"whiteouts", r.whiteouts},
                        {"content_bytes", r.content_bytes},
                        {"objects_added", r.objects_added},
                        {"bytes_added", r.bytes_added}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s\n", r.layer_id.c_str());
  if (!g.quiet) {
    std::fprintf(stderr, "%s: %llu entries, %llu files (%s), %llu new objects (%s added)\n",
                 a.tag.c_str(), static_cast<unsigned long long>(r.entries),
                 static_cast<unsigned long long>(r.files), human_bytes(r.content_bytes).c_str(),
                 static_cast<unsigned long long>(r.objects_added),
                 human_bytes(r.bytes_added).c_str());
  }
  return 0;
}

int run_diff(const Globals& g, const Source& src) {
  std::shared_ptr<store::Store> st;
  if (!src.image.empty()) st = open_store(g, false);
  std::vector<std::string> layers;
  auto factory = lower_factory(src, st, &layers);
  std::string error;
  auto diff = diff::UpperDiff::open(src.upper, factory, &error);
  if (!diff) throw Failure(error);
  std::vector<diff::Change> changes;
  if (!diff->walk(&changes, &error)) throw Failure("diff of '" + src.upper + "': " + error);
  nlohmann::json j = nlohmann::json::array();
  for (const auto& c : changes) {
    if (c.entry.path == "/") continue;
    char kind = static_cast<char>(c.kind);
    if (g.json) {
      j.push_back({{"kind", std::string(1, kind)}, {"path", c.entry.path}});
    } else {
      std::printf("%c %s\n", kind, c.entry.path.c_str());
    }
  }
  if (g.json) std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

}  // namespace

void add_commit(CLI::App& app, Globals& g, Action& action) {
  auto args = std::make_shared<CommitArgs>();
  CLI::App* commit = app.add_subcommand(
      "commit", "turn an upper directory into a new layer and image; prints the layer id");
  add_source_options(commit, &args->src);
  commit->add_option("--tag", args->tag, "the new image's name")->required();
  commit->add_flag("--force", args->force, "replace an image of that name");
  commit->add_option("--timestamp", args->timestamp,
                     "clamp mtimes to these seconds since 1970 (default: $SOURCE_DATE_EPOCH)");
  commit->add_option("--comment", args->comment, "a note kept in the layer's info");
  commit->add_flag("--json", g.json, "print the result as JSON");
  commit->add_flag("-q,--quiet", g.quiet, "no progress bar or summary");
  commit->callback([&g, &action, args] { action = [&g, args] { return run_commit(g, *args); }; });

  auto src = std::make_shared<Source>();
  CLI::App* d = app.add_subcommand("diff", "list what an upper directory changed (A/C/D)");
  add_source_options(d, src.get());
  d->add_flag("--json", g.json, "print the changes as JSON");
  d->callback([&g, &action, src] { action = [&g, src] { return run_diff(g, *src); }; });
}

}  // namespace lamina::tool
