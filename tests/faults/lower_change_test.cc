// SPDX-License-Identifier: Apache-2.0
// A lower layer changed behind the mount's back (overlayfs calls this undefined behaviour,
// but a daemon must survive it): files deleted or replaced, directories renamed or removed
// after laminafs has looked them up and cached their descriptors. Every operation must give
// either an error a caller expects (ENOENT, ESTALE) or a state the lower has had; the daemon
// never crashes and keeps serving. Run with the default (long) cache timeouts and with
// timeout=0, where every operation asks the daemon again.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <string>
#include <vector>

#include "faults/fault_support.h"

namespace lamina::ft {
namespace {

const std::string kOld = "old\n";
const std::string kNew = "new content\n";

bool acceptable(int err) { return err == 0 || err == ENOENT || err == ESTALE; }

// errno of listing a directory.
int readdir_errno(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return errno;
  errno = 0;
  while (::readdir(d) != nullptr) {
  }
  int err = errno;
  ::closedir(d);
  return err;
}

}  // namespace

TEST_CASE("A lower changed while mounted: errors or the new state, never a crash",
          "[faults][lower]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  const std::string timeout = GENERATE(as<std::string>{}, "", "timeout=0");
  INFO("extra option: " << timeout);
  it::TempDir tmp;
  const std::string lower = tmp.mkdir("lower");
  const std::string lower2 = tmp.mkdir("lower2");
  for (const char* f : {"del.txt", "repl.txt", "chm.txt", "app.txt", "d/a.txt", "d/b.txt",
                        "gone/x.txt", "gone/deep/y.txt", "keep.txt"}) {
    const std::string p = lower + "/" + f;
    it::make_dirs(p.substr(0, p.rfind('/')));
    it::write_file(p, kOld);
  }
  it::write_file(lower2 + "/under.txt", kOld);
  it::StackPaths paths{{lower, lower2}, tmp.mkdir("upper"), tmp.mkdir("work"), {}};
  if (!timeout.empty()) paths.extra.push_back(timeout);
  const std::string mnt = tmp.mkdir("mnt");
  it::ForegroundDaemon daemon(mnt, paths);
  INFO("laminafs -f: " << daemon.describe());
  REQUIRE(daemon.ok());
  auto m = [&](const std::string& rel) { return mnt + "/" + rel; };
  auto l = [&](const std::string& rel) { return lower + "/" + rel; };

  // Everything looked up and read once: the daemon holds nodes and descriptors for it all.
  std::string got;
  for (const char* f : {"del.txt", "repl.txt", "chm.txt", "app.txt", "d/a.txt", "d/b.txt",
                        "gone/x.txt", "gone/deep/y.txt", "keep.txt", "under.txt"}) {
    REQUIRE(read_all(m(f), &got) == 0);
  }
  // An open file whose lower goes away under it.
  int held = ::open(m("del.txt").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(held >= 0);

  // Behind the mount's back.
  REQUIRE(::unlink(l("del.txt").c_str()) == 0);
  it::write_file(l("repl.txt.tmp"), kNew);
  REQUIRE(::rename(l("repl.txt.tmp").c_str(), l("repl.txt").c_str()) == 0);
  REQUIRE(::unlink(l("chm.txt").c_str()) == 0);
  REQUIRE(::unlink(l("app.txt").c_str()) == 0);
  REQUIRE(::rename(l("d").c_str(), l("d2").c_str()) == 0);
  it::remove_tree(l("gone"));
  it::write_file(l("fresh.txt"), kNew);

  struct Op {
    const char* what;
    std::function<int()> run;
  };
  const std::vector<Op> ops = {
      {"read held fd", [&] { return errno_of(static_cast<int>(::pread(held, got.data(), 1, 0))); }},
      {"read deleted", [&] { return read_all(m("del.txt"), &got); }},
      {"read replaced",
       [&] {
         int err = read_all(m("repl.txt"), &got);
         return err == 0 && got != kOld && got != kNew ? EBADMSG : err;
       }},
      {"chmod deleted", [&] { return errno_of(::chmod(m("chm.txt").c_str(), 0600)); }},
      {"append deleted", [&] { return write_path(m("app.txt"), O_WRONLY | O_APPEND, "x"); }},
      {"setxattr deleted",
       [&] { return errno_of(::setxattr(m("chm.txt").c_str(), "user.k", "v", 1, 0)); }},
      {"unlink deleted", [&] { return errno_of(::unlink(m("del.txt").c_str())); }},
      {"list renamed dir", [&] { return readdir_errno(m("d")); }},
      {"read in renamed dir", [&] { return read_all(m("d/a.txt"), &got); }},
      {"create in renamed dir",
       [&] { return write_path(m("d/new.txt"), O_CREAT | O_WRONLY, "n"); }},
      {"rename in renamed dir",
       [&] { return errno_of(::rename(m("d/b.txt").c_str(), m("d/c.txt").c_str())); }},
      {"list removed dir", [&] { return readdir_errno(m("gone")); }},
      {"list removed subdir", [&] { return readdir_errno(m("gone/deep")); }},
      {"read in removed dir", [&] { return read_all(m("gone/deep/y.txt"), &got); }},
      {"rmdir removed dir", [&] { return errno_of(::rmdir(m("gone/deep").c_str())); }},
      {"mkdir in removed dir", [&] { return errno_of(::mkdir(m("gone/n").c_str(), 0755)); }},
      {"rename removed dir",
       [&] { return errno_of(::rename(m("gone").c_str(), m("gone2").c_str())); }},
      {"list root", [&] { return readdir_errno(mnt); }},
  };
  for (const auto& op : ops) {
    int err = op.run();
    INFO(op.what << ": " << (err ? it::errno_name(err) : "ok"));
    CHECK(acceptable(err));
    REQUIRE_FALSE(daemon.wait_exit(std::chrono::milliseconds(0)));
  }
  ::close(held);

  // The new state shows where nothing was cached, and the rest keeps working.
  CHECK(read_all(m("fresh.txt"), &got) == 0);
  CHECK(got == kNew);
  CHECK(read_all(m("d2/a.txt"), &got) == 0);
  CHECK(got == kOld);
  CHECK(read_all(m("keep.txt"), &got) == 0);
  CHECK(got == kOld);
  CHECK(write_path(m("keep.txt"), O_WRONLY | O_APPEND, "more\n") == 0);
  CHECK(read_all(m("under.txt"), &got) == 0);
  CHECK(write_path(m("made.txt"), O_CREAT | O_WRONLY, kNew) == 0);
  CHECK(work_leftovers(paths.work).empty());
  CHECK_FALSE(daemon.wait_exit(std::chrono::milliseconds(0)));
  CHECK(mount_alive(mnt));
}

}  // namespace lamina::ft
