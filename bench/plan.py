# SPDX-License-Identifier: Apache-2.0
"""What `make bench` runs: the parameter sets (full and quick) and the workload list.

A Workload names the lamina_bench workload, the tree it runs on, its arguments, how many
runs it gets (runs interleave across configurations: A B C A B C ...), what the plain-dir
configuration needs (a shared copy of the tree, or a fresh one per run because the
workload changes it) and the rows it reports (metric key -> label)."""

FULL = {
    "name": "full",
    "runs": 5,          # per configuration, for workloads that take well under a second
    "runs_heavy": 3,    # for the 1 GiB and 20,000-file workloads, the build, the memory walk
    "sizes": ["4k", "64k", "1m", "16m", "128m", "1g"],
    "big_file": "1g",
    "seq_size": "1g",
    "rand_count": 20000,
    "w4k_count": 20000,
    "rtt_count": 100000,
    "w4k_span": "256m",
    "create": (20, 1000),
    "walk": (10, 10, 100),     # per layer: 10 dirs x 10 subdirs x 100 files; 3 layers
    "rm": (20, 1000),
    "chmod": (20, 1000),
    "ren": (10, 1000),
    "tar": (20, 1000),
    "proj_files": 40,
    "big": (100, 1000),
    "xfs_image": "6g",
    "ext4_image": "24g",
    "timeout": 900,
    "store": (100, 100, 107374),  # dirs, files per dir, bytes per file: 1 GiB in 10,000 files
    "store_changed": 0.01,        # the incremental commit rewrites this share of the files
    "store_runs": 5,
}

QUICK = {
    "name": "quick",
    "runs": 1,
    "runs_heavy": 1,
    "sizes": ["4k", "64k", "1m", "4m"],
    "big_file": "4m",
    "seq_size": "16m",
    "rand_count": 1000,
    "w4k_count": 1000,
    "rtt_count": 2000,
    "w4k_span": "16m",
    "create": (4, 50),
    "walk": (3, 3, 10),
    "rm": (4, 50),
    "chmod": (4, 50),
    "ren": (2, 50),
    "tar": (4, 50),
    "proj_files": 4,
    "big": (10, 100),
    "xfs_image": "512m",
    "ext4_image": "2g",
    "timeout": 120,
    "store": (10, 20, 16384),
    "store_changed": 0.01,
    "store_runs": 1,
}


class Workload:
    def __init__(self, wid, title, kind, tree, args, rows, heavy=False, plain="shared",
                 prewarm=False, plain_args=None, only_fuse_rows=(), group="main"):
        self.wid = wid              # unique id, also the row prefix
        self.title = title          # what it measures, for the report
        self.kind = kind            # lamina_bench workload name
        self.tree = tree            # trees.make_trees key
        self.args = args            # key=value strings
        self.rows = rows            # [(metric key, label)]
        self.heavy = heavy          # gets runs_heavy runs
        self.plain = plain          # "shared": one plain copy for all runs; "fresh": per run
        self.prewarm = prewarm      # read the tree's files before each run (page cache warm)
        self.plain_args = plain_args or []
        self.only_fuse_rows = only_fuse_rows  # metric keys only FUSE daemons report
        self.group = group          # "main", "reduced" (rerun below a limit), "xfs", "store"


def human_size(label):
    n, unit = label[:-1], label[-1]
    return {"k": f"{n} KiB", "m": f"{n} MiB", "g": f"{n} GiB"}.get(unit, f"{label} B")


def human_count(n):
    return f"{n:,}"


def workloads(p, tarball):
    big = p["big_file"]
    bigh = human_size(big)
    cd, cf = p["create"]
    wt, ws, wf = p["walk"]
    walk_n = 3 * wt * ws * wf
    rm_n = p["rm"][0] * p["rm"][1]
    ch_n = p["chmod"][0] * p["chmod"][1]
    ren_n = p["ren"][0] * p["ren"][1]
    tar_n = p["tar"][0] * p["tar"][1]
    big_n = p["big"][0] * p["big"][1]
    w = [
        Workload("copyup", "First write to a lower file: open(O_WRONLY|O_APPEND) + write 4 KiB "
                 "+ close, per lower file size (the copy-up; a plain append on the plain dir)",
                 "first-write", "data", ["sizes=" + ",".join(p["sizes"])],
                 [(f"first_write_{s}", f"first write, {human_size(s)} file") for s in p["sizes"]],
                 heavy=True, prewarm=True, plain_args=["restore=1"]),
        Workload("seq-write", f"Sequential write of a new {human_size(p['seq_size'])} file in "
                 "1 MiB writes (buffered: until the last write returns; +fsync: until fsync "
                 "and close return)", "seq-write", "empty", [f"size={p['seq_size']}"],
                 [("seq_write", f"seq write {human_size(p['seq_size'])}, buffered"),
                  ("seq_write_fsync", f"seq write {human_size(p['seq_size'])}, +fsync")],
                 heavy=True, plain="fresh"),
        Workload("seq-read-cold", f"Sequential read of a {bigh} lower file in 1 MiB reads, "
                 "after sync + drop_caches", "seq-read", "data",
                 [f"file=data/f_{big}", "cache=cold"],
                 [("seq_read", f"seq read {bigh}, cold cache")], heavy=True),
        Workload("seq-read-warm", f"Sequential read of a {bigh} lower file, after one untimed "
                 "read through the same mount", "seq-read", "data",
                 [f"file=data/f_{big}", "cache=warm"],
                 [("seq_read", f"seq read {bigh}, warm cache")], heavy=True, prewarm=True),
        Workload("rand-read", f"{human_count(p['rand_count'])} random 4 KiB preads of a {bigh} "
                 "lower file (POSIX_FADV_RANDOM; fresh mount, host page cache warm), time per "
                 "read", "rand-read", "data", [f"file=data/f_{big}", f"count={p['rand_count']}"],
                 [("rand_read_op", "4 KiB random read (per op)")], prewarm=True),
        Workload("round-trip", f"{human_count(p['rtt_count'])} lgetxattr calls on a lower file, "
                 "for a name it does not have: the kernel keeps no xattr cache for FUSE, so each "
                 "is one request to the daemon (on kernel overlayfs, the lower filesystem's "
                 "getxattr); time per call", "xattr-loop", "data",
                 ["file=data/f_4k", f"count={p['rtt_count']}"],
                 [("xattr_op", "lgetxattr, one request (per call)")]),
        Workload("write-4k", f"{human_count(p['w4k_count'])} random 4 KiB pwrites into a new "
                 f"{human_size(p['w4k_span'])} sparse file, time per write", "write-4k", "empty",
                 [f"count={p['w4k_count']}", f"span={p['w4k_span']}"],
                 [("write_4k_op", "4 KiB random write (per op)")], plain="fresh"),
        Workload("create", f"Create {human_count(cd * cf)} files of 100 bytes in {cd} new "
                 "directories (open O_CREAT|O_EXCL, write, close)", "create", "empty",
                 [f"dirs={cd}", f"files={cf}"],
                 [("create", f"create {human_count(cd * cf)} small files")], heavy=True,
                 plain="fresh"),
        Workload("stat-walk-cold", f"readdir + fstatat of every entry of a {human_count(walk_n)}"
                 "-file tree whose directories merge 3 layers; cold: fresh mount after "
                 "drop_caches", "stat-walk", "walk3", ["path=walk", "cache=cold"],
                 [("stat_walk", f"stat walk {human_count(walk_n)} (3 layers), cold")]),
        Workload("stat-walk-warm", "the same walk, after one untimed walk of the same mount",
                 "stat-walk", "walk3", ["path=walk", "cache=warm"],
                 [("stat_walk", f"stat walk {human_count(walk_n)} (3 layers), warm")],
                 prewarm=True),
        Workload("ls-lR-cold", "ls -lR style over the same tree: readdir, then lstat + "
                 "lgetxattr(security.selinux, system.posix_acl_access) by full path per entry; "
                 "cold", "ls-lR", "walk3", ["path=walk", "cache=cold"],
                 [("ls_lr", f"ls -lR {human_count(walk_n)} (3 layers), cold")]),
        Workload("ls-lR-warm", "the same ls -lR, warm", "ls-lR", "walk3",
                 ["path=walk", "cache=warm"],
                 [("ls_lr", f"ls -lR {human_count(walk_n)} (3 layers), warm")], prewarm=True),
        Workload("rm-rf", f"rm -rf of {human_count(rm_n)} lower files (whiteouts)", "rm-rf",
                 "rm", ["path=rm"], [("rm_rf", f"rm -rf {human_count(rm_n)} lower files")],
                 heavy=True, plain="fresh", prewarm=True),
        Workload("chmod-R", f"chmod -R of {human_count(ch_n)} lower files of 4 KiB (fstatat + "
                 "fchmodat each; metacopy where the filesystem has it)", "chmod-R", "chmod",
                 ["path=chmod"], [("chmod_r", f"chmod -R {human_count(ch_n)} lower files")],
                 heavy=True, plain="fresh", prewarm=True),
        Workload("chmod-big", f"chmod of one {bigh} lower file (metacopy, or a full copy-up)",
                 "chmod-big", "data", [f"file=data/f_{big}"],
                 [("chmod_big", f"chmod of a {bigh} lower file")], prewarm=True,
                 plain_args=["restore=1"]),
        Workload("rename-dir", f"mv of a lower directory of {human_count(ren_n)} files: "
                 "rename(2), and on EXDEV what mv does (copy the tree, remove the source)",
                 "rename-dir", "ren", ["from=ren/src", "to=ren/dst"],
                 [("rename_dir", f"rename lower dir of {human_count(ren_n)} files")],
                 heavy=True, plain="fresh", prewarm=True),
        Workload("untar", f"tar -xf of a tarball of {human_count(tar_n)} files (half 512 B, "
                 "half 8 KiB) into a new directory", "untar", "empty",
                 [f"tarball={tarball}", "dest=untar"],
                 [("untar", f"untar {human_count(tar_n)} files")], heavy=True, plain="fresh"),
        Workload("build", f"A generated C project of {p['proj_files'] + 1} files in a lower "
                 "layer: sh ./configure (15 compiler probes, writes config.h), then make -j2 "
                 "(-O2) and run the program", "build", "proj", ["path=proj", "jobs=2"],
                 [("configure", "build: ./configure"), ("make", "build: make -j2")],
                 heavy=True, plain="fresh", prewarm=True),
        Workload("mem", f"Walk (readdir + fstatat) of {human_count(big_n)} lower entries on a "
                 "fresh mount, then the daemon's peak RSS (VmHWM from /proc/PID/status) and its open "
                 "descriptors (/proc/PID/fd)",
                 "mem-walk", "big", ["path=big"],
                 [("mem_walk", f"stat walk {human_count(big_n)} entries, fresh mount"),
                  ("hwm_kib", f"daemon peak RSS after walking {human_count(big_n)} entries"),
                  ("fds_count", f"daemon open descriptors after walking {human_count(big_n)} "
                   "entries")],
                 heavy=True, prewarm=True, only_fuse_rows=("hwm_kib", "fds_count")),
    ]
    return w


def xfs_workload(p):
    """The copy-up curve again with upper and lower on XFS (reflink=1): FICLONE copy-up."""
    return Workload("copyup-xfs", "The copy-up curve with lower, upper and work on an XFS "
                    "loop image made with `mkfs.xfs -m reflink=1` (FICLONE / reflink copy-up)",
                    "first-write", "data", ["sizes=" + ",".join(p["sizes"])],
                    [(f"first_write_{s}", f"XFS first write, {human_size(s)} file")
                     for s in p["sizes"]], heavy=True, prewarm=True, plain_args=["restore=1"],
                    group="xfs")


def reduced(p, nofile):
    """The parameters scaled so that every tree fits well below `nofile` descriptors: the
    size at which a daemon that holds a descriptor per inode (laminafs) can run the
    workloads it failed at full size. Counts per directory shrink; directories stay."""
    s = min(1.0, nofile / 80000)
    s_big = min(1.0, nofile / 200000)
    q = dict(p)
    q["name"] = p["name"] + "-reduced"
    for key in ("create", "rm", "chmod", "ren", "tar"):
        d, n = p[key]
        q[key] = (d, max(1, int(n * s)))
    t, su, f = p["walk"]
    q["walk"] = (t, su, max(1, int(f * s)))
    d, n = p["big"]
    q["big"] = (d, max(1, int(n * s_big)))
    return q


def store_workloads(p):
    """`lamina commit` against tar and cp -a (bench/store.py runs them, once per run rather
    than once per configuration: no mount is involved)."""
    dirs, per_dir, size = p["store"]
    n = dirs * per_dir
    tree = f"a tree of {human_count(n)} files of {size:,} B ({n * size / 2**20:,.0f} MiB of " \
        f"incompressible bytes) in {dirs} directories"
    pct = f"{p['store_changed'] * 100:g}%"
    spec = [
        ("tar-null", "`tar -cf /dev/null`", "`tar -cf /dev/null DIR`: GNU tar notices the archive is /dev/null "
         "and reads no file data (metadata only)"),
        ("tar", "`tar -cf - | cat`", f"`tar -cf - DIR | cat > /dev/null` of {tree}: reads every byte "
         "(the reference)"),
        ("cp", "`cp -a` + sync", "`cp -a DIR NEW && sync -f NEW`: the reads and writes of a commit "
         "into an empty store, without hashing"),
        ("commit", "lamina commit", "`lamina commit` of the tree into a new, empty store (hash, "
         "write every object, syncfs, publish)"),
        ("dedup", "lamina commit, same content again", "`lamina commit` of the same tree into a "
         "store that already holds it (hash, compare bytes with the stored objects, add nothing)"),
    ]
    w = []
    for kind, label, title in spec:
        for cache in ("cold", "warm"):
            what = "after sync + drop_caches" if cache == "cold" else \
                "after one untimed read of the tree" + (" and the store's objects"
                                                        if kind == "dedup" else "")
            w.append(Workload(f"store-{kind}-{cache}", f"{title}; {cache}: {what}", kind,
                              "store", [f"cache={cache}"], [("wall", f"{label}, {cache}")],
                              heavy=True, group="store"))
    w.append(Workload("store-incr-cold", f"`lamina commit` of the tree with {pct} of its files "
                      "rewritten (new random bytes, same size) into the store that holds the "
                      "original; cold", "incr", "store", ["cache=cold"],
                      [("wall", f"lamina commit, {pct} changed, cold")], heavy=True,
                      group="store"))
    # Volumes (issue 8): a full snapshot, an incremental one after rewriting the same share of
    # the files (its layer must hold just them), a restore against `cp -a` + sync above.
    w.append(Workload("store-snap-full-cold", f"`lamina snapshot` of {tree} into a new, empty "
                      "store (walk, hash, write every object, index); cold", "snap-full", "store",
                      ["cache=cold"], [("wall", "lamina snapshot, full, cold")], heavy=True,
                      group="store"))
    w.append(Workload("store-snap-incr-cold", f"`lamina snapshot` of the tree with {pct} of its "
                      "files rewritten, after a snapshot of it: the index spares the other files "
                      "a read; the layer holds only the rewritten ones; cold", "snap-incr",
                      "store", ["cache=cold"], [("wall", f"lamina snapshot, {pct} changed, cold")],
                      heavy=True, group="store"))
    w.append(Workload("store-restore-cold", "`lamina restore` of the first snapshot into a new "
                      "directory + sync (compare `cp -a` + sync); cold", "restore", "store",
                      ["cache=cold"], [("wall", "lamina restore + sync, cold")], heavy=True,
                      group="store"))
    return w
