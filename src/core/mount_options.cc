// SPDX-License-Identifier: Apache-2.0
#include "lamina/core/mount_options.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace lamina::core {
namespace {

// Options the kernel or libfuse understand, passed through as they are.
constexpr std::string_view kFuseFlags[] = {
    "allow_other", "allow_root", "default_permissions",
    "nosuid",      "suid",       "nodev",
    "dev",         "noexec",     "exec",
    "noatime",     "atime",      "relatime",
    "nodiratime",  "diratime",   "auto_unmount",
    "sync",        "async",      "dirsync",
    "rw",
};
constexpr std::string_view kFuseValued[] = {
    "context=", "fscontext=", "defcontext=", "rootcontext=", "fsname=", "subtype=", "max_read=",
};
// fuse-overlayfs options lamina does not implement: refused by name, never ignored.
constexpr std::string_view kRefused[] = {
    "plugins",  "redirect_dir", "index", "metacopy",  "threaded",   "fast_ino",
    "noxattrs", "lazytime",     "xino",  "userxattr", "nfs_export",
};

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

template <class T>
bool parse_number(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// Applies one -o item. Returns false and sets *error when the item is not acceptable.
bool apply_option(const std::string& item, MountOptions* o, std::string* error) {
  size_t eq = item.find('=');
  std::string_view key = std::string_view(item).substr(0, eq);
  std::string_view value =
      eq == std::string::npos ? std::string_view() : std::string_view(item).substr(eq + 1);
  bool has_value = eq != std::string::npos;

  auto need_value = [&]() {
    if (has_value && !value.empty()) return true;
    *error = "option '" + std::string(key) + "' needs a value";
    return false;
  };
  auto no_value = [&]() {
    if (!has_value) return true;
    *error = "option '" + std::string(key) + "' takes no value";
    return false;
  };
  auto boolean = [&](bool* out) {
    if (!has_value) {
      *out = true;
      return true;
    }
    if (value == "0" || value == "1") {
      *out = value == "1";
      return true;
    }
    *error = "option '" + std::string(key) + "' must be 0 or 1, not '" + std::string(value) + "'";
    return false;
  };

  if (key == "lowerdir") {
    if (!need_value()) return false;
    o->lowerdirs = split_lowerdirs(value);
    if (o->lowerdirs.empty()) {
      *error = "option 'lowerdir' lists no directory";
      return false;
    }
    return true;
  }
  if (key == "upperdir") {
    if (!need_value()) return false;
    o->upperdir = value;
    return true;
  }
  if (key == "workdir") {
    if (!need_value()) return false;
    o->workdir = value;
    return true;
  }
  if (key == "ro") {
    if (!no_value()) return false;
    o->read_only = true;
    return true;
  }
  if (key == "volatile") {
    if (!no_value()) return false;
    o->volatile_mode = true;
    return true;
  }
  if (key == "fsync") return boolean(&o->fsync);
  if (key == "noacl") {
    if (!no_value()) return false;
    o->acl = false;
    return true;
  }
  if (key == "acl") return boolean(&o->acl);
  if (key == "static_nlink") return boolean(&o->static_nlink);
  if (key == "passthrough") return boolean(&o->passthrough);
  if (key == "writeback") return boolean(&o->writeback);
  if (key == "io_uring") return boolean(&o->io_uring);
  if (key == "metacopy") {
    if (value == "on" || value == "off") {
      o->metacopy = value == "on";
      return true;
    }
    *error = "option 'metacopy' must be on or off, not '" + std::string(value) + "'";
    return false;
  }
  if (key == "debug") {
    if (!no_value()) return false;
    o->debug = true;
    o->foreground = true;
    return true;
  }
  if (key == "timeout") {
    if (!need_value()) return false;
    double t = 0;
    std::string v(value);
    char* end = nullptr;
    t = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !std::isfinite(t) || t < 0) {
      *error = "option 'timeout' must be a number of seconds, not '" + v + "'";
      return false;
    }
    o->timeout = t;
    return true;
  }
  if (key == "xattr_permissions") {
    int v = -1;
    if (!need_value()) return false;
    if (!parse_number(value, &v) || v < 0 || v > 2) {
      *error = "option 'xattr_permissions' must be 0, 1 or 2, not '" + std::string(value) + "'";
      return false;
    }
    o->xattr_permissions = static_cast<XattrPermissions>(v);
    return true;
  }
  if (key == "uidmapping" || key == "gidmapping") {
    if (!need_value()) return false;
    IdMap& m = key == "uidmapping" ? o->uid_map : o->gid_map;
    if (auto err = IdMap::parse(value, &m)) {
      *error = "option '" + std::string(key) + "': " + *err;
      return false;
    }
    return true;
  }
  if (key == "squash_to_root") {
    if (!no_value()) return false;
    o->uid_map.set_squash(0);
    o->gid_map.set_squash(0);
    return true;
  }
  if (key == "squash_to_uid" || key == "squash_to_gid") {
    uint32_t id = 0;
    if (!need_value()) return false;
    if (!parse_number(value, &id)) {
      *error =
          "option '" + std::string(key) + "' must be a number, not '" + std::string(value) + "'";
      return false;
    }
    (key == "squash_to_uid" ? o->uid_map : o->gid_map).set_squash(id);
    return true;
  }
  for (std::string_view f : kFuseFlags) {
    if (key == f) {
      if (!no_value()) return false;
      o->fuse_options.push_back(item);
      return true;
    }
  }
  for (std::string_view f : kFuseValued) {
    if (starts_with(item, f)) {
      if (!need_value()) return false;
      o->fuse_options.push_back(item);
      return true;
    }
  }
  for (std::string_view f : kRefused) {
    if (key == f) {
      *error = "option '" + std::string(key) + "' is not supported by laminafs";
      return false;
    }
  }
  *error = "unknown option '" + item + "'";
  return false;
}

}  // namespace

std::vector<std::string> split_options(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size() && text[i + 1] == ',') {
      cur += ',';
      ++i;
    } else if (c == '\\' && i + 1 < text.size()) {
      cur += c;  // kept for the option's own parser (lowerdir's "\:")
      cur += text[++i];
    } else if (c == '"') {
      quoted = !quoted;
      cur += c;
    } else if (c == ',' && !quoted) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> split_lowerdirs(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size()) {
      cur += text[++i];
    } else if (c == ':') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::optional<ParsedCommandLine> parse_command_line(const std::vector<std::string>& args,
                                                    std::string* error) {
  ParsedCommandLine parsed;
  MountOptions& o = parsed.options;
  std::vector<std::string> positional;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || a.empty() || a[0] != '-') {
      positional.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
    } else if (a == "-h" || a == "--help") {
      parsed.action = ParsedCommandLine::Action::kHelp;
      return parsed;
    } else if (a == "-V" || a == "--version") {
      parsed.action = ParsedCommandLine::Action::kVersion;
      return parsed;
    } else if (a == "-f") {
      o.foreground = true;
    } else if (a == "-d" || a == "--debug") {
      o.debug = true;
      o.foreground = true;
    } else if (a == "-s") {
      // libfuse's single-thread flag: accepted for compatibility; the loop stays threaded.
    } else if (a == "-o" || starts_with(a, "-o")) {
      std::string text;
      if (a == "-o") {
        if (i + 1 >= args.size()) {
          *error = "option '-o' needs an argument";
          return std::nullopt;
        }
        text = args[++i];
      } else {
        text = a.substr(2);
      }
      for (const std::string& item : split_options(text)) {
        if (!apply_option(item, &o, error)) return std::nullopt;
      }
    } else {
      *error = "unknown argument '" + a + "'";
      return std::nullopt;
    }
  }
  if (positional.empty()) {
    *error = "no mountpoint given (usage: laminafs [-f] [-d] [-o OPTS] MOUNTPOINT)";
    return std::nullopt;
  }
  if (positional.size() > 1) {
    // fuse-overlayfs style "SOURCE MOUNTPOINT" is not what container tools pass; refuse it.
    *error = "too many arguments: '" + positional[0] + "' and '" + positional[1] + "'";
    return std::nullopt;
  }
  o.mountpoint = positional[0];
  if (o.lowerdirs.empty()) {
    *error = "no lowerdir given (-o lowerdir=DIR[:DIR...])";
    return std::nullopt;
  }
  if (!o.upperdir.empty() && o.workdir.empty()) {
    *error = "upperdir needs a workdir (-o workdir=DIR on the same filesystem)";
    return std::nullopt;
  }
  if (o.upperdir.empty() && !o.workdir.empty()) {
    *error = "workdir given without upperdir";
    return std::nullopt;
  }
  return parsed;
}

std::string usage_text(std::string_view program) {
  std::string p(program);
  return "usage: " + p + R"( [-f] [-d] [-o OPTS] MOUNTPOINT

A copy-on-write union filesystem (fuse-overlayfs compatible command line).

  -f                      stay in the foreground
  -d, --debug             log every request (implies -f)
  -h, --help              this text
  -V, --version           versions of laminafs and libfuse

  -o lowerdir=A[:B...]    read-only layers, topmost first ("\:" escapes a colon)
  -o upperdir=DIR         writable layer (without it the mount is read-only)
  -o workdir=DIR          scratch dir on the upper's filesystem
  -o ro                   read-only mount
  -o volatile, fsync=0    sync requests are no-ops
  -o noacl                no POSIX ACLs
  -o timeout=SECONDS      kernel entry/attribute cache timeout
  -o static_nlink         directories show st_nlink 1
  -o metacopy=on|off      metadata-only copy-up for chmod/chown/utimens/xattrs (default on;
                          off for an upper that kernel overlayfs mounts with metacopy=off)
  -o passthrough=0|1       FUSE passthrough of upper files' data (default 1: used when this
                          build has it, the kernel offers it and the daemon has CAP_SYS_ADMIN)
  -o writeback=0|1        the kernel's writeback cache (default 0): writes are buffered in
                          the kernel and reach the upper in batches; a write error (ENOSPC,
                          EIO) shows at fsync or close instead of at write; turns passthrough off
  -o io_uring=0|1         FUSE over io_uring (default 0): requests reach the daemon through one
                          ring per CPU, answered on that CPU (needs a build against libfuse
                          >= 3.18, make build-passthrough, and the kernel's fuse module
                          parameter enable_uring=Y)
  -o uidmapping=A:B:LEN[:...], gidmapping=...   owner translation (as fuse-overlayfs)
  -o squash_to_root, squash_to_uid=N, squash_to_gid=N
  -o xattr_permissions=0|1|2   owner/mode from user.fuseoverlayfs / user.containers
                               override_stat xattrs
  -o allow_other, allow_root, nosuid, nodev, noexec, noatime, fsname=, subtype=,
     context=, fscontext=, defcontext=, rootcontext=, auto_unmount   (passed to FUSE)
)";
}

}  // namespace lamina::core
