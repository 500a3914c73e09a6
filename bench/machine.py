# SPDX-License-Identifier: Apache-2.0
"""Facts about the machine for the report, and filesystems of their own on loop devices."""

import datetime
import os
import platform
import resource
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def loadavg():
    """The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def describe_fs(path):
    """'ext4 /dev/loop0 (journaled)' for the filesystem holding path."""
    out = " ".join(sh(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", path]).split())
    parts = out.split()
    if len(parts) == 2 and parts[0] == "ext4":
        task = f"/sys/fs/ext4/{os.path.basename(parts[1])}/journal_task"
        if os.path.exists(task):
            with open(task) as f:
                out += " (no journal)" if f.read().strip() == "<none>" else " (journaled)"
    if parts and parts[1:] and parts[1].startswith("/dev/loop"):
        back = sh(["losetup", "-n", "-O", "BACK-FILE", parts[1]])
        if back:
            out += f", a loop device (direct I/O) on the image file `{back}`"
    return out


def machine_info(scratch, laminafs):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    distro = ""
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    git = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    if git and sh(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"]):
        git += " (with uncommitted changes)"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "distro": distro,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "backing": describe_fs(scratch),
        "backing_dir": scratch,
        "laminafs": (sh([laminafs, "--version"]).splitlines() or ["?"])[0],
        "laminafs_git": git,
        "fuse_overlayfs": next((ln for ln in sh(["fuse-overlayfs", "--version"]).splitlines()
                                if ln.startswith("fuse-overlayfs")), "not installed"),
    }


def effective_nofile(requested):
    """The RLIMIT_NOFILE the FUSE daemons will run with."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if not requested or requested <= hard:
        return requested or hard
    r = subprocess.run([sys.executable, "-c", "import resource; resource.setrlimit("
                        f"resource.RLIMIT_NOFILE, ({requested}, {requested}))"],
                       capture_output=True)
    return requested if r.returncode == 0 else hard


def have_tool(tool):
    return any(os.access(os.path.join(d, tool), os.X_OK)
               for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/sbin"])


class LoopFs:
    """A filesystem of its own on a sparse image file attached with losetup (direct I/O, so
    the image behaves like a disk rather than a second page cache), mounted at `mnt`. Made
    with `mkfs` (argv without the device); recorded in `cleanup` until close()."""

    def __init__(self, image, size, mkfs, mnt, cleanup):
        self.image, self.mnt, self.cleanup, self.dev = image, mnt, cleanup, None
        subprocess.run(["truncate", "-s", size, image], check=True)
        r = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", image],
                           capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(image)
            raise RuntimeError(f"losetup {image}: {r.stderr.strip()}")
        self.dev = r.stdout.strip()
        cleanup.loops.append(self.dev)
        try:
            subprocess.run(mkfs + [self.dev], check=True, capture_output=True)
            os.makedirs(mnt, exist_ok=True)
            subprocess.run(["mount", self.dev, mnt], check=True, capture_output=True)
            cleanup.add_mount(mnt)
        except (subprocess.CalledProcessError, OSError) as e:
            self.close()
            raise RuntimeError(f"{' '.join(mkfs)} on {self.dev}: {e}") from e

    def close(self):
        if self.mnt in [m for m, _ in self.cleanup.mounts]:
            self.cleanup.unmount(self.mnt)
        if self.dev in self.cleanup.loops:
            subprocess.run(["losetup", "-d", self.dev], capture_output=True)
            self.cleanup.loops.remove(self.dev)
        if os.path.exists(self.image):
            os.unlink(self.image)
