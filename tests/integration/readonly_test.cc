// SPDX-License-Identifier: Apache-2.0
// Every modification through a read-only laminafs mount (no upperdir, or upperdir with "ro")
// fails with EROFS and leaves the layers untouched. Writes through a read-write mount are
// tested in tests/write.

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>

#include "integration/parity.h"

namespace lamina::it {
namespace {

struct Attempt {
  const char* what;
  std::function<int(const std::string& root)> run;  // returns 0 or -1 with errno set
};

int open_close(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  ::close(fd);
  return 0;
}

std::vector<Attempt> modifications() {
  return {
      {"open(f, O_WRONLY)", [](const std::string& r) { return open_close(r + "/f", O_WRONLY); }},
      {"open(f, O_RDWR)", [](const std::string& r) { return open_close(r + "/f", O_RDWR); }},
      {"open(f, O_WRONLY|O_APPEND)",
       [](const std::string& r) { return open_close(r + "/f", O_WRONLY | O_APPEND); }},
      {"open(f, O_RDONLY|O_TRUNC)",
       [](const std::string& r) { return open_close(r + "/f", O_RDONLY | O_TRUNC); }},
      {"creat(new)",
       [](const std::string& r) { return open_close(r + "/new", O_WRONLY | O_CREAT | O_EXCL); }},
      {"creat(d/new)",
       [](const std::string& r) { return open_close(r + "/d/new", O_WRONLY | O_CREAT | O_TRUNC); }},
      {"mkdir(newdir)",
       [](const std::string& r) { return ::mkdir((r + "/newdir").c_str(), 0755); }},
      {"mknod(fifo)", [](const std::string& r) { return ::mkfifo((r + "/fifo").c_str(), 0644); }},
      {"symlink(new)",
       [](const std::string& r) { return ::symlink("f", (r + "/newlink").c_str()); }},
      {"link(f, new)",
       [](const std::string& r) { return ::link((r + "/f").c_str(), (r + "/hard").c_str()); }},
      {"unlink(f)", [](const std::string& r) { return ::unlink((r + "/f").c_str()); }},
      {"unlink(d/x)", [](const std::string& r) { return ::unlink((r + "/d/x").c_str()); }},
      {"rmdir(empty)", [](const std::string& r) { return ::rmdir((r + "/empty").c_str()); }},
      {"rename(f, new)",
       [](const std::string& r) { return ::rename((r + "/f").c_str(), (r + "/g2").c_str()); }},
      {"rename(f, g) replacing",
       [](const std::string& r) { return ::rename((r + "/f").c_str(), (r + "/g").c_str()); }},
      {"rename(d, d2)",
       [](const std::string& r) { return ::rename((r + "/d").c_str(), (r + "/d2").c_str()); }},
      {"chmod(f)", [](const std::string& r) { return ::chmod((r + "/f").c_str(), 0600); }},
      {"chmod(d)", [](const std::string& r) { return ::chmod((r + "/d").c_str(), 0700); }},
      {"chown(f)", [](const std::string& r) { return ::chown((r + "/f").c_str(), 1, 1); }},
      {"truncate(f)", [](const std::string& r) { return ::truncate((r + "/f").c_str(), 0); }},
      {"utimensat(f)",
       [](const std::string& r) { return ::utimensat(AT_FDCWD, (r + "/f").c_str(), nullptr, 0); }},
      {"setxattr(f, user.new)",
       [](const std::string& r) { return ::setxattr((r + "/f").c_str(), "user.new", "v", 1, 0); }},
      {"setxattr(d, user.new)",
       [](const std::string& r) { return ::setxattr((r + "/d").c_str(), "user.new", "v", 1, 0); }},
      {"removexattr(f, user.k)",
       [](const std::string& r) { return ::removexattr((r + "/f").c_str(), "user.k"); }},
  };
}

StackSpec readonly_stack() {
  StackSpec s(2);
  s[0].file("f", "f content", 0644, {}, {{"user.k", "v"}});
  s[0].file("g", "g content");
  s[0].file("d/x", "x");
  s[0].dir("empty");
  s[1].file("h", "h content");
  s[1].file("d/y", "y");
  return s;
}

// Tries every modification on `root` and checks each fails with EROFS; then checks the tree
// still reads the same.
void expect_all_erofs(const std::string& root, const std::string& label) {
  auto before = listing(walk_tree(root));
  for (const auto& a : modifications()) {
    errno = 0;
    int rc = a.run(root);
    int err = errno;
    INFO(label << ": " << a.what << " returned " << rc << ", errno "
               << (rc == 0 ? "-" : errno_name(err)));
    CHECK(rc == -1);
    CHECK(err == EROFS);
  }
  auto after = listing(walk_tree(root));
  std::string diff = diff_listings(before, after, "before", "after");
  INFO(label << ": the tree changed although every modification failed\n" << diff);
  CHECK(diff.empty());
}

TEST_CASE("read-only: every modification fails with EROFS", "[readonly]") {
  LAMINA_REQUIRE_MOUNT_ENV();
  TempDir tmp;
  StackSpec stack = readonly_stack();

  SECTION("kernel overlayfs without upperdir (reference for the expectations)") {
    auto layers = materialize_stack(stack, tmp.sub("k"), constant_forms(kKernelForms));
    KernelOverlay k(tmp.mkdir("k-mnt"), StackPaths{layers, "", "", {}});
    INFO(k.error());
    REQUIRE(k.ok());
    expect_all_erofs(k.path(), "kernel overlayfs");
  }

  SECTION("laminafs without upperdir") {
    auto layers = materialize_stack(stack, tmp.sub("c"),
                                    constant_forms({WhiteoutForm::kWhFile, OpaqueForm::kWhOpq}));
    auto layers_before = listing(walk_tree(tmp.sub("c")));
    {
      Mount m(tmp.mkdir("mnt"), StackPaths{layers, "", "", {}});
      INFO(m.describe());
      REQUIRE(m.ok());
      expect_all_erofs(m.path(), "laminafs lowers only");
    }
    std::string diff =
        diff_listings(layers_before, listing(walk_tree(tmp.sub("c"))), "before", "after");
    INFO("the layer directories changed:\n" << diff);
    CHECK(diff.empty());
  }

  SECTION("laminafs with upperdir mounted ro") {
    auto layers = materialize_stack(stack, tmp.sub("c"),
                                    constant_forms({WhiteoutForm::kWhFile, OpaqueForm::kWhOpq}));
    auto layers_before = listing(walk_tree(tmp.sub("c")));
    {
      StackPaths p{{layers[1]}, layers[0], tmp.mkdir("work"), {"ro"}};
      Mount m(tmp.mkdir("mnt"), p);
      INFO(m.describe());
      REQUIRE(m.ok());
      expect_all_erofs(m.path(), "laminafs with upperdir,ro");
    }
    std::string diff =
        diff_listings(layers_before, listing(walk_tree(tmp.sub("c"))), "before", "after");
    INFO("the upper or lower directories changed:\n" << diff);
    CHECK(diff.empty());
  }
}

}  // namespace
}  // namespace lamina::it
