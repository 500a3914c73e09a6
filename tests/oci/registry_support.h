// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared by the OCI tests that talk to a registry: servers started on 127.0.0.1 by the test
// (Debian's docker-registry, or any child that answers GET /v2/), killed at the end.

#include <memory>
#include <string>
#include <vector>

#include "integration/mount_helpers.h"
#include "integration/process.h"
#include "lamina/oci/registry.h"

namespace lamina::oci {

// A port nothing listens on right now.
int free_port();

// The status line of GET /v2/ on 127.0.0.1:port, empty if nothing answers.
std::string probe(int port);

// A server child on 127.0.0.1:port, ready once GET /v2/ answers 200 or 401 (throws if it does
// not within 30 s); killed by the destructor.
class Server {
 public:
  Server(const std::vector<std::string>& argv, int port);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  // What the server printed so far.
  std::string log() const;

 private:
  int port_;
  std::unique_ptr<it::Child> child_;
};

// docker-registry with filesystem storage in a temp dir; with an htpasswd line, basic auth.
class Registry {
 public:
  explicit Registry(const std::string& htpasswd_line = "");
  std::string host() const { return server_->host(); }
  std::string storage() const { return dir_.sub("storage"); }
  std::string log() const { return server_->log(); }
  Reference ref(const std::string& repo, const std::string& tag) const {
    return Reference{host(), repo, tag, ""};
  }

 private:
  it::TempDir dir_;  // outlives the server
  std::unique_ptr<Server> server_;
};

}  // namespace lamina::oci
