// SPDX-License-Identifier: Apache-2.0
#include "lamina/base/hash.h"

#include <unistd.h>
#include <xxhash.h>

#include <cstdio>
#include <vector>

#include "lamina/base/sys.h"

namespace lamina {

struct Hasher::State {
  XXH3_state_t* st = XXH3_createState();
  ~State() { XXH3_freeState(st); }
};

std::string Hash128::hex() const {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(high),
                static_cast<unsigned long long>(low));
  return buf;
}

Hasher::Hasher() : state_(std::make_unique<State>()) {
  if (state_->st == nullptr) throw std::bad_alloc();
  XXH3_128bits_reset(state_->st);
}

Hasher::~Hasher() = default;

void Hasher::update(const void* data, size_t size) { XXH3_128bits_update(state_->st, data, size); }

void Hasher::update_zeros(uint64_t size) {
  static const std::vector<char> zeros(1 << 16, 0);
  while (size > 0) {
    size_t n = size < zeros.size() ? static_cast<size_t>(size) : zeros.size();
    XXH3_128bits_update(state_->st, zeros.data(), n);
    size -= n;
  }
}

Hash128 Hasher::digest() const {
  XXH128_hash_t h = XXH3_128bits_digest(state_->st);
  return Hash128{h.high64, h.low64};
}

Hash128 hash_bytes(std::string_view data) {
  XXH128_hash_t h = XXH3_128bits(data.data(), data.size());
  return Hash128{h.high64, h.low64};
}

Result<Hash128> hash_fd(int fd) {
  Hasher h;
  if (Status s = sys::for_each_chunk(fd, [&](const char* p, size_t n) { h.update(p, n); }); !s) {
    return s.error();
  }
  return h.digest();
}

}  // namespace lamina
