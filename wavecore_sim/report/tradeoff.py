"""The schedules' trade-off at a glance (issue 16): DRAM traffic against iteration time, and
the DRAM footprint, one mark per schedule, one panel or cluster per network.

Rows are plain dicts with ``network``, a schedule name (``label``, else ``schedule``) and
``cycles``, ``dram_bytes``, ``dram_peak_bytes`` either at the top level (benchmarks) or
under ``summary`` (reproduce records); failed runs are left out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110
MARKERS = "osD^vP*Xh<>"


def _points(rows: list[dict[str, Any]]) -> list[tuple[str, str, float, float, float]]:
    """(network, schedule, cycles, DRAM GB, footprint GiB) of every run that finished."""
    out = []
    for r in rows:
        s = r.get("summary", r)
        if r.get("status", "ok") != "ok" or "cycles" not in s:
            continue
        name = r.get("label") or r["schedule"]
        out.append(
            (r["network"], name, s["cycles"], s["dram_bytes"] / 1e9, s["dram_peak_bytes"] / 2**30)
        )
    return out


def _figure(width: float, height: float, *grid: int) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*grid, squeeze=False)


def tradeoff_figure(rows: list[dict[str, Any]], path: Path, title: str = "") -> str:
    """DRAM traffic (GB) against iteration time (M cycles), one panel per network."""
    pts = _points(rows)
    networks = list(dict.fromkeys(p[0] for p in pts))
    schedules = list(dict.fromkeys(p[1] for p in pts))
    cols = min(3, max(1, len(networks)))
    nrows = math.ceil(len(networks) / cols)
    fig, axes = _figure(4.2 * cols, 3.4 * nrows + 0.8, nrows, cols)
    for k, network in enumerate(networks):
        ax = axes[k // cols][k % cols]
        for i, sched in enumerate(schedules):
            for _, _, cycles, gb, _ in (p for p in pts if p[0] == network and p[1] == sched):
                ax.scatter(cycles / 1e6, gb, marker=MARKERS[i % len(MARKERS)], s=42, label=sched)
        ax.set_title(network, fontsize=10)
        ax.set_xlabel("iteration time (M cycles)")
        ax.set_ylabel("DRAM traffic (GB)")
        ax.grid(alpha=0.3)
    for k in range(len(networks), nrows * cols):
        axes[k // cols][k % cols].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.12 if len(labels) > 3 else 0.07, 1, 0.97))
    fig.savefig(path, dpi=DPI)
    return path.name


def footprint_figure(rows: list[dict[str, Any]], path: Path, title: str = "") -> str:
    """DRAM footprint (GiB) per schedule, a cluster of bars per network."""
    pts = _points(rows)
    networks = list(dict.fromkeys(p[0] for p in pts))
    schedules = list(dict.fromkeys(p[1] for p in pts))
    fig, axes = _figure(max(7.0, 1.1 * len(networks) * len(schedules) / 2 + 2), 4.2, 1, 1)
    ax = axes[0][0]
    width = 0.8 / max(1, len(schedules))
    value = {(p[0], p[1]): p[4] for p in pts}
    for i, sched in enumerate(schedules):
        xs = [k + (i - (len(schedules) - 1) / 2) * width for k in range(len(networks))]
        ax.bar(xs, [value.get((n, sched), 0.0) for n in networks], width, label=sched)
    ax.set_xticks(range(len(networks)), networks, fontsize=9)
    ax.set_ylabel("DRAM footprint (GiB)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path.name
