// SPDX-License-Identifier: Apache-2.0
// lamina commit, end to end, with the real tool and real mounts:
//  - round trip: plain layer dirs -> store images; `lamina mount` with an upper; every kind of
//    change, in lockstep with a plain directory; commit; `lamina mount` of the new image shows
//    the same tree as the plain directory and the same times as the first mount; again on top
//    (a stack of any depth);
//  - the same changes written by kernel overlayfs, fuse-overlayfs and laminafs commit to the
//    same layer id;
//  - kill -9 at random points of a commit, then `lamina fsck` is clean;
//  - concurrent commits with gc running;
//  - bad input: a clear message, a non-zero exit, nothing written to the store.

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "integration/kill_loop.h"
#include "integration/tree_walker.h"
#include "store/store_support.h"
#include "write/write_support.h"

namespace lamina::st {
namespace {

namespace s = wt::step;
using wt::kL1;
using wt::kL2;
using wt::TreeSpec;

TreeSpec base_tree() {
  TreeSpec t;
  t.dir("etc", kL2 | kL1)
      .file("etc/conf", "key=value\n", kL2, 0644, 0, 0, {{"user.orig", "o"}})
      .file("etc/old.conf", "old\n", kL2)
      .file("etc/l1.conf", "from l1\n", kL1)
      .whiteout("etc/gone", kL1)
      .file("etc/gone", "deleted by l1\n", kL2)
      .file("bin/tool", "#!/bin/sh\necho tool\n", kL2, 0755)
      .hardlink("bin/tool-link", "bin/tool", kL2)
      .symlink("bin/sh", "tool", kL2)
      .dir("docs", kL2 | kL1)
      .dir("docs/guide", kL2)
      .file("docs/guide/ch1.txt", "chapter 1\n", kL2)
      .file("docs/guide/ch2.txt", "chapter 2\n", kL2)
      .file("docs/readme", "readme\n", kL1)
      .dir("opq", kL2 | kL1)
      .file("opq/hidden", "hidden by l1's opaque dir\n", kL2)
      .file("opq/shown", "l1\n", kL1)
      .opaque("opq", kL1)
      .dir("todelete", kL2)
      .file("todelete/one", "1\n", kL2)
      .file("todelete/sub/two", "2\n", kL2)
      .file("data.bin", wt::pattern_bytes(300 * 1024, 7), kL2, 0640)
      .sparse("sparse.img", kL2, 8 << 20, {{4096, "head"}, {(6 << 20) + 5, "tail"}})
      .fifo("run/fifo", kL1)
      .file("home/user/notes", "notes\n", kL1, 0600, 1000, 1000)
      .dir("home/user", kL1, 0700, 1000, 1000);
  return t;
}

// Every kind of change a container makes.
std::vector<wt::Step> round1() {
  return {
      s::write_file("etc/new.conf", "new\n"),
      s::open("etc/conf", O_WRONLY | O_APPEND, "c"),
      s::write("c", "appended\n"),
      s::close("c"),
      s::unlink("etc/old.conf"),
      s::unlink("todelete/one"),
      s::unlink("todelete/sub/two"),
      s::rmdir("todelete/sub"),
      s::rmdir("todelete"),
      s::mkdir("todelete"),  // over the deleted directory: opaque
      s::write_file("todelete/fresh", "fresh\n"),
      s::rename("docs", "documentation"),  // a merged lower dir with children
      s::rename("etc/l1.conf", "etc/renamed.conf"),
      s::chmod("data.bin", 0600),  // metadata only
      s::lchown("bin/tool", 1000, 1000),
      s::symlink("/etc/conf", "abs-link"),
      s::link("etc/new.conf", "etc/new-link"),
      s::link("bin/tool", "bin/tool-link2"),
      s::setxattr("etc/conf", "user.added", "v"),
      s::removexattr("etc/conf", "user.orig"),
      s::mknod("run/fifo2", S_IFIFO | 0644),
      s::mknod("dev-null", S_IFCHR | 0666, makedev(1, 3)),
      s::truncate("sparse.img", 16 << 20),
      s::open("sparse.img", O_WRONLY, "sp"),
      s::pwrite("sp", 12 << 20, "middle"),
      s::close("sp"),
      s::utimens("home/user/notes", {1000000000, 0}, {1000000000, 123456789}),
      s::write_file("home/user/notes", "rewritten\n", 0600),
      s::mkdir("new"),
      s::mkdir("new/deep"),
      s::mkdir("new/deep/er"),
      s::write_file("new/deep/er/f", "deep\n"),
  };
}

std::vector<wt::Step> round2() {
  return {
      s::unlink("documentation/guide/ch1.txt"),
      s::rename("documentation", "docs"),  // back, one layer up
      s::write_file("etc/conf", "replaced\n"),
      s::unlink("bin/tool-link"),
      s::rmdir("new/deep/er") /* ENOTEMPTY on both sides */,
      s::unlink("new/deep/er/f"),
      s::rmdir("new/deep/er"),
      s::rename("opq/shown", "opq/moved"),
      s::write_file("opq/hidden", "a new file of the hidden name\n"),
      s::chmod("etc", 0750),
  };
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& l : v) out += "  " + l + "\n";
  return out;
}

// path -> mtime of every entry.
std::map<std::string, std::string> mtimes(const std::string& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : it::walk_tree(root, {false, false})) {
    out[e.path] = fmt::format("{}.{:09}", e.st.st_mtim.tv_sec, e.st.st_mtim.tv_nsec);
  }
  return out;
}

std::string mtime_diff(const std::map<std::string, std::string>& a,
                       const std::map<std::string, std::string>& b) {
  std::string out;
  for (const auto& [p, t] : a) {
    auto it = b.find(p);
    if (it == b.end()) continue;  // the tree comparison reports missing entries
    if (it->second != t) out += fmt::format("  {}: {} vs {}\n", p, t, it->second);
  }
  return out;
}

void commit_ok(const std::string& root, const std::vector<std::string>& args) {
  std::vector<std::string> a = {"commit", "-q"};
  a.insert(a.end(), args.begin(), args.end());
  auto r = lamina(root, a);
  INFO("lamina commit: " << r.describe());
  REQUIRE(r.succeeded());
}

void lockstep(const std::vector<wt::Step>& steps, const std::string& plain, const std::string& mnt,
              const char* round) {
  wt::Ctx p(plain, "plain");
  wt::Ctx m(mnt, "lamina mount");
  auto reports = wt::run_lockstep(steps, p, m);
  p.close_all();
  m.close_all();
  if (!reports.empty())
    FAIL_CHECK(round << ": steps differ from the plain dir:\n" << joined(reports));
}

TEST_CASE("round trip: mount, change everything, commit, mount the new image, twice", "[store]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir t;
  const std::string root = t.sub("store");
  TreeSpec spec = base_tree();
  const std::string l1 = t.mkdir("l1"), l2 = t.mkdir("l2"), plain = t.mkdir("plain");
  spec.build_layer(l2, kL2);
  spec.build_layer(l1, kL1);
  spec.build_merged(plain);
  // Plain layer dirs into the store: l2 is a base layer, l1 goes on top of it.
  commit_ok(root, {"--upper", l2, "--tag", "rt/l2"});
  commit_ok(root, {"--upper", l1, "--image", "rt/l2", "--tag", "rt/base"});
  {
    ImageMount m(root, "rt/base", t.mkdir("m0"));
    std::string d = wt::compare_trees(plain, m.path(), "plain", "rt/base");
    INFO("the stored image differs from the layers' merged view:\n" << d);
    REQUIRE(d.empty());
  }
  const std::vector<std::pair<std::string, std::vector<wt::Step>>> rounds = {{"round 1", round1()},
                                                                             {"round 2", round2()}};
  std::string image = "rt/base";
  int n = 0;
  for (const auto& [name, steps] : rounds) {
    ++n;
    const std::string upper = t.mkdir(fmt::format("u{}", n)), work = t.mkdir(fmt::format("w{}", n));
    const std::string mnt = t.mkdir(fmt::format("m{}", n));
    {
      ImageMount m(root, image, mnt, {"--upper", upper, "--work", work});
      lockstep(steps, plain, mnt, name.c_str());
    }
    const std::string next = fmt::format("rt/c{}", n);
    commit_ok(root, {"--upper", upper, "--image", image, "--tag", next});
    ImageMount before(root, image, mnt, {"--upper", upper, "--work", work});
    ImageMount after(root, next, t.mkdir(fmt::format("n{}", n)));
    std::string d = wt::compare_trees(plain, after.path(), "plain", next);
    if (!d.empty()) FAIL_CHECK(name << ": the committed image differs from the plain dir:\n" << d);
    d = wt::compare_trees(before.path(), after.path(), "mount before commit", next);
    if (!d.empty()) FAIL_CHECK(name << ": the committed image differs from the mount:\n" << d);
    std::string td = mtime_diff(mtimes(before.path()), mtimes(after.path()));
    if (!td.empty()) FAIL_CHECK(name << ": mtimes differ after commit:\n" << td);
    CHECK(image_layers(root, next).size() == image_layers(root, image).size() + 1);
    image = next;
  }
  auto fsck = lamina(root, {"fsck"});
  INFO(fsck.describe() << fsck.out);
  CHECK(fsck.succeeded());
}

// The same changes through three implementations: the committed layers must be one.
TEST_CASE("kernel overlayfs, fuse-overlayfs and laminafs uppers commit to the same layer id",
          "[store]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir t;
  const std::string root = t.sub("store");
  TreeSpec spec = base_tree();
  const std::string l1 = t.mkdir("l1"), l2 = t.mkdir("l2");
  spec.build_layer(l2, kL2);
  spec.build_layer(l1, kL1);
  // Lower hard links whose one name is changed diverge in kernel overlayfs without index
  // (copy-up breaks the link); leave those out of this comparison.
  // fuse-overlayfs answers EXDEV to renaming a lower directory, as kernel overlayfs does
  // without redirect_dir: rename like mv(1), which then copies.
  std::vector<wt::Step> steps;
  for (auto& st : round1()) {
    if (st.desc.find("bin/tool") != std::string::npos) continue;
    if (st.desc.find("renameat2(docs, documentation") != std::string::npos) {
      steps.push_back(s::custom("mv docs documentation", [](wt::Ctx& c) {
        return it::run_process({"mv", c.p("docs"), c.p("documentation")}).describe();
      }));
      continue;
    }
    steps.push_back(st);
  }
  struct Impl {
    const char* name;
    std::function<void(const std::string& up, const std::string& work, const std::string& mnt)>
        mount;
  };
  const std::string lowers = l1 + ":" + l2;
  std::map<std::string, std::string> ids;
  std::vector<std::string> impls = {"laminafs", "kernel", "fuse-overlayfs"};
  if (::access("/usr/bin/fuse-overlayfs", X_OK) != 0) {
    FAIL("fuse-overlayfs is not installed (scripts/deps.sh installs it)");
  }
  for (const auto& impl : impls) {
    const std::string up = t.mkdir(impl + "-up"), work = t.mkdir(impl + "-work");
    const std::string mnt = t.mkdir(impl + "-mnt");
    {
      it::StackPaths paths{{l1, l2}, up, work, {}};
      std::unique_ptr<wt::KernelMount> kernel;
      std::unique_ptr<it::Mount> fuse;
      if (impl == "kernel") {
        kernel = std::make_unique<wt::KernelMount>(mnt, std::vector<std::string>{l1, l2}, up, work,
                                                   "redirect_dir=on,metacopy=on,index=off");
        INFO(kernel->error());
        REQUIRE(kernel->ok());
      } else {
        std::vector<std::string> args = {"-o", it::mount_options(paths), mnt};
        if (impl == "fuse-overlayfs")
          args.insert(args.begin(), "/usr/bin/fuse-overlayfs");
        else
          args.insert(args.begin(), it::laminafs_bin());
        auto r = it::run_process(args);
        INFO(impl << ": " << r.describe());
        REQUIRE(r.succeeded());
      }
      wt::Ctx c(mnt, impl);
      for (const auto& st : steps) {
        std::string r = st.run(c);
        if (r.find("-1 ") == 0 || r.find("exit 1") != std::string::npos) {
          FAIL_CHECK(impl << ": " << st.desc << " -> " << r);
        }
      }
      c.close_all();
      if (kernel)
        kernel->unmount();
      else
        it::unmount_fuse(mnt);
    }
    auto r = lamina(root, {"commit", "-q", "--upper", up, "--lower", lowers, "--tag", "id/" + impl,
                           "--timestamp", "1700000000"});
    INFO(impl << ": " << r.describe());
    REQUIRE(r.succeeded());
    ids[impl] = r.out;
  }
  auto manifest = [&](const std::string& impl) {
    std::string id = ids[impl].substr(0, 32);
    std::ifstream in(root + "/layers/" + id + "/manifest");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  for (const char* impl : {"kernel", "fuse-overlayfs"}) {
    INFO(impl << "'s layer:\n" << manifest(impl) << "laminafs's layer:\n" << manifest("laminafs"));
    CHECK(ids[impl] == ids["laminafs"]);
  }
  // Same change, same id: committing the laminafs upper again adds nothing.
  auto again = lamina(root, {"commit", "--json", "--upper", t.sub("laminafs-up"), "--lower", lowers,
                             "--tag", "id/again", "--timestamp", "1700000000"});
  REQUIRE(again.succeeded());
  auto j = nlohmann::json::parse(again.out);
  CHECK(j["layer"].get<std::string>() + "\n" == ids["laminafs"]);
  CHECK(j["bytes_added"].get<uint64_t>() == 0);
  CHECK(j["objects_added"].get<uint64_t>() == 0);
}

// A tree big enough that a commit takes a while: kill points land inside it.
void make_big_upper(const std::string& dir, unsigned files, size_t size, uint64_t salt) {
  for (unsigned i = 0; i < files; ++i) {
    std::string sub = fmt::format("{}/d{}", dir, i % 20);
    std::filesystem::create_directories(sub);
    std::ofstream f(fmt::format("{}/f{}", sub, i), std::ios::binary);
    f << wt::pattern_bytes(size, salt * 100000 + i);
  }
}

TEST_CASE("kill -9 at random points of a commit leaves a store that fsck calls clean",
          "[store][crash]") {
  it::TempDir t;
  const std::string root = t.sub("store");
  const std::string upper = t.mkdir("upper");
  make_big_upper(upper, 400, 96 * 1024, 1);
  const uint64_t sd = it::crash_seed("commit");
  INFO("LAMINA_SEED=" << sd);
  std::mt19937_64 rng(sd);
  // How long a whole commit takes here, to spread the kill points over it.
  it::ProcResult probe;
  const auto full = it::time_run(
      {lamina_bin(), "--root", root, "commit", "-q", "--upper", upper, "--tag", "crash/probe"},
      &probe);
  REQUIRE(probe.succeeded());
  REQUIRE(lamina(root, {"rm", "crash/probe"}).succeeded());
  REQUIRE(lamina(root, {"gc"}).succeeded());
  int killed = 0, finished = 0;
  const int rounds = it::crash_iterations(12);
  for (int i = 0; i < rounds; ++i) {
    // New content each time (else every object is already stored and the window is tiny).
    const std::string up = t.mkdir(fmt::format("up{}", i));
    make_big_upper(up, 400, 96 * 1024, 10 + i);
    const std::string tag = fmt::format("crash/{}", i);
    auto run = it::run_and_kill(
        {lamina_bin(), "--root", root, "commit", "-q", "--upper", up, "--tag", tag}, full, rng);
    ++(run.killed ? killed : finished);
    const auto delay = run.delay;
    auto fsck = lamina(root, {"fsck"});
    INFO("after kill " << i << " at " << delay.count() << " us: " << fsck.out << fsck.err);
    REQUIRE(fsck.succeeded());
    // The image is either absent or complete.
    auto layers = image_layers(root, tag);
    if (!layers.empty()) {
      ImageMount m(root, tag, t.mkdir(fmt::format("m{}", i)));
      std::string d = wt::compare_trees(up, m.path(), "upper", tag);
      INFO(d);
      CHECK(d.empty());
    }
    // Long runs (LAMINA_CRASH_ITERATIONS) must not fill the disk: the image goes too.
    std::filesystem::remove_all(up);
    if (!layers.empty()) REQUIRE(lamina(root, {"rm", tag}).succeeded());
    if (i % 8 == 7) REQUIRE(lamina(root, {"gc"}).succeeded());
  }
  std::printf("crash commit: %d killed, %d finished\n", killed, finished);
  INFO("killed " << killed << ", finished " << finished);
  CHECK(killed > 0);
  auto gc = lamina(root, {"gc"});
  CHECK(gc.succeeded());
  auto fsck = lamina(root, {"fsck"});
  CHECK(fsck.succeeded());
}

TEST_CASE("concurrent commits while gc runs lose nothing", "[store]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir t;
  const std::string root = t.sub("store");
  std::vector<std::string> uppers;
  for (int i = 0; i < 4; ++i) {
    uppers.push_back(t.mkdir(fmt::format("up{}", i)));
    make_big_upper(uppers.back(), 150, 32 * 1024, 100 + i % 2);  // pairs share content
  }
  std::atomic<bool> stop{false};
  std::atomic<int> gc_runs{0};
  std::thread gc([&] {
    while (!stop) {
      auto r = lamina(root, {"gc"});
      if (r.succeeded()) ++gc_runs;
    }
  });
  std::vector<std::thread> commits;
  std::vector<it::ProcResult> results(uppers.size());
  for (size_t i = 0; i < uppers.size(); ++i) {
    commits.emplace_back([&, i] {
      results[i] =
          lamina(root, {"commit", "-q", "--upper", uppers[i], "--tag", fmt::format("cc/{}", i)});
    });
  }
  for (auto& c : commits) c.join();
  stop = true;
  gc.join();
  for (size_t i = 0; i < uppers.size(); ++i) {
    INFO("commit " << i << ": " << results[i].describe());
    REQUIRE(results[i].succeeded());
  }
  CHECK(gc_runs > 0);
  REQUIRE(lamina(root, {"gc"}).succeeded());
  auto fsck = lamina(root, {"fsck"});
  INFO(fsck.out << fsck.err);
  REQUIRE(fsck.succeeded());
  for (size_t i = 0; i < uppers.size(); ++i) {
    ImageMount m(root, fmt::format("cc/{}", i), t.mkdir(fmt::format("m{}", i)));
    std::string d = wt::compare_trees(uppers[i], m.path(), "upper", "image");
    INFO(d);
    CHECK(d.empty());
  }
}

// A failing command: non-zero exit, a message containing `expect`, and no change to the store.
void refused(const std::string& root, const std::vector<std::string>& args,
             const std::string& expect) {
  auto before = store_files(root);
  auto r = lamina(root, args);
  INFO("lamina " << fmt::format("{}", fmt::join(args, " ")) << ": " << r.describe());
  CHECK(r.exited());
  CHECK(r.exit_code() != 0);
  CHECK(r.err.find(expect) != std::string::npos);
  CHECK(store_files(root) == before);
}

TEST_CASE("bad input to commit: a clear error and nothing written", "[store]") {
  it::TempDir t;
  const std::string root = t.sub("store");
  const std::string good = t.mkdir("good");
  { std::ofstream(good + "/f") << "content\n"; }
  commit_ok(root, {"--upper", good, "--tag", "bad/base"});

  SECTION("missing upper") {
    refused(root, {"commit", "--upper", t.sub("nope"), "--tag", "x"}, "nope");
  }
  SECTION("an upper that is a file") {
    refused(root, {"commit", "--upper", good + "/f", "--tag", "x"}, "Not a directory");
  }
  SECTION("unknown whiteout form") {
    const std::string up = t.mkdir("aufs");
    t.mkdir("aufs/sub/.wh..wh.plnk");
    refused(root, {"commit", "--upper", up, "--tag", "x"}, "whiteout");
  }
  SECTION("a tag that exists") {
    const std::string up = t.mkdir("other");
    std::ofstream(up + "/g") << "other content\n";
    refused(root, {"commit", "--upper", up, "--tag", "bad/base"}, "exists");
    auto r = lamina(root, {"commit", "-q", "--upper", up, "--tag", "bad/base", "--force"});
    CHECK(r.succeeded());
  }
  SECTION("an invalid tag") {
    refused(root, {"commit", "--upper", good, "--tag", "../escape"}, "invalid image name");
  }
  SECTION("a parent image that does not exist") {
    refused(root, {"commit", "--upper", good, "--image", "missing", "--tag", "x"}, "missing");
  }
  SECTION("a bad timestamp") {
    refused(root, {"commit", "--upper", good, "--tag", "x", "--timestamp", "soon"}, "soon");
  }
  SECTION("a store of an unknown version") {
    std::ofstream(root + "/store.json") << R"({"version": 99, "object_hash": "xxh3-128"})";
    refused(root, {"commit", "--upper", good, "--tag", "x"}, "version 99");
  }
  SECTION("an unreadable upper (as an unprivileged user)") {
    const std::string up = t.mkdir("secret", 0700);
    std::ofstream(up + "/f") << "secret\n";
    ::chmod(t.path().c_str(), 0755);
    const std::string uroot = t.mkdir("ustore", 0777);
    ::chown(uroot.c_str(), 65534, 65534);
    auto r = it::run_process({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              lamina_bin(), "--root", uroot + "/s", "commit", "--upper", up,
                              "--tag", "x"});
    INFO(r.describe());
    CHECK(r.exit_code() != 0);
    CHECK(r.err.find("Permission denied") != std::string::npos);
    CHECK(r.err.find("secret") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(uroot + "/s/images/x.json"));
  }
}

}  // namespace
}  // namespace lamina::st
