// SPDX-License-Identifier: Apache-2.0
// lamina push: an image of the store to a registry (OCI distribution API).
// lamina pull: an image from a registry into the store.
#include <cstdio>
#include <cstdlib>

#include "commands.h"
#include "lamina/oci/registry.h"
#include "progress.h"

namespace lamina::tool {
namespace {

struct RegistryArgs {
  std::string image;  // push: the store's image; pull: --tag
  std::string reference;
  bool insecure = false;
  std::string creds;
  std::string chunk_size;
  std::string mount_from;
  std::string compress = "gzip";
  bool force = false;
};

oci::RegistryOptions registry_options(const RegistryArgs& a) {
  oci::RegistryOptions o;
  o.insecure = a.insecure;
  if (!a.creds.empty()) {
    auto colon = a.creds.find(':');
    if (colon == std::string::npos) throw Failure("--creds wants USER:PASS");
    o.username = a.creds.substr(0, colon);
    o.password = a.creds.substr(colon + 1);
  }
  if (!a.chunk_size.empty()) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(a.chunk_size.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || v == 0 || a.chunk_size[0] == '-') {
      throw Failure("--chunk-size '" + a.chunk_size + "' is not a positive number of bytes");
    }
    o.chunk_size = v;
  }
  o.mount_from = a.mount_from;
  if (a.compress == "gzip") {
    o.compression = oci::Compression::kGzip;
  } else if (a.compress == "zstd") {
    o.compression = oci::Compression::kZstd;
  } else if (a.compress == "none") {
    o.compression = oci::Compression::kNone;
  } else {
    throw Failure("--compress must be gzip, zstd or none, not '" + a.compress + "'");
  }
  return o;
}

oci::Reference reference(const std::string& text) {
  oci::Reference ref;
  std::string error;
  if (!oci::parse_reference(text, &ref, &error)) throw Failure(error);
  return ref;
}

int run_push(const Globals& g, const RegistryArgs& a) {
  oci::Reference ref = reference(a.reference);
  oci::RegistryOptions options = registry_options(a);
  auto st = open_store(g, false);
  if (!st->read_image(a.image)) {
    throw Failure("no image named '" + a.image + "' in store " + st->root());
  }
  Progress progress("push", !g.quiet);
  options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
  std::string error;
  bool ok = oci::push_image(*st, a.image, ref, options, &error);
  progress.finish();
  if (!ok) throw Failure("push of '" + a.image + "' to " + a.reference + ": " + error);
  if (!g.quiet) std::fprintf(stderr, "pushed %s to %s\n", a.image.c_str(), a.reference.c_str());
  return 0;
}

int run_pull(const Globals& g, const RegistryArgs& a) {
  oci::Reference ref = reference(a.reference);
  oci::RegistryOptions options = registry_options(a);
  std::string why;
  if (!store::Store::valid_image_name(a.image, &why)) {
    throw Failure("invalid image name '" + a.image + "': " + why);
  }
  auto st = open_store(g, true);
  if (!a.force && st->read_image(a.image)) {
    throw Failure("image '" + a.image + "' exists (use --force to replace it)");
  }
  Progress progress("pull", !g.quiet);
  options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
  std::string error;
  bool ok = oci::pull_image(*st, ref, a.image, a.force, options, &error);
  progress.finish();
  if (!ok) throw Failure("pull of " + a.reference + ": " + error);
  if (!g.quiet) std::fprintf(stderr, "pulled %s as %s\n", a.reference.c_str(), a.image.c_str());
  return 0;
}

void add_common(CLI::App* cmd, RegistryArgs* a, Globals& g) {
  cmd->add_flag("--insecure", a->insecure, "plain HTTP (a test registry), not HTTPS");
  cmd->add_option("--creds", a->creds, "USER:PASS for basic auth or a token request");
  cmd->add_flag("-q,--quiet", g.quiet, "no progress bar or summary");
}

}  // namespace

void add_registry(CLI::App& app, Globals& g, Action& action) {
  auto push_args = std::make_shared<RegistryArgs>();
  CLI::App* push =
      app.add_subcommand("push", "push an image of the store to HOST[:PORT]/REPO[:TAG]");
  push->add_option("image", push_args->image, "the store's image")->required();
  push->add_option("reference", push_args->reference, "HOST[:PORT]/REPO[:TAG]")->required();
  add_common(push, push_args.get(), g);
  push->add_option("--chunk-size", push_args->chunk_size,
                   "upload blobs in PATCH chunks of this many bytes (default: one PUT)");
  push->add_option("--mount-from", push_args->mount_from,
                   "a repository of the same registry to mount existing blobs from");
  push->add_option("--compress", push_args->compress, "layer compression: gzip, zstd or none");
  push->callback(
      [&g, &action, push_args] { action = [&g, push_args] { return run_push(g, *push_args); }; });

  auto pull_args = std::make_shared<RegistryArgs>();
  CLI::App* pull = app.add_subcommand(
      "pull", "pull HOST[:PORT]/REPO[:TAG|@DIGEST] into the store as a new image");
  pull->add_option("reference", pull_args->reference, "HOST[:PORT]/REPO[:TAG|@DIGEST]")->required();
  pull->add_option("--tag", pull_args->image, "the new image's name")->required();
  pull->add_flag("--force", pull_args->force, "replace an image of that name");
  add_common(pull, pull_args.get(), g);
  pull->callback(
      [&g, &action, pull_args] { action = [&g, pull_args] { return run_pull(g, *pull_args); }; });
}

}  // namespace lamina::tool
