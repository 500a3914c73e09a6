// SPDX-License-Identifier: Apache-2.0
// images, layers, inspect, tag, rm: reading and naming what the store holds. The commands that
// only read never create a store: with none at the root, the lists are empty.
#include <fcntl.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "lamina/base/sys.h"

namespace lamina::tool {
namespace {

using nlohmann::json;
using store::Store;

void print_json(const json& j) {
  std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
}

// The store, or null when the root does not exist (for the commands that only read).
std::unique_ptr<Store> open_if_exists(const Globals& g) {
  const std::string root = g.root.empty() ? Store::default_root() : g.root;
  auto exists = sys::exists_at(AT_FDCWD, root.c_str());
  if (exists && !*exists) return nullptr;
  return open_store(g, false);
}

// Columns padded to their widest cell; `right` columns (numbers) are right-aligned.
void print_table(const std::vector<std::vector<std::string>>& rows,
                 const std::vector<bool>& right) {
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      std::string pad(width[c] - row[c].size(), ' ');
      bool last = c + 1 == row.size();
      line += right[c] ? pad + row[c] : row[c] + (last ? "" : pad);
      if (!last) line += "   ";
    }
    line.erase(line.find_last_not_of(' ') + 1);
    std::printf("%s\n", line.c_str());
  }
}

// Bytes outside printable ASCII as \xNN, so one entry stays one line.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string image_error(std::string_view name, const Error& e) {
  std::string why;
  if (!Store::valid_image_name(name, &why)) {
    return "invalid image name '" + std::string(name) + "': " + why;
  }
  if (e.code == ENOENT) return "no image '" + std::string(name) + "'";
  return "image '" + std::string(name) + "': " + e.message();
}

// Layer id -> names of the images using it.
std::map<std::string, std::vector<std::string>> users(const std::vector<store::Image>& images) {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& img : images) {
    for (const auto& id : img.layers) {
      auto& names = out[id];
      if (std::find(names.begin(), names.end(), img.name) == names.end()) {
        names.push_back(img.name);
      }
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

json layer_json(const Store& st, const std::string& id, const std::vector<std::string>& used_by) {
  json j = {{"id", id}, {"used_by", used_by}};
  auto info = st.read_layer_info(id);
  if (!info) {
    j["error"] = info.error().message();
    return j;
  }
  j.update({{"created", info->created},
            {"entries", info->entries},
            {"files", info->files},
            {"whiteouts", info->whiteouts},
            {"content_bytes", info->content_bytes},
            {"manifest_bytes", info->manifest_bytes},
            {"comment", info->comment}});
  return j;
}

std::vector<std::string> layer_row(const Store& st, const std::string& id,
                                   const std::vector<std::string>& used_by) {
  auto info = st.read_layer_info(id);
  std::string used = used_by.empty() ? "-" : join(used_by, ",");
  if (!info) return {id.substr(0, 12), "?", "?", "?", "?", used};
  return {id.substr(0, 12),
          std::to_string(info->entries),
          std::to_string(info->files),
          human_bytes(info->content_bytes),
          info->created,
          used};
}

int run_images(const Globals& g) {
  auto st = open_if_exists(g);
  std::vector<store::Image> images;
  if (st) {
    auto list = st->list_images();
    if (!list) throw Failure("images: " + list.error().message());
    images = std::move(*list);
  }
  json out = json::array();
  std::vector<std::vector<std::string>> rows = {{"NAME", "LAYERS", "SIZE", "CREATED"}};
  for (const auto& img : images) {
    uint64_t size = 0;
    for (const auto& id : img.layers) {
      if (auto info = st->read_layer_info(id)) size += info->content_bytes;
    }
    out.push_back(
        {{"name", img.name}, {"layers", img.layers}, {"size", size}, {"created", img.created}});
    rows.push_back({img.name, std::to_string(img.layers.size()), human_bytes(size), img.created});
  }
  if (g.json) {
    print_json(out);
  } else {
    print_table(rows, {false, true, true, false});
  }
  return 0;
}

int run_layers(const Globals& g) {
  auto st = open_if_exists(g);
  json out = json::array();
  std::vector<std::vector<std::string>> rows = {
      {"ID", "ENTRIES", "FILES", "SIZE", "CREATED", "USED BY"}};
  if (st) {
    auto ids = st->list_layers();
    auto images = st->list_images();
    if (!ids) throw Failure("layers: " + ids.error().message());
    if (!images) throw Failure("layers: " + images.error().message());
    auto used = users(*images);
    for (const auto& id : *ids) {
      const auto& by = used[id];
      out.push_back(layer_json(*st, id, by));
      rows.push_back(layer_row(*st, id, by));
    }
  }
  if (g.json) {
    print_json(out);
  } else {
    print_table(rows, {false, true, true, true, false, false});
  }
  return 0;
}

std::string mode_string(const store::Entry& e) {
  std::string s = "?---------";
  switch (e.kind) {
    case store::EntryKind::kDir: s[0] = 'd'; break;
    case store::EntryKind::kFile:
    case store::EntryKind::kHardlink: s[0] = '-'; break;
    case store::EntryKind::kSymlink: s[0] = 'l'; break;
    case store::EntryKind::kChar: s[0] = 'c'; break;
    case store::EntryKind::kBlock: s[0] = 'b'; break;
    case store::EntryKind::kFifo: s[0] = 'p'; break;
    case store::EntryKind::kSocket: s[0] = 's'; break;
    case store::EntryKind::kWhiteout: return "w---------";
  }
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    if (e.mode & (0400u >> i)) s[1 + i] = rwx[i];
  }
  if (e.mode & 04000) s[3] = (e.mode & 0100) ? 's' : 'S';
  if (e.mode & 02000) s[6] = (e.mode & 0010) ? 's' : 'S';
  if (e.mode & 01000) s[9] = (e.mode & 0001) ? 't' : 'T';
  return s;
}

std::string mtime_string(int64_t sec) {
  time_t t = static_cast<time_t>(sec);
  struct tm tm;
  char buf[32];
  if (::gmtime_r(&t, &tm) == nullptr ||
      std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm) == 0) {
    return std::to_string(sec);
  }
  return buf;
}

// The manifest like `ls -l`: a hard link shows the metadata of the file it names.
void print_entries(const store::Manifest& m) {
  std::map<std::string_view, const store::Entry*> files;
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : m.entries) {
    if (e.kind == store::EntryKind::kFile) files[e.path] = &e;
    const store::Entry* meta = &e;
    if (e.kind == store::EntryKind::kHardlink) meta = files[e.target];
    std::string name = printable(e.path);
    std::string size;
    switch (e.kind) {
      case store::EntryKind::kWhiteout:
        rows.push_back({"w---------", "", "", "", "", name + " (whiteout)"});
        continue;
      case store::EntryKind::kSymlink: name += " -> " + printable(e.target); break;
      case store::EntryKind::kHardlink: name += " link to " + printable(e.target); break;
      case store::EntryKind::kChar:
      case store::EntryKind::kBlock:
        size = std::to_string(e.rdev_major) + ", " + std::to_string(e.rdev_minor);
        break;
      default: break;
    }
    if (meta->kind == store::EntryKind::kFile) size = std::to_string(meta->size);
    if (e.opaque) name += " (opaque)";
    rows.push_back({mode_string(e.kind == store::EntryKind::kHardlink ? *meta : e),
                    std::to_string(meta->uid), std::to_string(meta->gid), size,
                    mtime_string(meta->mtime_sec), name});
  }
  if (!rows.empty()) print_table(rows, {false, true, true, true, false, false});
}

int inspect_layer(const Globals& g, const Store& st, const std::string& id, bool entries) {
  auto images = st.list_images();
  if (!images) throw Failure("inspect: " + images.error().message());
  const auto used_by = users(*images)[id];
  store::Manifest m;
  std::string error;
  bool have_manifest = !entries || st.read_manifest(id, &m, &error);
  if (!have_manifest) throw Failure(error);
  if (g.json) {
    json j = layer_json(st, id, used_by);
    if (entries) {
      json list = json::array();
      for (const auto& e : m.entries) {
        json x = {{"path", e.path}, {"kind", std::string(1, static_cast<char>(e.kind))}};
        if (e.kind != store::EntryKind::kWhiteout && e.kind != store::EntryKind::kHardlink) {
          x["mode"] = e.mode;
          x["uid"] = e.uid;
          x["gid"] = e.gid;
          x["mtime"] = e.mtime_sec;
          x["mtime_nsec"] = e.mtime_nsec;
        }
        if (e.kind == store::EntryKind::kFile) {
          x["size"] = e.size;
          x["object"] = e.object;
        }
        if (!e.target.empty()) x["target"] = e.target;
        if (e.kind == store::EntryKind::kChar || e.kind == store::EntryKind::kBlock) {
          x["rdev"] = std::to_string(e.rdev_major) + ":" + std::to_string(e.rdev_minor);
        }
        if (e.opaque) x["opaque"] = true;
        if (!e.xattrs.empty()) {
          json names = json::array();
          for (const auto& xa : e.xattrs) names.push_back(xa.first);
          x["xattrs"] = names;
        }
        list.push_back(std::move(x));
      }
      j["entries_list"] = std::move(list);
    }
    print_json(j);
    return 0;
  }
  auto info = st.read_layer_info(id);
  std::printf("layer      %s\n", id.c_str());
  if (info) {
    std::printf("created    %s\n", info->created.c_str());
    std::printf("entries    %llu (files %llu, whiteouts %llu)\n",
                static_cast<unsigned long long>(info->entries),
                static_cast<unsigned long long>(info->files),
                static_cast<unsigned long long>(info->whiteouts));
    std::printf("size       %s (%llu bytes)\n", human_bytes(info->content_bytes).c_str(),
                static_cast<unsigned long long>(info->content_bytes));
    std::printf("manifest   %llu bytes\n", static_cast<unsigned long long>(info->manifest_bytes));
    if (!info->comment.empty()) std::printf("comment    %s\n", printable(info->comment).c_str());
  } else {
    std::printf("info       unreadable (%s)\n", info.error().message().c_str());
  }
  std::printf("used by    %s\n", used_by.empty() ? "-" : join(used_by, ", ").c_str());
  if (entries) {
    std::printf("\n");
    print_entries(m);
  }
  return 0;
}

int inspect_image(const Globals& g, const Store& st, const store::Image& img) {
  if (g.json) {
    json layers = json::array();
    for (const auto& id : img.layers) layers.push_back(layer_json(st, id, {}));
    json config = json::parse(img.config_json, nullptr, false);
    print_json(
        {{"name", img.name}, {"created", img.created}, {"config", config}, {"layers", layers}});
    return 0;
  }
  std::printf("image      %s\n", img.name.c_str());
  std::printf("created    %s\n", img.created.c_str());
  std::printf("config     %s\n", img.config_json.c_str());
  std::printf("layers     %zu (bottom first)\n\n", img.layers.size());
  std::vector<std::vector<std::string>> rows = {
      {"ID", "ENTRIES", "FILES", "SIZE", "CREATED", "COMMENT"}};
  for (const auto& id : img.layers) {
    auto row = layer_row(st, id, {});
    auto info = st.read_layer_info(id);
    row.back() = info ? printable(info->comment) : (st.has_layer(id) ? "?" : "(missing)");
    row[0] = id;
    rows.push_back(std::move(row));
  }
  print_table(rows, {false, true, true, true, false, false});
  return 0;
}

int run_inspect(const Globals& g, const std::string& what, bool entries) {
  auto st = open_store(g, false);
  std::string why;
  if (Store::valid_image_name(what, &why)) {
    auto img = st->read_image(what);
    if (img && entries) {
      throw Failure("--entries lists a layer's entries: give one of the layer ids of '" + what +
                    "' (lamina inspect " + what + " lists them)");
    }
    if (img) return inspect_image(g, *st, *img);
    if (img.code() != ENOENT) throw Failure(image_error(what, img.error()));
  }
  auto id = st->resolve_layer(what);
  if (id) return inspect_layer(g, *st, *id, entries);
  if (id.code() == EINVAL) throw Failure("'" + what + "' is an ambiguous layer id prefix");
  if (id.code() != ENOENT) throw Failure("inspect '" + what + "': " + id.error().message());
  throw Failure("no image or layer '" + what + "'");
}

int run_tag(const Globals& g, const std::string& src, const std::string& dst, bool force) {
  std::string why;
  if (!Store::valid_image_name(dst, &why)) {
    throw Failure("invalid image name '" + dst + "': " + why);
  }
  auto st = open_store(g, false);
  // Shared lock: gc must not sweep between reading SRC and publishing NEW.
  auto lock = st->lock_shared();
  if (!lock) throw Failure("store lock: " + lock.error().message());
  auto img = st->read_image(src);
  if (!img) throw Failure(image_error(src, img.error()));
  img->name = dst;
  Status s = st->write_image(*img, force);
  if (s.code() == EEXIST) throw Failure("image '" + dst + "' exists (use --force to replace it)");
  if (!s) throw Failure("image '" + dst + "': " + s.error().message());
  return 0;
}

int run_rm(const Globals& g, const std::vector<std::string>& names) {
  auto st = open_store(g, false);
  int status = 0;
  for (const auto& name : names) {
    Status s = st->remove_image(name);
    if (!s) {
      std::fprintf(stderr, "lamina: %s\n", image_error(name, s.error()).c_str());
      status = 1;
      continue;
    }
    std::printf("removed image %s\n", name.c_str());
  }
  return status;
}

}  // namespace

void add_images(CLI::App& app, Globals& g, Action& action) {
  auto* images = app.add_subcommand("images", "list the images of the store");
  images->add_flag("--json", g.json, "print a JSON array");
  images->callback([&] { action = [&g] { return run_images(g); }; });

  auto* layers = app.add_subcommand("layers", "list the layers of the store");
  layers->add_flag("--json", g.json, "print a JSON array");
  layers->callback([&] { action = [&g] { return run_layers(g); }; });

  struct InspectOpts {
    std::string what;
    bool entries = false;
  };
  auto io = std::make_shared<InspectOpts>();
  auto* inspect = app.add_subcommand("inspect", "show an image, or a layer (id or id prefix)");
  inspect->add_option("NAME|LAYER-ID", io->what, "image name, or layer id (or 4+ hex digits)")
      ->required();
  inspect->add_flag("--entries", io->entries, "list a layer's manifest entries like ls -l");
  inspect->add_flag("--json", g.json, "print JSON");
  inspect->callback(
      [&g, &action, io] { action = [&g, io] { return run_inspect(g, io->what, io->entries); }; });

  struct TagOpts {
    std::string src, dst;
    bool force = false;
  };
  auto to = std::make_shared<TagOpts>();
  auto* tag = app.add_subcommand("tag", "name an image's layers under another name too");
  tag->add_option("SRC", to->src, "existing image")->required();
  tag->add_option("NEW", to->dst, "new image name")->required();
  tag->add_flag("--force,-f", to->force, "replace an existing image NEW");
  tag->callback(
      [&g, &action, to] { action = [&g, to] { return run_tag(g, to->src, to->dst, to->force); }; });

  auto names = std::make_shared<std::vector<std::string>>();
  auto* rm = app.add_subcommand("rm", "remove image names (their layers stay until gc)");
  rm->add_option("NAME", *names, "images to remove")->required();
  rm->callback([&g, &action, names] { action = [&g, names] { return run_rm(g, *names); }; });
}

}  // namespace lamina::tool
