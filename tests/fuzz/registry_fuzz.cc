// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: what lamina reads from a registry's answers besides manifests (those are
// the oci_json target): the error body of a failed request (RegistryClient::describe), a
// WWW-Authenticate challenge (parse_challenge), and an image reference as the user types it.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "lamina/oci/registry.h"
#include "registry_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  lamina::oci::HttpRequest request;
  request.url = "https://registry.example/v2/app/manifests/1.0";
  lamina::oci::HttpResponse response;
  response.status = 404;
  response.body = text;
  (void)lamina::oci::RegistryClient::describe("pull of manifest 1.0", request, response);

  std::map<std::string, std::string> params;
  (void)lamina::oci::parse_challenge(text, &params);

  lamina::oci::Reference ref;
  std::string error;
  if (!lamina::oci::parse_reference(text, &ref, &error) && error.empty()) __builtin_trap();
  return 0;
}
