#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The one list of Debian 12 packages lamina needs to build, test, lint, run the demo and
# the benchmarks.
# Used by `make deps` and by .ci/run.
#
#   scripts/deps.sh           install whatever is missing (as root; apt only if needed)
#   scripts/deps.sh --list    print the package list, one a line
#   scripts/deps.sh --check   exit 1 and name the missing packages if any is absent
#   scripts/deps.sh --force   apt-get update and install the whole list (CI on a fresh machine)
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config
  libfuse3-dev libxxhash-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libarchive-dev libssl-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev
  # the FUSE passthrough build (make test-passthrough): Debian's libfuse 3.18 source package,
  # fetched with apt-get source and built by scripts/libfuse-source.sh, with FUSE over
  # io_uring (liburing, libnuma)
  meson dpkg-dev debian-archive-keyring liburing-dev libnuma-dev
  # tests
  catch2
  fuse3             # fusermount3, /etc/fuse.conf
  attr              # setfattr/getfattr: overlay xattrs in test layers and the demo
  busybox-static    # the demo's bottom layer (a static /bin/busybox)
  fuse-overlayfs    # interop test: laminafs reads the uppers it writes
  git               # write tests: a real workload (git init/add/commit) inside the mount
  skopeo umoci docker-registry  # OCI interop tests (registry started on 127.0.0.1 by the test)
  apache2-utils     # htpasswd -B: the bcrypt entry of the registry test's basic auth
  e2fsprogs util-linux  # faults test: mkfs.ext4 on a loop device (mount -o loop), prlimit
  podman buildah runc  # containers test: laminafs as containers-storage's mount program (runc:
                       # crun fails on a hybrid cgroup layout)
  # lint
  clang-format clang-tidy
  # fuzzing (make fuzz): clang, and libclang-rt-14-dev for libFuzzer's runtime
  # (libclang_rt.fuzzer*.a, -fsanitize=fuzzer): only recommended, so not there without it
  clang libclang-rt-14-dev
  # benchmarks (make bench, make bench-quick)
  python3 python3-matplotlib   # bench/run_bench.py and its PNG plots
  xfsprogs                     # mkfs.xfs: the reflink (FICLONE) copy-up curve on an XFS image
)

missing_packages() {
  local p status
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ "$status" == installed ]] || echo "$p"
  done
}

case "${1:-}" in
  --list)
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
    ;;
  --check)
    mapfile -t missing < <(missing_packages)
    if [[ ${#missing[@]} -gt 0 ]]; then
      echo "missing packages: ${missing[*]}" >&2
      exit 1
    fi
    exit 0
    ;;
  --force)
    mapfile -t missing < <(printf '%s\n' "${PACKAGES[@]}")
    ;;
  "")
    mapfile -t missing < <(missing_packages)
    ;;
  *)
    echo "usage: $0 [--list|--check|--force]" >&2
    exit 2
    ;;
esac

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#PACKAGES[@]} packages are installed"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    SUDO=(sudo)
  else
    echo "deps: run as root (or install sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
