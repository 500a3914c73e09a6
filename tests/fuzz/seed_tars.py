#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the small layer tars of the layer_tar seed corpus (corpus/layer_tar/).

Each tar is a case the importer must handle or refuse: whiteouts and opaque markers, hard
links (also to a symlink, and to a later entry), xattrs as PAX SCHILY.xattr.*, GNU long names
and ustar, devices and fifos, paths with "./" and "..", a symlink used as a parent, and one
gzip-compressed layer. The tars end right after their end-of-archive blocks (no 10 KiB record
padding), to keep the seeds small.

    tests/fuzz/seed_tars.py tests/fuzz/corpus/layer_tar

The other seeds there are not made here: basic.tar.zst is `zstd -19 basic.tar`, and
lamina-export-*.tar are two layers `lamina export --compress none` wrote (a base layer with a
hard link, a symlink, a device, a fifo and an xattr; a layer over it with whiteouts and an
opaque directory).
"""
import gzip
import io
import sys
import tarfile
from pathlib import Path


def entry(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, pax=None, dev=(0, 0)):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1700000000
    info.linkname = link
    info.devmajor, info.devminor = dev
    if pax:
        info.pax_headers = dict(pax)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tar(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if data else None)
    raw = buf.getvalue()
    # Cut the record padding: keep everything up to the two zero blocks that end the archive.
    end = len(raw.rstrip(b"\0"))
    end = (end + 511) // 512 * 512 + 1024
    return raw[:end]


D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE

SEEDS = {
    "basic.tar": [
        entry("./", D, mode=0o755),
        entry("./etc/", D, mode=0o755),
        entry("./etc/passwd", F, b"root:x:0:0:root:/root:/bin/sh\n"),
        entry("./bin/", D, mode=0o755),
        entry("./bin/sh", F, b"#!busybox\n", mode=0o4755),
        entry("./lib", L, link="usr/lib", mode=0o777),
    ],
    "whiteouts.tar": [
        entry("etc/", D, mode=0o755),
        entry("etc/.wh..wh..opq", F),
        entry("etc/hosts", F, b"127.0.0.1 localhost\n"),
        entry("var/.wh.cache", F),
        entry("var/cache/", D, mode=0o700),
        entry(".wh.tmp", F),
    ],
    "hardlinks.tar": [
        entry("usr/lib/libx.so.1", F, b"ELF-ish\n"),
        entry("usr/lib/libx.so", H, link="usr/lib/libx.so.1"),
        entry("a/link", L, link="../usr/lib/libx.so", mode=0o777),
        entry("a/link2", H, link="a/link"),
        entry("a/file-again", H, link="usr/lib/libx.so"),
    ],
    "xattrs.tar": [
        entry("bin/", D, mode=0o755, pax={"SCHILY.xattr.user.dir": "d"}),
        entry("bin/ping", F, b"ping\n", mode=0o755,
              pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
                   "SCHILY.xattr.user.comment": "seed",
                   "SCHILY.xattr.trusted.overlay.opaque": "y"}),
        entry("bin/ts", F, b"t", pax={"mtime": "1700000000.123456789", "uid": "100000",
                                      "gid": "100000"}),
    ],
    "devices.tar": [
        entry("dev/", D, mode=0o755),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        entry("dev/sda", tarfile.BLKTYPE, mode=0o660, dev=(8, 0)),
        entry("run/fifo", tarfile.FIFOTYPE, mode=0o600),
    ],
    "gnu-longname.tar": (
        [entry("d/" + "x" * 120 + "/" + "y" * 60, F, b"long\n"),
         entry("d/l", L, link="z" * 150, mode=0o777)], tarfile.GNU_FORMAT),
    "ustar.tar": ([entry("./a/b", F, b"ab"), entry("./a/c/", D, mode=0o700)],
                  tarfile.USTAR_FORMAT),
    "hostile-dotdot.tar": [entry("a/../../etc/shadow", F, b"x")],
    "hostile-symlink-parent.tar": [
        entry("evil", L, link="/", mode=0o777),
        entry("evil/etc/passwd", F, b"x"),
    ],
    "hostile-below-symlink.tar": [entry("lib/x.so", F, b"through /lib of a layer below")],
    "hostile-hardlink-later.tar": [entry("a", H, link="b"), entry("b", F, b"b")],
}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, spec in SEEDS.items():
        entries, fmt = spec if isinstance(spec, tuple) else (spec, tarfile.PAX_FORMAT)
        (out / name).write_bytes(tar(entries, fmt))
    basic = tar(SEEDS["basic.tar"])
    (out / "basic.tar.gz").write_bytes(gzip.compress(basic, mtime=0))
    # A tar that stops right after its last entry's data (no end-of-archive blocks).
    (out / "no-end-marker.tar").write_bytes(basic[:-1024])


if __name__ == "__main__":
    main()
