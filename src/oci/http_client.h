// SPDX-License-Identifier: Apache-2.0
#pragma once
// A small HTTP client over one libcurl easy handle (private to lamina_oci). The handle is
// reused so that requests to the same registry share one connection; curl_easy_reset between
// requests keeps the connection cache. Redirects are followed only when a request asks
// (blob GETs, which registries often redirect to a storage backend); upload answers' Location
// headers are the registry's protocol and are handled by the caller.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lamina::oci {

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, POST, PUT, PATCH
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  // The body: `body` bytes, or (body_fd >= 0) body_size bytes of a file from body_offset.
  std::string_view body;
  int body_fd = -1;
  uint64_t body_offset = 0;
  uint64_t body_size = 0;
  bool follow_redirects = false;
  // Called now and then with the body bytes sent so far (uploads only).
  std::function<void(uint64_t sent)> on_upload;
  // Receives the response body in pieces (only for 2xx answers); false aborts the transfer.
  // Unset: the body is collected into HttpResponse::body (at most kMaxCollected bytes).
  std::function<bool(const char* data, size_t size)> sink;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-case; of the final answer only
  std::string body;
  std::string header(const std::string& lower_name) const;
};

class HttpClient {
 public:
  static constexpr size_t kMaxCollected = 64u << 20;

  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs the request. False with *error ("METHOD URL: curl's reason") when no HTTP answer
  // was received or the sink aborted; any HTTP status is a success here.
  bool perform(const HttpRequest& request, HttpResponse* response, std::string* error);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Percent-encodes a query parameter's value.
std::string url_escape(std::string_view text);
// Standard base64 (for Basic credentials).
std::string base64(std::string_view bytes);

}  // namespace lamina::oci
