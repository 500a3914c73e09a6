// SPDX-License-Identifier: Apache-2.0
#include "integration/process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "integration/fs_util.h"

namespace lamina::it {
namespace {

std::string make_temp_file(const char* tag) {
  std::string tmpl = fmt::format("/tmp/lamina-it-{}.XXXXXX", tag);
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw_errno("mkstemp " + tmpl);
  ::close(fd);
  return tmpl;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool ProcResult::exited() const { return !timed_out && status != -1 && WIFEXITED(status); }
int ProcResult::exit_code() const { return exited() ? WEXITSTATUS(status) : -1; }

std::string ProcResult::describe() const {
  std::string s;
  if (timed_out) {
    s = "timed out (killed)";
  } else if (status == -1) {
    s = "not run";
  } else if (WIFEXITED(status)) {
    s = fmt::format("exit status {}", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    s = fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  }
  if (!err.empty()) s += "; stderr:\n" + err;
  if (!out.empty()) s += (err.empty() ? "; stdout:\n" : "\nstdout:\n") + out;
  return s;
}

Child::Child(const std::vector<std::string>& argv, const std::string& cwd) {
  out_path_ = make_temp_file("out");
  err_path_ = make_temp_file("err");
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  int out_fd = ::open(out_path_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  int err_fd = ::open(err_path_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  auto close_all = [&] {
    for (int fd : {out_fd, err_fd, null_fd}) {
      if (fd >= 0) ::close(fd);
    }
  };
  if (out_fd < 0 || err_fd < 0 || null_fd < 0) {
    int e = errno;
    close_all();
    errno = e;
    throw_errno("open child output files");
  }
  pid_ = ::fork();
  if (pid_ < 0) {
    int e = errno;
    close_all();
    errno = e;
    throw_errno("fork");
  }
  if (pid_ == 0) {
    // Only async-signal-safe calls until exec.
    ::dup2(null_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
    ::execvp(cargv[0], cargv.data());
    const char msg[] = "exec failed: ";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    ignored = ::write(2, cargv[0], std::strlen(cargv[0]));
    (void)ignored;
    ::_exit(127);
  }
  close_all();
}

Child::~Child() {
  if (running()) kill_and_reap();
  ::unlink(out_path_.c_str());
  ::unlink(err_path_.c_str());
}

std::optional<int> Child::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto nap = std::chrono::milliseconds(2);
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      return status_;
    }
    if (r < 0 && errno != EINTR) throw_errno("waitpid");
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::milliseconds(50));
  }
}

void Child::kill_and_reap() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  killed_ = true;
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  status_ = st;
}

ProcResult Child::result() const {
  ProcResult r;
  r.status = status_.value_or(-1);
  r.timed_out = killed_;
  r.out = slurp(out_path_);
  r.err = slurp(err_path_);
  return r;
}

ProcResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                       const std::string& cwd) {
  Child child(argv, cwd);
  if (!child.wait(timeout)) child.kill_and_reap();
  return child.result();
}

}  // namespace lamina::it
