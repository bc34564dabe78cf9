"""Figures of the reproduce and sweep experiments (matplotlib object API on Agg, PNG).

Reproduce (one file each, networks side by side, one bar per schedule):

* ``traffic_by_kind.png``: DRAM traffic stacked by tensor kind, normalised to the reference
  schedule's total on the same network; the paper's -75 % as a dashed line.
* ``speedup.png``: reference cycles / cycles; the paper's 1.53x as a dashed line.
* ``energy_breakdown.png``: energy stacked by component, normalised to the reference total;
  the paper's -26 % as a dashed line.
* ``utilization.png``: core temporal utilization (busy / elapsed) and spatial utilization
  (useful MACs / PE-cycles while busy).
* ``mbs2_sub_batch.png``: the sub-batch size of every mbs2 layer group along the network,
  one panel per network (a group's width is its number of layers).

Sweep: ``sweep_<param>.png`` per parameter, four panels against the parameter (iteration time,
DRAM traffic, energy, and speedup over the first schedule listed), one line per schedule;
failed points are gaps, marked by an x in the schedule's colour on the x axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from ..energy import COMPONENTS
from ..ir import TRAFFIC_KINDS
from ..paper import PAPER_HEADLINE as PAPER

KIND_COLORS = {
    "weights": "#4c72b0",
    "activations": "#dd8452",
    "saved_activations": "#c44e52",
    "gradients": "#55a868",
    "weight_gradients": "#8172b3",
    "optimizer_state": "#937860",
}
COMPONENT_COLORS = {
    "mac": "#4c72b0",
    "gbuf": "#55a868",
    "vector": "#8172b3",
    "dram": "#c44e52",
    "static": "#8c8c8c",
}
SCHEDULE_COLORS = {
    "baseline": "#8c8c8c",
    "il": "#937860",
    "mbs-fs": "#dd8452",
    "mbs1": "#4c72b0",
    "mbs2": "#c44e52",
    "mbs2-time": "#8172b3",
}
DPI = 130
# value labels sit on a white box above the paper's dashed line, which would cross them
_LABEL_BOX = {"zorder": 4, "bbox": {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none"}}


def _bar_label(ax: Any, x: float, y: float, text: str, boxed: bool = True) -> None:
    """A value written just above the top of a bar (on a white box unless ``boxed=False``)."""
    ax.annotate(
        text,
        xy=(x, y),
        xytext=(0, 2),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=7,
        **(_LABEL_BOX if boxed else {}),
    )


def _color(schedule: str, i: int) -> str:
    return SCHEDULE_COLORS.get(schedule, f"C{i}")


def _layout(records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    networks, schedules = [], []
    for r in records:
        if r["network"] not in networks:
            networks.append(r["network"])
        if r["schedule"] not in schedules:
            schedules.append(r["schedule"])
    return networks, schedules


def _bar_positions(networks: list[str], schedules: list[str]) -> dict[tuple[str, str], float]:
    """x of each (network, schedule) bar: clusters of bars, one cluster per network."""
    gap = 1.0
    pos = {}
    for ni, net in enumerate(networks):
        for si, sched in enumerate(schedules):
            pos[(net, sched)] = ni * (len(schedules) + gap) + si
    return pos


def _label_clusters(
    ax, networks: list[str], schedules: list[str], pos: dict[tuple[str, str], float]
) -> None:
    """Schedule names under each bar, network names under each cluster."""
    ticks = [pos[(n, s)] for n in networks for s in schedules]
    ax.set_xticks(ticks)
    ax.set_xticklabels(  # a schedule's options (mbs2:recompute=all) one per line
        [s.replace(":", "\n") for _ in networks for s in schedules],
        rotation=45,
        ha="right",
        fontsize=8,
    )
    for net in networks:
        center = sum(pos[(net, s)] for s in schedules) / len(schedules)
        ax.annotate(
            net,
            xy=(center, 0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -48 - 16 * max(s.count(":") for s in schedules)),  # below the options
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=10,
            fontweight="bold",
        )
    ax.set_xlim(-0.8, max(ticks) + 0.8)


def _paper_line(ax, y: float, text: str) -> Line2D:
    """The paper's value as a dashed line; its label goes in the legend (returned handle),
    where it cannot run into bars or value labels."""
    ax.axhline(y, color="black", linestyle="--", linewidth=1, zorder=3)
    return Line2D([], [], color="black", linestyle="--", linewidth=1, label=text)


def _ok(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["network"], r["schedule"]): r["summary"] for r in records if r["status"] == "ok"}


def _mark_failed(ax, records, pos) -> None:
    for r in records:
        if r["status"] != "ok":
            ax.annotate(
                "failed",
                xy=(pos[(r["network"], r["schedule"])], 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 4),
                textcoords="offset points",
                rotation=90,
                ha="center",
                va="bottom",
                color="red",
                fontsize=8,
            )


def _subplots(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: an Agg figure that no global state keeps alive,
    and no change to the user's matplotlib backend."""
    fig = Figure(figsize=kwargs.pop("figsize"))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*args, **kwargs)


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=DPI)
    return path.name


def _width(networks: list[str], schedules: list[str]) -> float:
    return max(7.0, 0.42 * len(networks) * (len(schedules) + 1) + 2.5)


def _stacked_figure(
    records: list[dict[str, Any]],
    reference: str,
    path: Path,
    parts: dict[str, str],
    part_values: Callable[[dict[str, Any]], list[float]],
    total: str,
    paper: tuple[float, str],
    what: str,
    title: str,
    legend_columns: int,
) -> str:
    """Bars per network and schedule, stacked by ``parts`` (label -> colour) and normalised to
    the reference schedule's ``total``: the traffic and energy figures."""
    networks, schedules = _layout(records)
    pos, ok = _bar_positions(networks, schedules), _ok(records)
    fig, ax = _subplots(figsize=(_width(networks, schedules), 5.2))
    for (net, sched), s in ok.items():
        ref = ok.get((net, reference))
        if ref is None:
            continue
        bottom = 0.0
        for color, value in zip(parts.values(), part_values(s), strict=True):
            ax.bar(
                pos[(net, sched)],
                value / ref[total],
                bottom=bottom,
                color=color,
                width=0.8,
                edgecolor="white",
                linewidth=0.4,
            )
            bottom += value / ref[total]
        _bar_label(ax, pos[(net, sched)], bottom, f"{bottom:.2f}")
    _mark_failed(ax, records, pos)
    paper_handle = _paper_line(ax, *paper)
    _label_clusters(ax, networks, schedules, pos)
    ax.set_ylabel(f"{what} / {reference} total")
    ax.set_title(f"{title}, normalised to {reference}")
    ax.legend(
        handles=[*(Patch(color=c, label=label) for label, c in parts.items()), paper_handle],
        fontsize=8,
        ncol=legend_columns,
        loc="upper right",
        framealpha=0.9,
    )
    ax.set_ylim(0, max(1.0, ax.get_ylim()[1]) * 1.25)
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(bottom=0.24, left=0.08, right=0.98, top=0.92)
    return _save(fig, path)


def traffic_figure(records: list[dict[str, Any]], reference: str, path: Path) -> str:
    return _stacked_figure(
        records,
        reference,
        path,
        {k.replace("_", " "): KIND_COLORS[k] for k in TRAFFIC_KINDS},
        lambda s: [
            s["dram_by_kind"]["read"][k] + s["dram_by_kind"]["write"][k] for k in TRAFFIC_KINDS
        ],
        "dram_bytes",
        (PAPER["traffic"], "paper, MBS: 0.25 (-75%)"),
        "DRAM traffic",
        "DRAM traffic per training iteration by tensor kind",
        4,
    )


def speedup_figure(records: list[dict[str, Any]], reference: str, path: Path) -> str:
    networks, schedules = _layout(records)
    pos, ok = _bar_positions(networks, schedules), _ok(records)
    fig, ax = _subplots(figsize=(_width(networks, schedules), 4.8))
    for (net, sched), s in ok.items():
        ref = ok.get((net, reference))
        if ref is None:
            continue
        value = ref["cycles"] / s["cycles"]
        ax.bar(pos[(net, sched)], value, color=_color(sched, schedules.index(sched)), width=0.8)
        _bar_label(ax, pos[(net, sched)], value, f"{value:.2f}")
    _mark_failed(ax, records, pos)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.legend(
        handles=[_paper_line(ax, PAPER["speedup"], "paper, MBS: 1.53x")],
        fontsize=8,
        loc="upper right",
        framealpha=0.9,
    )
    _label_clusters(ax, networks, schedules, pos)
    ax.set_ylabel(f"speedup over {reference} (cycles ratio)")
    ax.set_title(f"Training-iteration speedup over {reference}")
    ax.set_ylim(0, max(ax.get_ylim()[1], PAPER["speedup"]) * 1.12)
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(bottom=0.26, left=0.08, right=0.98, top=0.92)
    return _save(fig, path)


def energy_figure(records: list[dict[str, Any]], reference: str, path: Path) -> str:
    return _stacked_figure(
        records,
        reference,
        path,
        {c: COMPONENT_COLORS[c] for c in COMPONENTS},
        lambda s: [s["energy_breakdown"][c] for c in COMPONENTS],
        "energy_joules",
        (PAPER["energy"], "paper, MBS: 0.74 (-26%)"),
        "energy",
        "System energy per training iteration by component",
        6,
    )


def utilization_figure(records: list[dict[str, Any]], path: Path) -> str:
    networks, schedules = _layout(records)
    pos, ok = _bar_positions(networks, schedules), _ok(records)
    fig, axes = _subplots(2, 1, figsize=(_width(networks, schedules), 7.0), sharex=True)
    for ax, key, title in (
        (axes[0], "temporal", "temporal: core busy cycles / elapsed"),
        (axes[1], "spatial", "spatial: useful MACs / (PEs x busy cycles)"),
    ):
        for (net, sched), s in ok.items():
            value = s["utilization"][key]
            ax.bar(pos[(net, sched)], value, color=_color(sched, schedules.index(sched)), width=0.8)
            _bar_label(ax, pos[(net, sched)], value, f"{value:.0%}", boxed=False)
        _mark_failed(ax, records, pos)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("utilization")
        ax.set_title(f"Core utilization, {title}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    _label_clusters(axes[1], networks, schedules, pos)
    axes[0].tick_params(labelbottom=False)
    fig.subplots_adjust(bottom=0.16, left=0.1, right=0.98, top=0.95, hspace=0.18)
    return _save(fig, path)


def sub_batch_figure(
    records: list[dict[str, Any]], path: Path, schedule: str = "mbs2"
) -> str | None:
    runs = [r for r in records if r["schedule"] == schedule and r["status"] == "ok"]
    if not runs:
        return None
    fig, axes = _subplots(len(runs), 1, figsize=(10, 1.9 * len(runs) + 1.0), squeeze=False)
    for ax, r in zip(axes[:, 0], runs, strict=True):
        s = r["summary"]
        groups = s["groups"]
        x, edges = 0, []
        for g in groups:
            width = max(len(g["layers"]), 1)
            ax.bar(
                x,
                g["sub_batch"],
                width=width,
                align="edge",
                color="#c44e52",
                edgecolor="white",
                linewidth=0.6,
            )
            edges.append((x, width, g["sub_batch"]))
            x += width
        ax.set_yscale("log", base=2)
        batch = s["batch"]
        ticks = [2**i for i in range(int(math.log2(batch)) + 1)]
        ax.set_yticks(ticks)
        ax.set_yticklabels([str(t) for t in ticks], fontsize=7)
        ax.set_ylim(0.5, batch * 1.6)  # from 0.5 so that a sub-batch of 1 shows as a bar
        ax.set_xlim(0, x)
        ax.set_ylabel("sub-batch", fontsize=8)
        ax.set_title(
            f"{r['network']}: {len(groups)} groups, sub-batches "
            + " ".join(str(g["sub_batch"]) for g in groups[:40])
            + (" ..." if len(groups) > 40 else ""),
            fontsize=9,
            loc="left",
        )
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel(
        "layers in network order (each bar is one group; width = its number of layers)", fontsize=8
    )
    fig.suptitle(
        f"{schedule}: sub-batch size per layer group (mini-batch {runs[0]['batch']})", fontsize=11
    )
    fig.tight_layout()
    return _save(fig, path)


def reproduce_figures(records: list[dict[str, Any]], reference: str, out_dir: Path) -> list[str]:
    """All reproduce figures into ``out_dir``; returns the file names written."""
    names = [
        traffic_figure(records, reference, out_dir / "traffic_by_kind.png"),
        speedup_figure(records, reference, out_dir / "speedup.png"),
        energy_figure(records, reference, out_dir / "energy_breakdown.png"),
        utilization_figure(records, out_dir / "utilization.png"),
    ]
    sub = sub_batch_figure(records, out_dir / "mbs2_sub_batch.png")
    return names + ([sub] if sub else [])


def _log_scale(values: list[float]) -> bool:
    return all(v > 0 for v in values) and max(values) / min(values) >= 8


def sweep_figure(
    rows: list[dict[str, Any]],
    param: Any,
    params: list[Any],
    held: dict[str, dict[str, Any]],
    schedules: list[str],
    network: str,
    batch: int,
    path: Path,
) -> str:
    """Time, DRAM traffic, energy and speedup against ``param``; one line per schedule.

    ``param``/``params`` are sweep parameters (``name``, ``texts``, ``values``: the
    experiments' ``SweepParam``; this module does not import the experiments); every other
    swept parameter is held at ``held[name]['value']``.
    """
    others = [p for p in params if p.name != param.name]

    def on_slice(row: dict[str, Any]) -> bool:
        return all(row[p.name] == held[p.name]["value"] for p in others)

    xs = list(param.values)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs)
    order = sorted(range(len(xs)), key=lambda i: xs[i]) if numeric else list(range(len(xs)))
    xpos = [xs[i] for i in order] if numeric else list(range(len(xs)))
    labels = [param.texts[i] for i in order]
    first = schedules[0]
    panels = [
        ("time per iteration (ms)", lambda r, b: r["seconds"] * 1e3),
        ("DRAM traffic (GB)", lambda r, b: r["dram_bytes"] / 1e9),
        ("energy (J)", lambda r, b: r["energy_total_j"]),
    ]
    if len(schedules) > 1:
        panels.append(
            (f"speedup over {first}", lambda r, b: b["cycles"] / r["cycles"] if b else math.nan)
        )
    else:
        panels.append(("core temporal utilization", lambda r, b: r["util_temporal"]))
    fig, axes = _subplots(2, 2, figsize=(11, 7.8))
    table = {(r["schedule"], r[param.name]): r for r in rows if on_slice(r)}

    def failed(sched: str, x: Any) -> bool:
        row = table.get((sched, x))
        return row is None or row["status"] != "ok"

    for ax, (ylabel, fn) in zip(axes.flat, panels, strict=True):
        speedup = ylabel.startswith("speedup")
        for si, sched in enumerate(schedules):
            if speedup and sched == first:
                continue
            ys = []
            for i in order:
                row, base = table.get((sched, xs[i])), table.get((first, xs[i]))
                ys.append(
                    math.nan
                    if failed(sched, xs[i])
                    else fn(row, None if failed(first, xs[i]) else base)
                )
            ax.plot(xpos, ys, marker="o", color=_color(sched, si), label=sched)
        # a failed point: an x in its schedule's colour on the axis, stacked per schedule
        # (on the speedup panel both the schedule's and the reference's failures show)
        for si, sched in enumerate(schedules):
            for i, x in zip(order, xpos, strict=True):
                if failed(sched, xs[i]):
                    ax.plot(
                        [x],
                        [0.03 + 0.07 * si],
                        marker="x",
                        color=_color(sched, si),
                        markersize=9,
                        mew=2.5,
                        transform=ax.get_xaxis_transform(),
                        clip_on=False,
                        linestyle="none",
                    )
        if ylabel.startswith("speedup"):
            ax.axhline(1.0, color="grey", linewidth=0.8)
        if _log_scale(xpos) and numeric:
            ax.set_xscale("log")
        ax.set_xticks(xpos)
        ax.set_xticklabels(labels, fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel(param.name)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, leg_labels = axes.flat[0].get_legend_handles_labels()
    if any(r["status"] != "ok" for r in table.values()):
        handles.append(Line2D([], [], marker="x", color="black", linestyle="none", mew=2))
        leg_labels.append("failed, in the schedule's colour (reason in sweep.csv)")
    fig.legend(
        handles,
        leg_labels,
        loc="upper right",
        fontsize=9,
        ncol=len(leg_labels),
        bbox_to_anchor=(0.995, 0.995),
    )
    held_text = ", ".join(
        f"{p.name}={held[p.name]['text']} ({held[p.name]['why']})" for p in others
    )
    fig.suptitle(
        f"{network}, batch {batch}: sweep of {param.name}"
        + (f"; held: {held_text}" if held_text else ""),
        fontsize=11,
        x=0.01,
        y=0.985,
        ha="left",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.955))
    return _save(fig, path)
