// SPDX-License-Identifier: Apache-2.0
#pragma once
// SHA-256 (OpenSSL), the digest OCI names blobs by. lamina computes it only where OCI requires
// it: layer digests and diff_ids on export and push, verification on import and pull.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "lamina/base/error.h"

namespace lamina::oci {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  // "sha256:" + 64 lowercase hex digits. Ends the computation.
  std::string digest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string sha256_digest(std::string_view data);
// The digest of everything readable from fd (from offset 0, pread).
Result<std::string> sha256_fd(int fd);

// "sha256:" followed by exactly 64 lowercase hex digits (the only algorithm lamina accepts).
bool valid_digest(std::string_view digest);
// The 64 hex digits of a valid digest (its file name under blobs/sha256/).
inline std::string_view digest_hex(std::string_view digest) { return digest.substr(7); }

}  // namespace lamina::oci
