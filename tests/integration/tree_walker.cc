// SPDX-License-Identifier: Apache-2.0
#include "integration/tree_walker.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "integration/mount_helpers.h"

namespace lamina::it {
namespace {

// Escapes unprintable bytes as \xNN and writes a run of more than 8 equal bytes as
// "c{*N}", so that 255-byte names and 2,000-byte xattr values stay readable in a diff.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t run = 1;
    while (i + run < s.size() && s[i + run] == s[i]) ++run;
    unsigned char c = static_cast<unsigned char>(s[i]);
    std::string one = (c < 0x20 || c >= 0x7f || c == '\\' || c == '"' || c == '{')
                          ? fmt::format("\\x{:02x}", c)
                          : std::string(1, static_cast<char>(c));
    if (run > 8) {
      out += one + fmt::format("{{*{}}}", run);
      i += run;
    } else {
      out += one;
      ++i;
    }
  }
  return out;
}

char type_char(mode_t m) {
  if (S_ISREG(m)) return 'f';
  if (S_ISDIR(m)) return 'd';
  if (S_ISLNK(m)) return 'l';
  if (S_ISFIFO(m)) return 'p';
  if (S_ISCHR(m)) return 'c';
  if (S_ISBLK(m)) return 'b';
  if (S_ISSOCK(m)) return 's';
  return '?';
}

unsigned char dtype_of(mode_t m) {
  if (S_ISREG(m)) return DT_REG;
  if (S_ISDIR(m)) return DT_DIR;
  if (S_ISLNK(m)) return DT_LNK;
  if (S_ISFIFO(m)) return DT_FIFO;
  if (S_ISCHR(m)) return DT_CHR;
  if (S_ISBLK(m)) return DT_BLK;
  if (S_ISSOCK(m)) return DT_SOCK;
  return DT_UNKNOWN;
}

void read_xattrs(const std::string& full, Entry& e) {
  std::vector<char> names(4096);
  ssize_t n;
  for (;;) {
    n = ::llistxattr(full.c_str(), names.data(), names.size());
    if (n >= 0) break;
    if (errno == ERANGE) {
      names.resize(names.size() * 4);
      continue;
    }
    if (errno != ENOTSUP) e.errors.push_back("llistxattr: " + errno_name(errno));
    return;
  }
  for (ssize_t off = 0; off < n;) {
    std::string name(names.data() + off);
    off += static_cast<ssize_t>(name.size()) + 1;
    if (name.empty()) continue;
    e.xattr_names.push_back(name);
    if (name.rfind("user.", 0) != 0) continue;
    std::vector<char> val(256);
    ssize_t vn;
    for (;;) {
      vn = ::lgetxattr(full.c_str(), name.c_str(), val.data(), val.size());
      if (vn >= 0 || errno != ERANGE) break;
      val.resize(val.size() * 4);
    }
    if (vn < 0) {
      e.errors.push_back("lgetxattr " + name + ": " + errno_name(errno));
      continue;
    }
    e.user_xattrs.emplace_back(name, std::string(val.data(), static_cast<size_t>(vn)));
  }
  std::sort(e.user_xattrs.begin(), e.user_xattrs.end());
  std::sort(e.xattr_names.begin(), e.xattr_names.end());
}

void hash_contents(const std::string& full, Entry& e) {
  int fd = ::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    e.errors.push_back("open: " + errno_name(errno));
    return;
  }
  std::vector<char> buf(1 << 20);
  uint64_t h = fnv1a(nullptr, 0);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      e.errors.push_back("read: " + errno_name(errno));
      break;
    }
    if (n == 0) break;
    h = fnv1a(buf.data(), static_cast<size_t>(n), h);
    e.bytes_read += static_cast<uint64_t>(n);
  }
  ::close(fd);
  e.content_hash = h;
}

void walk_dir(const std::string& root, const std::string& rel, const WalkOptions& opts,
              std::vector<Entry>& out) {
  std::string dir_full = rel == "." ? root : root + "/" + rel;
  int fd = ::open(dir_full.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    Entry e;
    e.path = rel + "/<opendir>";
    e.errors.push_back("open(O_DIRECTORY): " + errno_name(errno));
    out.push_back(std::move(e));
    return;
  }
  DIR* d = ::fdopendir(fd);
  std::vector<std::pair<std::string, std::pair<unsigned char, ino_t>>> children;
  for (;;) {
    errno = 0;
    struct dirent* de = ::readdir(d);
    if (de == nullptr) {
      if (errno != 0) {
        Entry e;
        e.path = rel + "/<readdir>";
        e.errors.push_back("readdir: " + errno_name(errno));
        out.push_back(std::move(e));
      }
      break;
    }
    if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
    children.push_back({de->d_name, {de->d_type, de->d_ino}});
  }
  ::closedir(d);
  std::sort(children.begin(), children.end());
  for (size_t i = 1; i < children.size(); ++i) {
    if (children[i].first == children[i - 1].first) {
      Entry e;
      e.path = (rel == "." ? "" : rel + "/") + children[i].first;
      e.errors.push_back("readdir returned this name twice");
      out.push_back(std::move(e));
    }
  }
  for (const auto& [name, info] : children) {
    std::string child_rel = rel == "." ? name : rel;
    if (rel != ".") child_rel.append("/").append(name);
    std::string full = root;
    full.append("/").append(child_rel);
    Entry e;
    e.path = child_rel;
    e.d_type = info.first;
    e.d_ino = info.second;
    if (::lstat(full.c_str(), &e.st) != 0) {
      e.errors.push_back("lstat: " + errno_name(errno));
      out.push_back(std::move(e));
      continue;
    }
    e.stat_ok = true;
    if (S_ISLNK(e.st.st_mode)) {
      std::vector<char> buf(PATH_MAX + 1);
      ssize_t n = ::readlink(full.c_str(), buf.data(), buf.size());
      if (n < 0) {
        e.errors.push_back("readlink: " + errno_name(errno));
      } else {
        e.target.assign(buf.data(), static_cast<size_t>(n));
      }
    }
    if (opts.read_xattrs) read_xattrs(full, e);
    if (opts.read_contents && S_ISREG(e.st.st_mode)) hash_contents(full, e);
    bool is_dir = S_ISDIR(e.st.st_mode);
    out.push_back(std::move(e));
    if (is_dir) walk_dir(root, child_rel, opts, out);
  }
}

}  // namespace

uint64_t fnv1a(const void* data, size_t size, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

std::vector<Entry> walk_tree(const std::string& root, const WalkOptions& opts) {
  std::vector<Entry> out;
  Entry r;
  r.path = ".";
  if (::lstat(root.c_str(), &r.st) != 0) {
    r.errors.push_back("lstat: " + errno_name(errno));
    out.push_back(std::move(r));
    return out;
  }
  r.stat_ok = true;
  if (opts.read_xattrs) read_xattrs(root, r);
  out.push_back(std::move(r));
  walk_dir(root, ".", opts, out);
  std::stable_sort(out.begin(), out.end(),
                   [](const Entry& a, const Entry& b) { return a.path < b.path; });
  return out;
}

std::string format_entry(const Entry& e) {
  std::string s = printable(e.path);
  if (!e.stat_ok) {
    s += "  ERROR";
  } else {
    const auto& st = e.st;
    s += fmt::format("  {} mode={:04o} uid={} gid={}", type_char(st.st_mode), st.st_mode & 07777,
                     st.st_uid, st.st_gid);
    if (!S_ISDIR(st.st_mode)) s += fmt::format(" nlink={}", st.st_nlink);
    if (S_ISREG(st.st_mode)) {
      s += fmt::format(" size={} hash={:016x}", st.st_size, e.content_hash);
      if (static_cast<uint64_t>(st.st_size) != e.bytes_read && e.errors.empty()) {
        s += fmt::format(" read={}", e.bytes_read);
      }
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      s += fmt::format(" rdev={}:{}", major(st.st_rdev), minor(st.st_rdev));
    }
    if (S_ISLNK(st.st_mode)) {
      s += " -> \"" + printable(e.target) + "\"";
      if (static_cast<size_t>(st.st_size) != e.target.size()) {
        s += fmt::format(" (st_size={})", st.st_size);
      }
    }
  }
  if (!e.user_xattrs.empty()) {
    s += " xattrs{";
    for (size_t i = 0; i < e.user_xattrs.size(); ++i) {
      if (i) s += ',';
      s += e.user_xattrs[i].first + "=\"" + printable(e.user_xattrs[i].second) + "\"";
    }
    s += "}";
  }
  for (const auto& err : e.errors) s += " ERROR[" + err + "]";
  return s;
}

std::vector<std::string> listing(const std::vector<Entry>& entries) {
  std::vector<std::string> lines;
  lines.reserve(entries.size());
  for (const auto& e : entries) lines.push_back(format_entry(e));
  return lines;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

std::string diff_listings(const std::vector<std::string>& expected,
                          const std::vector<std::string>& actual, const std::string& expected_name,
                          const std::string& actual_name, size_t max_diffs) {
  // Lines are keyed by their path (the text before the first two spaces); a repeated path
  // (an entry listed twice) gets a "#n" suffix so that it shows up as a difference too.
  auto index = [](const std::vector<std::string>& lines) {
    std::map<std::string, std::string> by_key;
    for (const auto& line : lines) {
      std::string key = line.substr(0, line.find("  "));
      std::string k = key;
      for (int n = 2; by_key.count(k); ++n) k = key + "#" + std::to_string(n);
      by_key[k] = line;
    }
    return by_key;
  };
  auto want = index(expected);
  auto got = index(actual);
  std::string report;
  size_t diffs = 0;
  auto add = [&](const std::string& text) {
    if (diffs < max_diffs) report += text;
    ++diffs;
  };
  auto w = want.begin();
  auto g = got.begin();
  while (w != want.end() || g != got.end()) {
    if (g == got.end() || (w != want.end() && w->first < g->first)) {
      add(fmt::format("  only in {:<8}: {}\n", expected_name, w->second));
      ++w;
    } else if (w == want.end() || g->first < w->first) {
      add(fmt::format("  only in {:<8}: {}\n", actual_name, g->second));
      ++g;
    } else {
      if (w->second != g->second) {
        add(fmt::format("  differs:\n    {:<8}: {}\n    {:<8}: {}\n", expected_name, w->second,
                        actual_name, g->second));
      }
      ++w;
      ++g;
    }
  }
  if (diffs == 0) return "";
  std::string head = fmt::format("{} difference(s) between {} ({} entries) and {} ({} entries)",
                                 diffs, expected_name, expected.size(), actual_name, actual.size());
  if (diffs > max_diffs) head += fmt::format(", first {} shown", max_diffs);
  return head + ":\n" + report;
}

std::vector<std::string> overlay_leaks(const std::string& root, const std::vector<Entry>& entries) {
  static const char* const kPrivate[] = {"trusted.overlay.opaque", "user.overlay.opaque",
                                         "trusted.overlay.whiteout", "user.overlay.whiteout"};
  std::vector<std::string> problems;
  for (const auto& e : entries) {
    if (e.stat_ok && (S_ISDIR(e.st.st_mode) || S_ISREG(e.st.st_mode))) {
      std::string full = e.path == "." ? root : root + "/" + e.path;
      char buf[64];
      for (const char* name : kPrivate) {
        ssize_t n = ::lgetxattr(full.c_str(), name, buf, sizeof buf);
        if (n >= 0) {
          problems.push_back(fmt::format("{}: getxattr({}) succeeds with \"{}\"", e.path, name,
                                         printable(std::string(buf, static_cast<size_t>(n)))));
        }
      }
    }
    std::string base = e.path.substr(e.path.find_last_of('/') + 1);
    if (base.rfind(".wh.", 0) == 0) problems.push_back(e.path + ": whiteout name is visible");
    for (const auto& x : e.xattr_names) {
      if (x.rfind("trusted.overlay.", 0) == 0 || x.rfind("user.overlay.", 0) == 0) {
        problems.push_back(e.path + ": private xattr " + x + " is listed");
      }
    }
    if (e.stat_ok && e.path != "." && e.d_type != DT_UNKNOWN &&
        e.d_type != dtype_of(e.st.st_mode)) {
      problems.push_back(fmt::format("{}: readdir d_type {} but lstat type '{}'", e.path,
                                     static_cast<int>(e.d_type), type_char(e.st.st_mode)));
    }
  }
  return problems;
}

}  // namespace lamina::it
