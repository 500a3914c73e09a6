// SPDX-License-Identifier: Apache-2.0
// laminafs reads an upper directory written by fuse-overlayfs (Debian's, run as root and as an
// unprivileged user with .wh. whiteouts) and shows the tree fuse-overlayfs showed.

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "integration/mount_helpers.h"
#include "integration/process.h"
#include "integration/tree_walker.h"

namespace lamina::it {
namespace {

constexpr uid_t kUser = 65534;

const char* const kChanges =
    "set -e; cd mnt; rm gone; rm -r dir; mkdir dir; echo new > dir/n; mv moved moved2; "
    "echo more >> data; chmod 600 mode; mkdir -p fresh/sub; echo f > fresh/sub/f; "
    "rm -r merged/a; echo b2 > merged/b; cd ..";

std::string run_as(bool user, const std::string& script) {
  std::vector<std::string> argv;
  if (user) {
    const std::string u = std::to_string(kUser);
    argv = {"setpriv", "--reuid=" + u, "--regid=" + u, "--clear-groups"};
  }
  argv.insert(argv.end(), {"sh", "-c", script});
  auto r = run_process(argv, std::chrono::seconds(60));
  return r.succeeded() ? "" : "failed: " + script + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

void check_reads_fuse_overlayfs_upper(bool user) {
  LAMINA_REQUIRE_MOUNT_ENV();
  REQUIRE(::access("/usr/bin/fuse-overlayfs", X_OK) == 0);  // scripts/deps.sh installs it
  TempDir tmp;
  REQUIRE(::chmod(tmp.path().c_str(), 0755) == 0);
  std::string lower = tmp.mkdir("lower");
  write_file(lower + "/gone", "g");
  write_file(lower + "/moved", "m");
  write_file(lower + "/data", "d");
  write_file(lower + "/mode", "x");
  write_file(tmp.mkdir("lower/dir") + "/old", "o");
  write_file(tmp.mkdir("lower/merged") + "/a", "a");
  write_file(lower + "/merged/b", "b");
  for (const char* d : {"upper", "work", "work2", "mnt"}) tmp.mkdir(d);
  if (user) {
    for (const char* p : {"lower", "lower/gone", "lower/moved", "lower/data", "lower/mode",
                          "lower/dir", "lower/dir/old", "lower/merged", "lower/merged/a",
                          "lower/merged/b", "upper", "work", "work2", "mnt"})
      REQUIRE(::lchown(tmp.sub(p).c_str(), kUser, kUser) == 0);
  }
  const std::string cd = "cd '" + tmp.path() + "'; ";
  // fuse-overlayfs writes; its view of the result is the reference.
  std::string env = user ? "FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT=1 " : "";
  std::string err = run_as(user, cd + env +
                                     "fuse-overlayfs -o lowerdir=lower,upperdir=upper,workdir=work "
                                     "mnt && " +
                                     kChanges);
  REQUIRE(err == "");
  REQUIRE(run_as(user, cd + "fusermount3 -u mnt") == "");
  // Read the same upper through fuse-overlayfs again, as root with allow_other, to list it.
  REQUIRE(run_as(false, cd + "fuse-overlayfs -o lowerdir=lower,upperdir=upper,workdir=work,"
                             "allow_other mnt") == "");
  WalkOptions opts;
  auto reference = listing(walk_tree(tmp.sub("mnt"), opts));
  unmount_fuse(tmp.sub("mnt"));

  Mount m(tmp.sub("mnt"), StackPaths{{lower}, tmp.sub("upper"), tmp.sub("work2"), {"ro"}});
  INFO(m.describe());
  REQUIRE(m.ok());
  auto entries = walk_tree(tmp.sub("mnt"), opts);
  std::string diff = diff_listings(reference, listing(entries), "fuse-overlayfs", "laminafs");
  INFO("upper written by fuse-overlayfs" << (user ? " (unprivileged)" : "") << ":\n" << diff);
  CHECK(diff.empty());
  auto leaks = overlay_leaks(tmp.sub("mnt"), entries);
  CHECK(leaks.empty());
}

}  // namespace

TEST_CASE("fuse-overlayfs interop: laminafs reads its upper (root)", "[interop]") {
  check_reads_fuse_overlayfs_upper(false);
}

TEST_CASE("fuse-overlayfs interop: laminafs reads its upper (unprivileged, .wh. forms)",
          "[interop]") {
  // /dev/fuse may be 0600 in a container: opened for the unprivileged part, put back after.
  struct stat st;
  REQUIRE(::stat("/dev/fuse", &st) == 0);
  const mode_t mode = st.st_mode & 07777;
  ::chmod("/dev/fuse", mode | 0666);
  check_reads_fuse_overlayfs_upper(true);
  ::chmod("/dev/fuse", mode);
}

}  // namespace lamina::it
