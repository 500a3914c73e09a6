# SPDX-License-Identifier: Apache-2.0
"""PNG plots for the benchmark report (matplotlib, Agg backend): the copy-up latency curve
(ext4 and XFS reflink side by side) and per-workload ratio bars."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"plain": "#7f7f7f", "laminafs": "#d62728", "laminafs-pt": "#ff7f0e",
          "laminafs-uring": "#8c564b", "laminafs-wb": "#9467bd", "ovl-off": "#1f77b4",
          "ovl-on": "#17becf", "fuse-overlayfs": "#2ca02c"}
MARKERS = {"plain": "s", "laminafs": "o", "laminafs-pt": "P", "laminafs-uring": "*",
           "laminafs-wb": "X", "ovl-off": "v",
           "ovl-on": "^",
           "fuse-overlayfs": "D"}


def _label(results, name):
    for c in results["configs"]:
        if c["name"] == name:
            return c["label"]
    return name


def _size_bytes(key):
    label = key.rsplit("_", 1)[-1]
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(label[-1], 1)
    return int(label.rstrip("kmg")) * mult


def _size_tick(b):
    for unit, mult in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= mult:
            return f"{b // mult} {unit}"
    return f"{b} B"


def copyup_plot(results, rows, path):
    panels = [("copyup", "ext4 (copy_file_range)"), ("copyup-xfs", "XFS reflink=1 (FICLONE)")]
    panels = [pn for pn in panels if any(w["wid"] == pn[0] for w, *_ in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), sharey=True,
                             squeeze=False)
    cfgs = [c["name"] for c in results["configs"]]
    for ax, (wid, title) in zip(axes[0], panels):
        mine = [(key, cells) for w, key, _, cells in rows if w["wid"] == wid]
        for c in cfgs:
            pts = [(_size_bytes(k), cells[c]) for k, cells in mine
                   if c in cells and cells[c]["median"] is not None]
            if not pts:
                continue
            xs = [x for x, _ in pts]
            med = [cell["median"] * 1e3 for _, cell in pts]
            lo = [m - cell["min"] * 1e3 for m, (_, cell) in zip(med, pts)]
            hi = [cell["max"] * 1e3 - m for m, (_, cell) in zip(med, pts)]
            style = "--" if c == "plain" else "-"
            ax.errorbar(xs, med, yerr=[lo, hi], label=_label(results, c), color=COLORS.get(c),
                        marker=MARKERS.get(c, "o"), linestyle=style, capsize=3, markersize=5)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sizes = sorted({_size_bytes(k) for k, _ in mine})
        ax.set_xticks(sizes)
        ax.set_xticklabels([_size_tick(s) for s in sizes])
        ax.set_xlabel("size of the lower file")
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("first write: open + 4 KiB write + close (ms)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle("Copy-up latency (median, bars: min–max)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ratio_plot(results, rows, ref, path, title):
    """A dot plot: one line per workload row, one marker per configuration at its ratio to
    the reference (log scale), joined to 1 by a thin line so faster and slower read apart."""
    cfgs = [c["name"] for c in results["configs"] if c["name"] != ref]
    data = [(label, cells) for w, _, label, cells in rows
            if w.get("group") != "xfs" and w["wid"] != "copyup-xfs" and ref in cells
            and cells[ref]["median"]]
    if not data or not cfgs:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.34 * len(data) + 1.6))
    offsets = {c: (i - (len(cfgs) - 1) / 2) * 0.16 for i, c in enumerate(cfgs)}
    for c in cfgs:
        ys, xs = [], []
        for j, (_, cells) in enumerate(data):
            if c in cells and cells[c]["median"] is not None:
                ys.append(j + offsets[c])
                xs.append(cells[c]["median"] / cells[ref]["median"])
        for j, (_, cells) in enumerate(data):
            if c in cells and cells[c]["median"] is None and cells[c]["failed"]:
                ax.text(0.995, j + offsets[c], f"{_label(results, c)} failed", color=COLORS.get(c),
                        fontsize=7, ha="right", va="center", transform=ax.get_yaxis_transform())
        ax.hlines(ys, [1.0] * len(xs), xs, color=COLORS.get(c), linewidth=1, alpha=0.6)
        ax.scatter(xs, ys, label=_label(results, c), color=COLORS.get(c),
                   marker=MARKERS.get(c, "o"), s=28, zorder=3)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(data)))
    ax.set_yticklabels([label for label, _ in data], fontsize=8)
    ax.set_ylim(len(data) - 0.5, -0.5)
    ax.set_xlabel(f"median ÷ median of {_label(results, ref)} (log scale; left of 1 is faster)")
    ax.set_title(title, pad=22)
    ax.grid(True, axis="x", which="major", alpha=0.4)
    ax.grid(True, axis="y", alpha=0.15)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(cfgs),
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def make_all(results, rows, ref, plots_dir):
    """Writes the PNGs into plots_dir; returns {name: file name} of those made."""
    made = {}
    if any(w["wid"] == "copyup" for w, *_ in rows):
        copyup_plot(results, rows, os.path.join(plots_dir, "copyup.png"))
        made["copyup"] = "copyup.png"
    if ref and ratio_plot(results, rows, ref, os.path.join(plots_dir, "ratios.png"),
                          f"Per-workload ratio to {_label(results, ref)}"):
        made["ratios"] = "ratios.png"
    if ratio_plot(results, rows, "plain", os.path.join(plots_dir, "ratios-plain.png"),
                  "Per-workload ratio to the plain dir (direct volume write)"):
        made["ratios-plain"] = "ratios-plain.png"
    return made
