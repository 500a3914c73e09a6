#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds libfuse >= 3.18 (FUSE passthrough, FUSE over io_uring) from Debian's own source
# package, for the LAMINA_LIBFUSE_SOURCE=ON build. Debian 12 ships libfuse 3.14, which can ask
# the kernel for neither; the `fuse3` source package of Debian testing (forky) can. Everything
# stays under OUT (a directory in the build tree): a private apt configuration that knows only
# forky's deb-src index, the downloaded source, and a static libfuse installed into OUT/prefix.
# Nothing is installed on the system and nothing lands in the repository. io_uring support is
# built with Debian 12's liburing and libnuma (scripts/deps.sh) and checked for: without it
# the script fails rather than build a libfuse that silently lacks it.
#
# The index is verified against Debian's archive keyring (debian-archive-keyring, which holds
# forky's key), and dpkg-source checks each file against the checksums of the .dsc that index
# names, so the source is exactly what Debian publishes.
#
# Usage: scripts/libfuse-source.sh OUT        prints OUT/prefix/lib/pkgconfig on success
# Needs: apt-get, dpkg-source (dpkg-dev), meson, ninja, liburing-dev, libnuma-dev; network
# access to deb.debian.org.
set -euo pipefail

out=${1:?usage: libfuse-source.sh OUT}
mkdir -p "$out"
out=$(cd "$out" && pwd)
prefix=$out/prefix
pcdir=$prefix/lib/pkgconfig
min_version=3.18
# A build from before (an older libfuse, or one without io_uring) is replaced.
if [[ -f $prefix/lib/libfuse3.a && -f $pcdir/fuse3.pc ]] &&
  PKG_CONFIG_PATH=$pcdir pkg-config --atleast-version=$min_version fuse3 2>/dev/null &&
  grep -q '^Requires:.*liburing' "$pcdir/fuse3.pc"; then
  echo "$pcdir"
  exit 0
fi
rm -rf "$prefix"

for tool in apt-get dpkg-source meson ninja pkg-config; do
  command -v "$tool" >/dev/null || { echo "libfuse-source.sh: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
for lib in liburing numa; do
  pkg-config --exists "$lib" || { echo "libfuse-source.sh: $lib is missing (scripts/deps.sh installs lib${lib#lib}-dev)" >&2; exit 1; }
done
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -r $keyring ]] || { echo "libfuse-source.sh: $keyring is missing (debian-archive-keyring)" >&2; exit 1; }

apt=$out/apt
rm -rf "$apt" "$out/src" "$out/meson-build"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$out/src"
echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian forky main" >"$apt/sources.list"
aptopts=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1
  -o APT::Sandbox::User=root)

echo "libfuse-source.sh: fetching Debian's fuse3 source package (forky) into $out/src" >&2
apt-get "${aptopts[@]}" update >&2
(cd "$out/src" && apt-get "${aptopts[@]}" source --download-only fuse3 >&2)
dsc=$(ls "$out"/src/fuse3_*.dsc)
# --no-check skips only the uploader's signature (debian-keyring is not on a Debian 12 base
# system); the files' checksums are still checked against the .dsc, whose own checksum came
# from the signed index.
dpkg-source --no-check -x "$dsc" "$out/src/fuse3" >&2

echo "libfuse-source.sh: building $(basename "$dsc" .dsc) (static) into $prefix" >&2
meson setup "$out/meson-build" "$out/src/fuse3" --prefix="$prefix" --libdir=lib \
  --default-library=static --buildtype=release -Dexamples=false -Dutils=false -Dtests=false \
  -Duseroot=false -Denable-io-uring=true >&2
ninja -C "$out/meson-build" install >&2
if ! PKG_CONFIG_PATH=$pcdir pkg-config --atleast-version=$min_version fuse3; then
  echo "libfuse-source.sh: Debian's fuse3 is older than $min_version" >&2
  exit 1
fi
if ! grep -q '^Requires:.*liburing' "$pcdir/fuse3.pc"; then
  echo "libfuse-source.sh: libfuse was built without io_uring support (see meson's output above)" >&2
  exit 1
fi
echo "$pcdir"
