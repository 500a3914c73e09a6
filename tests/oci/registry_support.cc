// SPDX-License-Identifier: Apache-2.0
#include "oci/registry_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "integration/fs_util.h"

namespace lamina::oci {

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) it::throw_errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    it::throw_errno("bind");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string probe(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  std::string line;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const char req[] = "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, req, sizeof req - 1) == static_cast<ssize_t>(sizeof req - 1)) {
      char buf[256];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) line.assign(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return line.substr(0, line.find('\r'));
}

Server::Server(const std::vector<std::string>& argv, int port) : port_(port) {
  child_ = std::make_unique<it::Child>(argv);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    std::string line = probe(port);
    if (line.find(" 200") != std::string::npos || line.find(" 401") != std::string::npos) break;
    if (!child_->running() || std::chrono::steady_clock::now() > deadline) {
      child_->kill_and_reap();
      throw std::runtime_error(argv[0] + " did not start on port " + std::to_string(port) + ": " +
                               child_->result().describe());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Server::~Server() { child_->kill_and_reap(); }

std::string Server::log() const {
  auto r = child_->result();
  return r.out + r.err;
}

Registry::Registry(const std::string& htpasswd_line) {
  int port = free_port();
  std::string config =
      "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
      "    rootdirectory: " +
      storage() + "\nhttp:\n  addr: 127.0.0.1:" + std::to_string(port) + "\n";
  if (!htpasswd_line.empty()) {
    it::write_file(dir_.sub("htpasswd"), htpasswd_line);
    config +=
        "auth:\n  htpasswd:\n    realm: lamina-test\n    path: " + dir_.sub("htpasswd") + "\n";
  }
  it::write_file(dir_.sub("config.yml"), config);
  server_ = std::make_unique<Server>(
      std::vector<std::string>{"docker-registry", "serve", dir_.sub("config.yml")}, port);
}

}  // namespace lamina::oci
