// SPDX-License-Identifier: Apache-2.0
// Real workloads on a laminafs mount whose lowers hold a small C project, 2,000 small files
// and a package directory, compared with the same commands on a plain directory holding the
// same tree: make (build, up-to-date check, rebuild after touch, clean), tar create+extract,
// git init/add/commit/fsck, and a dpkg-style install loop (NAME.dpkg-new written and fsynced,
// the old NAME kept as a hard-linked backup, renamed over NAME, backups removed). Exit codes,
// output and the final trees must match (.git/index is left out: it records inode numbers
// and ctimes).

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "write/write_support.h"

namespace lamina::wt {
namespace {

const char* const kMakefile =
    "CC = gcc\n"
    "CFLAGS = -O2 -Wall -Werror\n"
    "OBJS = main.o util.o mathx.o\n"
    "\n"
    "app: $(OBJS)\n"
    "\t$(CC) -o $@ $(OBJS)\n"
    "\n"
    "%.o: %.c util.h\n"
    "\t$(CC) $(CFLAGS) -c -o $@ $<\n"
    "\n"
    "clean:\n"
    "\trm -f app $(OBJS)\n"
    "\n"
    ".PHONY: clean\n";

const char* const kHeader =
    "#ifndef UTIL_H\n#define UTIL_H\n"
    "int checksum(const char* s);\n"
    "long fib(int n);\n"
    "const char* greeting(void);\n"
    "#endif\n";

const char* const kMain =
    "#include <stdio.h>\n#include \"util.h\"\n"
    "int main(void) {\n"
    "  printf(\"%s\\n\", greeting());\n"
    "  printf(\"fib(40) = %ld\\n\", fib(40));\n"
    "  printf(\"checksum = %d\\n\", checksum(\"lamina\"));\n"
    "  return 0;\n"
    "}\n";

const char* const kUtil =
    "#include \"util.h\"\n"
    "int checksum(const char* s) { int h = 7; while (*s) h = h * 31 + *s++; return h; }\n"
    "const char* greeting(void) { return \"hello from a union mount\"; }\n";

const char* const kMath =
    "#include \"util.h\"\n"
    "long fib(int n) { long a = 0, b = 1; for (int i = 0; i < n; ++i) { long t = a + b; a = b; "
    "b = t; } return a; }\n";

constexpr int kSmallFiles = 2000;
constexpr int kPackages = 500;

TreeSpec workload_tree() {
  TreeSpec t;
  t.dir("project", kL2 | kL1)
      .file("project/Makefile", kMakefile, kL2)
      .file("project/util.h", kHeader, kL2)
      .file("project/main.c", kMain, kL1)
      .file("project/util.c", kUtil, kL2)
      .file("project/mathx.c", kMath, kL2);
  for (int i = 0; i < kSmallFiles; ++i) {
    // Spread over both lowers and the upper, in 20 directories.
    unsigned layer = i % 3 == 0 ? kL2 : i % 3 == 1 ? kL1 : kUp;
    t.file(fmt::format("data/d{:02}/file{:04}.txt", i % 20, i),
           fmt::format("small file {}\n{}", i, std::string(static_cast<size_t>(i % 97), 'x')),
           layer, i % 7 == 0 ? 0600 : 0644);
  }
  for (int i = 0; i < kPackages; i += 2) {  // half the package files exist already
    t.file(fmt::format("pkg/usr/share/doc/pkg{:03}", i), fmt::format("old version {}\n", i),
           i % 4 == 0 ? kL2 : kUp);
  }
  return t;
}

struct Outcome {
  std::string text;  // exit status and output, with the root path replaced by <root>
};

std::string normalize(std::string s, const std::string& root) {
  for (size_t pos; (pos = s.find(root)) != std::string::npos;)
    s.replace(pos, root.size(), "<root>");
  return s;
}

std::string run(const std::string& root, const std::vector<std::string>& argv,
                const std::string& rel_cwd = "") {
  auto r = it::run_process(argv, std::chrono::seconds(120),
                           rel_cwd.empty() ? root : root + "/" + rel_cwd);
  std::string status = r.timed_out ? "timed out" : fmt::format("exit {}", r.exit_code());
  return normalize(status + "\nstdout:\n" + r.out + "stderr:\n" + r.err, root);
}

// Same command on both roots; a mismatch is reported with both outputs.
void same(const std::string& what, const std::string& plain_root, const std::string& mnt_root,
          const std::vector<std::string>& argv, const std::string& rel_cwd = "",
          bool must_succeed = true) {
  std::string a = run(plain_root, argv, rel_cwd);
  std::string b = run(mnt_root, argv, rel_cwd);
  if (a != b) {
    FAIL_CHECK(
        fmt::format("{}: results differ\n--- plain dir:\n{}\n--- laminafs:\n{}", what, a, b));
  } else if (must_succeed && a.rfind("exit 0\n", 0) != 0) {
    FAIL_CHECK(fmt::format("{}: failed on both sides\n{}", what, a));
  }
}

// The dpkg-style loop; returns a transcript of every failing call (empty: all fine).
std::string dpkg_loop(const std::string& root) {
  std::string log;
  auto fail = [&](const std::string& call) { log += call + ": " + rc_str(-1, errno) + "\n"; };
  const std::string dir = root + "/pkg/usr/share/doc";
  for (int i = 0; i < kPackages; ++i) {
    const std::string name = fmt::format("{}/pkg{:03}", dir, i);
    const std::string tmp = name + ".dpkg-new";
    const std::string backup = name + ".dpkg-tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      fail("open " + tmp);
      continue;
    }
    std::string data =
        fmt::format("new version {}\n{}", i, std::string(static_cast<size_t>(i), 'n'));
    if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
      fail("write " + tmp);
    if (::fsync(fd) != 0) fail("fsync " + tmp);
    ::close(fd);
    struct stat st;
    if (::lstat(name.c_str(), &st) == 0 && ::link(name.c_str(), backup.c_str()) != 0)
      fail("link " + backup);
    if (::rename(tmp.c_str(), name.c_str()) != 0) fail("rename " + tmp);
  }
  for (int i = 0; i < kPackages; ++i) {
    const std::string backup = fmt::format("{}/pkg{:03}.dpkg-tmp", dir, i);
    struct stat st;
    if (::lstat(backup.c_str(), &st) == 0 && ::unlink(backup.c_str()) != 0)
      fail("unlink " + backup);
  }
  return log;
}

bool skip_git_index(const std::string& path) { return path == "project/.git/index"; }

}  // namespace

TEST_CASE("workload: make, tar, git and a dpkg-style loop", "[workload]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  Stack st(workload_tree());
  const std::string p = st.plain(), m = st.mnt();
  {
    std::string d = compare_trees(p, m, "plain", "laminafs");
    INFO("initial trees differ:\n" << d);
    REQUIRE(d.empty());
  }

  SECTION("make") {
    same("make", p, m, {"make"}, "project");
    same("./app", p, m, {"./app"}, "project");
    same("make (up to date)", p, m, {"make"}, "project");
    same("touch util.c", p, m, {"touch", "util.c"}, "project");
    same("make (after touch)", p, m, {"make"}, "project");
    same("make clean", p, m, {"make", "clean"}, "project");
    same("make (again)", p, m, {"make"}, "project");
    same("./app (again)", p, m, {"./app"}, "project");
  }
  SECTION("tar") {
    const std::vector<std::string> create = {
        "tar",          "--sort=name", "--mtime=@0",  "--owner=0", "--group=0", "--numeric-owner",
        "--format=gnu", "-cf",         "archive.tar", "data"};
    same("tar create", p, m, create);
    same("mkdir out", p, m, {"mkdir", "out"});
    same("tar extract", p, m, {"tar", "-xf", "archive.tar", "-C", "out"});
    same("tar list", p, m, {"tar", "-tvf", "archive.tar"});
    same("diff -r", p, m, {"diff", "-r", "data", "out/data"});
    same("tar extract over existing files", p, m, {"tar", "-xf", "archive.tar", "--overwrite"});
  }
  SECTION("git") {
    const std::vector<std::string> env = {"env",
                                          "GIT_AUTHOR_NAME=lamina",
                                          "GIT_AUTHOR_EMAIL=l@example.org",
                                          "GIT_COMMITTER_NAME=lamina",
                                          "GIT_COMMITTER_EMAIL=l@example.org",
                                          "GIT_AUTHOR_DATE=2020-01-01T00:00:00Z",
                                          "GIT_COMMITTER_DATE=2020-01-01T00:00:00Z",
                                          "GIT_CONFIG_NOSYSTEM=1",
                                          "HOME=/nonexistent",
                                          "git",
                                          "-c",
                                          "init.defaultBranch=main"};
    auto git = [&](std::vector<std::string> args) {
      std::vector<std::string> v = env;
      v.insert(v.end(), args.begin(), args.end());
      return v;
    };
    same("git init", p, m, git({"init", "-q"}), "project");
    same("git add", p, m, git({"add", "-A"}), "project");
    same("git commit", p, m, git({"commit", "-q", "-m", "initial"}), "project");
    same("git rev-parse", p, m, git({"rev-parse", "HEAD"}), "project");
    same("git fsck", p, m, git({"fsck", "--strict"}), "project");
    same("git status", p, m, git({"status", "--porcelain"}), "project");
    same("edit util.c", p, m, {"sh", "-c", "echo '/* changed */' >> util.c"}, "project");
    same("git commit -a", p, m, git({"commit", "-q", "-a", "-m", "second"}), "project");
    same("git log", p, m, git({"log", "--format=%H %s"}), "project");
    same("git gc", p, m, git({"gc", "-q"}), "project");
    same("git fsck after gc", p, m, git({"fsck", "--strict"}), "project");
  }
  SECTION("dpkg-style install loop") {
    std::string a = dpkg_loop(p);
    std::string b = dpkg_loop(m);
    CHECK(a.empty());
    if (a != b) FAIL_CHECK("dpkg loop: plain dir:\n" << a << "laminafs:\n" << b);
  }

  std::string d = compare_trees(p, m, "plain", "laminafs", skip_git_index);
  if (!d.empty()) FAIL_CHECK("trees differ:\n" << d);
  st.mount();
  std::string r = compare_trees(p, m, "plain", "laminafs(remounted)", skip_git_index);
  if (!r.empty()) FAIL_CHECK("trees differ after remount:\n" << r);
}

}  // namespace lamina::wt
