// SPDX-License-Identifier: Apache-2.0
#include "integration/scenarios.h"

#include <fmt/format.h>
#include <sys/sysmacros.h>

#include <map>
#include <random>
#include <set>
#include <vector>

namespace lamina::it {
namespace {

void add_del(StackSpec& s) {
  const size_t top = s.size() - 1;
  for (size_t i = 0; i < top; ++i) {
    s[i].file("del/f", fmt::format("version {} of f", i));
    s[i].file(fmt::format("del/dir/x{}", i), "x");
    s[i].file("rootdel", fmt::format("root-level {}", i));
  }
  s[0].file("del/keep", "kept");
  s[top].whiteout("del/f");
  s[top].whiteout("del/dir");
  s[top].whiteout("rootdel");
}

void add_recreate(StackSpec& s) {
  const size_t top = s.size() - 1;
  if (s.size() >= 3) {
    for (size_t i = 0; i + 1 < top; ++i) {
      s[i].file("re/f", fmt::format("orig {}", i));
      s[i].file(fmt::format("re/d/a{}", i), "a");
      s[i].file("re/g", "g was a file");
    }
    s[top - 1].whiteout("re/f");
    s[top - 1].whiteout("re/d");
    s[top - 1].whiteout("re/g");
    s[top].symlink("re/g", "now a symlink");
  } else {
    // Two layers: the whiteouts sit in the bottom layer, over nothing.
    s[0].whiteout("re/f");
    s[0].whiteout("re/d");
  }
  s[top].file("re/f", "re-created", 0600, {7, 8});
  s[top].dir("re/d", 0711);  // not opaque: the whiteout below must still stop the merge
  s[top].file("re/d/c", "c");
}

void add_opaque(StackSpec& s) {
  const size_t top = s.size() - 1;
  s[0].file("opq/d/a", "a");
  s[0].file("opq/d/b", "b");
  s[0].file("opq/d/sub/c", "c");
  s[0].file("opq/e", "e is a file below");
  s[0].opaque_dir("opq/bottom");
  s[0].file("opq/bottom/f", "f");
  s[1].opaque_dir("opq/d", 0750, {10, 20});
  s[1].file("opq/d/new", "new");
  s[1].whiteout("opq/d/a");  // redundant inside an opaque dir; must stay hidden
  s[1].opaque_dir("opq/e");
  s[1].file("opq/e/x", "x");
  if (s.size() >= 3) {
    s[2].file("opq/d/after", "merges with layer 1 only");
    s[2].file("opq/d/sub/s2", "sub re-created below an opaque parent");
  }
  s[top].opaque_dir("opq/fresh");
  s[top].file("opq/fresh/only", "nothing below");
}

void add_replace(StackSpec& s) {
  s[0].file("repl/p/x", "x");
  s[0].file("repl/p/sub/y", "y");
  s[0].file("repl/q", "q0");
  s[0].file("repl/r/z", "z");
  s[0].file("repl/s", "s was a file");
  s[0].file("repl/t/u", "t was a dir");
  s[1].file("repl/p", "p is a file now", 0600);
  s[1].file("repl/q/y", "q is a dir now");
  s[1].symlink("repl/r", "p");
  s[1].fifo("repl/s", 0600);
  s[1].fifo("repl/t", 0640);
  if (s.size() >= 3) {
    // A dir over a file over a dir: the file in between hides layer 0's children.
    s[2].dir("repl/p", 0755);
    s[2].file("repl/p/z", "z");
    s[2].file("repl/q", "q is a file again");
  }
}

void add_deep(StackSpec& s) {
  const size_t top = s.size() - 1;
  for (size_t i = 0; i < s.size(); ++i) {
    s[i].file(fmt::format("deep/a/b/c/f{}", i), fmt::format("c{}", i));
    s[i].file(fmt::format("deep/a/b/g{}", i), fmt::format("g{}", i));
    s[i].file(fmt::format("deep/a/h{}", i), fmt::format("h{}", i));
    s[i].file("deep/a/b/c/common", fmt::format("common from layer {}", i), 0600 + i);
  }
  s[0].dir("deep/a/b", 0700, {1000, 1000}, {{"user.layer", "0"}});
  s[top].dir("deep/a/b", 0750, {123, 456}, {{"user.layer", "top"}, {"user.extra", "1"}});
  s[top].whiteout("deep/a/b/c/f0");
  if (s.size() >= 3) s[1].whiteout("deep/a/h0");
}

void add_links(StackSpec& s) {
  const size_t top = s.size() - 1;
  s[0].file("links/h1", "hard-linked three times", 0640, {11, 12});
  s[0].hardlink("links/h2", "links/h1");
  s[0].hardlink("links/sub/h3", "links/h1");
  s[0].file("links/k1", "hard-linked twice", 0600);
  s[0].hardlink("links/k2", "links/k1");
  s[0].file("links/solo", "solo");
  s[top].whiteout("links/sub/h3");
  s[top].file("links/t1", "linked in the top layer");
  s[top].hardlink("links/t2", "links/t1");
  if (s.size() >= 3) s[1].file("links/h2", "h2 replaced above its link");
}

void add_symlinks(StackSpec& s) {
  const size_t top = s.size() - 1;
  s[0].symlink("sym/abs", "/etc/passwd");
  s[0].symlink("sym/rel", "../deep/a");
  s[0].symlink("sym/dangling", "does/not/exist");
  s[0].symlink("sym/todir", "dir");
  s[0].file("sym/dir/f", "in dir");
  s[0].symlink("sym/self", "self");
  s[0].symlink("sym/long", std::string(200, 'x') + "/" + std::string(100, 'y'));
  s[0].symlink("sym/root", "/");
  s[0].symlink("sym/owned", "t", {5, 6});
  s[0].file("sym/dir2/x", "hidden by a symlink above");
  s[top].symlink("sym/dir2", "/nonexistent/dir");
  s[top].symlink("sym/dotdot", "../../../../../../../../etc");
}

void add_special(StackSpec& s) {
  const size_t top = s.size() - 1;
  s[0].fifo("special/fifo", 0640, {3, 4});
  s[0].chardev("special/null", makedev(1, 3), 0666);
  s[0].file("special/suid", "s", 04755);
  s[0].file("special/sgid", "s", 02711);
  s[0].file("special/zero", "", 0000);
  s[0].dir("special/sticky", 01777);
  s[0].file("special/owned", "o", 0644, {1234, 5678});
  s[0].file("special/xf", "x", 0644, {},
            {{"user.a", "1"}, {"user.bin", std::string("\0\x01\xff", 3)}, {"user.empty", ""}});
  s[0].dir("special/xd", 0755, {}, {{"user.d", "lower"}, {"user.only_lower", "1"}});
  s[0].big_file("special/big1m", (1 << 20) + 7, 42);
  s[0].file("special/sp ace", "space");
  s[0].file("special/ünïcödé", "unicode");
  s[0].file("special/-dash", "dash");
  s[0].file("special/" + std::string(255, 'n'), "max name");
  s[0].file("special/" + std::string(252, 'm'), ".wh. + this name is longer than NAME_MAX");
  s[0].file("special/.whatever", "not a whiteout: no dot after .wh");
  s[0].file("special/.wh", "not a whiteout either");
  s[0].file("special/...", "dots");
  s[top].dir("special/xd", 0755, {}, {{"user.d", "top"}});
  s[top].file("special/xbig", "x", 0644, {}, {{"user.big", std::string(2000, 'v')}});
  s[top].chardev("special/tty", makedev(5, 0), 0620);
}

void add_ghost(StackSpec& s) {
  const size_t top = s.size() - 1;
  s[0].whiteout("ghost/nope");
  s[0].whiteout("ghostroot");
  s[0].file("ghost/present0", "p");
  s[top].whiteout("ghost/none2");
  s[top].file("ghost/present", "p");
}

void add_root(StackSpec& s) {
  const size_t top = s.size() - 1;
  s[0].dir("", 0700, {1, 1}, {{"user.root", "bottom"}});
  s[0].file("rootfile", "bottom");
  s[top].dir("", 0751, {0, 0}, {{"user.root", "top"}});
  s[top].file("rootfile", "top", 0640);
}

}  // namespace

void add_scenarios(StackSpec& s) {
  add_root(s);
  add_del(s);
  add_recreate(s);
  add_opaque(s);
  add_replace(s);
  add_deep(s);
  add_links(s);
  add_symlinks(s);
  add_special(s);
  add_ghost(s);
}

void add_random(StackSpec& s, uint64_t seed, const std::string& prefix, int ops_per_layer) {
  std::mt19937_64 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  static const char* const kNames[] = {"a", "b", "c", "d"};
  auto random_path = [&] {
    std::string p = prefix;
    size_t depth = 1 + pick(3);
    for (size_t i = 0; i < depth; ++i) p += std::string("/") + kNames[pick(4)];
    return p;
  };
  static const mode_t kFileModes[] = {0644, 0600, 0755, 0444, 0640};
  static const mode_t kDirModes[] = {0755, 0700, 0750, 0711};
  static const Owner kOwners[] = {{0, 0}, {1000, 1000}, {33, 44}};

  for (size_t li = 0; li < s.size(); ++li) {
    LayerSpec& layer = s[li];
    // What this layer holds at each path: 'd' dir, 'f' file, 'o' other non-dir, 'w' whiteout.
    std::map<std::string, char> kind;
    std::set<std::string> opaque;
    std::vector<std::string> files;
    // True if path can become a new entry of this layer (its ancestors are, or can become,
    // directories of this layer).
    auto free_path = [&](const std::string& p) {
      if (kind.count(p)) return false;
      for (auto slash = p.find('/', prefix.size() + 1); slash != std::string::npos;
           slash = p.find('/', slash + 1)) {
        auto it = kind.find(p.substr(0, slash));
        if (it != kind.end() && it->second != 'd') return false;
      }
      return true;
    };
    auto claim = [&](const std::string& p, char k) {
      for (auto slash = p.find('/', prefix.size() + 1); slash != std::string::npos;
           slash = p.find('/', slash + 1)) {
        kind[p.substr(0, slash)] = 'd';
      }
      kind[p] = k;
    };
    for (int n = 0; n < ops_per_layer; ++n) {
      std::string p = random_path();
      size_t what = pick(100);
      if (what < 35) {
        if (!free_path(p)) continue;
        std::string content = pick(5) == 0 ? "" : fmt::format("L{} {} {}", li, p, rng() % 1000);
        Xattrs x;
        if (pick(4) == 0) x.push_back({"user.r", std::to_string(rng() % 100)});
        layer.file(p, content, kFileModes[pick(5)], kOwners[pick(3)], x);
        claim(p, 'f');
        files.push_back(p);
      } else if (what < 50) {
        auto it = kind.find(p);
        if (it != kind.end() && it->second != 'd') continue;
        if (it == kind.end() && !free_path(p)) continue;
        Xattrs x;
        if (pick(3) == 0) x.push_back({"user.dir", fmt::format("L{}", li)});
        layer.dir(p, kDirModes[pick(4)], kOwners[pick(3)], x);
        claim(p, 'd');
      } else if (what < 72) {
        if (!free_path(p)) continue;
        layer.whiteout(p);
        claim(p, 'w');
      } else if (what < 80) {
        auto it = kind.find(p);
        if (it != kind.end() && it->second != 'd') continue;
        if (it == kind.end() && !free_path(p)) continue;
        if (opaque.count(p)) continue;
        layer.opaque_dir(p, kDirModes[pick(4)]);
        claim(p, 'd');
        opaque.insert(p);
      } else if (what < 90) {
        if (!free_path(p)) continue;
        static const char* const kTargets[] = {"a", "../b", "/etc", "nowhere", "../../a/b"};
        layer.symlink(p, kTargets[pick(5)]);
        claim(p, 'o');
      } else if (what < 96) {
        if (files.empty() || !free_path(p)) continue;
        layer.hardlink(p, files[pick(files.size())]);
        claim(p, 'f');
      } else {
        if (!free_path(p)) continue;
        layer.fifo(p, 0644);
        claim(p, 'o');
      }
    }
  }
}

FormChooser mixed_forms(uint64_t seed, bool per_entry) {
  static const WhiteoutForm kWh[] = {WhiteoutForm::kCharDev, WhiteoutForm::kWhFile,
                                     WhiteoutForm::kTrustedXattr, WhiteoutForm::kUserXattr};
  static const OpaqueForm kOpq[] = {OpaqueForm::kTrustedY, OpaqueForm::kUserY, OpaqueForm::kWhOpq};
  return [seed, per_entry](size_t layer, const std::string& path) {
    uint64_t k = seed * 7 + layer * 5;
    if (per_entry) {
      k = std::hash<std::string>{}(path) ^ (seed * 0x9E3779B97F4A7C15ull) ^ (layer * 131);
    }
    return Forms{kWh[k % 4], kOpq[(k / 4) % 3]};
  };
}

}  // namespace lamina::it
