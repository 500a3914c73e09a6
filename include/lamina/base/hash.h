// SPDX-License-Identifier: Apache-2.0
#pragma once
// XXH3-128, the name of every object and layer in lamina's store. Fast (several GB/s), but not
// collision-resistant against an attacker: the store compares bytes before trusting a match.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "lamina/base/error.h"

namespace lamina {

struct Hash128 {
  uint64_t high = 0;
  uint64_t low = 0;

  // 32 lowercase hex digits, high half first (XXH3's canonical big-endian form).
  std::string hex() const;
  bool operator==(const Hash128&) const = default;
};

// Streaming XXH3-128.
class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void update(const void* data, size_t size);
  // Feeds `size` zero bytes (a hole of a sparse file).
  void update_zeros(uint64_t size);
  Hash128 digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

Hash128 hash_bytes(std::string_view data);
// Hashes everything from fd's offset 0 to its end (pread, so the offset is not moved).
Result<Hash128> hash_fd(int fd);

}  // namespace lamina
