// SPDX-License-Identifier: Apache-2.0
#include "registry_client.h"

#include <cctype>
#include <map>
#include <nlohmann/json.hpp>

namespace lamina::oci {

std::string parse_challenge(const std::string& text, std::map<std::string, std::string>* params) {
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  size_t start = i;
  while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  std::string scheme = text.substr(start, i - start);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ',' || std::isspace(static_cast<unsigned char>(text[i]))))
      ++i;
    size_t eq = text.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = text.substr(i, eq - i);
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    i = eq + 1;
    std::string value;
    if (i < text.size() && text[i] == '"') {
      ++i;
      while (i < text.size() && text[i] != '"') {
        if (text[i] == '\\' && i + 1 < text.size()) ++i;
        value += text[i++];
      }
      ++i;  // the closing quote
    } else {
      while (i < text.size() && text[i] != ',') value += text[i++];
    }
    (*params)[key] = value;
  }
  return scheme;
}

RegistryClient::RegistryClient(const Reference& ref, const RegistryOptions& options)
    : base_((options.insecure ? "http://" : "https://") + ref.host),
      username_(options.username),
      password_(options.password) {}

std::string RegistryClient::url(const std::string& path) const { return base_ + path; }

std::string RegistryClient::resolve(const std::string& location) const {
  if (location.find("://") != std::string::npos) return location;
  if (!location.empty() && location[0] == '/') return base_ + location;
  return base_ + "/" + location;
}

bool RegistryClient::ping(std::string* error) {
  HttpRequest req;
  req.url = url("/v2/");
  HttpResponse resp;
  if (!http_.perform(req, &resp, error)) {
    *error = "cannot reach the registry: " + *error;
    return false;
  }
  if (resp.status == 200 || resp.status == 401) return true;
  *error = describe("registry check (is this an OCI registry?)", req, resp);
  return false;
}

bool RegistryClient::send(const std::string& step, const HttpRequest& request,
                          HttpResponse* response, std::string* error) {
  for (int attempt = 0;; ++attempt) {
    HttpRequest r = request;
    if (!authorization_.empty()) r.headers.push_back("Authorization: " + authorization_);
    if (!http_.perform(r, response, error)) {
      *error = step + ": " + *error;
      return false;
    }
    if (response->status != 401 || attempt == 1) return true;
    std::string challenge = response->header("www-authenticate");
    if (challenge.empty()) return true;
    if (!authenticate(step, challenge, error)) return false;
  }
}

bool RegistryClient::authenticate(const std::string& step, const std::string& challenge,
                                  std::string* error) {
  std::map<std::string, std::string> params;
  std::string scheme = parse_challenge(challenge, &params);
  std::string basic = username_.empty() && password_.empty()
                          ? std::string()
                          : "Basic " + base64(username_ + ":" + password_);
  if (scheme == "basic") {
    if (basic.empty()) {
      *error = step + ": the registry asks for credentials (give --creds USER:PASS)";
      return false;
    }
    authorization_ = basic;
    return true;
  }
  if (scheme != "bearer" || params["realm"].empty()) {
    *error = step + ": unsupported authentication challenge '" + challenge + "'";
    return false;
  }
  HttpRequest req;
  req.url = params["realm"];
  char sep = req.url.find('?') == std::string::npos ? '?' : '&';
  if (!params["service"].empty()) {
    req.url += sep + std::string("service=") + url_escape(params["service"]);
    sep = '&';
  }
  std::vector<std::string> scopes = scopes_;
  if (!params["scope"].empty()) scopes.insert(scopes.begin(), params["scope"]);
  for (const auto& s : scopes) {
    req.url += sep + std::string("scope=") + url_escape(s);
    sep = '&';
  }
  if (!basic.empty()) req.headers.push_back("Authorization: " + basic);
  req.follow_redirects = true;
  HttpResponse resp;
  if (!http_.perform(req, &resp, error)) {
    *error = step + ": token request: " + *error;
    return false;
  }
  if (resp.status != 200) {
    *error = describe(step + ": token request", req, resp);
    return false;
  }
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  std::string token;
  if (j.is_object()) {
    if (j.contains("token") && j["token"].is_string()) {
      token = j["token"].get<std::string>();
    } else if (j.contains("access_token") && j["access_token"].is_string()) {
      token = j["access_token"].get<std::string>();
    }
  }
  if (token.empty()) {
    *error = step + ": token request " + req.url + ": the answer holds no token";
    return false;
  }
  authorization_ = "Bearer " + token;
  return true;
}

std::string RegistryClient::describe(const std::string& step, const HttpRequest& request,
                                     const HttpResponse& response) {
  std::string out = step + ": " + request.method + " " + request.url + ": HTTP " +
                    std::to_string(response.status);
  auto j = nlohmann::json::parse(response.body, nullptr, false);
  std::string detail;
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"]) {
      if (!e.is_object()) continue;
      // json::value() throws when the member holds another type: read strings only.
      auto text = [&e](const char* key) {
        auto it = e.find(key);
        return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
      };
      if (!detail.empty()) detail += "; ";
      detail += text("code");
      std::string msg = text("message");
      if (!msg.empty()) detail += (detail.empty() || detail.back() == ' ' ? "" : ": ") + msg;
    }
  }
  if (!detail.empty()) {
    out += " (" + detail + ")";
  } else if (response.status == 401) {
    out += " (authentication failed: check --creds)";
  }
  return out;
}

}  // namespace lamina::oci
