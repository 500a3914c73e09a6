// SPDX-License-Identifier: Apache-2.0
#include "lamina/base/error.h"

#include <cstring>

namespace lamina {

std::string Error::message() const {
  std::string out = what;
  out += ": ";
  out += std::strerror(code);
  return out;
}

}  // namespace lamina
