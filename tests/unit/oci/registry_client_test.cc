// SPDX-License-Identifier: Apache-2.0
// What the registry client reads from a registry's answers without a registry: the error body
// of a failed request (describe) and WWW-Authenticate challenges (parse_challenge).
#include "oci/registry_client.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>

namespace lamina::oci {
namespace {

using Catch::Matchers::Contains;

std::string describe_body(const std::string& body, long status = 404) {
  HttpRequest request;
  request.url = "https://r.example/v2/app/manifests/1.0";
  HttpResponse response;
  response.status = status;
  response.body = body;
  return RegistryClient::describe("pull", request, response);
}

TEST_CASE("registry describe: the registry's error codes and messages", "[oci]") {
  CHECK(describe_body(R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})") ==
        "pull: GET https://r.example/v2/app/manifests/1.0: HTTP 404 (MANIFEST_UNKNOWN: manifest "
        "unknown)");
  CHECK(describe_body("not json", 401) ==
        "pull: GET https://r.example/v2/app/manifests/1.0: HTTP 401 (authentication failed: "
        "check --creds)");
}

// Found by the registry fuzzer: json::value() threw type_error 302 when "code" or "message"
// held a number, so a failed request ended in an exception instead of its HTTP error.
TEST_CASE("registry describe: members of other types are skipped, not thrown",
          "[oci][regression]") {
  std::string out;
  REQUIRE_NOTHROW(out = describe_body(R"({"errors":[{"code":1,"message":2}]})"));
  CHECK(out == "pull: GET https://r.example/v2/app/manifests/1.0: HTTP 404");
  REQUIRE_NOTHROW(out = describe_body(R"({"errors":[{"code":"DENIED","message":["x"]},3]})"));
  CHECK_THAT(out, Contains("(DENIED)"));
}

TEST_CASE("registry parse_challenge: scheme and parameters", "[oci]") {
  std::map<std::string, std::string> params;
  CHECK(parse_challenge(R"(Bearer realm="https://auth/token",Service="reg",scope="a:b:pull,push")",
                        &params) == "bearer");
  CHECK(params["realm"] == "https://auth/token");
  CHECK(params["service"] == "reg");
  CHECK(params["scope"] == "a:b:pull,push");
  params.clear();
  CHECK(parse_challenge(R"(Basic realm="a \"q\"", x=y)", &params) == "basic");
  CHECK(params["realm"] == R"(a "q")");
  CHECK(params["x"] == "y");
  params.clear();
  CHECK(parse_challenge(R"(Bearer realm="unterminated\)", &params) == "bearer");
  CHECK(params["realm"] == "unterminated\\");
}

}  // namespace
}  // namespace lamina::oci
