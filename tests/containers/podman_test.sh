#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# podman and buildah with a FUSE mount program (laminafs, or fuse-overlayfs for comparison)
# driving containers-storage's overlay driver, against a private store in a temp dir.
#
#   podman_test.sh MOUNT_PROGRAM [LAMINA]
#
# Builds a busybox image with `podman import`, then: podman run (--rm, detached and named),
# diff, commit, run the committed image, image save (oci-dir), push to an oci: layout,
# buildah from/run/commit and buildah bud (RUN and COPY steps). Every deletion must come out as
# a whiteout in the committed layer. With LAMINA (the `lamina` tool), the container's upper is
# also committed into a lamina store, `lamina diff` must agree with `podman diff`, and the
# image lamina exports must run under podman. Needs root, /dev/fuse, podman, buildah, runc,
# skopeo and busybox-static; fails loudly on any step (no skipping). Prints the time of each
# step and the total. Always removes its containers, mounts and store (also on SIGINT/SIGTERM).
#
# Machine notes: runc (crun fails on a hybrid cgroup layout), cgroupfs, a file events log,
# no network namespace, and ulimits capped below the hard limits (no CAP_SYS_RESOURCE).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 MOUNT_PROGRAM [LAMINA]" >&2
  exit 2
fi
MOUNT_PROGRAM=$(readlink -f "$1")
LAMINA=${2:-}
[[ -x "$MOUNT_PROGRAM" ]] || { echo "FAIL: mount program $1 is not executable" >&2; exit 1; }
for tool in podman buildah runc skopeo busybox python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done

T=$(mktemp -d /tmp/lamina-containers.XXXXXX)
export CONTAINERS_STORAGE_CONF=$T/storage.conf
export CONTAINERS_CONF=$T/containers.conf
export CONTAINERS_REGISTRIES_CONF=$T/registries.conf
export TMPDIR=$T/tmp
export XDG_RUNTIME_DIR=$T/xdg
mkdir -p "$T/tmp" "$T/xdg" "$T/graph" "$T/run"

cleanup() {
  local rc=$?
  set +e
  if [[ $rc -ne 0 && -s $T/mount_program.log ]]; then
    echo "--- mount program calls ---" >&2
    tail -n 20 "$T/mount_program.log" >&2
  fi
  podman rm -af -t 0 >/dev/null 2>&1
  buildah rm -a >/dev/null 2>&1
  podman rmi -af >/dev/null 2>&1
  # Whatever is still mounted under the temp dir (the store's merged dirs, shm, ...).
  local m
  awk -v t="$T" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# The mount program behind a wrapper that records every call: the test checks the options
# containers-storage passes.
cat >"$T/mount_program" <<EOF
#!/bin/sh
echo "\$*" >>"$T/mount_program.log"
exec "$MOUNT_PROGRAM" "\$@"
EOF
chmod +x "$T/mount_program"

cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$T/graph"
runroot = "$T/run"

[storage.options.overlay]
mount_program = "$T/mount_program"
EOF

nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[[ $nofile == unlimited || $nofile -gt 20000 ]] && nofile=20000
[[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
cat >"$CONTAINERS_CONF" <<EOF
[containers]
netns = "none"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$T/events.log"
tmp_dir = "$T/libpod-tmp"
volume_path = "$T/volumes"
EOF
: >"$CONTAINERS_REGISTRIES_CONF"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
total_start=$(date +%s.%N)
step_start=$total_start
step() {
  local now
  now=$(date +%s.%N)
  awk -v a="$step_start" -v b="$now" -v s="$*" 'BEGIN { printf "[%6.2fs] %s\n", b - a, s }'
  step_start=$now
}

# --- a busybox image -----------------------------------------------------------------------
rootfs=$T/rootfs
mkdir -p "$rootfs"/{bin,etc,root,tmp,proc,sys,dev}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(busybox --list); do
  [[ -e $rootfs/bin/$applet ]] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
echo 'keep' >"$rootfs/root/keep.txt"
tar -C "$rootfs" -cf "$T/base.tar" .
podman import -q --change 'CMD ["/bin/sh"]' "$T/base.tar" localhost/lamina-base:latest >/dev/null
step "podman import"

[[ $(podman info --format '{{.Store.GraphDriverName}}') == overlay ]] ||
  fail "podman info: the graph driver is not overlay"
step "podman info"

# --- podman run --rm -----------------------------------------------------------------------
out=$(podman run --rm --network=none localhost/lamina-base \
  sh -c 'echo hi > /new; rm /bin/ls; test ! -e /bin/ls && cat /new')
[[ $out == hi ]] || fail "podman run --rm printed '$out'"
step "podman run --rm"

# While a container runs, its root is a FUSE mount served by the mount program.
podman run -d --name running --network=none localhost/lamina-base sleep 60 >/dev/null
merged=$(podman inspect --format '{{.GraphDriver.Data.MergedDir}}' running)
fstype=$(awk -v m="$merged" '$2 == m {print $3}' /proc/mounts)
[[ $fstype == fuse* ]] || fail "the running container's root $merged is '$fstype', not FUSE"
podman rm -f -t 0 running >/dev/null
awk -v m="$merged" '$2 == m {exit 1}' /proc/mounts || fail "$merged is still mounted after rm"
step "podman run -d: the root is $fstype"

# --- a container that creates, modifies and deletes ---------------------------------------
podman run --name c1 --network=none localhost/lamina-base sh -c '
  set -e
  echo created > /created.txt
  mkdir -p /d/e && echo deep > /d/e/f
  echo "nobody:x:65534:65534::/:/bin/false" >> /etc/passwd
  rm /bin/vi
  rm -r /root
  mv /etc/group /etc/group.moved'
step "podman run --name c1"

diff_out=$(podman diff c1)
for want in "A /created.txt" "A /d" "C /etc/passwd" "D /bin/vi" "D /root" "D /etc/group" \
  "A /etc/group.moved"; do
  grep -qx "$want" <<<"$diff_out" || fail "podman diff c1 lacks '$want'; it printed:
$diff_out"
done
step "podman diff"

podman commit -q c1 localhost/img2 >/dev/null
step "podman commit"

if [[ -n $LAMINA ]]; then
  # The container's upper, committed into a lamina store over the image's layers on disk.
  upper=$(podman inspect --format '{{.GraphDriver.Data.UpperDir}}' c1)
  lowers=$(podman inspect --format '{{.GraphDriver.Data.LowerDir}}' c1)
  [[ $lowers != *:* ]] || fail "the base image should have one layer, not '$lowers'"
  "$LAMINA" --root "$T/lamina" commit -q --upper "$lowers" --tag base >/dev/null
  "$LAMINA" --root "$T/lamina" commit -q --upper "$upper" --image base --tag c1 >/dev/null
  ldiff=$("$LAMINA" --root "$T/lamina" diff --upper "$upper" --image base)
  for want in "A /created.txt" "C /etc/passwd" "D /bin/vi" "D /root" "D /etc/group"; do
    grep -qx "$want" <<<"$ldiff" || fail "lamina diff lacks '$want'; it printed:
$ldiff"
  done
  # The same upper over the image as podman saves it, imported into the store (docs/containers.md).
  podman image save -q --format oci-dir -o "$T/base-oci" localhost/lamina-base
  "$LAMINA" --root "$T/lamina" import --oci "$T/base-oci" --tag pbase >/dev/null
  "$LAMINA" --root "$T/lamina" commit -q --upper "$upper" --image pbase --tag c1b >/dev/null
  [[ $("$LAMINA" --root "$T/lamina" diff --upper "$upper" --image pbase) == "$ldiff" ]] ||
    fail "lamina diff over the imported image differs from the one over the layer on disk"
  "$LAMINA" --root "$T/lamina" fsck --quick >/dev/null
  # And back into podman: the lamina image runs with the container's changes.
  "$LAMINA" --root "$T/lamina" export c1b --oci "$T/c1b-oci:t" >/dev/null
  # (podman pull oci:DIR would name the image after the temp dir, which has capitals.)
  skopeo copy -q "oci:$T/c1b-oci:t" containers-storage:localhost/c1b:latest
  out=$(podman run --rm --network=none localhost/c1b sh -c \
    'test ! -e /bin/vi && test ! -e /root && test ! -e /etc/group && cat /created.txt')
  [[ $out == created ]] || fail "the image exported by lamina printed '$out'"
  step "lamina commit of the container's upper, export, skopeo copy, podman run"
fi

out=$(podman run --rm --network=none localhost/img2 sh -c '
  test ! -e /bin/vi && test ! -e /root && test ! -e /etc/group && test -e /bin/sh &&
  cat /created.txt /d/e/f /etc/group.moved && tail -n 1 /etc/passwd')
[[ $out == $'created\ndeep\nroot:x:0:\nnobody:x:65534:65534::/:/bin/false' ]] ||
  fail "running img2 printed '$out'"
step "podman run img2"

# --- the committed layer carries the whiteouts --------------------------------------------
podman image save -q --format oci-dir -o "$T/saved" localhost/img2
python3 - "$T/saved" <<'EOF'
import json, sys, tarfile
d = sys.argv[1]
def blob(digest):
    return d + "/blobs/" + digest.replace(":", "/")
index = json.load(open(d + "/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
layers = manifest["layers"]
assert len(layers) == 2, f"img2 has {len(layers)} layers, not 2"
names = set()
with tarfile.open(blob(layers[-1]["digest"]), "r:*") as t:
    names = {m.name[2:] if m.name.startswith("./") else m.name for m in t.getmembers()}
missing = {"bin/.wh.vi", ".wh.root", "etc/.wh.group", "created.txt", "etc/passwd"} - names
if missing:
    sys.exit(f"top layer lacks {sorted(missing)}; it holds {sorted(names)}")
if any(n.startswith("bin/") and not n.startswith("bin/.wh.") for n in names):
    sys.exit("top layer holds files of /bin other than the whiteout: " + str(sorted(names)))
EOF
step "podman image save --format oci-dir (whiteouts in the top layer)"

podman push -q localhost/img2 "oci:$T/pushed:t"
python3 - "$T/pushed" <<'EOF'
import json, sys
index = json.load(open(sys.argv[1] + "/index.json"))
refs = [m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        for m in index["manifests"]]
assert "t" in refs, f"oci layout has refs {refs}"
EOF
step "podman push oci:"

# --- buildah -------------------------------------------------------------------------------
isolation=oci
ctr=$(buildah from -q --pull-never localhost/img2)
buildah run --isolation "$isolation" --network none "$ctr" -- sh -c \
  'echo from-buildah > /b.txt && rm /bin/less && rm /created.txt'
buildah commit -q "$ctr" localhost/img3 >/dev/null
buildah rm "$ctr" >/dev/null
out=$(podman run --rm --network=none localhost/img3 sh -c \
  'test ! -e /bin/less && test ! -e /created.txt && test ! -e /bin/vi && cat /b.txt')
[[ $out == from-buildah ]] || fail "running img3 printed '$out'"
step "buildah from/run/commit"

mkdir -p "$T/ctx"
echo 'copied' >"$T/ctx/hello.txt"
cat >"$T/ctx/Containerfile" <<'EOF'
FROM localhost/img2
RUN echo built > /built.txt && rm /bin/wc
COPY hello.txt /hello.txt
RUN cat /hello.txt >> /built.txt && rm /d/e/f
RUN mkdir /many && cd /many && for i in $(seq 2000); do echo $i > f$i; done && \
    tar -C / -cf /bin.tar bin && mkdir /bin2 && tar -xf /bin.tar -C /bin2 && rm /bin.tar
EOF
buildah bud -q --pull-never --isolation "$isolation" --network none --layers=false \
  -t localhost/img4 "$T/ctx" >/dev/null
out=$(podman run --rm --network=none localhost/img4 sh -c \
  'test ! -e /bin/wc && test ! -e /d/e/f && test -d /d/e && test -x /bin2/bin/busybox &&
   cat /built.txt /hello.txt /many/f2000 && ls /many | wc -l')
[[ $out == $'built\ncopied\ncopied\n2000\n2000' ]] || fail "running img4 printed '$out'"
step "buildah bud (RUN, COPY, RUN, RUN writing 2000 files and a copy of /bin)"

podman rm c1 >/dev/null
[[ -z $(podman ps -aq) ]] || fail "containers left after podman rm"
step "podman rm"

# What containers-storage passed to the mount program.
grep -q 'lowerdir=' "$T/mount_program.log" || fail "the mount program was never called"
# `podman run --rm` containers are volatile: containers-storage (Debian 12's) passes the option.
grep -q ',volatile ' "$T/mount_program.log" ||
  fail "no mount program call had 'volatile' (the --rm runs should)"
total=$(awk -v a="$total_start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
printf 'TOTAL %.2fs (%s, %d mount program calls)\n' "$total" "$(basename "$MOUNT_PROGRAM")" \
  "$(wc -l <"$T/mount_program.log")"
echo "PASS"
