// SPDX-License-Identifier: Apache-2.0
// lamina: the layer tool. `lamina --help` lists the commands; docs/formats.md the store.

#include <cstdio>
#include <string>

#include "commands.h"
#include "lamina/base/log.h"

namespace lamina::tool {

std::unique_ptr<store::Store> open_store(const Globals& g, bool create) {
  std::string error;
  auto st =
      store::Store::open(g.root.empty() ? store::Store::default_root() : g.root, create, &error);
  if (!st) throw Failure(error);
  return st;
}

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  }
  return buf;
}

namespace {

int run_main(int argc, char** argv) {
  lamina::log::set_program("lamina");
  lamina::log::set_level(lamina::log::Level::kWarn);
  CLI::App app{
      "lamina: commit container changes into a content-addressed layer store, and mount "
      "images from it"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("lamina version ") + LAMINA_VERSION);
  Globals g;
  app.add_option("--root", g.root,
                 "store directory (default: $LAMINA_ROOT, /var/lib/lamina as root, else "
                 "$XDG_DATA_HOME/lamina)");
  Action action;
  add_commit(app, g, action);
  add_images(app, g, action);
  add_mount(app, g, action);
  add_maintenance(app, g, action);
  add_oci(app, g, action);
  add_import(app, g, action);
  add_registry(app, g, action);
  add_volume(app, g, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return action ? action() : 1;
  } catch (const Failure& f) {
    std::fprintf(stderr, "lamina: %s\n", f.what());
    return f.status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lamina: %s\n", e.what());
    return 1;
  }
}

}  // namespace
}  // namespace lamina::tool

int main(int argc, char** argv) {
  try {
    return lamina::tool::run_main(argc, argv);
  } catch (...) {
    std::fputs("lamina: unexpected error\n", stderr);
    return 1;
  }
}
