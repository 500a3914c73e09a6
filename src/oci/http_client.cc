// SPDX-License-Identifier: Apache-2.0
#include "http_client.h"

#include <curl/curl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace lamina::oci {
namespace {

// The state of one transfer, reached by the callbacks through their userdata pointer.
struct Transfer {
  const HttpRequest* request;
  HttpResponse* response;
  uint64_t read_offset = 0;  // of the fd body
  bool sink_failed = false;
  int read_errno = 0;
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  if (line.substr(0, 5) == "HTTP/") {
    // A new answer (after a 100 Continue or a followed redirect): only the last one counts.
    t->response->headers.clear();
    t->response->body.clear();
    auto sp = line.find(' ');
    t->response->status = sp == std::string_view::npos ? 0 : std::atol(line.data() + sp + 1);
    return line.size();
  }
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    t->response->headers[lower(trim(line.substr(0, colon)))] =
        std::string(trim(line.substr(colon + 1)));
  }
  return line.size();
}

size_t on_write(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * count;
  long status = t->response->status;
  if (t->request->sink && status >= 200 && status < 300) {
    if (!t->request->sink(data, n)) {
      t->sink_failed = true;
      return 0;  // aborts the transfer
    }
    return n;
  }
  std::string& body = t->response->body;
  if (body.size() < HttpClient::kMaxCollected) {
    body.append(data, std::min(n, HttpClient::kMaxCollected - body.size()));
  }
  return n;
}

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const HttpRequest& r = *t->request;
  uint64_t left = r.body_size - t->read_offset;
  size_t want = static_cast<size_t>(std::min<uint64_t>(left, size * count));
  if (want == 0) return 0;
  for (;;) {
    ssize_t got =
        ::pread(r.body_fd, buffer, want, static_cast<off_t>(r.body_offset + t->read_offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      t->read_errno = got < 0 ? errno : EIO;  // a short file: the blob shrank under us
      return CURL_READFUNC_ABORT;
    }
    t->read_offset += static_cast<uint64_t>(got);
    return static_cast<size_t>(got);
  }
}

int on_xfer(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t sent) {
  auto* t = static_cast<Transfer*>(user);
  if (sent > 0) t->request->on_upload(static_cast<uint64_t>(sent));
  return 0;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string HttpResponse::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

struct HttpClient::Impl {
  CURL* curl = nullptr;
  ~Impl() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

HttpClient::HttpClient() : impl_(std::make_unique<Impl>()) {
  global_init();
  impl_->curl = curl_easy_init();
}

HttpClient::~HttpClient() = default;

bool HttpClient::perform(const HttpRequest& request, HttpResponse* response, std::string* error) {
  const std::string what = request.method + " " + request.url;
  CURL* c = impl_->curl;
  if (c == nullptr) {
    *error = what + ": cannot initialize libcurl";
    return false;
  }
  curl_easy_reset(c);  // keeps the connection cache
  *response = HttpResponse{};
  Transfer t{&request, response};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  // A stalled registry fails the transfer instead of hanging: under 1 byte/s for 60 s.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "lamina/" LAMINA_VERSION);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);

  curl_slist* headers = nullptr;
  bool has_content_type = false;
  for (const auto& h : request.headers) {
    headers = curl_slist_append(headers, h.c_str());
    if (lower(h.substr(0, 13)) == "content-type:") has_content_type = true;
  }
  if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    // POST, PUT, PATCH: all sent as a POST of a known length with the method renamed, so one
    // code path gives Content-Length for byte and file bodies alike.
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    if (request.body_fd >= 0) {
      curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(c, CURLOPT_READDATA, &t);
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body_size));
    } else {
      // Never a null pointer: curl would then read the body from stdin.
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.empty() ? "" : request.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
    }
    if (request.method != "POST") {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
    if (request.on_upload) {
      curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
      curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
    if (!has_content_type) headers = curl_slist_append(headers, "Content-Type:");
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    if (t.sink_failed) {
      *error = what + ": the download was stopped";
    } else if (t.read_errno != 0) {
      *error = what + ": reading the body: " + std::strerror(t.read_errno);
    } else {
      *error = what + ": " + (errbuf[0] != 0 ? errbuf : curl_easy_strerror(rc));
    }
    return false;
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  response->status = status;
  return true;
}

std::string url_escape(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : text) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

std::string base64(std::string_view bytes) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) |
                 (static_cast<uint8_t>(bytes[i + 1]) << 8) | static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace lamina::oci
