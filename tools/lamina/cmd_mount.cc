// SPDX-License-Identifier: Apache-2.0
// mount: an image of the store as a union. Each layer is a StoreLayer (nothing is extracted);
// with --upper/--work changes go to a plain upper directory, as with laminafs. The store's
// shared lock is held while the layers are opened; after that each layer's own shared lock on
// its manifest keeps gc away for as long as the daemon runs.

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "lamina/core/mount_options.h"
#include "lamina/core/store_layer.h"
#include "lamina/fuse/daemon.h"

namespace lamina::tool {
namespace {

struct MountArgs {
  std::string image;
  std::string mountpoint;
  std::string upper;
  std::string work;
  std::vector<std::string> options;  // -o values, comma-separated lists
  bool foreground = false;
  bool verify = false;
};

// A directory that must exist, or Failure naming its role.
void require_dir(const std::string& role, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    throw Failure(role + " '" + path + "': " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) throw Failure(role + " '" + path + "' is not a directory");
}

// "a,b" items escaped so that the laminafs option parser keeps each one whole.
std::string escape_item(const std::string& item) {
  std::string out;
  for (char c : item) {
    if (c == ',') out += '\\';
    out += c;
  }
  return out;
}

// The laminafs mount options from -o (parsed by laminafs's own parser, so every option it
// knows works here too); "verify" is ours.
core::MountOptions mount_options(const MountArgs& a, bool* verify) {
  std::vector<std::string> args;
  for (const std::string& value : a.options) {
    for (const std::string& item : core::split_options(value)) {
      if (item == "verify") {
        *verify = true;
        continue;
      }
      const std::string key = item.substr(0, item.find('='));
      if (key == "lowerdir" || key == "upperdir" || key == "workdir") {
        throw Failure("option '" + key + "' is not for lamina mount (the image gives the layers; " +
                      "use --upper and --work)");
      }
      args.push_back("-o");
      args.push_back(escape_item(item));
    }
  }
  // The parser insists on a lowerdir; the image's layers take its place.
  args.push_back("-o");
  args.push_back("lowerdir=/");
  args.push_back(a.mountpoint);
  std::string error;
  auto parsed = core::parse_command_line(args, &error);
  if (!parsed) throw Failure(error);
  if (parsed->action != core::ParsedCommandLine::Action::kMount) {
    throw Failure("-o takes mount options only");
  }
  core::MountOptions o = std::move(parsed->options);
  o.lowerdirs.clear();
  o.upperdir = a.upper;
  o.workdir = a.work;
  o.foreground = o.foreground || a.foreground;
  bool has_fsname = false;
  for (const auto& f : o.fuse_options) has_fsname = has_fsname || f.rfind("fsname=", 0) == 0;
  if (!has_fsname) o.fuse_options.push_back("fsname=lamina:" + a.image);
  return o;
}

int run_mount(const Globals& g, const MountArgs& a) {
  if (!a.upper.empty() && a.work.empty()) {
    throw Failure("--upper needs --work (a directory on the same filesystem)");
  }
  if (a.upper.empty() && !a.work.empty()) throw Failure("--work given without --upper");
  bool verify = a.verify;
  core::MountOptions o = mount_options(a, &verify);
  require_dir("mountpoint", a.mountpoint);
  if (!a.upper.empty()) {
    require_dir("upper directory", a.upper);
    require_dir("work directory", a.work);
  }

  std::shared_ptr<const store::Store> st = open_store(g, false);
  std::vector<std::unique_ptr<core::Layer>> layers;
  {
    auto lock = st->lock_shared();
    if (!lock) throw Failure("store '" + st->root() + "': " + lock.error().message());
    auto image = st->read_image(a.image);
    if (!image) {
      if (image.code() == ENOENT) {
        throw Failure("no image named '" + a.image + "' in store " + st->root());
      }
      std::string why;
      if (!store::Store::valid_image_name(a.image, &why)) {
        throw Failure("'" + a.image + "' is not an image name: " + why);
      }
      throw Failure("image '" + a.image + "': " + image.error().message());
    }
    if (image->layers.empty()) throw Failure("image '" + a.image + "' has no layers");
    // The image lists its layers bottom first; a union wants the topmost first.
    for (auto it = image->layers.rbegin(); it != image->layers.rend(); ++it) {
      std::string error;
      auto layer = core::open_store_layer(st, *it, core::StoreLayerOptions{verify}, &error);
      if (!layer) throw Failure("image '" + a.image + "': " + error);
      layers.push_back(std::move(layer));
    }
  }
  return fuse::run_daemon(o, std::move(layers), "lamina");
}

}  // namespace

void add_mount(CLI::App& app, Globals& g, Action& action) {
  auto a = std::make_shared<MountArgs>();
  CLI::App* cmd = app.add_subcommand(
      "mount", "mount an image (read-only; writable into a plain upper dir with --upper/--work)");
  cmd->add_option("image", a->image, "image name")->required();
  cmd->add_option("mountpoint", a->mountpoint, "directory to mount on")->required();
  cmd->add_option("--upper", a->upper, "upper directory: changes land here (needs --work)");
  cmd->add_option("--work", a->work, "work directory on the upper's filesystem");
  cmd->add_option("-o", a->options, "mount options, as laminafs takes them, and 'verify'")
      ->allow_extra_args(false);
  cmd->add_flag("-f,--foreground", a->foreground, "stay in the foreground");
  cmd->add_flag("--verify", a->verify,
                "hash every object on first open; a corrupted one reads as EIO");
  cmd->callback([&g, &action, a] { action = [&g, a] { return run_mount(g, *a); }; });
}

}  // namespace lamina::tool
