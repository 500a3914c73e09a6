// SPDX-License-Identifier: Apache-2.0
#include "lamina/base/sys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <set>

#include "../test_util.h"

using lamina::test::TempDir;
namespace sys = lamina::sys;

TEST_CASE("read_dir lists every entry but . and ..", "[base][sys]") {
  TempDir t;
  std::set<std::string> want;
  for (int i = 0; i < 3000; ++i) {  // more than one getdents64 buffer
    std::string n = "entry-with-a-fairly-long-name-" + std::to_string(i);
    lamina::test::write_file(t / n, "");
    want.insert(n);
  }
  auto root = sys::open_path(AT_FDCWD, t.path().c_str());
  REQUIRE(root.ok());
  std::set<std::string> got;
  auto s = sys::read_dir(root->get(), [&](std::string_view name, unsigned char type, ino_t) {
    CHECK(type == DT_REG);
    got.insert(std::string(name));
    return lamina::Status{};
  });
  REQUIRE(s.ok());
  CHECK(got == want);
}

TEST_CASE("read_dir stops at the callback's error", "[base][sys]") {
  TempDir t;
  lamina::test::write_file(t / "a", "");
  lamina::test::write_file(t / "b", "");
  auto root = sys::open_path(AT_FDCWD, t.path().c_str());
  REQUIRE(root.ok());
  int calls = 0;
  auto s = sys::read_dir(root->get(), [&](std::string_view, unsigned char, ino_t) {
    ++calls;
    return lamina::Status{lamina::Error{EIO, "test"}};
  });
  CHECK(s.code() == EIO);
  CHECK(calls == 1);
}

TEST_CASE("open_path never follows a symlink; readlink and xattrs work on it", "[base][sys]") {
  TempDir t;
  REQUIRE(::symlink("/etc/passwd", (t / "link").c_str()) == 0);
  lamina::test::write_file(t / "file", "hello");
  lamina::test::set_xattr(t / "file", "user.k", "v");
  auto dir = sys::open_path(AT_FDCWD, t.path().c_str());
  REQUIRE(dir.ok());

  auto link = sys::open_path(dir->get(), "link");
  REQUIRE(link.ok());
  auto st = sys::fstat(link->get());
  REQUIRE(st.ok());
  CHECK(S_ISLNK(st->st_mode));
  auto target = sys::readlinkat(link->get(), "");
  REQUIRE(target.ok());
  CHECK(*target == "/etc/passwd");

  auto file = sys::open_path(dir->get(), "file");
  REQUIRE(file.ok());
  auto v = sys::fgetxattr(file->get(), "user.k");
  REQUIRE(v.ok());
  CHECK(*v == "v");
  CHECK(sys::fgetxattr(file->get(), "user.absent").code() == ENODATA);
  auto names = sys::flistxattr(file->get());
  REQUIRE(names.ok());
  CHECK(names->find("user.k") != std::string::npos);

  auto rd = sys::reopen(file->get(), O_RDONLY);
  REQUIRE(rd.ok());
  char buf[16] = {};
  CHECK(::read(rd->get(), buf, sizeof buf) == 5);
  CHECK(std::string(buf) == "hello");
}

TEST_CASE("exists_at tells absent from present without following", "[base][sys]") {
  TempDir t;
  REQUIRE(::symlink("does-not-exist", (t / "dangling").c_str()) == 0);
  auto dir = sys::open_path(AT_FDCWD, t.path().c_str());
  REQUIRE(dir.ok());
  CHECK(*sys::exists_at(dir->get(), "dangling"));
  CHECK_FALSE(*sys::exists_at(dir->get(), "nothing"));
}

TEST_CASE("openat_beneath refuses symlinks on the way, '..' and absolute paths", "[base][sys]") {
  TempDir t;
  TempDir outside;
  lamina::test::write_file(outside / "secret", "secret");
  REQUIRE(::mkdir((t / "ab").c_str(), 0755) == 0);
  lamina::test::write_file(t / "ab/obj", "object");
  REQUIRE(::symlink(outside.path().c_str(), (t / "cd").c_str()) == 0);           // a middle link
  REQUIRE(::symlink((outside / "secret").c_str(), (t / "ab/ln").c_str()) == 0);  // a final one
  REQUIRE(::symlink(("/proc/self/root" + (outside / "secret")).c_str(), (t / "ab/magic").c_str()) ==
          0);
  auto root = sys::openat(AT_FDCWD, t.path().c_str(), O_PATH | O_DIRECTORY);
  REQUIRE(root.ok());
  auto ok = sys::openat_beneath(root->get(), "ab/obj", O_RDONLY);
  REQUIRE(ok.ok());
  auto text = sys::read_file(root->get(), "ab/obj");
  REQUIRE(text.ok());
  CHECK(*text == "object");
  struct Case {
    const char* path;
    int code;
  };
  for (Case c : {Case{"cd/secret", ELOOP}, Case{"ab/ln", ELOOP}, Case{"ab/magic", ELOOP},
                 Case{"ab/../../secret", EXDEV}, Case{"../x", EXDEV}}) {
    INFO(c.path);
    auto r = sys::openat_beneath(root->get(), c.path, O_RDONLY);
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == c.code);
    CHECK_FALSE(sys::read_file(root->get(), c.path).ok());
  }
  auto abs = sys::openat_beneath(root->get(), (outside / "secret").c_str(), O_RDONLY);
  REQUIRE_FALSE(abs.ok());
  CHECK(abs.code() == EXDEV);
}

TEST_CASE("read_file of a fifo does not block", "[base][sys]") {
  TempDir t;
  REQUIRE(::mkfifo((t / "fifo").c_str(), 0644) == 0);
  auto root = sys::openat(AT_FDCWD, t.path().c_str(), O_PATH | O_DIRECTORY);
  REQUIRE(root.ok());
  auto r = sys::read_file(root->get(), "fifo");  // returns (empty or an error) instead of hanging
  if (r.ok()) CHECK(r->empty());
}
