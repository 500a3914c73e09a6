// SPDX-License-Identifier: Apache-2.0
// The manifest encoding (docs/formats.md, "Manifest"):
//
//   lamina-manifest 1
//   d /                  MODE UID GID MTIME [opaque] [x:NAME=VALUE]...
//   f /etc/passwd        MODE UID GID MTIME SIZE OBJECT [x:NAME=VALUE]...
//   l /bin/sh            MODE UID GID MTIME TARGET [x:...]
//   h /bin/ls            TARGET-PATH
//   c|b /dev/null        MODE UID GID MTIME MAJOR:MINOR [x:...]
//   p|s /run/fifo        MODE UID GID MTIME [x:...]
//   w /etc/removed
//
// Fields are separated by one space; MODE is 4 octal digits, MTIME is SEC.NSEC with 9 digits of
// nanoseconds. Paths, targets and xattr names and values escape every byte outside '!'..'~', and
// '%' and '=', as %XX (uppercase hex), so a line never holds a space, newline or NUL of its own.
#include "lamina/store/manifest.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <unordered_map>

namespace lamina::store {
namespace {

constexpr std::string_view kHeader = "lamina-manifest ";

bool needs_escape(unsigned char c) { return c < 0x21 || c > 0x7e || c == '%' || c == '='; }

void append_escaped(std::string* out, std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (needs_escape(c)) {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict: only the escapes encode() writes are accepted, so every manifest has one encoding.
bool unescape(std::string_view s, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c != '%') {
      if (needs_escape(c)) return false;
      out->push_back(static_cast<char>(c));
      continue;
    }
    if (i + 2 >= s.size()) return false;
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return false;
    unsigned char v = static_cast<unsigned char>(hi * 16 + lo);
    if (!needs_escape(v)) return false;
    out->push_back(static_cast<char>(v));
    i += 2;
  }
  return true;
}

bool valid_path(std::string_view p) {
  if (p == "/") return true;
  if (p.empty() || p.front() != '/' || p.back() == '/') return false;
  size_t pos = 1;
  while (pos <= p.size()) {
    size_t end = p.find('/', pos);
    if (end == std::string_view::npos) end = p.size();
    std::string_view comp = p.substr(pos, end - pos);
    if (comp.empty() || comp == "." || comp == ".." || comp.size() > 255) return false;
    if (comp.find('\0') != std::string_view::npos) return false;
    pos = end + 1;
  }
  return true;
}

bool has_metadata(EntryKind k) { return k != EntryKind::kHardlink && k != EntryKind::kWhiteout; }

bool valid_kind(char c) {
  switch (c) {
    case 'd':
    case 'f':
    case 'l':
    case 'h':
    case 'c':
    case 'b':
    case 'p':
    case 's':
    case 'w': return true;
    default: return false;
  }
}

template <class T>
bool parse_int(std::string_view s, T* v, int base = 10) {
  if (s.empty()) return false;
  if (s.size() > 1 && s[0] == '0' && base == 10) return false;  // one spelling per number
  auto r = std::from_chars(s.data(), s.data() + s.size(), *v, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::vector<std::string_view> split(std::string_view line) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos <= line.size()) {
    size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    out.push_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

std::string fail_at(size_t line, const std::string& what) {
  return "line " + std::to_string(line) + ": " + what;
}

// Parses "x:NAME=VALUE" into the entry's xattrs.
bool parse_xattr(std::string_view tok, Entry* e) {
  if (tok.substr(0, 2) != "x:") return false;
  tok.remove_prefix(2);
  size_t eq = tok.find('=');
  if (eq == std::string_view::npos || eq == 0) return false;
  std::string name, value;
  if (!unescape(tok.substr(0, eq), &name) || !unescape(tok.substr(eq + 1), &value)) return false;
  e->xattrs.emplace_back(std::move(name), std::move(value));
  return true;
}

bool parse_line(std::string_view line, Entry* e, std::string* why) {
  auto f = split(line);
  if (f.size() < 2 || f[0].size() != 1 || !valid_kind(f[0][0])) {
    *why = "unknown entry kind";
    return false;
  }
  e->kind = static_cast<EntryKind>(f[0][0]);
  if (!unescape(f[1], &e->path)) {
    *why = "bad escape in path";
    return false;
  }
  if (e->kind == EntryKind::kWhiteout) {
    if (f.size() != 2) *why = "extra fields after a whiteout";
    return f.size() == 2;
  }
  if (e->kind == EntryKind::kHardlink) {
    if (f.size() != 3 || !unescape(f[2], &e->target)) {
      *why = "a hard link takes one target path";
      return false;
    }
    return true;
  }
  if (f.size() < 6) {
    *why = "too few fields";
    return false;
  }
  if (f[2].size() != 4 || f[2].find_first_not_of("01234567") != std::string_view::npos) {
    *why = "bad mode";
    return false;
  }
  e->mode = 0;
  for (char c : f[2]) e->mode = e->mode * 8 + static_cast<uint32_t>(c - '0');
  if (!parse_int(f[3], &e->uid) || !parse_int(f[4], &e->gid)) {
    *why = "bad owner";
    return false;
  }
  size_t dot = f[5].find('.');
  std::string_view sec = f[5].substr(0, dot), nsec;
  if (dot != std::string_view::npos) nsec = f[5].substr(dot + 1);
  // The magnitude is parsed unsigned so that INT64_MIN, which encode() can write, reads back.
  bool neg = !sec.empty() && sec[0] == '-';
  uint64_t s = 0;
  constexpr uint64_t kMaxPositive = static_cast<uint64_t>(INT64_MAX);
  if (dot == std::string_view::npos || nsec.size() != 9 ||
      !parse_int(neg ? sec.substr(1) : sec, &s) || (neg && s == 0) ||
      s > (neg ? kMaxPositive + 1 : kMaxPositive) ||
      std::from_chars(nsec.data(), nsec.data() + nsec.size(), e->mtime_nsec).ptr !=
          nsec.data() + nsec.size()) {
    *why = "bad mtime";
    return false;
  }
  e->mtime_sec = neg ? static_cast<int64_t>(0 - s) : static_cast<int64_t>(s);
  size_t next = 6;
  switch (e->kind) {
    case EntryKind::kFile:
      if (f.size() < 8 || !parse_int(f[6], &e->size) || !valid_object_name(f[7])) {
        *why = "a file takes SIZE OBJECT";
        return false;
      }
      e->object = std::string(f[7]);
      next = 8;
      break;
    case EntryKind::kSymlink:
      if (f.size() < 7 || !unescape(f[6], &e->target) || e->target.empty()) {
        *why = "a symlink takes a target";
        return false;
      }
      next = 7;
      break;
    case EntryKind::kChar:
    case EntryKind::kBlock: {
      if (f.size() < 7) {
        *why = "a device takes MAJOR:MINOR";
        return false;
      }
      size_t colon = f[6].find(':');
      if (colon == std::string_view::npos || !parse_int(f[6].substr(0, colon), &e->rdev_major) ||
          !parse_int(f[6].substr(colon + 1), &e->rdev_minor)) {
        *why = "a device takes MAJOR:MINOR";
        return false;
      }
      next = 7;
      break;
    }
    default: break;
  }
  if (e->kind == EntryKind::kDir && next < f.size() && f[next] == "opaque") {
    e->opaque = true;
    ++next;
  }
  for (; next < f.size(); ++next) {
    if (!parse_xattr(f[next], e)) {
      *why = "bad field '" + std::string(f[next]) + "'";
      return false;
    }
  }
  return true;
}

}  // namespace

mode_t Entry::st_mode() const {
  mode_t type = 0;
  switch (kind) {
    case EntryKind::kDir: type = S_IFDIR; break;
    case EntryKind::kFile:
    case EntryKind::kHardlink: type = S_IFREG; break;
    case EntryKind::kSymlink: type = S_IFLNK; break;
    case EntryKind::kChar:
    case EntryKind::kWhiteout: type = S_IFCHR; break;
    case EntryKind::kBlock: type = S_IFBLK; break;
    case EntryKind::kFifo: type = S_IFIFO; break;
    case EntryKind::kSocket: type = S_IFSOCK; break;
  }
  return type | (mode & 07777);
}

bool path_less(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x == y) continue;
    if (x == '/') return true;  // '/' sorts before every byte a name can hold
    if (y == '/') return false;
    return x < y;
  }
  return a.size() < b.size();
}

std::string_view parent_path(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == 0 || slash == std::string_view::npos) return "/";
  return path.substr(0, slash);
}

std::string_view base_name(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

bool is_overlay_xattr(std::string_view name) {
  return name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") ||
         name.starts_with("user.fuseoverlayfs.");
}

bool valid_object_name(std::string_view name) {
  if (name.size() < 32) return false;
  for (size_t i = 0; i < 32; ++i) {
    char c = name[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  if (name.size() == 32) return true;
  std::string_view rest = name.substr(32);
  unsigned n = 0;
  return rest.size() >= 2 && rest[0] == '-' && parse_int(rest.substr(1), &n) && n > 0;
}

bool normalize(Manifest* m, std::string* error) {
  std::stable_sort(m->entries.begin(), m->entries.end(),
                   [](const Entry& a, const Entry& b) { return path_less(a.path, b.path); });
  for (Entry& e : m->entries) {
    std::sort(e.xattrs.begin(), e.xattrs.end());
  }
  return validate(*m, error);
}

namespace {

// validate(), also telling which entry broke a rule (*bad_index), so decode can name its line.
bool validate_at(const Manifest& m, std::string* error, size_t* bad_index) {
  *bad_index = 0;
  if (m.entries.empty() || m.entries[0].path != "/" || m.entries[0].kind != EntryKind::kDir) {
    *error = "the first entry must be the root directory '/'";
    return false;
  }
  std::unordered_map<std::string_view, EntryKind> kinds;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    auto bad = [&](const std::string& why) {
      *error = "entry '" + e.path + "': " + why;
      *bad_index = i;
      return false;
    };
    if (!valid_path(e.path)) return bad("invalid path");
    if (i > 0 && !path_less(m.entries[i - 1].path, e.path)) {
      return bad(m.entries[i - 1].path == e.path ? "duplicate path" : "entries out of order");
    }
    if (i > 0) {
      auto parent = kinds.find(parent_path(e.path));
      if (parent == kinds.end() || parent->second != EntryKind::kDir) {
        return bad("its parent is not a directory of the layer");
      }
    }
    if (e.mode > 07777) return bad("mode out of range");
    if (e.mtime_nsec >= 1000000000u) return bad("nanoseconds out of range");
    if (e.kind == EntryKind::kFile && !valid_object_name(e.object)) return bad("bad object name");
    if (e.kind == EntryKind::kSymlink && e.target.empty()) return bad("empty symlink target");
    if (e.opaque && e.kind != EntryKind::kDir) return bad("only a directory can be opaque");
    if (e.kind == EntryKind::kHardlink) {
      auto t = kinds.find(e.target);
      if (t == kinds.end() || t->second != EntryKind::kFile) {
        return bad("a hard link must name an earlier regular file of the layer");
      }
    }
    if (!has_metadata(e.kind) && !e.xattrs.empty()) return bad("xattrs on a link or whiteout");
    for (size_t x = 0; x < e.xattrs.size(); ++x) {
      if (e.xattrs[x].first.empty()) return bad("empty xattr name");
      if (x > 0 && !(e.xattrs[x - 1].first < e.xattrs[x].first)) return bad("xattrs not sorted");
    }
    kinds.emplace(e.path, e.kind);
  }
  return true;
}

}  // namespace

bool validate(const Manifest& m, std::string* error) {
  size_t bad_index = 0;
  return validate_at(m, error, &bad_index);
}

std::string encode(const Manifest& m) {
  std::string out;
  out.reserve(m.entries.size() * 96 + 32);
  out += kHeader;
  out += std::to_string(kManifestVersion);
  out += '\n';
  char buf[96];
  for (const Entry& e : m.entries) {
    out.push_back(static_cast<char>(e.kind));
    out.push_back(' ');
    append_escaped(&out, e.path);
    if (e.kind == EntryKind::kWhiteout) {
      out.push_back('\n');
      continue;
    }
    if (e.kind == EntryKind::kHardlink) {
      out.push_back(' ');
      append_escaped(&out, e.target);
      out.push_back('\n');
      continue;
    }
    std::snprintf(buf, sizeof buf, " %04o %" PRIu32 " %" PRIu32 " %" PRId64 ".%09" PRIu32, e.mode,
                  e.uid, e.gid, e.mtime_sec, e.mtime_nsec);
    out += buf;
    switch (e.kind) {
      case EntryKind::kFile:
        std::snprintf(buf, sizeof buf, " %" PRIu64 " ", e.size);
        out += buf;
        out += e.object;
        break;
      case EntryKind::kSymlink:
        out.push_back(' ');
        append_escaped(&out, e.target);
        break;
      case EntryKind::kChar:
      case EntryKind::kBlock:
        std::snprintf(buf, sizeof buf, " %" PRIu32 ":%" PRIu32, e.rdev_major, e.rdev_minor);
        out += buf;
        break;
      default: break;
    }
    if (e.opaque) out += " opaque";
    for (const auto& [name, value] : e.xattrs) {
      out += " x:";
      append_escaped(&out, name);
      out.push_back('=');
      append_escaped(&out, value);
    }
    out.push_back('\n');
  }
  return out;
}

bool decode(std::string_view bytes, Manifest* m, std::string* error) {
  m->entries.clear();
  size_t nl = bytes.find('\n');
  if (nl == std::string_view::npos || bytes.substr(0, kHeader.size()) != kHeader) {
    *error = "line 1: not a lamina manifest (no 'lamina-manifest' header)";
    return false;
  }
  int version = 0;
  if (!parse_int(bytes.substr(kHeader.size(), nl - kHeader.size()), &version) ||
      version != kManifestVersion) {
    *error = "line 1: manifest version '" +
             std::string(bytes.substr(kHeader.size(), nl - kHeader.size())) +
             "' is not supported (this lamina reads version " + std::to_string(kManifestVersion) +
             ")";
    return false;
  }
  if (bytes.back() != '\n') {
    *error = "truncated manifest (no final newline)";
    return false;
  }
  size_t line_no = 1;
  for (size_t pos = nl + 1; pos < bytes.size();) {
    ++line_no;
    size_t end = bytes.find('\n', pos);
    Entry e;
    std::string why;
    if (!parse_line(bytes.substr(pos, end - pos), &e, &why)) {
      *error = fail_at(line_no, why);
      return false;
    }
    m->entries.push_back(std::move(e));
    pos = end + 1;
  }
  // Entry i is on line i + 2 (line 1 is the header).
  size_t bad_index = 0;
  std::string why;
  if (!validate_at(*m, &why, &bad_index)) {
    *error = fail_at(bad_index + 2, why);
    return false;
  }
  // Canonical form: re-encoding must give the same bytes (no second spelling of a manifest).
  const std::string canonical = encode(*m);
  if (canonical != bytes) {
    size_t diff = 0;
    while (diff < canonical.size() && diff < bytes.size() && canonical[diff] == bytes[diff]) {
      ++diff;
    }
    size_t line = 1 + static_cast<size_t>(std::count(bytes.begin(), bytes.begin() + diff, '\n'));
    *error = fail_at(line, "not in canonical form");
    return false;
  }
  return true;
}

}  // namespace lamina::store
