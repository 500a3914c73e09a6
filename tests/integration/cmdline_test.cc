// SPDX-License-Identifier: Apache-2.0
// The fuse-overlayfs compatible command line: errors are refused with a message that names the
// problem, the options container engines pass are accepted, foreground mode and signals end
// the daemon cleanly.

#include <dirent.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <fstream>
#include <thread>

#include "integration/parity.h"

namespace lamina::it {
namespace {

using namespace std::chrono_literals;

std::string lower_case(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool contains_ci(const std::string& haystack, const std::string& needle) {
  return lower_case(haystack).find(lower_case(needle)) != std::string::npos;
}

// Runs laminafs with `args` and checks it exits non-zero (not by a signal, not hanging), mounts
// nothing on `mnt`, and says something on stderr containing `needle`.
void expect_refused(const std::vector<std::string>& args, const std::string& mnt,
                    const std::string& needle, const std::string& label) {
  std::vector<std::string> argv = {laminafs_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcResult r = run_process(argv, 20s);
  bool mounted = !mnt.empty() && is_mountpoint(mnt);
  if (mounted) unmount_fuse(mnt);
  std::string cmd;
  for (const auto& a : argv) cmd += (a.size() > 200 ? a.substr(0, 200) + "..." : a) + " ";
  INFO(label << "\ncommand: " << cmd << "\noutcome: " << r.describe());
  CHECK(r.exited());
  CHECK(r.exit_code() != 0);
  CHECK_FALSE(mounted);
  INFO("stderr should name the problem (contain \"" << needle << "\")");
  CHECK(contains_ci(r.err, needle));
}

// Processes other than ours whose argv[0] is the daemon and whose arguments include `mnt`.
std::vector<pid_t> daemon_pids(const std::string& mnt) {
  std::vector<pid_t> pids;
  DIR* d = ::opendir("/proc");
  if (!d) return pids;
  while (struct dirent* de = ::readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(de->d_name[0]))) continue;
    std::ifstream in(std::string("/proc/") + de->d_name + "/cmdline", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> args;
    for (size_t start = 0; start < all.size();) {
      size_t end = all.find('\0', start);
      if (end == std::string::npos) end = all.size();
      args.push_back(all.substr(start, end - start));
      start = end + 1;
    }
    if (args.empty() || args[0] != laminafs_bin()) continue;
    if (std::find(args.begin(), args.end(), mnt) == args.end()) continue;
    pids.push_back(static_cast<pid_t>(std::atoi(de->d_name)));
  }
  ::closedir(d);
  return pids;
}

// True once pid is gone or a zombie (a daemonized process is not our child to reap).
bool wait_gone(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(in, line)) return true;
    auto paren = line.rfind(')');
    if (paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z') {
      return true;
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

bool wait_mounted(const std::string& mnt, bool want, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (is_mountpoint(mnt) != want) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// A two-layer stack with a file in each layer, returns lowerdir paths (topmost first).
std::vector<std::string> small_stack(const TempDir& tmp) {
  StackSpec s(2);
  s[0].file("bottom", "b");
  s[1].file("top", "t");
  return materialize_stack(s, tmp.sub("layers"), constant_forms(kKernelForms));
}

TEST_CASE("cmdline: --version", "[cmdline]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  ProcResult r = run_process({laminafs_bin(), "--version"}, 10s);
  INFO(r.describe());
  CHECK(r.succeeded());
  CHECK(contains_ci(r.out + r.err, "laminafs"));
}

TEST_CASE("cmdline: bad command lines are refused with a message naming the problem", "[cmdline]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  auto lowers = small_stack(tmp);
  const std::string mnt = tmp.mkdir("mnt");
  const std::string upper = tmp.mkdir("upper");
  const std::string work = tmp.mkdir("work");
  const std::string lower = lowers[0];

  SECTION("no -o at all") { expect_refused({mnt}, mnt, "lowerdir", "no options"); }
  SECTION("no lowerdir") {
    expect_refused({"-o", "upperdir=" + upper + ",workdir=" + work, mnt}, mnt, "lowerdir",
                   "upperdir and workdir but no lowerdir");
  }
  SECTION("lowerdir does not exist") {
    std::string missing = tmp.sub("no-such-layer");
    expect_refused({"-o", "lowerdir=" + missing, mnt}, mnt, missing, "missing lowerdir");
  }
  SECTION("the second lowerdir does not exist") {
    std::string missing = tmp.sub("no-such-layer-2");
    expect_refused({"-o", "lowerdir=" + lower + ":" + missing, mnt}, mnt, missing,
                   "second lowerdir missing");
  }
  SECTION("lowerdir is a regular file") {
    std::string file = tmp.sub("a-file");
    write_file(file, "not a dir");
    expect_refused({"-o", "lowerdir=" + file, mnt}, mnt, file, "lowerdir is a file");
  }
  SECTION("upperdir without workdir") {
    expect_refused({"-o", "lowerdir=" + lower + ",upperdir=" + upper, mnt}, mnt, "workdir",
                   "upperdir without workdir");
  }
  SECTION("upperdir does not exist") {
    std::string missing = tmp.sub("no-such-upper");
    expect_refused({"-o", "lowerdir=" + lower + ",upperdir=" + missing + ",workdir=" + work, mnt},
                   mnt, missing, "missing upperdir");
  }
  SECTION("upperdir and workdir on different filesystems") {
    std::string other = tmp.mkdir("tmpfs");
    REQUIRE(::mount("lamina-it-tmpfs", other.c_str(), "tmpfs", 0, "size=16m") == 0);
    std::string upper2 = other + "/upper";
    make_dirs(upper2);
    expect_refused({"-o", "lowerdir=" + lower + ",upperdir=" + upper2 + ",workdir=" + work, mnt},
                   mnt, "workdir", "workdir on another filesystem than upperdir");
    ::umount2(other.c_str(), MNT_DETACH);
  }
  SECTION("unknown option") {
    expect_refused({"-o", "lowerdir=" + lower + ",bogus=1", mnt}, mnt, "bogus", "-o bogus=1");
  }
  SECTION("refused fuse-overlayfs option plugins=") {
    expect_refused({"-o", "lowerdir=" + lower + ",plugins=x", mnt}, mnt, "plugins", "-o plugins=x");
  }
  SECTION("mountpoint does not exist") {
    std::string missing = tmp.sub("no-such-mnt");
    expect_refused({"-o", "lowerdir=" + lower, missing}, missing, missing, "missing mountpoint");
  }
  SECTION("no mountpoint argument") {
    expect_refused({"-o", "lowerdir=" + lower}, "", "mountpoint", "no mountpoint argument");
  }
}

TEST_CASE("cmdline: 500 symlinked lowers in a long -o with the options engines pass", "[cmdline]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  const size_t kLayers = 500;
  std::vector<std::string> links;
  for (size_t i = 0; i < kLayers; ++i) {
    std::string layer = tmp.mkdir(fmt::format("layers/{}/diff", i));
    write_file(layer + fmt::format("/f{:03}", i), std::to_string(i));
    std::string link = tmp.sub(fmt::format("l/L{:03}ABCDEFGHIJKLMNOP", i));
    if (i == 0) make_dirs(tmp.sub("l"));
    make_symlink(fmt::format("../layers/{}/diff", i), link);
    links.push_back(link);
  }
  {
    std::string owned = tmp.sub("layers/0/diff/owned");
    write_file(owned, "squash me");
    REQUIRE(::chown(owned.c_str(), 4321, 4321) == 0);
  }
  std::string lowerdir = "lowerdir=";
  for (size_t i = 0; i < links.size(); ++i) lowerdir += (i ? ":" : "") + links[i];
  const std::string opts = lowerdir +
                           ",,ro,fsync=0,volatile,noacl,xattr_permissions=2,"
                           "squash_to_uid=0,squash_to_gid=0";
  INFO("-o is " << opts.size() << " bytes");
  REQUIRE(opts.size() > 8000);
  Mount m(tmp.mkdir("mnt"), {"-o", opts});
  INFO(m.describe());
  REQUIRE(m.ok());

  size_t seen = 0;
  std::vector<std::string> missing;
  for (size_t i = 0; i < kLayers; ++i) {
    std::string p = m.path() + fmt::format("/f{:03}", i);
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0) {
      ++seen;
    } else {
      missing.push_back(p);
    }
  }
  INFO(missing.size() << " files missing, first: " << (missing.empty() ? "" : missing.front()));
  CHECK(seen == kLayers);
  auto entries = walk_tree(m.path());
  CHECK(entries.size() == kLayers + 2);  // root, 500 files, owned

  struct stat st;
  REQUIRE(::lstat((m.path() + "/owned").c_str(), &st) == 0);
  INFO(
      "squash_to_uid=0,squash_to_gid=0 must show every file as owned by 0:0 "
      "(fuse-overlayfs semantics)");
  CHECK(st.st_uid == 0);
  CHECK(st.st_gid == 0);
}

TEST_CASE("cmdline: lowerdir path with an escaped colon", "[cmdline]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  std::string colon = tmp.mkdir("la:yer");
  write_file(colon + "/in-colon-layer", "c");
  std::string plain = tmp.mkdir("plain");
  write_file(plain + "/in-plain-layer", "p");
  // -o lowerdir=/…/la\:yer:/…/plain
  Mount m(tmp.mkdir("mnt"), {"-o", "lowerdir=" + tmp.sub("la\\:yer") + ":" + plain});
  INFO(m.describe());
  REQUIRE(m.ok());
  CHECK(read_file(m.path() + "/in-colon-layer") == "c");
  CHECK(read_file(m.path() + "/in-plain-layer") == "p");
}

TEST_CASE("cmdline: relative lowerdir paths resolve against the working directory", "[cmdline]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  small_stack(tmp);
  const std::string mnt = tmp.mkdir("mnt");
  ProcResult r =
      run_process({laminafs_bin(), "-o", "lowerdir=layers/L1:layers/L0", "mnt"}, 30s, tmp.path());
  bool mounted = is_mountpoint(mnt);
  INFO(r.describe());
  CHECK(r.succeeded());
  CHECK(mounted);
  if (mounted) {
    CHECK(read_file(mnt + "/top") == "t");
    CHECK(read_file(mnt + "/bottom") == "b");
    unmount_fuse(mnt);
  }
}

TEST_CASE("cmdline: foreground mode exits 0 after fusermount3 -u", "[cmdline]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  auto flag = GENERATE(as<std::string>{}, "-f", "-d");
  INFO("flag " << flag);
  TempDir tmp;
  auto lowers = small_stack(tmp);
  const std::string mnt = tmp.mkdir("mnt");
  watchdog_track(mnt);
  Child child({laminafs_bin(), flag, "-o", mount_options({lowers, "", "", {}}), mnt});
  bool up = wait_mounted(mnt, true, 15s);
  {
    INFO("not mounted within 15 s: " << child.result().describe());
    REQUIRE(up);
  }
  CHECK(child.running());
  CHECK(read_file(mnt + "/top") == "t");
  ProcResult u = run_process({"fusermount3", "-u", mnt}, 20s);
  INFO("fusermount3 -u: " << u.describe());
  CHECK(u.succeeded());
  auto status = child.wait(15s);
  if (!status) {
    child.kill_and_reap();
    unmount_fuse(mnt);
  }
  INFO("daemon: " << child.result().describe());
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK_FALSE(is_mountpoint(mnt));
  watchdog_untrack(mnt);
}

TEST_CASE("cmdline: SIGTERM unmounts and exits cleanly", "[cmdline][signal]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  auto lowers = small_stack(tmp);

  SECTION("foreground daemon") {
    const std::string mnt = tmp.mkdir("mnt-fg");
    watchdog_track(mnt);
    Child child({laminafs_bin(), "-f", "-o", mount_options({lowers, "", "", {}}), mnt});
    REQUIRE(wait_mounted(mnt, true, 15s));
    CHECK(read_file(mnt + "/bottom") == "b");
    REQUIRE(::kill(child.pid(), SIGTERM) == 0);
    auto status = child.wait(15s);
    bool unmounted = wait_mounted(mnt, false, 5s);
    if (!status) child.kill_and_reap();
    if (!unmounted) unmount_fuse(mnt);
    INFO("daemon: " << child.result().describe());
    REQUIRE(status.has_value());
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(unmounted);
    watchdog_untrack(mnt);
  }

  SECTION("daemonized") {
    Mount m(tmp.mkdir("mnt-bg"), StackPaths{lowers, "", "", {}});
    INFO(m.describe());
    REQUIRE(m.ok());
    auto pids = daemon_pids(m.path());
    INFO("laminafs processes serving " << m.path() << ": " << pids.size());
    REQUIRE(pids.size() == 1);
    REQUIRE(::kill(pids[0], SIGTERM) == 0);
    CHECK(wait_gone(pids[0], 15s));
    CHECK(wait_mounted(m.path(), false, 5s));
  }

  SECTION("fusermount3 -u ends a daemonized daemon") {
    Mount m(tmp.mkdir("mnt-u"), StackPaths{lowers, "", "", {}});
    INFO(m.describe());
    REQUIRE(m.ok());
    auto pids = daemon_pids(m.path());
    REQUIRE(pids.size() == 1);
    m.unmount();
    CHECK_FALSE(is_mountpoint(m.path()));
    CHECK(wait_gone(pids[0], 15s));
  }
}

}  // namespace
}  // namespace lamina::it
