// SPDX-License-Identifier: Apache-2.0
// The whole loop: `lamina mount` with an upper -> every kind of change -> commit -> export ->
// import into a second store (standing in for another machine) -> the imported image mounts as
// the same tree, and exporting it again gives the very same blobs (for every compression).

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "integration/tree_walker.h"
#include "store/store_support.h"
#include "write/write_support.h"

namespace lamina::st {
namespace {

namespace s = wt::step;
using wt::kL1;
using wt::kL2;

void ok(const it::ProcResult& r, const std::string& what) {
  INFO(what << ": " << r.describe() << "\nstdout: " << r.out);
  REQUIRE(r.succeeded());
}

std::set<std::string> blob_names(const std::string& layout) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(layout + "/blobs/sha256")) {
    out.insert(e.path().filename().string());
  }
  return out;
}

// path -> mtime in whole seconds (what an OCI layer keeps).
std::map<std::string, long> mtimes(const std::string& root) {
  std::map<std::string, long> out;
  for (const auto& e : it::walk_tree(root, {false, false})) out[e.path] = e.st.st_mtim.tv_sec;
  return out;
}

TEST_CASE("round trip through OCI: mount, change, commit, export, import elsewhere", "[oci]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir t;
  const std::string a = t.sub("store-a"), b = t.sub("store-b");
  wt::TreeSpec spec;
  spec.dir("etc", kL2 | kL1)
      .file("etc/conf", "key=value\n", kL2, 0644, 0, 0, {{"user.orig", "o"}})
      .file("etc/old", "old\n", kL2)
      .file("bin/tool", "#!/bin/sh\n", kL2, 04755)
      .hardlink("bin/tool-link", "bin/tool", kL2)
      .symlink("bin/sh", "tool", kL2)
      .dir("docs", kL2)
      .file("docs/a", "a\n", kL2)
      .file("docs/b", "b\n", kL2)
      .sparse("big.img", kL2, 4 << 20, {{8192, "x"}})
      .fifo("run/fifo", kL1)
      .dir("home/u", kL1, 0700, 1000, 1000)
      .file("home/u/n", "n\n", kL1, 0600, 1000, 1000);
  const std::string l1 = t.mkdir("l1"), l2 = t.mkdir("l2"), plain = t.mkdir("plain");
  spec.build_layer(l2, kL2);
  spec.build_layer(l1, kL1);
  spec.build_merged(plain);
  ok(lamina(a, {"commit", "-q", "--upper", l2, "--tag", "rt/l2"}), "commit l2");
  ok(lamina(a, {"commit", "-q", "--upper", l1, "--image", "rt/l2", "--tag", "rt/base"}),
     "commit l1");
  const std::string up = t.mkdir("up"), work = t.mkdir("work");
  {
    ImageMount m(a, "rt/base", t.mkdir("m"), {"--upper", up, "--work", work});
    wt::Ctx p(plain, "plain"), c(m.path(), "lamina mount");
    auto reports = wt::run_lockstep(
        {s::write_file("etc/new", "new\n"), s::unlink("etc/old"), s::unlink("docs/a"),
         s::unlink("docs/b"), s::rmdir("docs"), s::mkdir("docs"),
         s::write_file("docs/fresh", "fresh\n"), s::rename("etc", "etc2"),
         s::chmod("big.img", 0600), s::setxattr("bin/tool", "user.k", "v"),
         s::link("etc2/new", "etc2/new-link"), s::symlink("/abs/target", "abs"),
         s::mknod("run/fifo2", S_IFIFO | 0640)},
        p, c);
    p.close_all();
    c.close_all();
    std::string joined;
    for (const auto& r : reports) joined += r + "\n";
    INFO(joined);
    REQUIRE(reports.empty());
  }
  ok(lamina(a, {"commit", "-q", "--upper", up, "--image", "rt/base", "--tag", "rt/app"}),
     "commit upper");
  for (const char* comp : {"gzip", "zstd", "none"}) {
    SECTION(comp) {
      const std::string lay1 = t.sub(fmt::format("lay1-{}", comp));
      const std::string lay2 = t.sub(fmt::format("lay2-{}", comp));
      ok(lamina(a, {"export", "rt/app", "--oci", lay1 + ":app", "--compress", comp, "-q"}),
         "export");
      ok(lamina(b, {"import", "--oci", lay1 + ":app", "--tag", "copied/app"}), "import");
      ImageMount orig(a, "rt/app", t.mkdir(fmt::format("orig-{}", comp)));
      ImageMount copy(b, "copied/app", t.mkdir(fmt::format("copy-{}", comp)));
      std::string d = wt::compare_trees(orig.path(), copy.path(), "exported", "imported");
      INFO(d);
      CHECK(d.empty());
      d = wt::compare_trees(plain, copy.path(), "plain dir", "imported");
      INFO(d);
      CHECK(d.empty());
      CHECK(mtimes(orig.path()) == mtimes(copy.path()));
      // Export of what was imported: the same bytes.
      ok(lamina(b, {"export", "copied/app", "--oci", lay2 + ":app", "--compress", comp, "-q"}),
         "re-export");
      CHECK(blob_names(lay1) == blob_names(lay2));
      auto fsck = lamina(b, {"fsck"});
      INFO(fsck.out << fsck.err);
      CHECK(fsck.succeeded());
    }
  }
}

}  // namespace
}  // namespace lamina::st
