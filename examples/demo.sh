#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A guided tour of lamina: build a three-layer root filesystem the way container tools
# write image layers, mount the layers read-only as one merged tree, look around, and run a
# shell inside it with chroot; then let a "container" write through an upper dir, commit the
# layers and the upper into lamina's store, and mount the committed image from the store.
# Cleans up after itself (unmount, remove the temp dir).
#
#   examples/demo.sh                     as root, with /dev/fuse and busybox-static installed
#   LAMINAFS=/path/to/laminafs examples/demo.sh   (LAMINA=/path/to/lamina for the tool)
#   KEEP=1 examples/demo.sh              keep the temp dir (the layers) for a closer look
#
# Exits non-zero when a step fails or the merged view is not what overlayfs would show.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

# --- helpers ------------------------------------------------------------------------------

if [[ -t 1 ]]; then
  bold=$'\033[1m' dim=$'\033[2m' plain=$'\033[0m'
else
  bold='' dim='' plain=''
fi
step_no=0
step() {
  step_no=$((step_no + 1))
  printf '\n%s== %d. %s%s\n' "$bold" "$step_no" "$*" "$plain"
}
say() { printf '   %s\n' "$*"; }
# Prints a command line (quoted so it can be pasted), then runs it. Commands run in the temp
# dir, so paths read layer0/..., merged/...
show() { printf '%s   $ %s%s\n' "$dim" "$*" "$plain"; }
run() {
  local line="" a
  for a in "$@"; do
    if [[ "$a" =~ ^[][A-Za-z0-9_./:=@%+,-]+$ ]]; then
      line+=" $a"
    else
      line+=" '${a//\'/\'\\\'\'}'"
    fi
  done
  show "${line# }"
  "$@"
}
# True if PATH (absolute) is a mount point. Reads the mount table rather than stat()ing the
# path: a FUSE mount whose daemon died answers stat() with ENOTCONN but is still mounted.
is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts; }
die() {
  printf '\ndemo: FAILED: %s\n' "$*" >&2
  exit 1
}
# expect DESCRIPTION COMMAND...: the command must succeed.
expect() {
  local what=$1
  shift
  if "$@"; then
    say "ok: $what"
  else
    die "$what"
  fi
}

# --- preconditions ------------------------------------------------------------------------

if [[ -z "${LAMINAFS:-}" ]]; then
  if [[ -x "$repo/build/bin/laminafs" ]]; then
    LAMINAFS="$repo/build/bin/laminafs"
  elif command -v laminafs >/dev/null; then
    LAMINAFS=$(command -v laminafs)
  else
    die "no laminafs: run 'make build' first, or set LAMINAFS=/path/to/laminafs"
  fi
fi
[[ -x "$LAMINAFS" ]] || die "LAMINAFS=$LAMINAFS is not an executable"
LAMINA=${LAMINA:-$(dirname "$LAMINAFS")/lamina}
[[ -x "$LAMINA" ]] || die "no lamina tool next to $LAMINAFS: run 'make build' first, or set LAMINA"
[[ $(id -u) -eq 0 ]] || die "run as root: the demo uses mknod (whiteouts), trusted.* xattrs and chroot"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing (modprobe fuse, or give the container --device /dev/fuse)"
BUSYBOX=${BUSYBOX:-/bin/busybox}
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX not found: apt-get install busybox-static"
# The chroot holds no shared libraries: a dynamic busybox (Debian's 'busybox' package) names
# its loader (PT_INTERP, near the start of the ELF file) and could not start inside.
if grep -qa '/ld-' <(head -c 4096 "$BUSYBOX"); then
  die "$BUSYBOX is dynamically linked: apt-get install busybox-static"
fi
for tool in setfattr getfattr fusermount3 chroot awk; do
  command -v "$tool" >/dev/null || die "'$tool' not found (make deps installs it)"
done

work=$(mktemp -d /tmp/lamina-demo.XXXXXX)
# Paths below are relative to the temp dir, so what is printed reads like the layout:
#   layer0/ layer1/ layer2/   the layers, bottom to top
#   merged/                   the mount point
#   upper/ work/              the writable layer and its scratch dir (second part)
cd "$work"
mnt=merged
L0=layer0
L1=layer1
L2=layer2

cleanup() {
  local rc=$?
  local m="$work/merged"
  trap - EXIT INT TERM
  cd /
  if is_mounted "$work/kernel"; then umount -l "$work/kernel" || true; fi
  if is_mounted "$m"; then
    echo "== cleanup: unmounting $m"
    fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m" || true
  fi
  if is_mounted "$m"; then
    # Never rm -rf through a live mount.
    echo "demo: $m is still mounted; leaving $work in place" >&2
  elif [[ -n "${KEEP:-}" ]]; then
    echo "demo: kept $work"
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'printf "\ndemo: FAILED at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

echo "laminafs demo"
version=$("$LAMINAFS" --version 2>/dev/null) || version="version unknown"
say "binary:   $LAMINAFS (${version%%$'\n'*})"
say "temp dir: $work   (every path below is relative to it)"

# --- layer 0: a busybox root filesystem ----------------------------------------------------

step "layer0 (bottom): a tiny root filesystem made of one static busybox"
mkdir -p "$L0"/{bin,etc,root,tmp,dev,proc,sys,usr/share/doc,var/cache/apt,opt/app}
chmod 1777 "$L0/tmp"
chmod 0700 "$L0/root"
run cp "$BUSYBOX" "$L0/bin/busybox"
applets=(sh ls cat echo stat find wc head grep id uname env true false sort)
say "applet links in /bin (what 'busybox --install -s' would make): ${applets[*]}"
for a in "${applets[@]}"; do
  ln -s busybox "$L0/bin/$a"
done
cat >"$L0/etc/os-release" <<'EOF'
PRETTY_NAME="lamina demo (busybox)"
NAME="lamina-demo"
ID=lamina-demo
VERSION_ID=1
EOF
cat >"$L0/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$L0/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo "layer0-box" >"$L0/etc/hostname"
echo "Welcome (layer0's /etc/issue: deleted by a .wh. whiteout in layer2)" >"$L0/etc/issue"
echo "setting=old (deleted by a char 0/0 whiteout in layer2)" >"$L0/etc/old.conf"
echo "stale apt cache from layer0" >"$L0/var/cache/apt/pkgcache.bin"
echo "app v1 binary" >"$L0/opt/app/app-v1"
echo "app v1 config" >"$L0/opt/app/config"
show "find $L0 | sort"
find "$L0" | LC_ALL=C sort

# --- layer 1: additions, and a hard link ----------------------------------------------------

step "layer1: adds files and a hard link"
mkdir -p "$L1"/{etc,usr/share/doc,var/cache}
printf 'Hello from layer1: this motd came from the middle layer.\n' >"$L1/etc/motd"
printf 'hello, world (layer1)\n' >"$L1/usr/share/doc/hello.txt"
run ln "$L1/usr/share/doc/hello.txt" "$L1/usr/share/doc/hello-link.txt"
echo "more cache from layer1" >"$L1/var/cache/layer1.cache"
show "find $L1 | sort"
find "$L1" | LC_ALL=C sort
say "hello.txt and hello-link.txt are one file (same inode, 2 links):"
run ls -li "$L1/usr/share/doc"

# --- layer 2: deletions and replacements, in the forms container tools write --------------

step "layer2 (topmost lower): deletes and replaces, the way image layers encode it"
mkdir -p "$L2"/{etc,var/cache,opt/app}
say "a '.wh.NAME' file deletes NAME from the layers below (OCI image whiteout):"
run touch "$L2/etc/.wh.issue"
say "a character device 0/0 deletes NAME (kernel overlayfs whiteout):"
run mknod "$L2/etc/old.conf" c 0 0
say "'.wh..wh..opq' makes a directory opaque: nothing below shows through (OCI form):"
run touch "$L2/var/cache/.wh..wh..opq"
echo "fresh cache from layer2" >"$L2/var/cache/fresh.cache"
say "the xattr trusted.overlay.opaque=y does the same (kernel overlayfs form):"
run setfattr -n trusted.overlay.opaque -v y "$L2/opt/app"
echo "2.0" >"$L2/opt/app/version"
say "a plain file replaces the one below:"
show "echo lamina-demo >$L2/etc/hostname"
echo "lamina-demo" >"$L2/etc/hostname"
say "what the layer holds on disk:"
run ls -la "$L2/etc" "$L2/var/cache" "$L2/opt/app"
run getfattr -d -m 'overlay' "$L2/opt/app"

# --- mount ----------------------------------------------------------------------------------

step "mount: lowerdir lists the layers topmost first (as overlayfs does); no upperdir = read-only"
mkdir -p "$mnt"
run "$LAMINAFS" -o lowerdir=$L2:$L1:$L0 "$mnt" || die "laminafs failed to mount"
for _ in $(seq 50); do
  is_mounted "$work/$mnt" && break
  sleep 0.1
done
is_mounted "$work/$mnt" || die "$mnt is not a mount point after laminafs returned"
run grep " $work/$mnt " /proc/mounts

# --- the merged view -----------------------------------------------------------------------

step "the merged view"
run ls -la "$mnt"
run ls -la "$mnt/etc"
run ls -la "$mnt/var/cache" "$mnt/opt/app"
say "the whole tree (first 50 entries):"
show "find $mnt | sort | head -n 50"
find "$mnt" | sort >tree.txt # via a file: head closing the pipe early would trip pipefail
head -n 50 tree.txt
say "($(wc -l <tree.txt) entries in all)"
say "the replaced file:"
run cat "$mnt/etc/hostname"
say "the hard link from layer1 keeps its identity (same inode number, 2 links):"
run stat -c '   %n: inode %i, links %h, %s bytes' "$mnt/usr/share/doc/hello.txt" \
  "$mnt/usr/share/doc/hello-link.txt"

step "checking the merged view is what overlayfs would show"
expect "/etc/hostname comes from layer2" [ "$(cat "$mnt/etc/hostname")" = "lamina-demo" ]
expect "/etc/motd comes from layer1" grep -q "layer1" "$mnt/etc/motd"
expect "/etc/os-release comes from layer0" grep -q 'ID=lamina-demo' "$mnt/etc/os-release"
expect "/etc/issue is deleted (.wh.issue)" [ ! -e "$mnt/etc/issue" ]
expect "/etc/old.conf is deleted (char 0/0)" [ ! -e "$mnt/etc/old.conf" ]
expect "/var/cache holds only layer2's entry (.wh..wh..opq)" \
  [ "$(ls -A "$mnt/var/cache")" = "fresh.cache" ]
expect "/opt/app holds only layer2's entry (trusted.overlay.opaque=y)" \
  [ "$(ls -A "$mnt/opt/app")" = "version" ]
expect "hello.txt and hello-link.txt are one inode" \
  [ "$(stat -c %i "$mnt/usr/share/doc/hello.txt")" = \
  "$(stat -c %i "$mnt/usr/share/doc/hello-link.txt")" ]
expect "no '.wh.' name is visible" [ -z "$(find "$mnt" -name '.wh.*' -print -quit)" ]
expect "no overlay xattr is visible" \
  [ -z "$(getfattr --absolute-names -R -d -m '.*overlay' "$mnt" 2>/dev/null)" ]
if touch "$mnt/tmp/new-file" 2>/dev/null; then
  die "writing to a read-only mount succeeded"
else
  say "ok: writes are refused (no upperdir: the mount is read-only)"
fi

# --- run something inside -----------------------------------------------------------------

step "run a shell inside the merged tree with chroot"
# shellcheck disable=SC2016 # $(...) is for the shell inside the chroot
run chroot "$mnt" /bin/env -i PATH=/bin HOME=/root /bin/sh -c \
  'cat /etc/motd; echo "hostname: $(cat /etc/hostname)"; ls /etc; echo hello from inside; id'
out=$(chroot "$mnt" /bin/env -i PATH=/bin /bin/sh -c 'echo hello from inside')
expect "the busybox shell ran inside the mount" [ "$out" = "hello from inside" ]

step "unmount"
run fusermount3 -u "$mnt"
if is_mounted "$work/$mnt"; then die "still mounted after fusermount3 -u"; fi
say "unmounted; the layers are untouched"

# --- a container writes: the same layers under an upper directory ------------------------

step "mount again with upperdir: now the container can write, and every change lands in upper/"
mkdir -p upper work
lowers_before=$(find $L0 $L1 $L2 -printf '%p %s %m %T@\n' | sort | md5sum)
run "$LAMINAFS" -o lowerdir=$L2:$L1:$L0,upperdir=upper,workdir=work "$mnt" ||
  die "laminafs failed to mount with an upper"
is_mounted "$work/$mnt" || die "$mnt is not a mount point after laminafs returned"
# shellcheck disable=SC2016 # the commands run inside the chroot
run chroot "$mnt" /bin/env -i PATH=/bin /bin/sh -c '
  echo "written by the container" >/etc/motd   # copy-up of a lower file
  rm /etc/os-release                          # whiteout
  rm -r /opt/app && mkdir /opt/app            # opaque directory
  mv /usr/share/doc /usr/share/manuals        # rename of a lower dir: a redirect, no copy
  chmod 600 /etc/passwd                       # metadata-only copy-up
  mkdir -p /data && echo 42 >/data/answer'
say "what the container sees:"
run cat "$mnt/etc/motd" "$mnt/data/answer"
run ls "$mnt/usr/share/manuals" "$mnt/opt/app"
expect "/etc/os-release is gone" [ ! -e "$mnt/etc/os-release" ]
expect "the renamed directory kept its files" [ -f "$mnt/usr/share/manuals/hello.txt" ]
run fusermount3 -u "$mnt"
say "what landed in upper/ (kernel overlayfs's format: whiteouts are char 0/0 devices):"
show "find upper | sort | xargs ls -ld"
find upper | sort | xargs ls -ld | sed 's/^/   /'
show "getfattr -R -d -m trusted.overlay upper"
getfattr --absolute-names -R -d -m 'trusted.overlay' upper 2>/dev/null | sed 's/^/   /'
lowers_after=$(find $L0 $L1 $L2 -printf '%p %s %m %T@\n' | sort | md5sum)
expect "the lower layers did not change" [ "$lowers_before" = "$lowers_after" ]

step "kernel overlayfs reads the same upper and shows the same tree"
mkdir -p kwork kernel
if mount -t overlay overlay \
  -o lowerdir=$L2:$L1:$L0,upperdir=upper,workdir=kwork,redirect_dir=on,metacopy=on,index=off \
  kernel 2>/dev/null; then
  # Kernel overlayfs does not read the '.wh.'/'.wh..wh..opq' forms of the lowers (layer2 uses
  # them), so compare the paths that layer2 does not touch.
  (cd kernel && find etc/motd usr data opt/app -printf '%p %y %m %s\n' | sort) >kernel.txt
  umount kernel
  run "$LAMINAFS" -o lowerdir=$L2:$L1:$L0,upperdir=upper,workdir=work "$mnt"
  (cd "$mnt" && find etc/motd usr data opt/app -printf '%p %y %m %s\n' | sort) >lamina.txt
  run fusermount3 -u "$mnt"
  expect "kernel overlayfs and laminafs list the same entries" cmp -s kernel.txt lamina.txt
else
  say "(kernel overlayfs is not available here: comparison skipped)"
fi

# --- the store: commit what the container wrote as a new image layer -----------------------

step "bring the three layer dirs into lamina's store as an image (each one a layer on the last)"
store=store
run "$LAMINA" --root $store commit -q --upper $L0 --tag demo/base:0
run "$LAMINA" --root $store commit -q --upper $L1 --image demo/base:0 --tag demo/base:1
run "$LAMINA" --root $store commit -q --upper $L2 --image demo/base:1 --tag demo/base
run "$LAMINA" --root $store images

step "what the container changed, like 'docker diff' (A added, C changed, D deleted)"
run "$LAMINA" --root $store diff --upper upper --image demo/base

step "commit the container's upper as a new layer on top of the image"
run "$LAMINA" --root $store commit --upper upper --image demo/base --tag demo/app
run "$LAMINA" --root $store layers

step "mount the committed image straight from the store (nothing is extracted) and compare"
run "$LAMINA" --root $store mount demo/app "$mnt"
is_mounted "$work/$mnt" || die "$mnt is not a mount point after lamina mount returned"
(cd "$mnt" && find . -printf '%p %y %m %s %U:%G\n' | sort) >image.txt
run fusermount3 -u "$mnt"
run "$LAMINAFS" -o lowerdir=$L2:$L1:$L0,upperdir=upper,workdir=work "$mnt"
(cd "$mnt" && find . -printf '%p %y %m %s %U:%G\n' | sort) >container.txt
run fusermount3 -u "$mnt"
expect "the committed image shows exactly what the container saw" cmp -s container.txt image.txt
run "$LAMINA" --root $store fsck

# --- done ---------------------------------------------------------------------------------
echo
echo "demo: all steps passed"
