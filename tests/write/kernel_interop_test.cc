// SPDX-License-Identifier: Apache-2.0
// Kernel overlayfs interop of the upper directory, both ways.
//
// laminafs -> kernel: operations through laminafs (creates, deletes of lower files and
// directories, mkdir over a deleted directory, renames of lower directories with children,
// chmod/chown, xattrs, links), unmount, mount kernel overlayfs (redirect_dir=on, index=off,
// metacopy=off, a fresh workdir; laminafs then runs with metacopy=off too) over the same
// lowers and upper: the tree must be identical.
// Then a second round of operations through the kernel, and laminafs must show what the
// kernel showed.
//
// kernel -> laminafs: the same two rounds with the roles swapped: kernel overlayfs (as root:
// char 0/0 whiteouts, trusted.overlay.opaque, redirects, origin xattrs) writes first.
//
// Every round also runs on a plain directory in lockstep, so each implementation is checked
// against POSIX as well as against the other.

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "write/write_support.h"

namespace lamina::wt {
namespace {

namespace s = step;

const char* const kKernelOptions = "redirect_dir=on,index=off,metacopy=off";

TreeSpec interop_tree() {
  TreeSpec t;
  t.dir("docs", kL2 | kL1)
      .file("docs/readme.txt", "readme\n", kL2)
      .file("docs/guide/intro.txt", "intro\n", kL2)
      .file("docs/guide/ch1.txt", "chapter 1\n", kL2)
      .file("docs/guide/ch2.txt", "chapter 2 (L1)\n", kL1)
      .dir("docs/guide", kL2 | kL1)
      .file("bin/tool", "#!/bin/sh\necho tool\n", kL2, 0755)
      .file("bin/helper", "#!/bin/sh\necho helper\n", kL2, 0755)
      .dir("etc", kL2 | kUp)
      .file("etc/conf", "key=value\n", kL2, 0644, 0, 0, {{"user.orig", "o"}})
      .file("etc/old.conf", "old\n", kL2)
      .file("etc/new.conf", "new\n", kUp)
      .file("var/log/app.log", "log line\n", kL2, 0640)
      .dir("shared", kL2 | kL1)
      .file("shared/a", "shared a (L2)\n", kL2)
      .file("shared/b", "shared b (L1)\n", kL1)
      .file("data.bin", pattern_bytes(64 * 1024, 3), kL2)
      .dir("todelete", kL2)
      .file("todelete/one", "1\n", kL2)
      .file("todelete/two", "2\n", kL2)
      .file("lib/libx.so", pattern_bytes(5000, 4), kL1, 0755)
      .file("lib/sub/y", "y\n", kL1)
      .file("home/user/notes.txt", "notes\n", kUp, 0600, 1000, 1000)
      .dir("home/user", kUp, 0700, 1000, 1000);
  return t;
}

// Round 1: on the initial tree.
std::vector<Step> round1() {
  return {
      s::write_file("home/user/new.txt", "new in upper dir\n"),
      s::write_file("docs/guide/new.txt", "new in merged dir\n"),
      s::unlink("etc/old.conf"),
      s::unlink("docs/guide/ch1.txt"),
      s::unlink("todelete/one"),
      s::unlink("todelete/two"),
      s::rmdir("todelete"),
      s::mkdir("todelete"),  // over the deleted directory: opaque
      s::write_file("todelete/fresh", "fresh\n"),
      s::rename("docs", "documentation"),  // merged lower dir with children
      s::rename("lib/sub", "lib/sub2"),
      s::rename("var/log", "logs"),  // across directories
      s::chmod("bin/tool", 0700),
      s::chmod("etc", 0750),
      s::lchown("bin/helper", 1000, 1000),
      s::setxattr("etc/conf", "user.new", "1"),
      s::removexattr("etc/conf", "user.orig"),
      s::setxattr("documentation", "user.d", "x"),
      s::truncate("data.bin", 1000),
      s::open("shared/a", O_WRONLY | O_APPEND, "a"),
      s::write("a", "appended\n"),
      s::close("a"),
      s::symlink("../etc/conf", "bin/conf_link"),
      s::mknod("var/fifo", S_IFIFO | 0600),
      s::link("bin/helper", "bin/helper2"),
      s::rename("shared/a", "shared/a_renamed"),
      s::write_file("etc/new.conf", "rewritten upper file\n"),
      s::rename("home", "home2"),
      s::list(""),
      s::list("documentation/guide"),
      s::list("logs"),
      s::list("todelete"),
  };
}

// Round 2: on the result of round 1, through the other implementation.
std::vector<Step> round2() {
  return {
      s::rename("documentation", "docs2"),  // a redirected directory moves again
      s::list("docs2/guide"),
      s::unlink("docs2/guide/intro.txt"),
      s::write_file("docs2/guide/intro.txt", "recreated\n"),
      s::unlink("lib/sub2/y"),
      s::rmdir("lib/sub2"),
      s::mkdir("etc/old.conf"),      // a directory where a deleted file was
      s::rename("logs", "var/log"),  // back to where its lower part lives
      s::list("var/log"),
      s::cat("var/log/app.log"),
      s::chmod("docs2", 0700),
      s::open("bin/tool", O_WRONLY | O_APPEND, "t"),
      s::write("t", "echo more\n"),
      s::close("t"),
      s::setxattr("docs2/guide", "user.g", "1"),
      s::unlink("bin/helper2"),
      s::unlink("shared/a_renamed"),
      s::unlink("shared/b"),
      s::rmdir("shared"),            // a merged directory emptied
      s::rename("todelete", "td2"),  // the opaque directory moves
      s::list("td2"),
      s::mkdir("docs2/guide/deep"),
      s::write_file("docs2/guide/deep/new", "deep\n"),
      s::rename("docs2/guide", "guide_top"),  // a subdirectory of a redirected dir
      s::list("guide_top"),
      s::cat("guide_top/ch2.txt"),
      s::list(""),
  };
}

// The raw upper, for failure messages: type, rdev of devices, trusted.overlay.* xattrs.
std::string describe_upper(const std::string& upper) {
  auto entries = it::walk_tree(upper, {false, true});
  std::string out;
  for (const auto& e : entries) {
    std::string line = e.path;
    if (S_ISCHR(e.st.st_mode)) {
      line += fmt::format(" c{}:{}", major(e.st.st_rdev), minor(e.st.st_rdev));
    } else if (S_ISDIR(e.st.st_mode)) {
      line += "/";
    }
    const std::string full = e.path == "." ? upper : upper + "/" + e.path;
    for (const auto& name : e.xattr_names) {
      if (name.rfind("trusted.overlay.", 0) != 0) continue;
      char buf[512];
      ssize_t n = ::lgetxattr(full.c_str(), name.c_str(), buf, sizeof buf);
      std::string v = n >= 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
      if (name == "trusted.overlay.origin") v = fmt::format("<{} bytes>", v.size());
      line += " " + name.substr(16) + "=" + bytes_str(v);
    }
    out += "  " + line + "\n";
  }
  return out;
}

std::string joined(const std::vector<std::string>& reports) {
  std::string s;
  for (const auto& r : reports) s += r + "\n";
  return s;
}

// Mounts laminafs or kernel overlayfs over the stack, one at a time.
class Switcher {
 public:
  Switcher(Stack& st, std::string kernel_options) : st_(st), options_(std::move(kernel_options)) {}

  void use(bool kernel) {
    kernel_.reset();
    st_.unmount();
    if (!kernel) {
      st_.mount();
      return;
    }
    size_t mark = dmesg_line_count();
    kernel_ = std::make_unique<KernelMount>(st_.mnt(), st_.lowers(), st_.upper(),
                                            st_.fresh_dir("kwork"), options_);
    INFO("kernel overlayfs: " << kernel_->error() << "\ndmesg:\n"
                              << dmesg_since(mark) << "upper:\n"
                              << describe_upper(st_.upper()));
    REQUIRE(kernel_->ok());
  }

 private:
  Stack& st_;
  std::string options_;
  std::unique_ptr<KernelMount> kernel_;
};

const char* name_of(bool kernel) { return kernel ? "kernel" : "laminafs"; }

// One step sequence on the plain dir and the mounted implementation, compared.
void run_round(Stack& st, const std::vector<Step>& steps, bool kernel, const std::string& round) {
  Ctx plain(st.plain(), "plain");
  Ctx mnt(st.mnt(), name_of(kernel));
  size_t mark = dmesg_line_count();
  auto reports = run_lockstep(steps, plain, mnt);
  if (!reports.empty()) {
    FAIL_CHECK(fmt::format(
        "{} through {}: {} of {} steps differ from the plain dir:\n{}"
        "new kernel messages:\n{}",
        round, name_of(kernel), reports.size(), steps.size(), joined(reports), dmesg_since(mark)));
  }
  plain.close_all();
  mnt.close_all();
  std::string d = compare_trees(st.plain(), st.mnt(), "plain", name_of(kernel));
  if (!d.empty()) FAIL_CHECK(round << " through " << name_of(kernel) << ": trees differ:\n" << d);
}

// After `writer` wrote, `reader` mounts the same upper and must list the same tree.
void check_handover(Stack& st, Switcher& sw, bool writer_kernel, const std::string& round) {
  auto before = tree_listing(st.mnt());
  sw.use(!writer_kernel);
  size_t mark = dmesg_line_count();
  auto after_entries = it::walk_tree(st.mnt());
  std::vector<std::string> after = it::listing(after_entries);
  std::string d = it::diff_listings(before, after, name_of(writer_kernel), name_of(!writer_kernel));
  auto leaks = it::overlay_leaks(st.mnt(), after_entries);
  for (const auto& l : leaks) d += "  artifact: " + l + "\n";
  if (!d.empty()) {
    FAIL_CHECK(
        fmt::format("after {} (written by {}), {} over the same upper shows a different "
                    "tree:\n{}\nupper dir:\n{}\nkernel messages:\n{}",
                    round, name_of(writer_kernel), name_of(!writer_kernel), d,
                    describe_upper(st.upper()), dmesg_since(mark)));
  }
}

void roundtrip(bool kernel_first, const std::string& kernel_options) {
  LAMINA_REQUIRE_MOUNT_ENV();
  // laminafs writes metadata-only copy-ups unless told metacopy=off, as the kernel reading
  // the upper must be.
  std::vector<std::string> lamina_options = {"allow_other"};
  if (kernel_options.find("metacopy=off") != std::string::npos)
    lamina_options.push_back("metacopy=off");
  Stack st(interop_tree(), lamina_options, false);
  Switcher sw(st, kernel_options);
  const bool a = kernel_first, b = !kernel_first;
  sw.use(a);
  {
    std::string d = compare_trees(st.plain(), st.mnt(), "plain", name_of(a));
    INFO("initial trees differ:\n" << d);
    REQUIRE(d.empty());
  }
  run_round(st, round1(), a, "round 1");
  check_handover(st, sw, a, "round 1");
  run_round(st, round2(), b, "round 2");
  check_handover(st, sw, b, "round 2");
  std::string d = compare_trees(st.plain(), st.mnt(), "plain", name_of(a));
  if (!d.empty()) FAIL_CHECK("final: " << d);
}

}  // namespace

TEST_CASE("kernel interop: an upper written by laminafs mounts in kernel overlayfs", "[interop]") {
  roundtrip(false, kKernelOptions);
}

TEST_CASE("kernel interop: an upper written by kernel overlayfs mounts in laminafs", "[interop]") {
  roundtrip(true, kKernelOptions);
}

// The same with the kernel's metacopy=on: laminafs writes metadata-only copy-ups
// (overlay.metacopy) on chmod/chown/xattr changes of lower files, which only a metacopy=on
// kernel accepts; and a metacopy=on kernel writes them for laminafs to read.
TEST_CASE("kernel interop (metacopy=on): laminafs upper in kernel overlayfs", "[interop]") {
  roundtrip(false, "redirect_dir=on,index=off,metacopy=on");
}

TEST_CASE("kernel interop (metacopy=on): kernel overlayfs upper in laminafs", "[interop]") {
  roundtrip(true, "redirect_dir=on,index=off,metacopy=on");
}

}  // namespace lamina::wt
