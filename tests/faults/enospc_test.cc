// SPDX-License-Identifier: Apache-2.0
// ENOSPC: the upper (and the store) on a small ext4 filesystem on a loop device that is
// filled up (every block, every inode) before the operation under test. Each stage that needs
// space -- copy-up of data, of metadata only, of a parent directory; create, write, mkdir;
// a whiteout for rename and unlink; setxattr; lamina commit -- must answer ENOSPC to the
// caller, show nothing of the failed step (in the mount, in the upper, in the work dir), and
// succeed once the space is back.

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "faults/fault_support.h"
#include "store/store_support.h"

namespace lamina::ft {
namespace {

const std::string kSmall = "small file\n";

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// lower/ on /tmp; upper and work on a 4 MiB ext4 with 256 inodes; laminafs on mnt.
class FullStack {
 public:
  FullStack() {
    lower_ = tmp_.mkdir("lower");
    it::write_file(lower_ + "/small.txt", kSmall);
    it::write_file(lower_ + "/medium", random_bytes(256 * 1024, 1));
    it::write_file(lower_ + "/huge", random_bytes(6 * 1024 * 1024, 2));
    it::make_dirs(lower_ + "/dir");
    it::write_file(lower_ + "/dir/f.txt", kSmall);
    it::write_file(lower_ + "/ren.txt", kSmall);
    it::write_file(lower_ + "/gone.txt", kSmall);
    fs_ = std::make_unique<SmallFs>(tmp_, "fs", 4096, 256);
    upper_ = fs_->sub("upper");
    work_ = fs_->sub("work");
    it::make_dirs(upper_);
    it::make_dirs(work_);
    mnt_ = tmp_.mkdir("mnt");
    mount_ = std::make_unique<it::Mount>(mnt_, it::StackPaths{{lower_}, upper_, work_, {}});
  }
  ~FullStack() {
    mount_.reset();
    fs_.reset();
  }
  FullStack(const FullStack&) = delete;
  FullStack& operator=(const FullStack&) = delete;

  bool ok() const { return mount_->ok(); }
  std::string describe() const { return mount_->describe(); }
  SmallFs& fs() { return *fs_; }
  std::string m(const std::string& rel) const { return mnt_ + "/" + rel; }
  const std::string& upper() const { return upper_; }
  const std::string& work() const { return work_; }
  const std::string& mnt() const { return mnt_; }

 private:
  it::TempDir tmp_;
  std::string lower_, upper_, work_, mnt_;
  std::unique_ptr<SmallFs> fs_;
  std::unique_ptr<it::Mount> mount_;
};

// What every failed step must leave: no temp file in the work dir, the daemon answering.
void check_clean(const FullStack& s) {
  INFO("work dir leftovers: " << ::Catch::Detail::stringify(work_leftovers(s.work())));
  CHECK(work_leftovers(s.work()).empty());
  CHECK(mount_alive(s.mnt()));
}

int stat_errno(const std::string& path) {
  struct stat st;
  return errno_of(::lstat(path.c_str(), &st));
}

mode_t mode_of(const std::string& path) {
  struct stat st;
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

#define REQUIRE_STACK(s)      \
  LAMINA_REQUIRE_MOUNT_ENV(); \
  FullStack s;                \
  INFO(s.describe());         \
  REQUIRE(s.ok())

}  // namespace

TEST_CASE("ENOSPC: copy-up of a lower file bigger than the filesystem", "[faults][enospc]") {
  REQUIRE_STACK(s);
  const auto before = it::read_file(s.m("huge"));
  CHECK(write_path(s.m("huge"), O_WRONLY | O_APPEND, "x") == ENOSPC);
  check_clean(s);
  CHECK(stat_errno(s.upper() + "/huge") == ENOENT);
  CHECK(it::read_file(s.m("huge")) == before);
  // The space the failed copy took is back: a file almost as big as the fs still fits.
  CHECK(write_path(s.m("new"), O_CREAT | O_WRONLY, std::string(1024 * 1024, 'n')) == 0);
}

TEST_CASE("ENOSPC: copy-up of data when the upper is full", "[faults][enospc]") {
  REQUIRE_STACK(s);
  const auto before = it::read_file(s.m("medium"));
  s.fs().fill_blocks();
  CHECK(write_path(s.m("medium"), O_WRONLY | O_APPEND, "tail") == ENOSPC);
  check_clean(s);
  CHECK(stat_errno(s.upper() + "/medium") == ENOENT);
  CHECK(it::read_file(s.m("medium")) == before);
  s.fs().free_all();
  CHECK(write_path(s.m("medium"), O_WRONLY | O_APPEND, "tail") == 0);
  CHECK(it::read_file(s.m("medium")) == before + "tail");
  check_clean(s);
}

TEST_CASE("ENOSPC: metadata-only copy-up (chmod) with no inode left", "[faults][enospc]") {
  REQUIRE_STACK(s);
  s.fs().fill();
  // A file at the top, and one whose parent directory needs a copy-up first.
  for (const char* rel : {"small.txt", "dir/f.txt"}) {
    INFO(rel);
    CHECK(errno_of(::chmod(s.m(rel).c_str(), 0600)) == ENOSPC);
    CHECK(mode_of(s.m(rel)) == 0644);
    check_clean(s);
  }
  CHECK(stat_errno(s.upper() + "/small.txt") == ENOENT);
  CHECK(stat_errno(s.upper() + "/dir") == ENOENT);
  s.fs().free_all();
  for (const char* rel : {"small.txt", "dir/f.txt"}) {
    INFO(rel);
    CHECK(errno_of(::chmod(s.m(rel).c_str(), 0600)) == 0);
    CHECK(mode_of(s.m(rel)) == 0600);
    CHECK(it::read_file(s.m(rel)) == kSmall);
  }
  check_clean(s);
}

TEST_CASE("ENOSPC: create, write and mkdir on a full upper", "[faults][enospc]") {
  REQUIRE_STACK(s);
  REQUIRE(write_path(s.m("w.txt"), O_CREAT | O_WRONLY, "start\n") == 0);
  s.fs().fill();

  CHECK(write_path(s.m("new.txt"), O_CREAT | O_EXCL | O_WRONLY, "new\n") == ENOSPC);
  CHECK(stat_errno(s.m("new.txt")) == ENOENT);
  CHECK(errno_of(::mkdir(s.m("newdir").c_str(), 0755)) == ENOSPC);
  CHECK(stat_errno(s.m("newdir")) == ENOENT);
  CHECK(errno_of(::mkdir(s.m("dir/sub").c_str(), 0755)) == ENOSPC);  // parent copy-up too
  CHECK(stat_errno(s.m("dir/sub")) == ENOENT);
  CHECK(errno_of(::symlink("target", s.m("link").c_str())) == ENOSPC);
  CHECK(stat_errno(s.m("link")) == ENOENT);
  CHECK(write_path(s.m("w.txt"), O_WRONLY | O_APPEND, std::string(64 * 1024, 'w')) == ENOSPC);
  check_clean(s);
  const auto listing = list_dir(s.mnt());
  CHECK(listing == std::vector<std::string>{"dir", "gone.txt", "huge", "medium", "ren.txt",
                                            "small.txt", "w.txt"});

  s.fs().free_all();
  CHECK(write_path(s.m("new.txt"), O_CREAT | O_EXCL | O_WRONLY, "new\n") == 0);
  CHECK(it::read_file(s.m("new.txt")) == "new\n");
  CHECK(errno_of(::mkdir(s.m("newdir").c_str(), 0755)) == 0);
  CHECK(errno_of(::mkdir(s.m("dir/sub").c_str(), 0755)) == 0);
  CHECK(errno_of(::symlink("target", s.m("link").c_str())) == 0);
  const std::string big(64 * 1024, 'w');
  CHECK(write_path(s.m("w.txt"), O_WRONLY | O_TRUNC, big) == 0);
  CHECK(it::read_file(s.m("w.txt")) == big);
  check_clean(s);
}

TEST_CASE("ENOSPC: rename and unlink that need a whiteout", "[faults][enospc]") {
  REQUIRE_STACK(s);
  // The files are in the upper already (metadata copy-up); only the whiteout is missing.
  REQUIRE(::chmod(s.m("ren.txt").c_str(), 0640) == 0);
  REQUIRE(::chmod(s.m("gone.txt").c_str(), 0640) == 0);
  s.fs().fill();
  CHECK(errno_of(::rename(s.m("ren.txt").c_str(), s.m("ren2.txt").c_str())) == ENOSPC);
  CHECK(it::read_file(s.m("ren.txt")) == kSmall);
  CHECK(stat_errno(s.m("ren2.txt")) == ENOENT);
  CHECK(errno_of(::unlink(s.m("gone.txt").c_str())) == ENOSPC);
  CHECK(it::read_file(s.m("gone.txt")) == kSmall);
  // A lower-only file: copy-up, then the whiteout.
  CHECK(errno_of(::rename(s.m("small.txt").c_str(), s.m("small2.txt").c_str())) == ENOSPC);
  CHECK(it::read_file(s.m("small.txt")) == kSmall);
  CHECK(stat_errno(s.m("small2.txt")) == ENOENT);
  check_clean(s);

  s.fs().free_all();
  CHECK(errno_of(::rename(s.m("ren.txt").c_str(), s.m("ren2.txt").c_str())) == 0);
  CHECK(stat_errno(s.m("ren.txt")) == ENOENT);
  CHECK(it::read_file(s.m("ren2.txt")) == kSmall);
  CHECK(errno_of(::unlink(s.m("gone.txt").c_str())) == 0);
  CHECK(stat_errno(s.m("gone.txt")) == ENOENT);
  CHECK(errno_of(::rename(s.m("small.txt").c_str(), s.m("small2.txt").c_str())) == 0);
  CHECK(it::read_file(s.m("small2.txt")) == kSmall);
  check_clean(s);
}

TEST_CASE("ENOSPC: setxattr on a full upper", "[faults][enospc]") {
  REQUIRE_STACK(s);
  REQUIRE(write_path(s.m("x.txt"), O_CREAT | O_WRONLY, "x\n") == 0);
  // Too big for the inode's own xattr space: it needs a block.
  const std::string value(900, 'v');
  s.fs().fill();
  for (const char* rel : {"x.txt", "small.txt"}) {  // upper file; lower file (copy-up)
    INFO(rel);
    CHECK(errno_of(::setxattr(s.m(rel).c_str(), "user.big", value.data(), value.size(), 0)) ==
          ENOSPC);
    CHECK(::getxattr(s.m(rel).c_str(), "user.big", nullptr, 0) < 0);
  }
  check_clean(s);
  s.fs().free_all();
  for (const char* rel : {"x.txt", "small.txt"}) {
    INFO(rel);
    CHECK(errno_of(::setxattr(s.m(rel).c_str(), "user.big", value.data(), value.size(), 0)) == 0);
    CHECK(::getxattr(s.m(rel).c_str(), "user.big", nullptr, 0) ==
          static_cast<ssize_t>(value.size()));
  }
  check_clean(s);
}

// ---- lamina commit into a store on a full filesystem --------------------------------------

TEST_CASE("ENOSPC: lamina commit into a full store", "[faults][enospc][commit]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  it::TempDir tmp;
  SmallFs fs(tmp, "fs", 8192, 512);
  const std::string root = fs.sub("store");
  // A first image, so the store exists.
  const std::string up0 = tmp.mkdir("up0");
  it::write_file(up0 + "/a", "a\n");
  auto first = st::lamina(root, {"commit", "-q", "--upper", up0, "--tag", "t/0"});
  INFO(first.describe());
  REQUIRE(first.succeeded());
  // The change to commit: 16 files of 128 KiB, incompressible.
  const std::string up = tmp.mkdir("up");
  for (unsigned i = 0; i < 16; ++i) {
    it::write_file(fmt::format("{}/f{}", up, i), random_bytes(128 * 1024, 10 + i));
  }
  const auto files_before = st::store_files(root);

  auto fill = GENERATE(as<std::string>{}, "inodes", "blocks", "half");
  INFO("filled: " << fill);
  if (fill == "inodes") {
    fs.fill_inodes();
  } else if (fill == "blocks") {
    fs.fill_blocks();
  } else {
    // Room for about half of the objects: the commit fails in the middle of storing them.
    it::write_file(fs.sub("reserve"), std::string(1024 * 1024, 'r'));
    fs.fill_blocks();
    REQUIRE(::unlink(fs.sub("reserve").c_str()) == 0);
    ::sync();
  }
  auto failed = st::lamina(root, {"commit", "-q", "--upper", up, "--tag", "t/1"});
  INFO(failed.describe());
  CHECK_FALSE(failed.succeeded());
  CHECK(failed.err.find("No space left on device") != std::string::npos);
  // Nothing half-published: no image, fsck clean, no temp file left.
  CHECK(st::image_layers(root, "t/1").empty());
  auto fsck = st::lamina(root, {"fsck"});
  INFO("fsck: " << fsck.describe());
  CHECK(fsck.succeeded());
  // Complete objects may stay (unreferenced: gc takes them); nothing else may appear.
  for (const auto& f : st::store_files(root)) {
    if (f.rfind("objects/", 0) == 0) continue;
    INFO("store file " << f);
    CHECK(std::find(files_before.begin(), files_before.end(), f) != files_before.end());
  }

  fs.free_all();
  if (fill == "half") ::unlink(fs.sub("reserve").c_str());
  auto again = st::lamina(root, {"commit", "-q", "--upper", up, "--tag", "t/1"});
  INFO(again.describe());
  CHECK(again.succeeded());
  CHECK(st::image_layers(root, "t/1").size() == 1);
  auto fsck2 = st::lamina(root, {"fsck"});
  INFO("fsck: " << fsck2.describe());
  CHECK(fsck2.succeeded());
}

}  // namespace lamina::ft
