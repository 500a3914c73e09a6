# SPDX-License-Identifier: Apache-2.0
"""The configurations under test, and the one place that mounts and unmounts.

Every mount, loop device and daemon the benchmark makes is recorded in a Cleanup, which
undoes them in reverse order on success, failure, Ctrl-C or SIGTERM. A FUSE daemon that does
not exit after its unmount is aborted through /sys/fs/fuse/connections and then killed by its
own pid (never by name).
"""

import atexit
import os
import resource
import shutil
import signal
import subprocess
import time

QUIET = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def mounted_under(root):
    """Mount points at or below `root`, deepest first (from /proc/self/mountinfo)."""
    root = os.path.realpath(root)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == root or mnt.startswith(root + "/"):
                out.append(mnt)
    return sorted(out, key=len, reverse=True)


def is_mounted(path):
    return os.path.realpath(path) in mounted_under(path)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def find_daemon(exe_name, mnt):
    """The pid of the FUSE daemon `exe_name` whose command line names mount point `mnt`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode(errors="replace")) == exe_name and \
                mnt.encode() in argv:
            return int(entry)
    return None


class Cleanup:
    """What the benchmark has set up and must tear down: mounts (with their daemon pid, if
    any) and loop devices. teardown() runs at the end whatever happened."""

    def __init__(self):
        self.mounts = []  # (path, pid or None)
        self.loops = []

    def add_mount(self, path, pid=None):
        self.mounts.append((path, pid))

    def unmount(self, path):
        """Unmounts `path` (recorded earlier); returns an error string or None."""
        entry = next((m for m in self.mounts if m[0] == path), (path, None))
        err = unmount(path, entry[1])
        self.mounts = [m for m in self.mounts if m[0] != path]
        return err

    def teardown(self):
        for path, pid in reversed(self.mounts):
            unmount(path, pid)
        self.mounts = []
        for dev in reversed(self.loops):
            subprocess.run(["losetup", "-d", dev], **QUIET)
        self.loops = []


def fuse_abort(path):
    """Aborts the FUSE connection behind `path` (its st_dev minor names the connection)."""
    try:
        minor = os.minor(os.stat(path).st_dev)
        with open(f"/sys/fs/fuse/connections/{minor}/abort", "w") as f:
            f.write("1")
    except OSError:
        pass


def unmount(path, pid=None, timeout=20):
    """Unmounts a FUSE or kernel mount and waits for its daemon to exit. Returns an error
    string when anything needed force (lazy unmount, abort, kill), else None."""
    err = None
    fuse = pid is not None
    for attempt in range(10):
        if not is_mounted(path):
            break
        cmd = ["fusermount3", "-u", path] if fuse else ["umount", path]
        try:
            r = subprocess.run(cmd, timeout=timeout, **QUIET)
        except subprocess.TimeoutExpired:
            r = None
        if r is not None and r.returncode == 0:
            break
        time.sleep(0.2 * (attempt + 1))
    if is_mounted(path):
        err = f"unmount of {path} needed force"
        if fuse:
            fuse_abort(path)
        subprocess.run(["umount", "-l", path], timeout=timeout, **QUIET)
    if pid is not None:
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_alive(pid):
            err = f"daemon {pid} did not exit after unmount of {path}"
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                time.sleep(1)
    return err


class Config:
    """One configuration: `mount` returns (directory under test, daemon pid or None)."""

    name = ""
    label = ""
    fuse = False
    exe = None

    def available(self):
        return True, ""

    def describe(self):
        return ""

    def mount(self, lowers, upper, work, mnt, cleanup):
        raise NotImplementedError


class PlainDir(Config):
    name, label = "plain", "plain dir"

    def describe(self):
        return "a plain directory holding the merged tree (a volume written directly)"

    def mount(self, lowers, upper, work, mnt, cleanup):
        return None, None  # the runner uses the plain copy instead


def _lowerdir(lowers):
    return ":".join(lowers)


class FuseDaemon(Config):
    """A FUSE daemon started from its command line. `nofile` (when set) is the
    RLIMIT_NOFILE, soft and hard, the daemon starts with."""

    fuse = True
    extra = ""
    nofile = None

    def available(self):
        if not os.path.exists(self.exe):
            return False, f"{self.exe} not found"
        if not os.path.exists("/dev/fuse"):
            return False, "/dev/fuse missing"
        return True, ""

    def mount(self, lowers, upper, work, mnt, cleanup):
        opts = f"lowerdir={_lowerdir(lowers)},upperdir={upper},workdir={work}{self.extra}"
        limit = self.nofile

        def set_limits():
            if limit:
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
                except (ValueError, OSError):
                    pass  # no CAP_SYS_RESOURCE: the daemon keeps the inherited limit

        r = subprocess.run([self.exe, "-o", opts, mnt], timeout=60, preexec_fn=set_limits,
                           **QUIET)
        if r.returncode != 0 or not is_mounted(mnt):
            if is_mounted(mnt):
                cleanup.add_mount(mnt, find_daemon(os.path.basename(self.exe), mnt))
            raise RuntimeError(f"{self.name} mount failed: {r.stderr.strip()}")
        pid = find_daemon(os.path.basename(self.exe), mnt)
        cleanup.add_mount(mnt, pid if pid is not None else -1)
        return mnt, pid


class Laminafs(FuseDaemon):
    name, label = "laminafs", "laminafs"

    def __init__(self, exe):
        self.exe = exe

    def describe(self):
        return "`laminafs -o lowerdir=…,upperdir=…,workdir=…` (defaults: fsync on)"


def built_with(exe, feature):
    """What `laminafs --version` says of an optional part: True for "FEATURE: built in"."""
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    return f"{feature}: built in" in r.stdout


class LaminafsPassthrough(Laminafs):
    """laminafs built against libfuse >= 3.17 (make build-passthrough): upper files' data
    goes through FUSE passthrough."""

    name, label = "laminafs-pt", "laminafs (passthrough)"

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        if not built_with(self.exe, "FUSE passthrough"):
            return False, f"{self.exe} is not built with FUSE passthrough"
        return True, ""

    def describe(self):
        return ("the same laminafs built against libfuse 3.18 (`make build-passthrough`): "
                "the kernel reads and writes upper files through FUSE passthrough")


class LaminafsWriteback(Laminafs):
    """laminafs with the kernel's writeback cache (`-o writeback=1`, off by default: write
    errors then show at fsync/close instead of at write)."""

    name, label = "laminafs-wb", "laminafs (writeback=1)"
    extra = ",writeback=1"

    def describe(self):
        return ("the default laminafs with `-o writeback=1`: writes are buffered in the kernel "
                "and reach the daemon in batches (not the default: a write error shows at "
                "fsync or close, not at the write)")


URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


class LaminafsUring(LaminafsPassthrough):
    """The passthrough build (libfuse 3.18) with `-o io_uring=1`: requests reach the daemon
    through FUSE over io_uring, one ring per CPU. The kernel offers it only with the fuse module
    parameter enable_uring=Y; the benchmark sets it when it can and puts it back at exit."""

    name, label = "laminafs-uring", "laminafs (io_uring)"
    extra = ",io_uring=1"

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        if not built_with(self.exe, "FUSE over io_uring"):
            return False, f"{self.exe} is not built with FUSE over io_uring"
        try:
            with open(URING_PARAM) as f:
                was = f.read().strip()
        except OSError:
            return False, "the kernel has no FUSE over io_uring (CONFIG_FUSE_IO_URING)"
        if was != "Y":
            try:
                with open(URING_PARAM, "w") as f:
                    f.write("Y")
            except OSError as e:
                return False, f"{URING_PARAM} is {was} and cannot be set ({e.strerror})"
            atexit.register(_write_param, URING_PARAM, was)
        return True, ""

    def describe(self):
        return ("the passthrough build with `-o io_uring=1`: requests go through FUSE over "
                "io_uring, one ring per CPU answered on that CPU (fuse module parameter "
                "enable_uring=Y)")


def _write_param(path, value):
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass


class FuseOverlayfs(FuseDaemon):
    name, label = "fuse-overlayfs", "fuse-overlayfs"

    def __init__(self):
        self.exe = shutil.which("fuse-overlayfs") or "/usr/bin/fuse-overlayfs"

    def describe(self):
        return "`fuse-overlayfs -o lowerdir=…,upperdir=…,workdir=…` (Debian's, defaults)"


class KernelOverlay(Config):
    def __init__(self, features):
        self.features = features
        state = "on" if features else "off"
        self.name = f"ovl-{state}"
        self.label = f"overlayfs ({state})"
        self.opts = f"redirect_dir={state},metacopy={state},index=off"

    def available(self):
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                r = subprocess.run(["modprobe", "overlay"], **QUIET)
                if r.returncode != 0:
                    return False, "kernel has no overlay filesystem"
        return True, ""

    def describe(self):
        return f"kernel overlayfs, `mount -t overlay -o {self.opts},lowerdir=…`"

    def mount(self, lowers, upper, work, mnt, cleanup):
        opts = f"lowerdir={_lowerdir(lowers)},upperdir={upper},workdir={work},{self.opts}"
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, mnt], timeout=60,
                           **QUIET)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name} mount failed: {r.stderr.strip()}")
        cleanup.add_mount(mnt)
        return mnt, None


def all_configs(laminafs_exe, passthrough_exe):
    """Every configuration, in the order runs interleave; the reference for ratios is
    kernel overlayfs with redirect_dir and metacopy on (laminafs always has both)."""
    return [PlainDir(), Laminafs(laminafs_exe), LaminafsPassthrough(passthrough_exe),
            LaminafsUring(passthrough_exe), LaminafsWriteback(laminafs_exe),
            KernelOverlay(False), KernelOverlay(True), FuseOverlayfs()]
