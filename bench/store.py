# SPDX-License-Identifier: Apache-2.0
"""The store workloads: `lamina commit` of a tree of incompressible files, against reading the
same tree with tar (the speed of the disk), and against copying it with `cp -a` + sync (the
same reads and writes as a commit into an empty store, without hashing).

They run once per benchmark run, not once per configuration: commit reads a plain directory
and writes the store, with no mount. The tree, the stores and the copies live on the
filesystem under test (the journaled ext4 loop image). Each workload is one command line (or a
pipeline) timed from its first fork to the exit of its last process; os.wait4 gives the user
and system CPU seconds of every process. Every commit's JSON result is checked: a fresh store
gets one object per file, a second commit of the same tree adds nothing, and the incremental
commit adds exactly the changed files. A wrong count is a failed run."""

import json
import os
import subprocess
import tempfile
import threading
import time


def log(msg):
    print(msg, flush=True)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def rm_rf(path):
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], check=True)


def run_timed(cmds, timeout, capture=False):
    """Runs `cmds` as a pipeline (each one's stdout into the next; the last one's to
    /dev/null, or returned with capture=True). Returns (metrics {wall, user, sys}, stdout,
    error or None)."""
    procs, errs = [], []
    timer = None
    fired = []

    def kill_all():
        fired.append(True)
        for p in procs:
            if p.returncode is None:
                p.kill()

    t0 = time.monotonic()
    try:
        prev = subprocess.DEVNULL
        for i, argv in enumerate(cmds):
            last = i == len(cmds) - 1
            err = tempfile.TemporaryFile()
            errs.append(err)
            out = (subprocess.PIPE if capture else subprocess.DEVNULL) if last else subprocess.PIPE
            p = subprocess.Popen(argv, stdin=prev, stdout=out, stderr=err)
            if prev is not subprocess.DEVNULL:
                prev.close()  # the next process holds the read end now
            prev = p.stdout if not last else None
            procs.append(p)
        timer = threading.Timer(timeout, kill_all)
        timer.start()
        stdout = procs[-1].stdout.read().decode() if capture else ""
        user = sys_s = 0.0
        failed = None
        for argv, p in zip(cmds, procs):
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            user += ru.ru_utime
            sys_s += ru.ru_stime
            if p.returncode != 0 and failed is None:
                failed = (argv, p.returncode)
        wall = time.monotonic() - t0
    finally:
        if timer is not None:
            timer.cancel()
        for p in procs:
            if p.returncode is None:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
    error = None
    if fired:
        error = f"timed out after {timeout} s"
    elif failed:
        argv, rc = failed
        i = cmds.index(argv)
        errs[i].seek(0)
        msg = errs[i].read().decode(errors="replace").strip().splitlines()
        error = f"{os.path.basename(argv[0])} exited with {rc}" + (f": {msg[0]}" if msg else "")
    for e in errs:
        e.close()
    return {"wall": wall, "user": user, "sys": sys_s}, stdout, error


class StoreBench:
    """The tree, the store seeded with it (for the dedup and incremental commits), and the
    workloads' setup, timed command and checks."""

    def __init__(self, runner, p, base, lamina):
        self.runner = runner
        self.gen = runner.gen
        self.p = p
        self.lamina = lamina
        self.root = os.path.join(base, "store")
        self.tree = os.path.join(self.root, "tree")
        self.seeded = os.path.join(self.root, "seeded")
        self.snapped = os.path.join(self.root, "snapped")  # a store with a snapshot chain
        self.aside = os.path.join(self.root, "aside")
        self.scratch = os.path.join(self.root, "scratch")  # fresh stores, copies
        self.files = []
        self.tree_bytes = 0
        self.seeded_ok = False
        self.snapped_ok = False

    def build(self):
        dirs, per_dir, size = self.p["store"]
        os.makedirs(self.aside)
        self.gen.tree(self.tree, dirs, 0, per_dir, size, "", 40)
        for d, _, names in os.walk(self.tree):
            self.files += [os.path.join(d, n) for n in names]
        self.files.sort()
        self.tree_bytes = sum(os.path.getsize(f) for f in self.files)
        os.sync()

    def commit(self, store, tag):
        return [self.lamina, "--root", store, "commit", "-q", "--json", "--upper", self.tree,
                "--tag", tag]

    def seed(self):
        """The store the dedup and incremental commits go into: one untimed commit."""
        if self.seeded_ok:
            return
        rm_rf(self.seeded)
        _, out, err = run_timed([self.commit(self.seeded, "seed")], self.p["timeout"],
                                capture=True)
        if err:
            raise RuntimeError(f"seeding the store: {err}")
        self.check(json.loads(out), len(self.files), self.tree_bytes)
        self.seeded_ok = True

    def snapshot(self, store):
        return [self.lamina, "--root", store, "snapshot", "-q", "--json", self.tree, "--tag",
                "vol"]

    def seed_snapshot(self):
        """The store the incremental snapshots and the restores use: one untimed snapshot (its
        index covers every file: the tree was written well before)."""
        if self.snapped_ok:
            return
        rm_rf(self.snapped)
        _, out, err = run_timed([self.snapshot(self.snapped)], self.p["timeout"], capture=True)
        if err:
            raise RuntimeError(f"seeding the snapshot store: {err}")
        res = json.loads(out)
        if res["files"] != len(self.files) or res["content_bytes"] != self.tree_bytes:
            raise RuntimeError(f"the first snapshot holds {res['files']} files of "
                               f"{res['content_bytes']} B, the tree {len(self.files)} of "
                               f"{self.tree_bytes} B")
        self.snapped_ok = True

    def check_snapshot(self, res, files, content):
        """An incremental snapshot's layer holds exactly the changed files."""
        if res["files"] != files or res["content_bytes"] != content:
            raise RuntimeError(f"the snapshot layer holds {res['files']} files of "
                               f"{res['content_bytes']} B, expected {files} of {content} B")

    def check(self, res, objects, added):
        """A commit's JSON result against what it must have done."""
        if res["files"] != len(self.files) or res["content_bytes"] != self.tree_bytes:
            raise RuntimeError(f"commit saw {res['files']} files of {res['content_bytes']} B, "
                               f"the tree has {len(self.files)} of {self.tree_bytes} B")
        if res["objects_added"] != objects or res["bytes_added"] != added:
            raise RuntimeError(f"commit added {res['objects_added']} objects of "
                               f"{res['bytes_added']} B, expected {objects} of {added} B")

    def change_files(self, run):
        """Rewrites 1% of the files (every 100th) with new random bytes of the same size; the
        originals go aside and change_back() restores them. Returns (count, bytes)."""
        n = max(1, round(len(self.files) * self.p["store_changed"]))
        step = len(self.files) // n
        self.changed = self.files[::step][:n]
        total = 0
        for i, path in enumerate(self.changed):
            size = os.path.getsize(path)
            os.rename(path, os.path.join(self.aside, f"{i}"))
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            total += size
        return len(self.changed), total

    def change_back(self):
        for i, path in enumerate(getattr(self, "changed", [])):
            if os.path.exists(os.path.join(self.aside, f"{i}")):
                if os.path.lexists(path):
                    os.unlink(path)
                os.rename(os.path.join(self.aside, f"{i}"), path)
        self.changed = []

    def run_one(self, w, run):
        rec = {"workload": w.wid, "config": "store", "run": run, "metrics": {}, "notes": {},
               "error": None, "warning": None}
        args = dict(a.split("=", 1) for a in w.args)
        parent, name = os.path.split(self.tree)
        dest = os.path.join(self.scratch, f"{w.wid}-{run}")
        expect = None
        try:
            os.makedirs(self.scratch, exist_ok=True)
            if w.kind == "tar-null":
                cmds = [["tar", "-cf", "/dev/null", "-C", parent, name]]
            elif w.kind == "tar":
                cmds = [["tar", "-cf", "-", "-C", parent, name], ["cat"]]
            elif w.kind == "cp":
                cmds = [["sh", "-c", 'cp -a "$1" "$2" && sync -f "$2"', "sh", self.tree, dest]]
            elif w.kind == "commit":
                cmds = [self.commit(dest, f"run{run}")]
                expect = (len(self.files), self.tree_bytes)
            elif w.kind == "dedup":
                self.seed()
                cmds = [self.commit(self.seeded, f"{w.wid}-{run}")]
                expect = (0, 0)
            elif w.kind == "incr":
                self.seed()
                expect = self.change_files(run)
                cmds = [self.commit(self.seeded, f"{w.wid}-{run}")]
            elif w.kind == "snap-full":
                cmds = [self.snapshot(dest)]
                expect = (len(self.files), self.tree_bytes)
            elif w.kind == "snap-incr":
                self.seed_snapshot()
                expect = self.change_files(run)
                cmds = [self.snapshot(self.snapped)]
            elif w.kind == "restore":
                self.seed_snapshot()
                cmds = [["sh", "-c", '"$1" --root "$2" restore -q vol:1 "$3" && sync -f "$3"',
                         "sh", self.lamina, self.snapped, dest]]
            else:
                raise ValueError(f"unknown store workload {w.kind}")
            warm = [self.tree] + ([os.path.join(self.seeded, "objects")]
                                  if w.kind == "dedup" else [])
            if args.get("cache") == "warm":
                self.gen.warm(warm)
                os.sync()
            else:
                drop_caches()
            metrics, out, err = run_timed(cmds, self.p["timeout"], capture=expect is not None)
            if err:
                rec["error"] = err
            else:
                rec["metrics"] = metrics
                if expect is not None:
                    res = json.loads(out)
                    for k in ("files", "content_bytes", "objects_added", "bytes_added"):
                        rec["metrics"][k] = res[k]
                    if w.kind.startswith("snap-"):
                        self.check_snapshot(res, *expect)
                    else:
                        self.check(res, *expect)
                elif w.kind != "tar-null":  # which reads no data: no throughput
                    rec["metrics"]["content_bytes"] = self.tree_bytes
        except Exception as e:  # noqa: BLE001 - any failure of one run is recorded, not fatal
            rec["error"] = f"{type(e).__name__}: {e}"
        finally:
            self.change_back()
            rm_rf(dest)
        return rec


def fmt_status(m):
    out = f"wall={m['wall']:.3g} s  user={m['user']:.3g} s  sys={m['sys']:.3g} s"
    if "bytes_added" in m:
        out += f"  objects_added={m['objects_added']:,}  bytes_added={m['bytes_added']:,}"
    return out


def run(runner, p, base, wls, lamina):
    """Builds the tree and runs the store workloads `wls`, interleaved run by run (rotated by
    one each round, like the other workloads); their records go to runner.records."""
    sb = StoreBench(runner, p, base, lamina)
    t0 = time.monotonic()
    try:
        sb.build()
    except (RuntimeError, OSError) as e:
        for w in wls:  # every run of every store workload fails, and the report says why
            for r in range(p["store_runs"]):
                runner.records.append({"workload": w.wid, "config": "store", "run": r,
                                       "metrics": {}, "notes": {}, "warning": None,
                                       "error": f"building the tree: {e}"})
        log(f"  store: building the tree failed: {e}")
        return
    log(f"  tree store: {len(sb.files):,} files, {sb.tree_bytes / 2**20:.1f} MiB in "
        f"{time.monotonic() - t0:.1f} s")
    n = len(wls)
    for r in range(p["store_runs"]):
        for w in wls[r % n:] + wls[:r % n]:
            rec = sb.run_one(w, r)
            runner.records.append(rec)
            runner.count += 1
            status = "FAILED: " + rec["error"] if rec["error"] else fmt_status(rec["metrics"])
            log(f"[{runner.count:3d}/{runner.total}] {w.wid:19s} run {r + 1}/"
                f"{p['store_runs']}  {status}")
    log(f"  store: {time.monotonic() - t0:.1f} s")
    rm_rf(sb.root)
