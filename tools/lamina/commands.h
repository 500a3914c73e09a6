// SPDX-License-Identifier: Apache-2.0
#pragma once
// The lamina tool's subcommands. main.cc builds the CLI11 app; each cmd_*.cc adds its
// subcommands with add_*() and runs them. A command reports failures on stderr as
// "lamina: <what went wrong>" and returns a non-zero exit status (Failure carries both).

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "lamina/store/store.h"

namespace lamina::tool {

// Options every subcommand sees.
struct Globals {
  std::string root;   // --root, else $LAMINA_ROOT or the default
  bool json = false;  // --json where a command supports it
  bool quiet = false;
};

// Thrown by commands; main prints "lamina: " + what() and exits with `status`.
struct Failure : std::runtime_error {
  explicit Failure(const std::string& what, int exit_status = 1)
      : std::runtime_error(what), status(exit_status) {}
  int status;
};

// Opens the store at g.root (creating it if `create`), or throws Failure.
std::unique_ptr<store::Store> open_store(const Globals& g, bool create);

// The command to run once parsing is done (set by the subcommand's callback).
using Action = std::function<int()>;

void add_commit(CLI::App& app, Globals& g, Action& action);       // cmd_commit.cc: commit, diff
void add_images(CLI::App& app, Globals& g, Action& action);       // cmd_images.cc: images, layers,
                                                                  // inspect, tag, rm
void add_mount(CLI::App& app, Globals& g, Action& action);        // cmd_mount.cc: mount
void add_maintenance(CLI::App& app, Globals& g, Action& action);  // cmd_maint.cc: gc, fsck
void add_oci(CLI::App& app, Globals& g, Action& action);          // cmd_oci.cc: export
void add_export(CLI::App& app, Globals& g, Action& action);       // cmd_oci.cc: export
void add_import(CLI::App& app, Globals& g, Action& action);       // cmd_import.cc: import
void add_registry(CLI::App& app, Globals& g, Action& action);     // cmd_registry.cc: push, pull
void add_volume(CLI::App& app, Globals& g, Action& action);       // cmd_volume.cc: snapshot,
                                                                  // restore, snapshots

// "1.5 GiB" style sizes for people.
std::string human_bytes(uint64_t bytes);

}  // namespace lamina::tool
