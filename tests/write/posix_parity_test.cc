// SPDX-License-Identifier: Apache-2.0
// POSIX parity of the write path: every case runs the same syscalls on a plain directory and
// on a laminafs mount that show the same initial tree, and requires the same return value and
// errno from every call, the same final tree, and the same tree again after a remount (what
// the daemon wrote to the upper is what it showed).
//
// The initial tree is spread over two lowers and the upper so that each operation meets a
// lower-only object, an upper-only object, a file that hides another below it, a directory
// merged from several layers, a whited-out name and an opaque directory.
//
// One intended difference is not compared but checked on the mount alone: names starting
// with ".wh." are refused with EPERM (they are the upper format's own), and overlay xattrs
// cannot be set or seen.

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "write/write_support.h"

namespace lamina::wt {
namespace {

namespace s = step;

constexpr off_t kMiB = 1 << 20;
const std::string kBig = pattern_bytes(200 * 1024, 7);

TreeSpec standard_tree() {
  TreeSpec t;
  // Bottom lower.
  t.dir("lower_only", kL2)
      .file("lower_only/a.txt", "alpha from L2\n", kL2)
      .file("lower_only/b.txt", "bravo\n", kL2)
      .file("lower_only/sub/c.txt", "charlie\n", kL2)
      .file("lower_only/sub/deep/d.txt", "delta\n", kL2)
      .file("big.bin", kBig, kL2)
      .file("owned.txt", "owned by 1000\n", kL2, 0640, 1000, 1000, {{"user.color", "blue"}})
      .file("hl_a", "hard\n", kL2)
      .hardlink("hl_b", "hl_a", kL2)
      .symlink("sym_l2", "lower_only/a.txt", kL2)
      .fifo("fifo_l2", kL2)
      .sparse("sparse_l2", kL2, 3 * kMiB,
              {{0, std::string(4096, 'S')}, {2 * kMiB, std::string(4096, 'T')}})
      .file("suid_l2", "#!/bin/sh\necho suid\n", kL2, 04755, 1000, 1000)
      .file("sgid_l2", "sgid\n", kL2, 02775, 1000, 1000)
      .file("suid_world", "world\n", kL2, 04777, 0, 0)
      .dir("sgid_dir", kL2, 02775, 1000, 1000)
      .file("sgid_dir/inside", "in sgid dir\n", kL2, 0644, 1000, 1000)
      .file("dup.txt", "dup from L2\n", kL2)
      .file("gone.txt", "deleted in upper\n", kL2)
      .dir("gonedir", kL2)
      .file("gonedir/x", "x of deleted dir\n", kL2)
      .dir("opq", kL2 | kUp)
      .file("opq/old.txt", "hidden by opaque upper dir\n", kL2)
      .dir("mlow", kL2 | kL1)
      .file("mlow/x", "mlow x (L2)\n", kL2)
      .file("mlow/y", "mlow y (L1)\n", kL1)
      .dir("merged", kL2 | kL1 | kUp)
      .file("merged/m2.txt", "m2 (L2)\n", kL2)
      .file("merged/m1.txt", "m1 (L1)\n", kL1)
      .file("merged/mu.txt", "mu (upper)\n", kUp)
      .file("merged/shadow.txt", "old (L2)\n", kL2)
      .file("merged/shadow.txt", "new (upper)\n", kUp)
      .dir("merged/sub2", kL2)
      .file("merged/sub2/z.txt", "z (L2)\n", kL2)
      .dir("emptym", kL2 | kUp);
  // Top lower.
  t.file("l1_file.txt", "from L1\n", kL1, 0644, 0, 0, {{"user.a", "1"}})
      .file("dup.txt", "dup from L1\n", kL1)
      .dir("dir_l1", kL1)
      .file("dir_l1/one.txt", "one\n", kL1)
      .file("dir_l1/two.txt", "two\n", kL1)
      .dir("empty_l1", kL1);
  // Upper.
  t.file("upper.txt", "upper file\n", kUp, 0644, 0, 0, {{"user.u", "yes"}})
      .dir("dir_u", kUp)
      .file("dir_u/k.txt", "k\n", kUp)
      .dir("empty_u", kUp)
      .file("suid_u", "upper suid\n", kUp, 04755, 1000, 1000)
      .whiteout("gone.txt")
      .whiteout("gonedir")
      .opaque("opq")
      .file("opq/new.txt", "new in opaque dir\n", kUp);
  return t;
}

std::string joined(const std::vector<std::string>& reports) {
  std::string s;
  for (const auto& r : reports) s += r + "\n";
  return s;
}

// Builds the standard tree, mounts, runs the steps on both sides, compares trees before,
// after, and after a remount.
void run_parity(const std::vector<Step>& steps, const TreeSpec& spec = standard_tree()) {
  LAMINA_REQUIRE_MOUNT_ENV();
  Stack st(spec);
  {
    std::string d = compare_trees(st.plain(), st.mnt(), "plain", "laminafs");
    INFO("initial trees differ (test setup or read path):\n" << d);
    REQUIRE(d.empty());
  }
  Ctx plain(st.plain(), "plain");
  Ctx mnt(st.mnt(), "laminafs");
  mnt.on_remount = [&st] { st.mount(); };
  auto reports = run_lockstep(steps, plain, mnt);
  if (!reports.empty()) {
    FAIL_CHECK(fmt::format("{} of {} steps differ (plain dir vs laminafs):\n{}", reports.size(),
                           steps.size(), joined(reports)));
  }
  plain.close_all();
  mnt.close_all();
  std::string d = compare_trees(st.plain(), st.mnt(), "plain", "laminafs");
  if (!d.empty()) FAIL_CHECK("final trees differ:\n" << d);
  st.mount();  // remount: what the daemon wrote must be what it showed
  std::string r = compare_trees(st.plain(), st.mnt(), "plain", "laminafs(remounted)");
  if (!r.empty()) FAIL_CHECK("trees differ after remount:\n" << r);
}

constexpr int kExcl = O_CREAT | O_EXCL | O_WRONLY;

}  // namespace

// ---- create / open ------------------------------------------------------------------------

TEST_CASE("parity: O_CREAT|O_EXCL on existing names gives EEXIST", "[parity][create]") {
  run_parity({
      s::open("lower_only/a.txt", kExcl, "f"),
      s::open("upper.txt", kExcl, "f"),
      s::open("merged/shadow.txt", kExcl, "f"),
      s::open("merged/m2.txt", kExcl, "f"),
      s::open("dup.txt", kExcl, "f"),
      s::open("mlow/x", kExcl, "f"),
      s::open("merged", kExcl, "f"),
      s::open("lower_only", kExcl, "f"),
      s::open("sym_l2", kExcl, "f"),
      s::open("fifo_l2", kExcl, "f"),
      s::open("opq/new.txt", kExcl, "f"),
      s::open("gone.txt", kExcl, "g"),  // whited out: free
      s::write("g", "back\n"),
      s::close("g"),
      s::cat("gone.txt"),
      s::stat("gone.txt"),
      s::open("gonedir", kExcl, "g"),  // a whited-out directory's name, now a file
      s::close("g"),
      s::stat("gonedir"),
      s::open("opq/old.txt", kExcl, "g"),  // hidden by the opaque dir: free
      s::close("g"),
      s::open("lower_only/a.txt", O_CREAT | O_WRONLY, "h"),  // no O_EXCL: opens it
      s::close("h"),
      s::cat("lower_only/a.txt"),
      s::list(""),
      s::list("opq"),
  });
}

TEST_CASE("parity: create files in lower, upper, merged and opaque directories",
          "[parity][create]") {
  std::vector<Step> steps;
  for (std::string d : {"", "lower_only", "lower_only/sub/deep", "dir_l1", "dir_u", "merged",
                        "mlow", "opq", "empty_l1", "sgid_dir", "emptym"}) {
    std::string f = (d.empty() ? "" : d + "/") + "new.file";
    steps.push_back(s::open(f, O_CREAT | O_EXCL | O_RDWR, "n", 0640));
    steps.push_back(s::write("n", "created in /" + d + "\n"));
    steps.push_back(s::pread("n", 0, 100));
    steps.push_back(s::fstat("n"));
    steps.push_back(s::close("n"));
    steps.push_back(s::stat(f));
    steps.push_back(s::cat(f));
    steps.push_back(s::list(d));
  }
  steps.push_back(s::open("mode0.file", O_CREAT | O_EXCL | O_WRONLY, "z", 0));
  steps.push_back(s::close("z"));
  steps.push_back(s::stat("mode0.file"));
  steps.push_back(s::open("suid.file", O_CREAT | O_EXCL | O_WRONLY, "z", 04755));
  steps.push_back(s::close("z"));
  steps.push_back(s::stat("suid.file"));
  steps.push_back(s::mkdir("sgid_dir/subdir", 0755));
  steps.push_back(s::stat("sgid_dir/subdir"));
  steps.push_back(s::open("sgid_dir/subdir/f", O_CREAT | O_EXCL | O_WRONLY, "z", 0644));
  steps.push_back(s::close("z"));
  steps.push_back(s::stat("sgid_dir/subdir/f"));
  steps.push_back(s::open("nonexistent/f", O_CREAT | O_WRONLY, "z"));
  steps.push_back(s::open("upper.txt/f", O_CREAT | O_WRONLY, "z"));
  steps.push_back(s::open("gonedir/x", O_CREAT | O_WRONLY, "z"));
  run_parity(steps);
}

TEST_CASE("parity: write at offsets into lower, upper and hidden files", "[parity][write]") {
  run_parity({
      s::open("big.bin", O_RDWR, "b"),
      s::pwrite("b", 0, "HEAD"),
      s::pwrite("b", 100000, "MIDDLE"),
      s::pwrite("b", 300000, "PAST-THE-END"),
      s::fstat("b"),
      s::pread("b", 99990, 30),
      s::pread("b", 204790, 30),
      s::pread("b", 299990, 40),
      s::close("b"),
      s::cat("big.bin"),
      s::stat("big.bin"),
      s::open("lower_only/a.txt", O_WRONLY, "a"),
      s::pwrite("a", 3, "XYZ"),
      s::close("a"),
      s::cat("lower_only/a.txt"),
      s::open("upper.txt", O_RDWR, "u"),
      s::pwrite("u", 100, "far"),
      s::pread("u", 0, 200),
      s::close("u"),
      s::cat("upper.txt"),
      s::open("merged/shadow.txt", O_RDWR, "m"),
      s::pwrite("m", 0, "N"),
      s::close("m"),
      s::cat("merged/shadow.txt"),
      s::open("dup.txt", O_WRONLY, "d"),
      s::write("d", "W"),
      s::write("d", "X"),
      s::close("d"),
      s::cat("dup.txt"),
      s::open("merged/m2.txt", O_RDWR, "m2"),
      s::pwrite("m2", 2, "--"),
      s::close("m2"),
      s::cat("merged/m2.txt"),
      s::open("owned.txt", O_WRONLY, "o"),
      s::write("o", "root wrote"),
      s::close("o"),
      s::stat("owned.txt"),
      s::getxattr("owned.txt", "user.color"),
      s::cat("owned.txt"),
      s::open("lower_only/sub/deep/d.txt", O_RDWR, "dd"),
      s::pwrite("dd", 1 * kMiB, "one MiB in"),
      s::fstat("dd"),
      s::close("dd"),
      s::cat("lower_only/sub/deep/d.txt"),
      s::open("fifo_l2", O_RDWR, "p"),  // a fifo opened O_RDWR does not block
      s::write("p", "through the pipe"),
      s::pread("p", 0, 5),
      s::close("p"),
      s::stat("fifo_l2"),
  });
}

TEST_CASE("parity: O_APPEND on lower, upper and merged files", "[parity][write]") {
  std::vector<Step> steps;
  for (std::string f :
       {"lower_only/b.txt", "upper.txt", "merged/m1.txt", "big.bin", "merged/shadow.txt"}) {
    steps.push_back(s::open(f, O_WRONLY | O_APPEND, "a"));
    steps.push_back(s::write("a", "1"));
    steps.push_back(s::pwrite("a", 0, "2"));  // Linux: O_APPEND wins over the offset
    steps.push_back(s::write("a", "3"));
    steps.push_back(s::fstat("a"));
    steps.push_back(s::close("a"));
    steps.push_back(s::cat(f));
  }
  steps.push_back(s::open("append.new", O_CREAT | O_WRONLY | O_APPEND, "n"));
  steps.push_back(s::write("n", "first"));
  steps.push_back(s::open("append.new", O_WRONLY | O_APPEND, "n2"));
  steps.push_back(s::write("n2", "-second"));
  steps.push_back(s::write("n", "-third"));
  steps.push_back(s::close("n"));
  steps.push_back(s::close("n2"));
  steps.push_back(s::cat("append.new"));
  run_parity(steps);
}

TEST_CASE("parity: O_TRUNC on lower, upper and hidden files", "[parity][write]") {
  run_parity({
      s::open("lower_only/a.txt", O_WRONLY | O_TRUNC, "t"),
      s::fstat("t"),
      s::write("t", "new"),
      s::close("t"),
      s::cat("lower_only/a.txt"),
      s::open("upper.txt", O_RDWR | O_TRUNC, "t"),
      s::fstat("t"),
      s::close("t"),
      s::cat("upper.txt"),
      s::getxattr("upper.txt", "user.u"),
      s::open("merged/shadow.txt", O_WRONLY | O_TRUNC, "t"),
      s::close("t"),
      s::cat("merged/shadow.txt"),
      s::open("dup.txt", O_WRONLY | O_TRUNC, "t"),
      s::close("t"),
      s::cat("dup.txt"),
      s::stat("dup.txt"),
      s::open("owned.txt", O_WRONLY | O_TRUNC, "t"),
      s::close("t"),
      s::stat("owned.txt"),
      s::getxattr("owned.txt", "user.color"),
      s::open("big.bin", O_RDWR | O_TRUNC, "t"),
      s::pwrite("t", 10, "x"),
      s::fstat("t"),
      s::close("t"),
      s::cat("big.bin"),
      s::open("lower_only", O_WRONLY | O_TRUNC, "t"),
  });
}

TEST_CASE("parity: truncate grows and shrinks", "[parity][write]") {
  run_parity({
      s::truncate("big.bin", 1000),
      s::stat("big.bin"),
      s::cat("big.bin"),
      s::truncate("big.bin", 500000),
      s::stat("big.bin"),
      s::cat("big.bin"),
      s::truncate("lower_only/b.txt", 0),
      s::cat("lower_only/b.txt"),
      s::truncate("lower_only/b.txt", 10),
      s::cat("lower_only/b.txt"),
      s::truncate("upper.txt", 3),
      s::cat("upper.txt"),
      s::truncate("upper.txt", 8192),
      s::cat("upper.txt"),
      s::open("merged/m1.txt", O_RDWR, "m"),
      s::ftruncate("m", 2),
      s::fstat("m"),
      s::pread("m", 0, 100),
      s::ftruncate("m", 100),
      s::pread("m", 0, 200),
      s::close("m"),
      s::cat("merged/m1.txt"),
      s::truncate("dup.txt", 4),
      s::cat("dup.txt"),
      s::truncate("sym_l2", 2),  // follows the symlink
      s::cat("lower_only/a.txt"),
      s::stat("sym_l2"),
      s::truncate("sparse_l2", 3 * kMiB + 1),
      s::stat("sparse_l2"),
      s::cat("sparse_l2"),
      s::truncate("lower_only", 0),
      s::truncate("fifo_l2", 0),
      s::truncate("missing", 0),
      s::truncate("gone.txt", 0),
      s::truncate("upper.txt", -1),
      s::open("lower_only/a.txt", O_RDONLY, "r"),
      s::ftruncate("r", 0),  // not open for writing
      s::close("r"),
  });
}

// ---- directories --------------------------------------------------------------------------

TEST_CASE("parity: mkdir and rmdir on lower, upper and merged directories", "[parity][dir]") {
  run_parity({
      s::mkdir("lower_only/newdir", 0750),
      s::stat("lower_only/newdir"),
      s::mkdir("merged/newdir"),
      s::mkdir("newtop", 0700),
      s::mkdir("dir_u/x"),
      s::mkdir("lower_only"),
      s::mkdir("upper.txt"),
      s::mkdir("merged"),
      s::mkdir("sym_l2"),
      s::mkdir("missing/x"),
      s::mkdir("gone.txt"),  // over a whiteout of a file
      s::list("gone.txt"),
      s::mkdir("gonedir"),  // over a whiteout of a directory: must come back empty
      s::list("gonedir"),
      s::stat("gonedir/x"),
      s::mkdir("opq/sub"),
      s::list("opq"),
      s::rmdir("lower_only/sub"),
      s::rmdir("merged"),
      s::rmdir("mlow"),
      s::rmdir("opq"),
      s::rmdir("empty_l1"),
      s::rmdir("empty_u"),
      s::rmdir("emptym"),
      s::rmdir("upper.txt"),
      s::rmdir("lower_only/a.txt"),
      s::rmdir("missing"),
      s::rmdir("gone.txt"),
      s::stat("gone.txt"),
      s::rmdir("gonedir"),
      s::rmdir("lower_only/newdir"),
      s::list(""),
      s::mkdir("empty_l1"),
      s::list("empty_l1"),
      s::mkdir("emptym", 0711),
      s::stat("emptym"),
      s::list("emptym"),
  });
}

TEST_CASE("parity: rmdir of a merged dir emptied by deleting its children, then mkdir again",
          "[parity][dir]") {
  run_parity({
      s::unlink("mlow/x"),
      s::unlink("mlow/y"),
      s::list("mlow"),
      s::rmdir("mlow"),
      s::stat("mlow"),
      s::list(""),
      s::mkdir("mlow"),
      s::list("mlow"),
      s::stat("mlow/x"),
      s::write_file("mlow/x", "fresh\n"),
      s::list("mlow"),
      s::cat("mlow/x"),
      // Three layers deep, with a nested lower directory.
      s::unlink("merged/m1.txt"),
      s::unlink("merged/m2.txt"),
      s::unlink("merged/mu.txt"),
      s::unlink("merged/shadow.txt"),
      s::rmdir("merged"),  // sub2 is still there
      s::unlink("merged/sub2/z.txt"),
      s::rmdir("merged/sub2"),
      s::list("merged"),
      s::rmdir("merged"),
      s::mkdir("merged"),
      s::list("merged"),
      s::stat("merged/shadow.txt"),
      // A lower-only tree taken apart bottom-up.
      s::unlink("lower_only/sub/deep/d.txt"),
      s::rmdir("lower_only/sub/deep"),
      s::unlink("lower_only/sub/c.txt"),
      s::rmdir("lower_only/sub"),
      s::unlink("lower_only/a.txt"),
      s::unlink("lower_only/b.txt"),
      s::rmdir("lower_only"),
      s::mkdir("lower_only"),
      s::list("lower_only"),
      s::mkdir("lower_only/sub"),
      s::list("lower_only/sub"),
      // The opaque upper dir.
      s::unlink("opq/new.txt"),
      s::rmdir("opq"),
      s::mkdir("opq"),
      s::list("opq"),
      s::list(""),
  });
}

// ---- unlink -----------------------------------------------------------------------------

TEST_CASE("parity: unlink of lower, upper and merged-hidden names", "[parity][unlink]") {
  run_parity({
      s::unlink("lower_only/a.txt"),
      s::stat("lower_only/a.txt"),
      s::list("lower_only"),
      s::unlink("upper.txt"),
      s::stat("upper.txt"),
      s::unlink("merged/shadow.txt"),  // upper file hiding a lower one
      s::stat("merged/shadow.txt"),
      s::cat("merged/shadow.txt"),
      s::unlink("dup.txt"),  // top lower hiding the bottom lower
      s::stat("dup.txt"),
      s::unlink("gone.txt"),
      s::unlink("merged"),
      s::unlink("sym_l2"),
      s::unlink("fifo_l2"),
      s::unlink("l1_file.txt"),
      s::unlink("mlow/x"),
      s::unlink("opq/old.txt"),
      s::unlink("missing"),
      s::unlink("lower_only/missing"),
      s::list(""),
      s::list("merged"),
      s::list("mlow"),
      s::write_file("lower_only/a.txt", "reborn\n"),
      s::cat("lower_only/a.txt"),
      s::write_file("merged/shadow.txt", "again\n"),
      s::cat("merged/shadow.txt"),
      s::stat("merged/shadow.txt"),
      s::unlink("lower_only/a.txt"),
      s::stat("lower_only/a.txt"),
      s::unlink("merged/shadow.txt"),
      s::stat("merged/shadow.txt"),
      s::list("merged"),
  });
}

TEST_CASE("parity: an unlinked file stays readable through an open descriptor",
          "[parity][unlink]") {
  run_parity({
      s::open("owned.txt", O_RDONLY, "o"),
      s::open("upper.txt", O_RDWR, "u"),
      s::unlink("owned.txt"),
      s::unlink("upper.txt"),
      s::pread("o", 0, 100),
      s::pwrite("u", 0, "still here"),
      s::pread("u", 0, 100),
      s::stat("owned.txt"),
      s::fstat("o"),
      s::fstat("u"),
      s::close("o"),
      s::close("u"),
  });
}

// ---- rename -----------------------------------------------------------------------------

TEST_CASE("parity: rename a file over a file", "[parity][rename]") {
  run_parity({
      s::rename("lower_only/a.txt", "lower_only/b.txt"),  // lower over lower
      s::cat("lower_only/b.txt"),
      s::stat("lower_only/a.txt"),
      s::rename("upper.txt", "dup.txt"),  // upper over a lower that hides another
      s::cat("dup.txt"),
      s::getxattr("dup.txt", "user.u"),
      s::rename("l1_file.txt", "merged/mu.txt"),  // lower over upper, across dirs
      s::cat("merged/mu.txt"),
      s::getxattr("merged/mu.txt", "user.a"),
      s::rename("merged/shadow.txt", "merged/m2.txt"),  // hiding upper over lower
      s::cat("merged/m2.txt"),
      s::stat("merged/shadow.txt"),
      s::rename("owned.txt", "gone.txt"),  // onto a whited-out name
      s::stat("gone.txt"),
      s::rename("lower_only/sub/c.txt", "c_top.txt"),
      s::rename("fifo_l2", "lower_only/fifo"),
      s::rename("sym_l2", "dir_u/sym"),
      s::readlink("dir_u/sym"),
      s::rename("mlow/x", "mlow/y"),
      s::cat("mlow/y"),
      s::list(""),
      s::list("lower_only"),
      s::list("merged"),
      s::list("mlow"),
      // Back and forth.
      s::rename("c_top.txt", "lower_only/sub/c.txt"),
      s::cat("lower_only/sub/c.txt"),
      s::rename("dup.txt", "upper.txt"),
      s::cat("upper.txt"),
      s::stat("dup.txt"),
  });
}

TEST_CASE("parity: rename directories to new names", "[parity][rename]") {
  run_parity({
      s::rename("dir_u", "dir_u2"),
      s::list("dir_u2"),
      s::rename("dir_l1", "dir_l1b"),
      s::list("dir_l1b"),
      s::cat("dir_l1b/one.txt"),
      s::stat("dir_l1"),
      s::mkdir("dir_l1"),  // the old name again: empty
      s::list("dir_l1"),
      s::rename("lower_only/sub", "lower_only/sub_renamed"),
      s::list("lower_only"),
      s::list("lower_only/sub_renamed"),
      s::list("lower_only/sub_renamed/deep"),
      s::rename("empty_l1", "empty_l1b"),
      s::rename("mlow", "mlow2"),
      s::list("mlow2"),
      s::cat("mlow2/x"),
      s::cat("mlow2/y"),
      s::rename("opq", "opq2"),
      s::list("opq2"),
      s::list(""),
  });
}

TEST_CASE("parity: rename a lower directory with contents, then use it", "[parity][rename]") {
  run_parity({
      s::rename("lower_only", "moved"),
      s::list("moved"),
      s::list("moved/sub"),
      s::list("moved/sub/deep"),
      s::cat("moved/sub/deep/d.txt"),
      s::cat("moved/a.txt"),
      s::stat("lower_only"),
      s::stat("lower_only/a.txt"),
      s::open("moved/a.txt", O_WRONLY | O_APPEND, "a"),
      s::write("a", "appended after move\n"),
      s::close("a"),
      s::cat("moved/a.txt"),
      s::write_file("moved/new.txt", "new in moved\n"),
      s::unlink("moved/b.txt"),
      s::list("moved"),
      s::mkdir("lower_only"),  // old name: a fresh empty dir
      s::list("lower_only"),
      s::rename("moved", "moved2"),  // renamed again
      s::list("moved2"),
      s::list("moved2/sub/deep"),
      s::rename("moved2/sub", "sub_top"),  // a lower subdir out of a renamed dir
      s::list("sub_top"),
      s::list("sub_top/deep"),
      s::cat("sub_top/c.txt"),
      s::list("moved2"),
      s::rename("merged", "merged_renamed"),  // three layers
      s::list("merged_renamed"),
      s::list("merged_renamed/sub2"),
      s::cat("merged_renamed/shadow.txt"),
      s::cat("merged_renamed/m2.txt"),
      s::cat("merged_renamed/m1.txt"),
      s::mkdir("merged"),
      s::list("merged"),
      s::rename("dir_l1", "dir_u/dl1"),  // into another directory
      s::list("dir_u/dl1"),
      s::rename("dir_u", "lower_only/du"),  // and the parent moves too
      s::list("lower_only/du/dl1"),
      s::cat("lower_only/du/dl1/two.txt"),
      s::rename("moved2", "lower_only/du/dl1/m"),
      s::list("lower_only/du/dl1/m"),
      s::list("lower_only/du/dl1/m/"),
      s::cat("lower_only/du/dl1/m/new.txt"),
      s::cat("lower_only/du/dl1/m/a.txt"),
      s::list(""),
  });
}

TEST_CASE("parity: rename a directory over an existing empty directory", "[parity][rename]") {
  run_parity({
      s::rename("dir_l1", "empty_u"),  // lower dir over an upper empty dir
      s::list("empty_u"),
      s::rename("dir_u", "empty_l1"),  // upper dir over a lower empty dir
      s::list("empty_l1"),
      s::rename("lower_only/sub", "emptym"),  // lower dir over a merged empty dir
      s::list("emptym"),
      s::list("emptym/deep"),
      s::rename("mlow", "lower_only/sub"),  // merged dir onto the name just freed
      s::list("lower_only/sub"),
      s::stat("dir_l1"),
      s::stat("dir_u"),
      s::stat("mlow"),
      s::list(""),
  });
}

TEST_CASE("parity: rename a directory over a non-empty directory gives ENOTEMPTY",
          "[parity][rename]") {
  run_parity({
      s::rename("dir_u", "merged"),
      s::rename("dir_l1", "lower_only"),
      s::rename("empty_u", "mlow"),
      s::rename("empty_l1", "opq"),
      s::rename("empty_l1", "dir_u"),
      s::list("merged"),
      s::list("lower_only"),
      s::list("empty_l1"),
      // A merged dir whose children are all deleted looks empty and can be replaced.
      s::unlink("mlow/x"),
      s::unlink("mlow/y"),
      s::rename("dir_u", "mlow"),
      s::list("mlow"),
      s::unlink("opq/new.txt"),
      s::rename("dir_l1", "opq"),
      s::list("opq"),
      s::list(""),
  });
}

TEST_CASE("parity: renameat2 RENAME_NOREPLACE", "[parity][rename]") {
  run_parity({
      s::rename("upper.txt", "dup.txt", RENAME_NOREPLACE),
      s::rename("lower_only/a.txt", "lower_only/b.txt", RENAME_NOREPLACE),
      s::rename("lower_only/a.txt", "merged/mu.txt", RENAME_NOREPLACE),
      s::rename("dir_u", "dir_l1", RENAME_NOREPLACE),
      s::rename("dir_u", "empty_l1", RENAME_NOREPLACE),
      s::rename("l1_file.txt", "sym_l2", RENAME_NOREPLACE),
      s::cat("dup.txt"),
      s::cat("lower_only/b.txt"),
      s::rename("lower_only/a.txt", "gone.txt", RENAME_NOREPLACE),  // whited out: free
      s::cat("gone.txt"),
      s::rename("dir_l1", "gonedir", RENAME_NOREPLACE),
      s::list("gonedir"),
      s::rename("upper.txt", "brand_new.txt", RENAME_NOREPLACE),
      s::cat("brand_new.txt"),
      s::rename("missing", "x", RENAME_NOREPLACE),
      s::list(""),
  });
}

TEST_CASE("parity: RENAME_EXCHANGE of two files", "[parity][rename]") {
  run_parity({
      s::rename("upper.txt", "l1_file.txt", RENAME_EXCHANGE),  // upper <-> lower
      s::cat("upper.txt"),
      s::cat("l1_file.txt"),
      s::listxattr("upper.txt"),
      s::listxattr("l1_file.txt"),
      s::rename("lower_only/a.txt", "dup.txt", RENAME_EXCHANGE),  // lower <-> lower
      s::cat("lower_only/a.txt"),
      s::cat("dup.txt"),
      s::rename("merged/shadow.txt", "merged/m2.txt", RENAME_EXCHANGE),
      s::cat("merged/shadow.txt"),
      s::cat("merged/m2.txt"),
      s::rename("owned.txt", "merged/mu.txt", RENAME_EXCHANGE),
      s::stat("owned.txt"),
      s::stat("merged/mu.txt"),
      s::rename("sym_l2", "fifo_l2", RENAME_EXCHANGE),
      s::stat("sym_l2"),
      s::readlink("fifo_l2"),
      s::rename("upper.txt", "missing", RENAME_EXCHANGE),
      s::rename("upper.txt", "gone.txt", RENAME_EXCHANGE),
      s::rename("upper.txt", "upper.txt", RENAME_EXCHANGE),
      s::list(""),
      s::list("merged"),
  });
}

TEST_CASE("parity: RENAME_EXCHANGE of a file and a directory, and of two directories",
          "[parity][rename]") {
  run_parity({
      s::rename("upper.txt", "dir_l1", RENAME_EXCHANGE),
      s::stat("upper.txt"),
      s::list("upper.txt"),
      s::cat("dir_l1"),
      s::rename("lower_only/b.txt", "dir_u", RENAME_EXCHANGE),
      s::list("lower_only/b.txt"),
      s::cat("dir_u"),
      s::rename("mlow", "merged", RENAME_EXCHANGE),  // two merged dirs
      s::list("mlow"),
      s::list("merged"),
      s::cat("mlow/shadow.txt"),
      s::rename("lower_only/sub", "empty_u", RENAME_EXCHANGE),  // lower dir <-> upper dir
      s::list("lower_only/sub"),
      s::list("empty_u"),
      s::list("empty_u/deep"),
      s::list("lower_only"),
      s::list(""),
  });
}

TEST_CASE("parity: rename errors and no-ops", "[parity][rename]") {
  run_parity({
      s::rename("upper.txt", "dir_l1"),             // file over dir
      s::rename("dir_l1", "upper.txt"),             // dir over file
      s::rename("lower_only", "lower_only/sub/x"),  // into itself
      s::rename("missing", "x"),
      s::rename("upper.txt", "missing/x"),
      s::rename("upper.txt", "upper.txt"),
      s::rename("lower_only", "lower_only"),
      s::rename("hl_a", "hl_b"),  // two names of one file: nothing happens
      s::stat("hl_a"),
      s::stat("hl_b"),
      s::rename("gone.txt", "x"),
      s::rename("lower_only/a.txt", "upper.txt/x"),
      s::list(""),
  });
}

// ---- links, symlinks, special files -------------------------------------------------------

TEST_CASE("parity: link, and nlink on both names", "[parity][link]") {
  run_parity({
      s::link("owned.txt", "owned_link"),  // lower file
      s::stat("owned.txt"),
      s::stat("owned_link"),
      s::link("upper.txt", "dir_l1/upper_link"),  // upper file into a lower dir
      s::stat("upper.txt"),
      s::stat("dir_l1/upper_link"),
      s::link("lower_only/a.txt", "merged/a_link"),
      s::stat("lower_only/a.txt"),
      s::stat("merged/a_link"),
      s::link("merged/shadow.txt", "lower_only/shadow_link"),
      s::stat("lower_only/shadow_link"),
      s::link("lower_only/b.txt", "gone.txt"),  // over a whiteout
      s::stat("gone.txt"),
      s::stat("lower_only/b.txt"),
      s::link("upper.txt", "dup.txt"),
      s::link("lower_only", "dir_link"),
      s::link("missing", "x"),
      s::link("sym_l2", "sym_link"),  // links the symlink itself
      s::stat("sym_link"),
      s::stat("sym_l2"),
      s::open("owned_link", O_WRONLY | O_APPEND, "o"),
      s::write("o", "+through the link"),
      s::close("o"),
      s::cat("owned.txt"),
      s::chmod("owned.txt", 0600),
      s::stat("owned_link"),
      s::unlink("owned.txt"),
      s::stat("owned_link"),
      s::rename("upper.txt", "dir_l1/upper_link"),  // onto its own other name: no-op
      s::stat("upper.txt"),
      s::stat("dir_l1/upper_link"),
      s::link("dir_l1/upper_link", "third"),
      s::stat("upper.txt"),
      s::unlink("dir_l1/upper_link"),
      s::stat("third"),
  });
}

TEST_CASE("parity: hard links that already exist in a lower layer", "[parity][link]") {
  run_parity({
      s::stat("hl_a"),
      s::stat("hl_b"),
      s::open("hl_a", O_WRONLY | O_APPEND, "h"),
      s::write("h", "more\n"),
      s::close("h"),
      s::cat("hl_a"),
      s::cat("hl_b"),
      s::stat("hl_a"),
      s::stat("hl_b"),
      s::chmod("hl_b", 0600),
      s::stat("hl_a"),
      s::unlink("hl_a"),
      s::stat("hl_b"),
      s::cat("hl_b"),
  });
}

TEST_CASE("parity: unlink or replace one name of a lower hard link, then stat the other",
          "[parity][link]") {
  run_parity({
      s::stat("hl_a"),
      s::unlink("hl_b"),  // nothing was copied up before
      s::stat("hl_a"),
      s::remount(),
      s::stat("hl_a"),
  });
  run_parity({
      s::rename("upper.txt", "hl_b"),  // replaced by another file
      s::stat("hl_a"),
      s::stat("hl_b"),
  });
}

TEST_CASE("parity: write through one name of a lower hard link after the other name is gone",
          "[parity][link]") {
  // The initial tree walk looks up hl_a, then hl_b: the name looked up last goes away.
  run_parity({
      s::unlink("hl_b"),
      s::open("hl_a", O_WRONLY | O_APPEND, "h"),
      s::write("h", "through hl_a\n"),
      s::close("h"),
      s::cat("hl_a"),
      s::stat("hl_a"),
  });
  run_parity({
      s::rename("hl_b", "lower_only/hl_moved"),
      s::chmod("hl_a", 0600),
      s::stat("hl_a"),
      s::stat("lower_only/hl_moved"),
  });
}

TEST_CASE("parity: a copied-up lower hard link keeps its link count when a name is replaced",
          "[parity][link]") {
  TreeSpec t;
  t.file("f0", "pair\n", kL2).hardlink("f1", "f0", kL2).file("g", "upper\n", kUp);
  run_parity(
      {
          s::remount(),  // nothing opened yet (the initial tree walk reads every file)
          s::list(""),
          s::stat("f0"),
          s::stat("f1"),
          s::truncate("f1", 100),  // the group moves to the index
          s::rename("g", "f1"),    // one name replaced by another file
          s::stat("f0"),
          s::stat("f1"),
          s::remount(),
          s::stat("f0"),
          s::cat("f0"),
      },
      t);
}

TEST_CASE("parity: lower hard link changed through one name, remount, changed through the other",
          "[parity][link]") {
  run_parity({
      s::chmod("hl_b", 0600),  // copy-up of the pair
      s::remount(),
      s::stat("hl_a"),  // looked up first: the name still below
      s::stat("hl_b"),
      s::open("hl_a", O_WRONLY | O_APPEND, "h"),
      s::write("h", "appended through hl_a\n"),
      s::close("h"),
      s::chmod("hl_a", 0640),
      s::cat("hl_a"),
      s::cat("hl_b"),
      s::stat("hl_a"),
      s::stat("hl_b"),
  });
}

TEST_CASE("parity: symlink", "[parity][link]") {
  const std::string long_target(200, 't');
  run_parity({
      s::symlink("a.txt", "lower_only/s1"),
      s::readlink("lower_only/s1"),
      s::stat("lower_only/s1"),
      s::custom("cat lower_only/s1 (following)",
                [](Ctx& c) {
                  try {
                    return bytes_str(it::read_file(c.p("lower_only/s1")));
                  } catch (const std::exception&) {
                    return std::string("error");
                  }
                }),
      s::symlink("/absolute/target", "merged/s2"),
      s::readlink("merged/s2"),
      s::symlink("../nowhere", "dir_u/s3"),
      s::symlink("t", "gone.txt"),  // over a whiteout
      s::readlink("gone.txt"),
      s::symlink("x", "upper.txt"),
      s::symlink("x", "lower_only"),
      s::symlink(long_target, "long_link"),
      s::readlink("long_link"),
      s::stat("long_link"),
      s::lchown("lower_only/s1", 1000, 1000),
      s::stat("lower_only/s1"),
      s::lchown("sym_l2", 1000, 1000),  // a lower symlink
      s::stat("sym_l2"),
      s::stat("lower_only/a.txt"),
      s::unlink("sym_l2"),
      s::symlink("new/target", "sym_l2"),
      s::readlink("sym_l2"),
      s::list(""),
  });
}

TEST_CASE("parity: mknod fifo, socket, char and block devices, regular", "[parity][link]") {
  run_parity({
      s::mknod("lower_only/fifo", S_IFIFO | 0640),
      s::stat("lower_only/fifo"),
      s::mknod("merged/fifo", S_IFIFO | 0600),
      s::mknod("gone.txt", S_IFIFO | 0644),  // over a whiteout
      s::stat("gone.txt"),
      s::mknod("dir_u/chr", S_IFCHR | 0600, makedev(1, 3)),
      s::stat("dir_u/chr"),
      s::mknod("lower_only/blk", S_IFBLK | 0600, makedev(7, 0)),
      s::stat("lower_only/blk"),
      s::mknod("empty_l1/sock", S_IFSOCK | 0755),
      s::stat("empty_l1/sock"),
      s::mknod("lower_only/reg", S_IFREG | 0604),
      s::stat("lower_only/reg"),
      s::mknod("upper.txt", S_IFIFO | 0644),
      s::mknod("fifo_l2", S_IFIFO | 0644),
      s::chmod("fifo_l2", 0600),  // lower fifo copied up
      s::stat("fifo_l2"),
      s::list("lower_only"),
      s::list(""),
  });
}

// ---- attributes -------------------------------------------------------------------------

TEST_CASE("parity: chmod and chown on lower, upper and merged objects", "[parity][attr]") {
  run_parity({
      s::chmod("lower_only/a.txt", 0600),
      s::stat("lower_only/a.txt"),
      s::cat("lower_only/a.txt"),
      s::chmod("big.bin", 0444),
      s::stat("big.bin"),
      s::cat("big.bin"),  // metadata-only copy-up: the data still reads
      s::open("big.bin", O_RDWR, "b"),
      s::pwrite("b", 5, "after chmod"),
      s::close("b"),
      s::cat("big.bin"),
      s::chmod("upper.txt", 0755),
      s::stat("upper.txt"),
      s::chmod("lower_only", 0700),
      s::stat("lower_only"),
      s::list("lower_only"),
      s::chmod("merged", 0711),
      s::stat("merged"),
      s::list("merged"),
      s::chmod("lower_only/b.txt", 06755),
      s::stat("lower_only/b.txt"),
      s::lchown("lower_only/b.txt", 1000, 1000),  // chown clears setuid/setgid
      s::stat("lower_only/b.txt"),
      s::chmod("dir_l1", 01777),
      s::stat("dir_l1"),
      s::lchown("lower_only/a.txt", 1000, 1000),
      s::stat("lower_only/a.txt"),
      s::lchown("big.bin", static_cast<uid_t>(-1), 1000),
      s::stat("big.bin"),
      s::lchown("lower_only/sub", 1000, 1000),
      s::stat("lower_only/sub"),
      s::list("lower_only/sub"),
      s::lchown("owned.txt", 0, 0),
      s::stat("owned.txt"),
      s::getxattr("owned.txt", "user.color"),
      s::cat("owned.txt"),
      s::lchown("merged/shadow.txt", 4242, 4343),
      s::stat("merged/shadow.txt"),
      s::chmod("sym_l2", 0600),  // follows: chmods lower_only/a.txt
      s::stat("lower_only/a.txt"),
      s::chmod("missing", 0600),
      s::chmod("gone.txt", 0600),
      s::chmod("sparse_l2", 0640),
      s::cat("sparse_l2"),
  });
}

TEST_CASE("parity: utimensat with explicit times", "[parity][attr]") {
  const struct timespec t1 { 1000000000, 123456789 };
  const struct timespec t2 { 1200000000, 987654321 };
  const struct timespec pre_epoch { - 86400, 5 };
  const struct timespec future { 8589934592LL, 1 };
  run_parity({
      s::utimens("lower_only/a.txt", t1, t2),
      s::times("lower_only/a.txt"),
      s::utimens("upper.txt", t2, t1),
      s::times("upper.txt"),
      s::utimens("lower_only", t1, t2),
      s::times("lower_only"),
      s::utimens("merged", t2, t2),
      s::times("merged"),
      s::utimens("sym_l2", t2, t1, AT_SYMLINK_NOFOLLOW),
      s::times("sym_l2"),
      s::times("lower_only/a.txt"),
      s::utimens("big.bin", pre_epoch, future),
      s::times("big.bin"),
      s::utimens("fifo_l2", t1, t1),
      s::times("fifo_l2"),
      s::utimens("missing", t1, t1),
      // The times survive the data copy-up that follows the metadata-only one. (No read in
      // between: a read updates atime on a plain dir, but not through FUSE on a file whose
      // data is still below, as with kernel overlayfs.)
      s::open("big.bin", O_RDWR, "w"),
      s::close("w"),
      s::times("big.bin"),
      s::cat("big.bin"),
  });
}

TEST_CASE("parity: utimensat on a symlink with two names, after one name went away",
          "[parity][attr]") {
  const struct timespec t1 { 1000000000, 123456789 };
  const struct timespec t2 { 1200000000, 987654321 };
  run_parity({
      s::symlink("target", "s"),
      s::link("s", "s2"),  // a hard link to the symlink itself
      s::unlink("s2"),
      s::utimens("s", t1, t2, AT_SYMLINK_NOFOLLOW),
      s::times("s"),
      s::link("s", "s3"),
      s::symlink("other", "t"),
      s::rename("t", "s3"),  // s3 now names another symlink
      s::utimens("s", t2, t1, AT_SYMLINK_NOFOLLOW),
      s::times("s"),
      s::readlink("s3"),
      s::link("sym_l2", "lower_only/sym_link"),  // a lower symlink, two names
      s::rename("lower_only/sym_link", "dir_u/moved_link"),
      s::utimens("sym_l2", t1, t1, AT_SYMLINK_NOFOLLOW),
      s::times("sym_l2"),
      s::times("dir_u/moved_link"),
  });
}

TEST_CASE("parity: utimensat with UTIME_NOW and UTIME_OMIT", "[parity][attr]") {
  const struct timespec now { 0, UTIME_NOW };
  const struct timespec omit { 0, UTIME_OMIT };
  const struct timespec t1 { 1000000000, 1 };
  run_parity({
      s::utimens("lower_only/a.txt", t1, t1),
      s::save_stat("lower_only/a.txt"),
      s::utimens("lower_only/a.txt", now, omit),
      s::times_vs_saved("lower_only/a.txt"),
      s::save_stat("lower_only/b.txt"),  // lower times as copy-up keeps them
      s::utimens("lower_only/b.txt", omit, now),
      s::times_vs_saved("lower_only/b.txt"),
      s::utimens("upper.txt", t1, t1),
      s::save_stat("upper.txt"),
      s::utimens("upper.txt", omit, now),
      s::times_vs_saved("upper.txt"),
      s::utimens("merged", t1, t1),
      s::save_stat("merged"),
      s::utimens("merged", omit, omit),
      s::times_vs_saved("merged"),
      s::utimens("dup.txt", t1, t1),
      s::save_stat("dup.txt"),
      s::utimens_null("dup.txt"),
      s::times_vs_saved("dup.txt"),
      s::utimens("lower_only", t1, t1),
      s::save_stat("lower_only"),
      s::utimens("lower_only", now, now),
      s::times_vs_saved("lower_only"),
      s::save_stat("l1_file.txt"),
      s::utimens("l1_file.txt", omit, omit),  // a no-op
      s::times_vs_saved("l1_file.txt"),
  });
}

// ---- xattrs -------------------------------------------------------------------------------

TEST_CASE("parity: user xattrs on lower, upper and merged objects", "[parity][xattr]") {
  const std::string big_value(4000, 'v');
  run_parity({
      s::setxattr("lower_only/a.txt", "user.new", "v1"),
      s::getxattr("lower_only/a.txt", "user.new"),
      s::listxattr("lower_only/a.txt"),
      s::cat("lower_only/a.txt"),
      s::getxattr("owned.txt", "user.color"),
      s::setxattr("owned.txt", "user.color", "red", XATTR_REPLACE),
      s::getxattr("owned.txt", "user.color"),
      s::setxattr("owned.txt", "user.size", "x", XATTR_REPLACE),
      s::setxattr("owned.txt", "user.color", "x", XATTR_CREATE),
      s::removexattr("owned.txt", "user.color"),
      s::getxattr("owned.txt", "user.color"),
      s::listxattr("owned.txt"),
      s::removexattr("owned.txt", "user.absent"),
      s::removexattr("lower_only/b.txt", "user.absent"),
      s::getxattr("lower_only/b.txt", "user.absent"),
      s::removexattr("l1_file.txt", "user.a"),
      s::listxattr("l1_file.txt"),
      s::setxattr("lower_only", "user.dir", "d"),
      s::getxattr("lower_only", "user.dir"),
      s::list("lower_only"),
      s::setxattr("merged", "user.m", "m"),
      s::listxattr("merged"),
      s::list("merged"),
      s::setxattr("upper.txt", "user.big", big_value),
      s::getxattr("upper.txt", "user.big"),
      s::getxattr("upper.txt", "user.u"),
      s::setxattr("dir_l1", "user.empty", ""),
      s::getxattr("dir_l1", "user.empty"),
      s::setxattr("sym_l2", "user.x", "1"),
      s::getxattr("sym_l2", "user.x"),
      s::setxattr("fifo_l2", "user.x", "1"),
      s::setxattr("missing", "user.x", "1"),
      s::rename("lower_only/a.txt", "lower_only/a2.txt"),
      s::getxattr("lower_only/a2.txt", "user.new"),
      s::rename("lower_only", "lo2"),
      s::getxattr("lo2", "user.dir"),
      s::listxattr("lo2"),
      s::setxattr("big.bin", "trusted.lamina_test", "t"),
      s::getxattr("big.bin", "trusted.lamina_test"),
      s::setxattr("big.bin", "security.lamina_test", "s"),
      s::getxattr("big.bin", "security.lamina_test"),
      s::removexattr("big.bin", "trusted.lamina_test"),
      s::getxattr("big.bin", "trusted.lamina_test"),
      s::cat("big.bin"),
  });
}

// ---- data operations -------------------------------------------------------------------

TEST_CASE("parity: fallocate", "[parity][data][holes]") {
  run_parity({
      s::open("big.bin", O_RDWR, "f"),
      s::fallocate("f", 0, 300000, 4096),
      s::fstat("f"),
      s::fallocate("f", FALLOC_FL_KEEP_SIZE, 400000, 4096),
      s::fstat("f"),
      s::fallocate("f", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192),
      s::pread("f", 4090, 20),
      s::lseek("f", 4096, SEEK_DATA),
      s::fallocate("f", FALLOC_FL_PUNCH_HOLE, 0, 4096),  // PUNCH_HOLE needs KEEP_SIZE
      s::close("f"),
      s::cat("big.bin"),
      s::open("falloc.new", O_CREAT | O_RDWR, "n"),
      s::fallocate("n", 0, 0, 65536),
      s::fstat("n"),
      s::close("n"),
      s::open("upper.txt", O_RDWR, "u"),
      s::fallocate("u", 0, 0, 100),
      s::fstat("u"),
      s::close("u"),
      s::cat("upper.txt"),
      s::open("lower_only/a.txt", O_RDONLY, "r"),
      s::fallocate("r", 0, 0, 100),  // not open for writing
      s::close("r"),
      s::stat("lower_only/a.txt"),
  });
}

TEST_CASE("parity: lseek SEEK_DATA/SEEK_HOLE on sparse files", "[parity][data][holes]") {
  std::vector<Step> steps;
  auto probe = [&](const std::string& fd) {
    for (off_t off : {off_t{0}, off_t{4096}, 2 * kMiB - 1, 2 * kMiB + 4096, 2 * kMiB + 8192,
                      3 * kMiB - 1, 3 * kMiB, 3 * kMiB + 10}) {
      steps.push_back(s::lseek(fd, off, SEEK_DATA));
      steps.push_back(s::lseek(fd, off, SEEK_HOLE));
    }
    steps.push_back(s::lseek(fd, 0, SEEK_END));
  };
  steps.push_back(s::open("sparse_l2", O_RDONLY, "r"));  // the lower file
  probe("r");
  steps.push_back(s::open("sparse_l2", O_RDWR, "w"));  // copy-up keeps the holes
  probe("w");
  steps.push_back(s::pwrite("w", 1 * kMiB, "data"));
  probe("w");
  probe("r");
  steps.push_back(s::close("w"));
  steps.push_back(s::close("r"));
  steps.push_back(s::cat("sparse_l2"));
  steps.push_back(s::open("sparse.new", O_CREAT | O_RDWR, "n"));
  steps.push_back(s::pwrite("n", 0, std::string(4096, 'a')));
  steps.push_back(s::pwrite("n", 2 * kMiB, "tail"));
  probe("n");
  steps.push_back(s::close("n"));
  run_parity(steps);
}

TEST_CASE("parity: copy_file_range", "[parity][data]") {
  run_parity({
      s::open("big.bin", O_RDONLY, "in"),
      s::open("cfr.new", O_CREAT | O_RDWR, "out"),
      s::copy_file_range("in", 0, "out", 0, 50000),
      s::copy_file_range("in", 190000, "out", 50000, 100000),
      s::copy_file_range("in", 300000, "out", 0, 10),
      s::fstat("out"),
      s::close("out"),
      s::cat("cfr.new"),
      s::open("lower_only/a.txt", O_RDWR, "la"),  // into a lower file
      s::copy_file_range("in", 0, "la", 5, 100),
      s::close("la"),
      s::cat("lower_only/a.txt"),
      s::open("upper.txt", O_RDWR, "u"),  // within one file
      s::copy_file_range("u", 0, "u", 20, 11),
      s::close("u"),
      s::cat("upper.txt"),
      s::open("merged/m1.txt", O_RDONLY, "m"),  // lower to upper
      s::open("merged/mu.txt", O_WRONLY, "mu"),
      s::copy_file_range("m", 0, "mu", 3, 8),
      s::copy_file_range("mu", 0, "m", 0, 8),  // into a read-only descriptor
      s::close("m"),
      s::close("mu"),
      s::cat("merged/mu.txt"),
      s::close("in"),
  });
}

TEST_CASE("parity: a reader opened before copy-up sees later writes", "[parity][data]") {
  run_parity({
      s::open("big.bin", O_RDONLY, "r"),
      s::pread("r", 0, 16),
      s::open("big.bin", O_RDWR, "w"),
      s::pwrite("w", 0, "CHANGED"),
      s::pread("r", 0, 16),
      s::ftruncate("w", 10),
      s::pread("r", 0, 100),
      s::fstat("r"),
      s::close("w"),
      s::close("r"),
      s::open("merged/m2.txt", O_RDONLY, "r2"),
      s::pread("r2", 0, 100),
      s::write_file("merged/m2.txt", "rewritten\n"),
      s::pread("r2", 0, 100),
      s::close("r2"),
  });
}

TEST_CASE("parity: fsync and fdatasync", "[parity][data]") {
  run_parity({
      s::open("lower_only/a.txt", O_RDONLY, "r"),
      s::fsync("r"),
      s::open("lower_only/b.txt", O_RDWR, "w"),
      s::write("w", "synced"),
      s::fsync("w"),
      s::custom("fdatasync(w)", [](Ctx& c) { return rc_str(::fdatasync(c.fd("w")), errno); }),
      s::open("merged", O_RDONLY | O_DIRECTORY, "d"),
      s::fsync("d"),
      s::custom("syncfs(d)", [](Ctx& c) { return rc_str(::syncfs(c.fd("d")), errno); }),
      s::close("r"),
      s::close("w"),
      s::close("d"),
  });
}

TEST_CASE("parity: flock and fcntl locks", "[parity][lock]") {
  std::vector<Step> steps;
  for (std::string f : {"lower_only/a.txt", "upper.txt", "merged/m1.txt"}) {
    steps.push_back(s::open(f, O_RDWR, "l1"));
    steps.push_back(s::open(f, O_RDWR, "l2"));
    steps.push_back(s::flock("l1", LOCK_EX | LOCK_NB));
    steps.push_back(s::flock("l2", LOCK_EX | LOCK_NB));
    steps.push_back(s::flock("l2", LOCK_SH | LOCK_NB));
    steps.push_back(s::flock("l1", LOCK_UN));
    steps.push_back(s::flock("l2", LOCK_SH | LOCK_NB));
    steps.push_back(s::flock("l1", LOCK_SH | LOCK_NB));
    steps.push_back(s::flock("l1", LOCK_EX | LOCK_NB));
    steps.push_back(s::flock("l2", LOCK_UN));
    steps.push_back(s::flock("l1", LOCK_EX | LOCK_NB));
    steps.push_back(s::flock("l1", LOCK_UN));
    steps.push_back(s::posix_lock_conflict("l1", f));
    steps.push_back(s::close("l1"));
    steps.push_back(s::close("l2"));
  }
  run_parity(steps);
}

TEST_CASE("parity: a non-root write clears the setuid and setgid bits", "[parity][attr]") {
  run_parity({
      s::stat("suid_l2"),
      s::child_write_as(1000, 1000, "suid_l2", "echo more\n", false),  // lower, owner 1000
      s::stat("suid_l2"),
      s::cat("suid_l2"),
      s::stat("suid_u"),
      s::child_write_as(1000, 1000, "suid_u", "more\n", false),  // upper
      s::stat("suid_u"),
      s::child_write_as(1000, 1000, "sgid_l2", "more\n", false),  // setgid, group exec
      s::stat("sgid_l2"),
      s::child_write_as(1000, 1000, "suid_world", "x", true),  // root's, world-writable
      s::stat("suid_world"),
      s::cat("suid_world"),
      s::child_write_as(1000, 1000, "upper.txt", "x", false),  // no permission
      s::cat("upper.txt"),
      s::chmod("upper.txt", 04666),
      s::child_write_as(1000, 1000, "upper.txt", "y", false),
      s::stat("upper.txt"),
      s::child_write_as(0, 0, "lower_only/a.txt", "root", false),
      s::stat("lower_only/a.txt"),
  });
}

TEST_CASE("parity: an unprivileged caller gets the plain directory's EACCES and EPERM",
          "[parity][perm]") {
  // default_permissions: the kernel checks every access against what lamina reports, so a user
  // without rights is refused exactly as on a local filesystem, for lower, upper and merged
  // objects alike (the daemon itself runs as root and would succeed).
  constexpr uid_t kNobody = 65534;
  const struct timespec t1 { 1600000000, 0 };
  run_parity({
      // Set-up as root: a sticky world-writable dir, a group-only-denied file, 06750 for chown.
      s::mkdir("sticky", 0755),
      s::chmod("sticky", 01777),
      s::write_file("sticky/roots", "r"),
      s::write_file("grp_denied", "g"),
      s::lchown("grp_denied", 0, 1000),
      s::chmod("grp_denied", 0604),
      s::as_user(kNobody, kNobody,
                 {
                     s::cat("owned.txt"),         // 0640 1000:1000, lower
                     s::cat("lower_only/a.txt"),  // 0644, lower
                     s::cat("grp_denied"),        // others may read
                     s::write_file("lower_only/new", "x"),
                     s::write_file("upper.txt", "x"),
                     s::truncate("merged/m2.txt", 0),
                     s::unlink("lower_only/a.txt"),
                     s::unlink("merged/mu.txt"),
                     s::rename("upper.txt", "moved"),
                     s::rename("merged/m1.txt", "sticky/m1"),
                     s::mkdir("dir_u/n"),
                     s::rmdir("empty_l1"),
                     s::symlink("/etc/passwd", "mlow/s"),
                     s::link("lower_only/b.txt", "sticky/b"),
                     s::chmod("upper.txt", 0777),
                     s::chmod("owned.txt", 0777),
                     s::lchown("upper.txt", kNobody, kNobody),
                     s::utimens_null("upper.txt"),
                     s::utimens("l1_file.txt", t1, t1),
                     s::setxattr("upper.txt", "user.x", "1"),
                     s::getxattr("owned.txt", "user.color"),
                     s::removexattr("l1_file.txt", "user.a"),
                     s::list("lower_only/sub"),
                     s::write_file("sticky/mine", "m"),
                     s::unlink("sticky/roots"),
                 }),
      s::as_user(1000, 1000,
                 {
                     s::cat("grp_denied"),      // group 1000 has no bits: refused before "other"
                     s::unlink("sticky/mine"),  // sticky: not the owner's
                     s::chmod("owned.txt", 06750),
                     s::lchown("owned.txt", 1000, 1000),  // the owner's chown clears both bits
                     s::stat("owned.txt"),
                     s::chmod("sgid_dir/inside", 0600),  // owned by 1000 in a lower
                     s::utimens("sgid_dir/inside", t1, t1),
                     s::truncate("suid_world", 2),  // 04777 root's: path truncate clears setuid
                     s::stat("suid_world"),
                 }),
      s::stat("owned.txt"),
      s::stat("suid_world"),
      s::stat("sticky/mine"),
      s::list("sticky"),
  });
}

// ---- the intended difference: ".wh." names and overlay xattrs -----------------------------

TEST_CASE("mount only: .wh.* names are refused with EPERM, overlay xattrs are private",
          "[parity][whiteout-names]") {
  // The one intended difference from a plain directory (where all of this succeeds): the
  // upper's format reserves ".wh." names and the overlay xattrs, so the mount refuses them
  // instead of silently writing a whiteout or a marker.
  LAMINA_REQUIRE_MOUNT_ENV();
  Stack st(standard_tree());
  Ctx mnt(st.mnt(), "laminafs");
  const std::string eperm = "-1 EPERM";
  struct Expect {
    Step step;
    std::string want;
  };
  std::vector<Expect> cases = {
      {s::open(".wh.x", O_CREAT | O_EXCL | O_WRONLY, "f"), eperm},
      {s::open("lower_only/.wh.y", O_CREAT | O_WRONLY, "f"), eperm},
      {s::open(".wh..wh..opq", O_CREAT | O_WRONLY, "f"), eperm},
      {s::open("opq/.wh..wh..opq", O_CREAT | O_WRONLY, "f"), eperm},
      {s::mkdir(".wh.d"), eperm},
      {s::symlink("t", "merged/.wh.s"), eperm},
      {s::mknod(".wh.p", S_IFIFO | 0644), eperm},
      {s::link("upper.txt", ".wh.l"), eperm},
      {s::rename("upper.txt", ".wh.r"), eperm},
      {s::rename("lower_only", ".wh.lower_only"), eperm},
      {s::stat(".wh.gone.txt"), "-1 ENOENT"},
      {s::stat(".wh.x"), "-1 ENOENT"},
      {s::setxattr("opq", "trusted.overlay.opaque", "y"), eperm},
      {s::setxattr("merged", "trusted.overlay.opaque", "y"), eperm},
      {s::setxattr("dir_u", "trusted.overlay.redirect", "/lower_only"), eperm},
      {s::setxattr("upper.txt", "user.overlay.metacopy", ""), eperm},
      {s::setxattr("lower_only", "user.overlay.opaque", "y"), eperm},
      {s::removexattr("opq", "trusted.overlay.opaque"), eperm},
      {s::getxattr("opq", "trusted.overlay.opaque"), "-1 ENODATA"},
      {s::custom("llistxattr(all) opq",
                 [](Ctx& c) {
                   char buf[4096];
                   ssize_t n = ::llistxattr(c.p("opq").c_str(), buf, sizeof buf);
                   if (n < 0) return rc_str(-1, errno);
                   std::string all;
                   for (ssize_t off = 0; off < n;) {
                     std::string nm(buf + off);
                     off += static_cast<ssize_t>(nm.size()) + 1;
                     all += nm + " ";
                   }
                   return all.find("overlay") == std::string::npos ? std::string("no overlay")
                                                                   : all;
                 }),
       "no overlay"},
      {s::list(""), ""},  // filled below from the plain dir
  };
  {
    Ctx plain(st.plain(), "plain");
    cases.back().want = cases.back().step.run(plain);
  }
  for (auto& c : cases) {
    std::string got = c.step.run(mnt);
    if (got != c.want) {
      FAIL_CHECK(fmt::format("{}: want {}, laminafs gave {}", c.step.desc, c.want, got));
    }
  }
  mnt.close_all();
  std::string d = compare_trees(st.plain(), st.mnt(), "plain(untouched)", "laminafs");
  if (!d.empty()) FAIL_CHECK("the refused operations changed the tree:\n" << d);
  auto leftovers = it::run_process({"find", st.upper(), "-name", ".wh.*"});
  if (!leftovers.out.empty()) FAIL_CHECK("upper holds .wh. names: " << leftovers.out);
}

}  // namespace lamina::wt
