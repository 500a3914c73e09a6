#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""lamina's benchmark driver (issue 6): `make bench` (full) and `make bench-quick` (smoke).

Builds every tree once as lower layers, then for each workload runs every configuration
(plain dir, laminafs, kernel overlayfs with redirect_dir/metacopy off and on,
fuse-overlayfs) interleaved run by run, each run on a fresh mount with fresh upper and work
dirs; bench/lamina_bench (C++) times the syscalls and prints one JSON line. The store
workloads (bench/store.py: `lamina commit` against tar) run once per run, without a mount.
The results go to a JSON file, and bench/report.py writes the Markdown report and the PNG
plots.

  run_bench.py [--quick] [--out docs/benchmarks.md] [--plots docs/bench] [--bench-dir DIR]
               [--build-dir build] [--runs N] [--only WID,..] [--configs NAME,..] [--no-xfs]
               [--backing loop|dir] [--daemon-nofile N] [--strict] [--keep]
               [--merge RESULTS.json] [--report-only RESULTS.json]

Needs root (mounts, drop_caches, loop devices) and /dev/fuse. Every mount, daemon and loop
device is torn down at the end, on failure and on Ctrl-C/SIGTERM. Timings are never asserted.
With --quick (or --strict) the exit status is 1 when a workload failed (an error, a dead
daemon, a mount that needed force, or configurations disagreeing on how many entries a
workload saw); a full run reports failures in the report and exits 0.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import configs as cfgmod  # noqa: E402
import machine  # noqa: E402
import plan  # noqa: E402
import report  # noqa: E402
import store as storemod  # noqa: E402
import trees as treemod  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(msg, flush=True)


def rm_rf(path):
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], check=True)


class Runner:
    def __init__(self, opts, p, configs, cleanup):
        self.opts = opts
        self.p = p
        self.configs = configs
        self.cleanup = cleanup
        self.bench = os.path.join(opts.build_dir, "bin", "lamina_bench")
        self.gen = treemod.Generator(self.bench)
        self.records = []
        self.count = 0
        self.total = 0

    def prepare(self, base, tree_objs, needed, shared_plain):
        """Builds lower layers of the `needed` trees under base/lower, and shared plain copies
        of those in `shared_plain`, under base/plain. Returns (layers, plains)."""
        layers, plains = {}, {}
        for name in needed:
            t0 = time.monotonic()
            layers[name] = tree_objs[name].build_layers(os.path.join(base, "lower", name))
            if name in shared_plain:
                plains[name] = os.path.join(base, "plain", name)
                tree_objs[name].build_plain(plains[name])
            log(f"  tree {name}: {len(layers[name])} layer(s) in {time.monotonic() - t0:.1f} s")
        os.sync()
        return layers, plains

    def run_workload(self, w, runs, base, tree_objs, layers, plains):
        t0 = time.monotonic()
        n = len(self.configs)
        for r in range(runs):
            # Interleaved, and rotated by one each round, so that no configuration always
            # runs right after the same one (the first run after a teardown can be slower).
            for cfg in self.configs[r % n:] + self.configs[:r % n]:
                rec = self.run_one(w, cfg, r, base, tree_objs[w.tree], layers[w.tree],
                                   plains.get(w.tree))
                self.records.append(rec)
                self.count += 1
                if rec["error"]:
                    status = "FAILED: " + rec["error"]
                else:
                    status = "  ".join(f"{k}={report.fmt_value(k, v)}"
                                       for k, v in rec["metrics"].items())
                log(f"[{self.count:3d}/{self.total}] {w.wid:15s} {cfg.name:15s} run {r + 1}/{runs}"
                    f"  {status}")
        log(f"  {w.wid}: {time.monotonic() - t0:.1f} s")

    def run_one(self, w, cfg, run, base, tree, lowers, shared_plain):
        rec = {"workload": w.wid, "config": cfg.name, "run": run, "metrics": {}, "notes": {},
               "error": None, "warning": None}
        rundir = os.path.join(base, "run", f"{w.wid}-{cfg.name}-{run}")
        upper, work, mnt = (os.path.join(rundir, d) for d in ("upper", "work", "mnt"))
        for d in (upper, work, mnt):
            os.makedirs(d)
        mounted = False
        try:
            args = list(w.args)
            if isinstance(cfg, cfgmod.PlainDir):
                if w.plain == "fresh" or shared_plain is None:
                    target = os.path.join(rundir, "plain")
                    tree.build_plain(target)
                else:
                    target = shared_plain
                args += w.plain_args
                warm_dirs = [target]
            else:
                warm_dirs = lowers
            if w.prewarm:
                self.gen.warm(warm_dirs)
            os.sync()
            pid = None
            if not isinstance(cfg, cfgmod.PlainDir):
                target, pid = cfg.mount(lowers, upper, work, mnt, self.cleanup)
                mounted = True
                if pid is not None:
                    args.append(f"pid={pid}")
            r = subprocess.run([self.bench, w.kind, target] + args, capture_output=True,
                               text=True, timeout=self.p["timeout"])
            lines = r.stdout.strip().splitlines()
            out = json.loads(lines[-1]) if lines else {"error": r.stderr.strip() or "no output"}
            if "error" in out or r.returncode != 0:
                rec["error"] = out.get("error", f"exit {r.returncode}").replace(target + "/", "")
                # A tool the workload ran (tar, make) says why on stderr.
                tool = [ln for ln in r.stderr.splitlines()
                        if ln.strip() and not ln.startswith("lamina_bench:")]
                if tool:
                    rec["error"] += f" [{tool[0].strip().replace(target + '/', '')}]"
                if pid is not None and cfgmod.pid_alive(pid):
                    try:
                        nfd = len(os.listdir(f"/proc/{pid}/fd"))
                        rec["error"] += f" (the daemon had {nfd:,} descriptors open)"
                    except OSError:
                        pass
            else:
                rec["metrics"] = out["metrics"]
                rec["notes"] = out["notes"]
            if pid is not None and not cfgmod.pid_alive(pid):
                rec["error"] = (rec["error"] or "") + " (daemon died)"
        except subprocess.TimeoutExpired:
            rec["error"] = f"timed out after {self.p['timeout']} s"
        except Exception as e:  # noqa: BLE001 - any failure of one run is recorded, not fatal
            rec["error"] = f"{type(e).__name__}: {e}"
        finally:
            if mounted:
                rec["warning"] = self.cleanup.unmount(mnt)
                if rec["warning"] and not rec["error"]:
                    rec["error"] = rec["warning"]
            rm_rf(rundir)
        return rec


def hit_fd_limit(rec):
    return bool(rec["error"]) and ("Too many open files" in rec["error"]
                                   or "descriptors open" in rec["error"])


def run_reduced(runner, p, base, wls, nofile):
    """Reruns, at a size that fits under the descriptor limit, every workload in which a
    daemon ran out of descriptors (laminafs keeps one per inode the kernel holds), so the
    report still compares its speed there. Returns the workloads run."""
    failed = {r["workload"] for r in runner.records if hit_fd_limit(r)}
    todo = [w for w in wls if w.wid in failed]
    if not todo:
        return []
    q = plan.reduced(p, nofile)
    rbase = os.path.join(base, "reduced")
    log(f"rerunning {', '.join(w.wid for w in todo)} at reduced size (descriptor limit "
        f"{nofile:,})")
    tree_objs = treemod.make_trees(runner.gen, q)
    os.makedirs(os.path.join(rbase, "tar"))
    tarball = treemod.make_tarball(runner.gen, q, os.path.join(rbase, "tar"))
    rwls = []
    for w in plan.workloads(q, tarball):
        if w.wid in failed:
            w.wid += "-reduced"
            w.group = "reduced"
            w.rows = [(key, f"{label} (reduced)") for key, label in w.rows]
            rwls.append(w)
    runner.total += len(runner.configs) * q["runs_heavy"] * len(rwls)
    layers, plains = runner.prepare(rbase, tree_objs, sorted({w.tree for w in rwls}),
                                    {w.tree for w in rwls if w.plain == "shared"})
    for w in rwls:
        runner.run_workload(w, q["runs_heavy"], rbase, tree_objs, layers, plains)
    return rwls


def run_xfs(runner, p, scratch, tree_objs):
    """Copy-up curve on an XFS reflink loop image; returns a note if it could not run."""
    if not machine.have_tool("mkfs.xfs"):
        return "mkfs.xfs not installed (apt-get install xfsprogs)"
    try:
        fs = machine.LoopFs(os.path.join(scratch, "xfs.img"), p["xfs_image"],
                    ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"], os.path.join(scratch, "xfs"),
                    runner.cleanup)
    except RuntimeError as e:
        return str(e)
    try:
        w = plan.xfs_workload(p)
        log(f"XFS reflink image on {fs.dev}, mounted at {fs.mnt}")
        layers, plains = runner.prepare(fs.mnt, tree_objs, ["data"], {"data"})
        runner.run_workload(w, p["runs_heavy"], fs.mnt, tree_objs, layers, plains)
        return None
    finally:
        fs.close()


def group_failures(records):
    """One line per workload and configuration that had failed runs."""
    groups, totals = {}, {}
    for r in records:
        key = (r["workload"], r["config"])
        totals[key] = totals.get(key, 0) + 1
        if r["error"]:
            groups.setdefault(key, []).append(r["error"])
    out = []
    for (wid, cfg), errs in groups.items():
        line = f"{wid} / {cfg}: {len(errs)} of {totals[(wid, cfg)]} runs failed: {errs[0]}"
        if len(set(errs)) > 1:
            line += f" (first of {len(set(errs))} different messages)"
        out.append(line)
    return out


def check_counts(records):
    """Configurations must agree on what a workload saw (files/dirs notes): a union that
    loses or duplicates entries is a failure, whatever its speed."""
    problems = []
    by_wid = {}
    for rec in records:
        if rec["error"]:
            continue
        key = tuple((k, rec["notes"][k]) for k in ("files", "dirs") if k in rec["notes"])
        if key:
            by_wid.setdefault(rec["workload"], {}).setdefault(key, []).append(rec["config"])
    for wid, seen in by_wid.items():
        if len(seen) > 1:
            desc = "; ".join(f"{dict(k)} in {sorted(set(v))}" for k, v in seen.items())
            problems.append(f"{wid}: configurations saw different trees: {desc}")
    return problems


def merge_results(old, new):
    """`old` with the workloads `new` ran replaced by new's (workloads, records, failures);
    old's machine facts, date and parameters stay, and merges[] records when and where the
    replaced workloads ran (report.meta_of shows those with their rows)."""
    ran = [w["wid"] for w in new["workloads"]]

    def of_ran(failure):
        return any(failure.startswith((f"{wid} /", f"{wid}:")) for wid in ran)

    out = dict(old)
    # Configurations the new run has and the old one had not (a new one): listed in the new
    # run's order, so their columns show for the rows that ran.
    known = {c["name"] for c in old["configs"]}
    order = [c["name"] for c in new["configs"]]
    extra = [c for c in new["configs"] if c["name"] not in known]
    out["configs"] = sorted(old["configs"] + extra,
                            key=lambda c: order.index(c["name"]) if c["name"] in order else 99)
    out["workloads"] = [w for w in old["workloads"] if w["wid"] not in ran] + new["workloads"]
    out["records"] = [r for r in old["records"] if r["workload"] not in ran] + new["records"]
    out["failures"] = [f for f in old["failures"] if not of_ran(f)] + new["failures"]
    out["merges"] = [m for m in old.get("merges", [])
                     if not set(m["workloads"]) <= set(ran)]
    out["merges"].append({"workloads": ran, "meta": new["meta"], "params": new["params"],
                          "duration_s": new["duration_s"]})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run (smoke test)")
    ap.add_argument("--out", help="Markdown report (default: docs/benchmarks.md, or "
                    "build/bench-quick/benchmarks.md with --quick)")
    ap.add_argument("--plots", help="directory for PNG plots and results.json")
    ap.add_argument("--bench-dir", default=None, help="backing storage (default /var/tmp/...)")
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--passthrough-build-dir", default=os.path.join(REPO, "build-passthrough"),
                    help="laminafs built against libfuse 3.18 (make build-passthrough); the "
                    "laminafs-pt configuration runs when its laminafs is there")
    ap.add_argument("--runs", type=int, help="runs per configuration for every workload")
    ap.add_argument("--only", help="comma-separated workload ids")
    ap.add_argument("--configs", help="comma-separated configuration names")
    ap.add_argument("--no-xfs", action="store_true", help="skip the XFS reflink copy-up curve")
    ap.add_argument("--backing", choices=("loop", "dir"), default="loop",
                    help="loop (default): trees and uppers on a journaled ext4 of their own, "
                    "on an image file in the bench dir; dir: directly in the bench dir")
    ap.add_argument("--daemon-nofile", type=int, default=0,
                    help="RLIMIT_NOFILE (soft and hard) the FUSE daemons start with; needs "
                    "CAP_SYS_RESOURCE to go above the hard limit (default 0: inherit)")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when a workload failed (always on with --quick)")
    ap.add_argument("--keep", action="store_true", help="keep the backing directory")
    ap.add_argument("--merge", metavar="RESULTS",
                    help="merge this run's workloads into an earlier results JSON (e.g. "
                    "docs/bench/results.json after --only): the report keeps the other rows")
    ap.add_argument("--report-only", metavar="RESULTS", help="rewrite the report from a JSON")
    opts = ap.parse_args()
    quick_dir = os.path.join(REPO, "build", "bench-quick")
    opts.out = os.path.abspath(opts.out or (os.path.join(quick_dir, "benchmarks.md") if opts.quick
                                            else os.path.join(REPO, "docs", "benchmarks.md")))
    opts.plots = os.path.abspath(opts.plots or (quick_dir if opts.quick
                                                else os.path.join(REPO, "docs", "bench")))
    opts.build_dir = os.path.abspath(opts.build_dir)

    if opts.report_only:
        with open(opts.report_only) as f:
            results = json.load(f)
        report.write(results, opts.out, opts.plots)
        log(f"wrote {opts.out}")
        return 0
    if os.geteuid() != 0:
        sys.exit("run_bench.py: needs root (mounts, drop_caches, loop devices)")

    p = dict(plan.QUICK if opts.quick else plan.FULL)
    if opts.runs:
        p["runs"] = p["runs_heavy"] = p["store_runs"] = opts.runs
    merge_from = None
    if opts.merge:
        with open(opts.merge) as f:  # read now: the run rewrites it when it is --plots's
            merge_from = json.load(f)
    scratch = os.path.abspath(opts.bench_dir or ("/var/tmp/lamina-bench-quick" if opts.quick
                                                 else "/var/tmp/lamina-bench"))
    laminafs = os.path.join(opts.build_dir, "bin", "laminafs")
    for exe in (laminafs, os.path.join(opts.build_dir, "bin", "lamina_bench"),
                os.path.join(opts.build_dir, "bin", "lamina")):
        if not os.access(exe, os.X_OK):
            sys.exit(f"run_bench.py: {exe} missing: run `make build` first")

    cleanup = cfgmod.Cleanup()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = time.monotonic()
    configs, skipped = [], {}
    wanted = set(opts.configs.split(",")) if opts.configs else None
    passthrough = os.path.join(opts.passthrough_build_dir, "bin", "laminafs")
    for c in cfgmod.all_configs(laminafs, passthrough):
        if c.fuse and opts.daemon_nofile:
            c.nofile = opts.daemon_nofile
        ok, why = c.available()
        if wanted is not None and c.name not in wanted:
            continue
        if ok:
            configs.append(c)
        else:
            skipped[c.name] = why
            log(f"skipping {c.name}: {why}")

    # Leftovers of a killed run: unmount what is still mounted under the scratch dir.
    for m in cfgmod.mounted_under(scratch):
        log(f"unmounting leftover {m}")
        cfgmod.unmount(m, pid=None)
    for img in ("ext4.img", "xfs.img"):
        path = os.path.join(scratch, img)
        if os.path.exists(path):
            for line in machine.sh(["losetup", "-j", path]).splitlines():
                log(f"detaching leftover {line.split(':')[0]}")
                subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True)
    rm_rf(scratch)
    os.makedirs(scratch)
    meta = machine.machine_info(scratch, laminafs)
    meta["nofile"] = machine.effective_nofile(opts.daemon_nofile)
    meta["load_start"] = machine.loadavg()

    runner = Runner(opts, p, configs, cleanup)
    reduced_wls = []
    store_wls = []
    xfs_note = None
    interrupted = None
    backing = None
    try:
        base = scratch
        if opts.backing == "loop":
            backing = machine.LoopFs(os.path.join(scratch, "ext4.img"), p["ext4_image"],
                             ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,"
                              "lazy_journal_init=0"], os.path.join(scratch, "fs"), cleanup)
            base = backing.mnt
        meta["backing_fs"] = machine.describe_fs(base)
        log(f"{p['name']} benchmark in {base} ({meta['backing_fs']}); configurations: "
            + ", ".join(c.name for c in configs))
        tree_objs = treemod.make_trees(runner.gen, p)
        tar_dir = os.path.join(base, "tar")
        os.makedirs(tar_dir)
        tarball = treemod.make_tarball(runner.gen, p, tar_dir)
        wls = plan.workloads(p, tarball)
        store_wls = plan.store_workloads(p)
        if opts.only:
            # An id, or "store" for every store workload.
            keep = set(opts.only.split(","))
            wls = [w for w in wls if w.wid in keep]
            store_wls = [w for w in store_wls if w.wid in keep or w.group in keep]
        xfs_on = not opts.no_xfs and (not opts.only or "copyup-xfs" in opts.only.split(","))
        runs_of = {w.wid: p["runs_heavy"] if w.heavy else p["runs"] for w in wls}
        runner.total = len(configs) * (sum(runs_of.values()) + (p["runs_heavy"] if xfs_on else 0))
        runner.total += len(store_wls) * p["store_runs"]
        needed = sorted({w.tree for w in wls})
        shared = {w.tree for w in wls if w.plain == "shared"}
        log("building trees")
        layers, plains = runner.prepare(base, tree_objs, needed, shared)
        for w in wls:
            runner.run_workload(w, runs_of[w.wid], base, tree_objs, layers, plains)
        reduced_wls = run_reduced(runner, p, base, wls, meta["nofile"])
        if xfs_on:
            xfs_note = run_xfs(runner, p, scratch, tree_objs)
            if xfs_note:
                log(f"XFS reflink curve skipped: {xfs_note}")
        if store_wls:
            log("store workloads")
            storemod.run(runner, p, base, store_wls,
                         os.path.join(opts.build_dir, "bin", "lamina"))
    except KeyboardInterrupt as e:
        interrupted = str(e) or "Ctrl-C"
        log(f"interrupted ({interrupted}): cleaning up")
    finally:
        cleanup.teardown()
        if not opts.keep:
            for m in cfgmod.mounted_under(scratch):
                cfgmod.unmount(m)
            rm_rf(scratch)
    if interrupted:
        return 130

    duration = time.monotonic() - started
    meta["load_end"] = machine.loadavg()
    all_wls = wls + reduced_wls + ([plan.xfs_workload(p)] if xfs_on and not xfs_note else [])
    all_wls += store_wls
    failures = group_failures(runner.records)
    failures += check_counts(runner.records)
    results = {
        "meta": meta,
        "params": {k: v for k, v in p.items()},
        "configs": [{"name": c.name, "label": c.label, "describe": c.describe()}
                    for c in configs],
        "skipped": skipped,
        "workloads": [{"wid": w.wid, "title": w.title, "rows": w.rows,
                       "only_fuse_rows": list(w.only_fuse_rows), "heavy": w.heavy,
                       "group": w.group} for w in all_wls],
        "xfs_note": xfs_note,
        "records": runner.records,
        "failures": failures,
        "duration_s": round(duration, 1),
    }
    if merge_from is not None:
        results = merge_results(merge_from, results)
        log(f"merged into the results of {merge_from['meta']['date']} from {opts.merge}")
    os.makedirs(opts.plots, exist_ok=True)
    results_path = os.path.join(opts.plots, "results.json")
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)
    report.write(results, opts.out, opts.plots)
    log(f"wrote {opts.out}, {results_path} ({duration:.0f} s)")
    for fl in failures:
        log(f"FAILURE: {fl}")
    return 1 if failures and (opts.quick or opts.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
