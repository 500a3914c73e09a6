// SPDX-License-Identifier: Apache-2.0
// lamina import: an OCI image layout (what skopeo, umoci, buildah, podman write) or a
// `docker save` archive becomes an image of the store. Every digest and diff_id is verified;
// nothing is recorded unless all of it was.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "lamina/oci/image_io.h"
#include "progress.h"

namespace lamina::tool {
namespace {

struct ImportArgs {
  std::string oci;             // DIR[:TAG]
  std::string docker_archive;  // FILE
  std::string tag;
  bool force = false;
};

int run_import(const Globals& g, const ImportArgs& a) {
  if (a.oci.empty() == a.docker_archive.empty()) {
    throw Failure("give exactly one of --oci DIR[:TAG] and --docker-archive FILE");
  }
  std::string why;
  if (!store::Store::valid_image_name(a.tag, &why)) {
    throw Failure("invalid image name '" + a.tag + "': " + why);
  }
  auto st = open_store(g, true);
  Progress progress("import", !g.quiet);
  oci::ImportOptions options;
  options.replace = a.force;
  options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
  std::string error;
  bool ok;
  std::string source;
  if (!a.oci.empty()) {
    std::string dir;
    std::string ref;
    oci::split_layout_ref(a.oci, &dir, &ref);
    source = a.oci;
    ok = oci::import_image(*st, dir, ref, a.tag, options, &error);
  } else {
    source = a.docker_archive;
    ok = oci::import_docker_archive(*st, a.docker_archive, a.tag, options, &error);
  }
  progress.finish();
  if (!ok) throw Failure("import of '" + source + "': " + error);
  auto img = st->read_image(a.tag);
  if (!img) throw Failure("image '" + a.tag + "': " + img.error().message());
  if (g.json) {
    nlohmann::json j = {{"image", a.tag}, {"layers", img->layers}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s\n", a.tag.c_str());
  if (!g.quiet) {
    std::fprintf(stderr, "%s: %zu layers imported from %s\n", a.tag.c_str(), img->layers.size(),
                 source.c_str());
  }
  return 0;
}

}  // namespace

void add_import(CLI::App& app, Globals& g, Action& action) {
  auto args = std::make_shared<ImportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "import", "store an OCI image layout or a `docker save` archive as an image");
  cmd->add_option("--oci", args->oci, "an OCI image layout directory, DIR[:TAG]");
  cmd->add_option("--docker-archive", args->docker_archive, "a `docker save` tar archive");
  cmd->add_option("--tag", args->tag, "the new image's name")->required();
  cmd->add_flag("--force", args->force, "replace an image of that name");
  cmd->add_flag("--json", g.json, "print the result as JSON");
  cmd->add_flag("-q,--quiet", g.quiet, "no progress bar or summary");
  cmd->callback([&g, &action, args] { action = [&g, args] { return run_import(g, *args); }; });
}

}  // namespace lamina::tool
