// SPDX-License-Identifier: Apache-2.0
// lamina export: an image of the store -> an OCI image layout (skopeo's oci:DIR:TAG).
// (lamina import lives in cmd_import.cc; add_oci adds both.)
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "lamina/oci/image_io.h"
#include "progress.h"

namespace lamina::tool {
namespace {

struct ExportArgs {
  std::string image;
  std::string layout;  // DIR[:TAG]
  std::string compress = "gzip";
};

oci::Compression parse_compression(const std::string& name) {
  if (name == "gzip") return oci::Compression::kGzip;
  if (name == "zstd") return oci::Compression::kZstd;
  if (name == "none") return oci::Compression::kNone;
  throw Failure("--compress '" + name + "': use gzip, zstd or none");
}

bool valid_tag(const std::string& tag) {
  if (tag.empty() || tag.size() > 128) return false;
  for (char c : tag) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return tag[0] != '.' && tag[0] != '-';
}

int run_export(const Globals& g, const ExportArgs& a) {
  std::string dir, tag;
  oci::split_layout_ref(a.layout, &dir, &tag);
  if (dir.empty()) throw Failure("--oci '" + a.layout + "': no directory");
  if (a.layout.back() == ':') throw Failure("--oci '" + a.layout + "': empty tag after ':'");
  if (!tag.empty() && !valid_tag(tag)) {
    throw Failure("--oci '" + a.layout + "': tag '" + tag +
                  "' is not 1 to 128 of [A-Za-z0-9_.-] (not starting with '.' or '-')");
  }
  if (tag.empty()) tag = oci::default_layout_tag(a.image);
  oci::ExportOptions options;
  options.compression = parse_compression(a.compress);
  auto st = open_store(g, false);
  Progress progress("export", !g.quiet);
  options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
  oci::Descriptor manifest;
  std::string error;
  bool ok = oci::export_image(*st, a.image, dir, tag, options, &manifest, &error);
  progress.finish();
  if (!ok) throw Failure("export of '" + a.image + "': " + error);
  if (g.json) {
    nlohmann::json j = {
        {"image", a.image},          {"layout", dir},         {"tag", tag},
        {"digest", manifest.digest}, {"size", manifest.size}, {"compression", a.compress}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s\n", manifest.digest.c_str());
  if (!g.quiet)
    std::fprintf(stderr, "%s -> oci:%s:%s\n", a.image.c_str(), dir.c_str(), tag.c_str());
  return 0;
}

}  // namespace

void add_export(CLI::App& app, Globals& g, Action& action) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export", "write an image as an OCI image layout (oci:DIR:TAG); prints the manifest digest");
  cmd->add_option("IMAGE", args->image, "the image of the store")->required();
  cmd->add_option("--oci", args->layout,
                  "DIR[:TAG]: the layout directory (created if needed; an existing one keeps its "
                  "other tags), and the tag (default: IMAGE with '/', ':' and '@' as '-')")
      ->required();
  cmd->add_option("--compress", args->compress, "layer compression: gzip (default), zstd, none")
      ->check(CLI::IsMember({"gzip", "zstd", "none"}));
  cmd->add_flag("--json", g.json, "print the result as JSON");
  cmd->add_flag("-q,--quiet", g.quiet, "no progress bar or summary");
  cmd->callback([&g, &action, args] { action = [&g, args] { return run_export(g, *args); }; });
}

void add_oci(CLI::App& app, Globals& g, Action& action) { add_export(app, g, action); }

}  // namespace lamina::tool
