// SPDX-License-Identifier: Apache-2.0
// Soak: SOAK_PROCS lamina_fsx processes (default 3) run for SOAK_TIME seconds (default 30; `make
// soak` runs 4 for 30 minutes) against one laminafs mount whose lower layer holds half of
// their files, so those are copied up by the first write. Each verifies every read and the
// size after every operation against its model and writes the expected final contents (size
// and hash) at the end; the mount is then unmounted (the daemon must exit 0) and mounted again
// over the same upper, and every file must still match.
//
// A self-test checks that the exerciser catches corruption at all: a byte flipped behind its
// back must make both the run and the later verification fail.

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "integration/mount_helpers.h"
#include "soak/soak_support.h"

namespace lamina::soak {
namespace {

using it::Child;
using it::ForegroundDaemon;
using it::ProcResult;
using it::run_process;
using it::StackPaths;
using it::TempDir;
using namespace std::chrono_literals;

std::string last_line(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  size_t p = s.rfind('\n');
  return p == std::string::npos ? s : s.substr(p + 1);
}

ProcResult fsx(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 120s) {
  std::vector<std::string> argv{fsx_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, timeout);
}

TEST_CASE("soak: lamina_fsx processes on one mount, contents survive a remount", "[soak]") {
  extend_it_watchdog();
  LAMINA_REQUIRE_MOUNT_ENV();
  const long secs = env_long("SOAK_TIME", kDefaultSoakSeconds);
  const long procs = env_long("SOAK_PROCS", 3);
  const uint64_t seed = seed_from_env("SOAK_SEED");
  TempDir tmp;
  const std::string lower = tmp.mkdir("lower"), upper = tmp.mkdir("upper"),
                    work = tmp.mkdir("work"), mnt = tmp.mkdir("mnt");
  for (long k = 0; k < procs; ++k) {
    auto r = fsx({"prepare", "--dir", lower, "--id", std::to_string(k)});
    REQUIRE(r.succeeded());
  }
  const StackPaths paths{{lower}, upper, work, {}};
  std::vector<std::string> states;
  {
    ForegroundDaemon daemon(mnt, paths);
    INFO("daemon: " << daemon.describe());
    REQUIRE(daemon.ok());
    std::vector<std::unique_ptr<Child>> kids;
    for (long k = 0; k < procs; ++k) {
      states.push_back(tmp.sub("state." + std::to_string(k)));
      kids.push_back(std::make_unique<Child>(
          std::vector<std::string>{fsx_bin(), "run", "--dir", mnt, "--id", std::to_string(k),
                                   "--seed", std::to_string(seed + static_cast<uint64_t>(k)),
                                   "--duration", std::to_string(secs), "--state", states.back()}));
    }
    // Each child stops after `secs`; the margin covers a slow final check, not a hang.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(secs + 300);
    for (long k = 0; k < procs; ++k) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (!kids[k]->wait(std::max(left, std::chrono::milliseconds(1)))) kids[k]->kill_and_reap();
      ProcResult r = kids[k]->result();
      std::printf("%s\n", last_line(r.out).c_str());
      INFO("lamina_fsx " << k << ": " << r.describe() << "\nstdout:\n" << r.out);
      CHECK(r.succeeded());
    }
    ProcResult d = daemon.unmount();
    INFO("daemon after unmount: " << d.describe());
    CHECK(d.succeeded());
  }
  ForegroundDaemon again(mnt, paths);
  INFO("daemon (remount): " << again.describe());
  REQUIRE(again.ok());
  for (const auto& state : states) {
    auto r = fsx({"verify", "--dir", mnt, "--state", state});
    INFO("after remount: " << r.describe() << "\n" << r.out);
    CHECK(r.succeeded());
  }
  ProcResult d = again.unmount();
  INFO("daemon after second unmount: " << d.describe());
  CHECK(d.succeeded());
}

// The exerciser itself, on a plain directory: it must notice a byte that changed without it.
TEST_CASE("soak: lamina_fsx detects a byte flipped behind its back", "[soak][selftest]") {
  TempDir tmp;
  const std::string dir = tmp.mkdir("plain");
  REQUIRE(fsx({"prepare", "--dir", dir, "--id", "0"}).succeeded());
  REQUIRE(fsx({"prepare", "--dir", dir, "--id", "1"}).succeeded());

  SECTION("during a run") {
    auto r = fsx({"run", "--dir", dir, "--id", "0", "--seed", "7", "--ops", "3000",
                  "--corrupt-after", "700"});
    INFO(r.describe());
    CHECK(r.exited());
    CHECK(r.exit_code() == 1);
    CHECK(r.err.find("MISMATCH") != std::string::npos);
    CHECK(r.err.find("last 64 operations") != std::string::npos);
  }
  SECTION("after a run, in the final contents") {
    const std::string state = tmp.sub("state.1");
    auto r =
        fsx({"run", "--dir", dir, "--id", "1", "--seed", "8", "--ops", "2000", "--state", state});
    INFO(r.describe());
    REQUIRE(r.succeeded());
    REQUIRE(fsx({"verify", "--dir", dir, "--state", state}).succeeded());
    // Flip one byte in the middle of the largest file named in the state.
    std::ifstream in(state);
    std::string line, victim;
    size_t victim_size = 0;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream fields(line);
      std::string path;
      size_t size = 0;
      fields >> path >> size;
      if (size > victim_size) victim = path, victim_size = size;
    }
    REQUIRE(victim_size > 0);
    int fd = ::open((dir + "/" + victim).c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    char c = 0;
    REQUIRE(::pread(fd, &c, 1, static_cast<off_t>(victim_size / 2)) == 1);
    c = static_cast<char>(c ^ 1);
    REQUIRE(::pwrite(fd, &c, 1, static_cast<off_t>(victim_size / 2)) == 1);
    ::close(fd);
    auto v = fsx({"verify", "--dir", dir, "--state", state});
    INFO(v.describe());
    CHECK(v.exit_code() == 1);
    CHECK(v.err.find("MISMATCH " + dir + "/" + victim) != std::string::npos);
  }
}

}  // namespace
}  // namespace lamina::soak
