// SPDX-License-Identifier: Apache-2.0
#include "lamina/base/unique_fd.h"

#include <unistd.h>

namespace lamina {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);  // close() is never retried on EINTR on Linux
  fd_ = fd;
}

}  // namespace lamina
