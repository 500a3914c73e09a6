#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds libfuse >= 3.17 (FUSE passthrough) from Debian's own source package, for the
# LAMINA_LIBFUSE_SOURCE=ON build. Debian 12 ships libfuse 3.14, which cannot ask the kernel for
# passthrough; trixie's `fuse3` source package can. Everything stays under OUT (a directory in
# the build tree): a private apt configuration that knows only trixie's deb-src index, the
# downloaded source, and a static libfuse installed into OUT/prefix. Nothing is installed on the
# system and nothing lands in the repository.
#
# The index is verified against Debian's archive keyring (debian-archive-keyring, which holds
# trixie's key), and dpkg-source checks each file against the checksums of the .dsc that index
# names, so the source is exactly what Debian publishes.
#
# Usage: scripts/libfuse-source.sh OUT        prints OUT/prefix/lib/pkgconfig on success
# Needs: apt-get, dpkg-source (dpkg-dev), meson, ninja; network access to deb.debian.org.
set -euo pipefail

out=${1:?usage: libfuse-source.sh OUT}
mkdir -p "$out"
out=$(cd "$out" && pwd)
prefix=$out/prefix
pcdir=$prefix/lib/pkgconfig
if [[ -f $prefix/lib/libfuse3.a && -f $pcdir/fuse3.pc ]]; then
  echo "$pcdir"
  exit 0
fi

for tool in apt-get dpkg-source meson ninja; do
  command -v "$tool" >/dev/null || { echo "libfuse-source.sh: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -r $keyring ]] || { echo "libfuse-source.sh: $keyring is missing (debian-archive-keyring)" >&2; exit 1; }

apt=$out/apt
rm -rf "$apt" "$out/src" "$out/meson-build"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$out/src"
echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian trixie main" >"$apt/sources.list"
aptopts=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1
  -o APT::Sandbox::User=root)

echo "libfuse-source.sh: fetching Debian's fuse3 source package (trixie) into $out/src" >&2
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
  -Duseroot=false >&2
ninja -C "$out/meson-build" install >&2
echo "$pcdir"
