// SPDX-License-Identifier: Apache-2.0
#pragma once
// One registry as the push and pull code sees it (private to lamina_oci): URLs under
// scheme://HOST, requests that authenticate themselves on a 401 (Basic, or a Bearer token
// fetched from the challenge's realm), and error messages that name the step, the URL, the
// HTTP status and the registry's own error text.

#include <map>
#include <string>
#include <vector>

#include "http_client.h"
#include "lamina/oci/registry.h"

namespace lamina::oci {

// A WWW-Authenticate challenge, `Bearer realm="https://auth/token",service="reg",scope="a,b"`:
// returns the scheme (lower-case) and fills *params (names lower-case; quoted values may hold
// commas and backslash escapes). Never fails: what cannot be read is left out.
std::string parse_challenge(const std::string& text, std::map<std::string, std::string>* params);

class RegistryClient {
 public:
  RegistryClient(const Reference& ref, const RegistryOptions& options);

  // scheme://HOST + path ("/v2/...").
  std::string url(const std::string& path) const;
  // A Location header (absolute, or a path on the registry) as an absolute URL.
  std::string resolve(const std::string& location) const;
  // A scope to request with bearer tokens besides the challenge's own
  // ("repository:REPO:pull,push"): a token then covers a mount's source repository too.
  void add_scope(const std::string& scope) { scopes_.push_back(scope); }

  // GET /v2/: true when a registry answers (200, or 401 before authentication).
  bool ping(std::string* error);
  // Sends the request with the current credentials; on a 401, authenticates as the
  // WWW-Authenticate challenge says and sends it once more. False only when no HTTP answer came
  // (or authentication failed); the caller judges the status.
  bool send(const std::string& step, const HttpRequest& request, HttpResponse* response,
            std::string* error);

  // "STEP: METHOD URL: HTTP 404 (BLOB_UNKNOWN: blob unknown to registry)".
  static std::string describe(const std::string& step, const HttpRequest& request,
                              const HttpResponse& response);

 private:
  bool authenticate(const std::string& step, const std::string& challenge, std::string* error);

  HttpClient http_;
  std::string base_;  // scheme://host
  std::string username_, password_;
  std::string authorization_;  // the Authorization header to send, empty before a 401
  std::vector<std::string> scopes_;
};

}  // namespace lamina::oci
