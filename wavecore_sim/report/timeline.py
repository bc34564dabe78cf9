"""``timeline.png``: what the machine did over one simulated iteration, at a glance.

Three panels share the time axis (milliseconds):

* unit utilization: one heat strip per unit (cores, vector units, DMA queues), the fraction of
  each time bucket the unit was busy, as :mod:`.busy` defines it (its instructions' own
  work and a core's result drain, not the stalls inside an instruction), so each strip's
  mean, printed beside it, is the unit's temporal utilization in ``summary.json``;
* HBM bandwidth per channel in GB/s (bytes each channel served per bucket), with the channel
  peak ``hbm_gbps / hbm_channels`` marked; the right axis reads the same curves as the
  all-channel rate;
* global-buffer occupancy (live allocation bytes) in MiB with the capacity.

Forward, backward and update phases are shaded; thin vertical lines mark where each schedule
group's forward pass (solid) and backward pass (dashed) begins.

The binning helpers here are also used by :mod:`wavecore_sim.report.perfetto`. Everything is
vectorized with numpy; matplotlib is imported only when plotting, through its object API with
the Agg canvas, so the global pyplot backend is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import HardwareConfig
from ..ir import Program, UnitKind
from .busy import UnitActivity, unit_activity

if TYPE_CHECKING:
    from ..sim.machine import SimResult

MiB = 1 << 20

# instruction phase -> the pass it belongs to (as in ``groups.csv``)
PASS_OF_PHASE = {"FWD": "FWD", "LOSS": "FWD", "BWD": "BWD", "GRADSUM": "BWD", "UPDATE": "UPDATE"}
PASSES = ("FWD", "BWD", "UPDATE")
PASS_LABEL = {"FWD": "forward", "BWD": "backward", "UPDATE": "update"}
PASS_COLOR = {"FWD": "#4c72b0", "BWD": "#dd8452", "UPDATE": "#55a868"}


# ---------------------------------------------------------------------- shared helpers


@dataclass
class InstrArrays:
    """Per-instruction columns as numpy arrays (index = instruction id)."""

    start: np.ndarray
    end: np.ndarray
    done: np.ndarray
    unit: np.ndarray  # index into program.units
    group: np.ndarray
    pass_: np.ndarray  # index into PASSES


def step_arrays(program: Program) -> tuple[np.ndarray, np.ndarray]:
    """Per step: its schedule group and the index into :data:`PASSES` of its pass."""
    pidx = {p: i for i, p in enumerate(PASSES)}
    group = np.fromiter((s.group for s in program.steps), dtype=np.int64, count=len(program.steps))
    pass_ = np.fromiter(
        (pidx[PASS_OF_PHASE.get(s.phase, "FWD")] for s in program.steps),
        dtype=np.int64,
        count=len(program.steps),
    )
    return group, pass_


def instr_arrays(program: Program, result: SimResult) -> InstrArrays:
    group, pass_ = step_arrays(program)
    step = program.cols["step"]
    return InstrArrays(
        start=np.asarray(result.start, dtype=np.int64),
        end=np.asarray(result.end, dtype=np.int64),
        done=np.asarray(result.done, dtype=np.int64),
        unit=program.cols["unit"].astype(np.int64),
        group=group[step],
        pass_=pass_[step],
    )


def pass_spans(arr: InstrArrays) -> list[tuple[str, int, int]]:
    """``(pass, first start, last done)`` for each pass that has instructions, in time order."""
    out = []
    for k, name in enumerate(PASSES):
        sel = arr.pass_ == k
        if sel.any():
            out.append((name, int(arr.start[sel].min()), int(arr.done[sel].max())))
    out.sort(key=lambda t: t[1])
    return out


def group_spans(arr: InstrArrays) -> list[tuple[int, str, int, int]]:
    """``(group, pass, first start, last done)`` per schedule group and pass, in time order.

    Instructions outside any group (``group < 0``, the weight update) are left out."""
    sel = arr.group >= 0
    if not sel.any():
        return []
    g, p = arr.group[sel], arr.pass_[sel]
    key = g * len(PASSES) + p
    uniq, inv = np.unique(key, return_inverse=True)
    first = np.full(len(uniq), np.iinfo(np.int64).max)
    last = np.zeros(len(uniq), dtype=np.int64)
    np.minimum.at(first, inv, arr.start[sel])
    np.maximum.at(last, inv, arr.done[sel])
    out = [
        (int(k // len(PASSES)), PASSES[int(k % len(PASSES))], int(f), int(la))
        for k, f, la in zip(uniq, first, last, strict=True)
    ]
    out.sort(key=lambda t: (t[2], t[0]))
    return out


def bucket_edges(cycles: int, buckets: int) -> np.ndarray:
    """``buckets + 1`` edges covering ``[0, cycles]`` (at least one cycle wide)."""
    return np.linspace(0.0, float(max(cycles, 1)), buckets + 1)


def binned_load(
    edges: np.ndarray, start: np.ndarray, end: np.ndarray, weight: np.ndarray | None = None
) -> np.ndarray:
    """Per bucket, ``sum_i weight_i * |[start_i, end_i) ∩ bucket|`` for intervals that may
    overlap. With ``weight=None`` this is busy cycles per bucket; with ``weight = bytes /
    length`` it is bytes per bucket (each interval's bytes spread evenly over it).

    Uses ``F(t) = sum_i w_i * clip(t - s_i, 0, e_i - s_i) = S(t) - E(t)`` where ``S`` sums
    ``w_i (t - s_i)`` over ``s_i < t`` and ``E`` the same over ``e_i < t``; both come from
    sorted prefix sums, so the cost is ``O((n + buckets) log n)``."""
    if len(start) == 0:
        return np.zeros(len(edges) - 1)
    s = np.asarray(start, dtype=np.float64)
    e = np.asarray(end, dtype=np.float64)
    w = np.ones_like(s) if weight is None else np.asarray(weight, dtype=np.float64)

    def ramp(points: np.ndarray) -> np.ndarray:
        order = np.argsort(points, kind="stable")
        p, wp = points[order], w[order]
        cw = np.concatenate(([0.0], np.cumsum(wp)))
        cwp = np.concatenate(([0.0], np.cumsum(wp * p)))
        k = np.searchsorted(p, edges, side="left")
        return cw[k] * edges - cwp[k]

    cumulative = ramp(s) - ramp(e)
    return np.diff(cumulative)


def unit_utilization(
    program: Program, arr: InstrArrays, act: UnitActivity, edges: np.ndarray
) -> np.ndarray:
    """``(units, buckets)`` busy fraction of each unit per time bucket: the instructions'
    ``[start, end)`` less their stalls, plus the cores' drains (:mod:`.busy`)."""
    width = np.diff(edges)
    out = np.zeros((len(program.units), len(width)))
    pieces = ((act.head, -1.0), (act.tail, -1.0), (act.drain, 1.0))
    for u in range(len(program.units)):
        sel = arr.unit == u
        load = binned_load(edges, arr.start[sel], arr.end[sel])
        for iv, sign in pieces:
            on = arr.unit[iv.instr] == u
            load += sign * binned_load(edges, iv.start[on], iv.end[on])
        out[u] = load / width
    return np.clip(out, 0.0, 1.0)


def channel_bytes(result: SimResult, edges: np.ndarray, channels: int) -> np.ndarray:
    """``(channels, buckets)`` bytes each HBM channel served per time bucket."""
    out = np.zeros((channels, len(edges) - 1))
    log = result.channel_log
    for ch in range(channels):
        sel = log.channel == ch
        if not sel.any():
            continue
        s = log.start[sel].astype(np.float64)
        e = np.maximum(log.end[sel].astype(np.float64), s + 1.0)  # 0-length: its first cycle
        out[ch] = binned_load(edges, s, e, log.nbytes[sel] / (e - s))
    return out


def occupancy_steps(result: SimResult) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy change points ``(cycles, bytes)``, keeping the last value at each cycle."""
    t = np.asarray(result.occupancy_cycle, dtype=np.int64)
    b = np.asarray(result.occupancy_bytes, dtype=np.int64)
    if not len(t):
        return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    keep = np.ones(len(t), dtype=bool)
    keep[:-1] = t[1:] != t[:-1]
    return t[keep], b[keep]


# ---------------------------------------------------------------------- the figure


def _title(program: Program, cfg: HardwareConfig, result: SimResult) -> str:
    meta = program.meta
    ms = cfg.cycles_to_seconds(result.cycles) * 1e3
    parts = [str(meta.get("network") or "program")]
    if meta.get("batch") is not None:
        parts.append(f"batch {meta['batch']}")
    if meta.get("schedule"):
        parts.append(f"schedule {meta['schedule']}")
    if meta.get("norm"):
        parts.append(f"norm {meta['norm']}")
    head = ", ".join(parts)
    return (
        f"{head}: {result.cycles:,} cycles = {ms:.3f} ms at {cfg.clock_mhz:g} MHz  "
        f"({len(program):,} instructions, {len(program.groups)} "
        f"group{'' if len(program.groups) == 1 else 's'}, "
        f"{cfg.cores} cores, {cfg.hbm_channels} HBM channels)"
    )


@dataclass
class TimelineData:
    """Everything the figure shows, binned (small and picklable: the drawing may happen in
    another process)."""

    cycles: int
    clock_mhz: float
    hbm_gbps: float
    hbm_channels: int
    gbuf_bytes: int
    peak_buffer_bytes: int
    edges: np.ndarray
    util: np.ndarray  # (units, buckets) busy fraction
    chan_gbps: np.ndarray  # (channels, buckets)
    occ_t: np.ndarray
    occ_b: np.ndarray
    spans: list[tuple[str, int, int]]
    groups: list[tuple[int, str, int, int]]
    unit_names: list[str]
    unit_is_core: list[bool]
    title: str


def timeline_data(
    program: Program, cfg: HardwareConfig, result: SimResult, buckets: int = 600
) -> TimelineData:
    """Bin a run for :func:`draw_timeline` (numpy only)."""
    cycles = max(int(result.cycles), 1)
    edges = bucket_edges(cycles, buckets)
    width_s = np.diff(edges) / (cfg.clock_mhz * 1e6)
    arr = instr_arrays(program, result)
    occ_t, occ_b = occupancy_steps(result)
    return TimelineData(
        cycles=cycles,
        clock_mhz=cfg.clock_mhz,
        hbm_gbps=cfg.hbm_gbps,
        hbm_channels=cfg.hbm_channels,
        gbuf_bytes=cfg.gbuf_bytes,
        peak_buffer_bytes=int(result.peak_buffer_bytes),
        edges=edges,
        util=unit_utilization(program, arr, unit_activity(program, cfg, result), edges),
        chan_gbps=channel_bytes(result, edges, cfg.hbm_channels) / width_s / 1e9,
        occ_t=occ_t,
        occ_b=occ_b,
        spans=pass_spans(arr),
        groups=group_spans(arr),
        unit_names=program.unit_names,
        unit_is_core=[u.kind is UnitKind.CORE for u in program.units],
        title=_title(program, cfg, result),
    )


def plot_timeline(
    program: Program, cfg: HardwareConfig, result: SimResult, path: str | Path, buckets: int = 600
) -> None:
    """Write the three-panel timeline of a run to ``path`` (PNG)."""
    draw_timeline(timeline_data(program, cfg, result, buckets), path)


def draw_timeline(td: TimelineData, path: str | Path) -> None:
    """Draw binned timeline data to ``path`` (PNG); the only place matplotlib is imported."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cycles, edges, util, chan_gbps = td.cycles, td.edges, td.util, td.chan_gbps
    occ_t, occ_b, spans, groups = td.occ_t, td.occ_b, td.spans, td.groups
    to_ms = 1e3 / (td.clock_mhz * 1e6)
    centers_ms = (edges[:-1] + edges[1:]) / 2 * to_ms
    width_s = np.diff(edges) / (td.clock_mhz * 1e6)
    t_end = cycles * to_ms
    n_ch = td.hbm_channels

    fig = Figure(figsize=(14, 9), dpi=110)
    FigureCanvasAgg(fig)
    n_units = len(td.unit_names)
    gs = fig.add_gridspec(
        3,
        1,
        height_ratios=[max(2.2, 0.32 * n_units), 2.4, 2.0],
        hspace=0.12,
        left=0.1,
        right=0.905,
        top=0.9,
        bottom=0.07,
    )
    ax_u = fig.add_subplot(gs[0])
    ax_h = fig.add_subplot(gs[1], sharex=ax_u)
    ax_o = fig.add_subplot(gs[2], sharex=ax_u)
    axes = (ax_u, ax_h, ax_o)

    # phases and group boundaries, under everything else
    for name, s, d in spans:
        for ax in (ax_h, ax_o):
            ax.axvspan(s * to_ms, d * to_ms, color=PASS_COLOR[name], alpha=0.09, lw=0, zorder=0)
        ax_u.axvspan(
            s * to_ms,
            d * to_ms,
            ymin=1.0,
            ymax=1.03,
            color=PASS_COLOR[name],
            alpha=0.85,
            lw=0,
            clip_on=False,
        )
        ax_u.text(
            (s + d) / 2 * to_ms,
            1.035,
            PASS_LABEL[name],
            transform=ax_u.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8.5,
            color=PASS_COLOR[name],
            fontweight="bold",
            clip_on=False,
        )
    fwd_starts = [s * to_ms for _g, p, s, _d in groups if p == "FWD"]
    bwd_starts = [s * to_ms for _g, p, s, _d in groups if p == "BWD"]
    dense = len(groups) > 80
    line_kw = {"lw": 0.35 if dense else 0.6, "alpha": 0.25 if dense else 0.55, "zorder": 1}
    for ax in (ax_h, ax_o):
        if fwd_starts:
            ax.vlines(
                fwd_starts,
                0,
                1,
                transform=ax.get_xaxis_transform(),
                colors="#1f3a68",
                linestyles="solid",
                **line_kw,
            )
        if bwd_starts:
            ax.vlines(
                bwd_starts,
                0,
                1,
                transform=ax.get_xaxis_transform(),
                colors="#8a3b12",
                linestyles=(0, (3, 2)),
                **line_kw,
            )
    strip_kw = {"lw": 0.35 if dense else 0.55, "alpha": 0.5 if dense else 0.7, "zorder": 3}
    if fwd_starts:
        ax_u.vlines(
            fwd_starts,
            0,
            1,
            transform=ax_u.get_xaxis_transform(),
            colors="white",
            linestyles="solid",
            **strip_kw,
        )
    if bwd_starts:
        ax_u.vlines(
            bwd_starts,
            0,
            1,
            transform=ax_u.get_xaxis_transform(),
            colors="white",
            linestyles=(0, (3, 2)),
            **strip_kw,
        )

    # (a) unit utilization heat strips
    im = ax_u.imshow(
        util,
        aspect="auto",
        interpolation="nearest",
        cmap="viridis",
        vmin=0,
        vmax=1,
        extent=(0, t_end, n_units - 0.5, -0.5),
        zorder=2,
    )
    ax_u.set_yticks(range(n_units))
    ax_u.set_yticklabels(
        [f"{u}  {util[i].mean():.1%}" for i, u in enumerate(td.unit_names)], fontsize=8
    )
    for i in range(1, n_units):  # separate unit kinds and cores
        if td.unit_is_core[i]:
            ax_u.axhline(i - 0.5, color="black", lw=1.2, zorder=4)
    ax_u.set_ylim(n_units - 0.5, -0.5)
    ax_u.set_ylabel("unit busy\n(mean: temporal util.)", fontsize=9)
    cax = ax_u.inset_axes((1.012, 0.0, 0.012, 1.0))
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("busy fraction", fontsize=8)
    cb.ax.tick_params(labelsize=7)

    # (b) HBM bandwidth per channel
    peak = td.hbm_gbps / max(n_ch, 1)
    if n_ch:
        lo, hi = chan_gbps.min(axis=0), chan_gbps.max(axis=0)
        # the spread between channels as a band, the mean on top; channels one by one are in
        # trace.json (a line per channel is unreadable at this size, and a legend entry per
        # channel named lines no one could tell apart)
        # drawn (and listed) only where the channels differ visibly: evenly interleaved
        # transfers load them alike, and an invisible band would be a legend entry for nothing
        if float((hi - lo).max(initial=0.0)) > 0.02 * td.hbm_gbps / n_ch:
            ax_h.fill_between(
                centers_ms,
                lo,
                hi,
                color="#4c72b0",
                alpha=0.35,
                lw=0,
                zorder=2,
                label=f"range over the {n_ch} channels",
            )
        ax_h.plot(
            centers_ms,
            chan_gbps.mean(axis=0),
            color="black",
            lw=1.2,
            zorder=3,
            label=f"mean of the {n_ch} channels",
        )
        total_gb = chan_gbps.sum(axis=0) * width_s
        avg = total_gb.sum() / (cycles / (td.clock_mhz * 1e6)) / n_ch
    else:
        avg = 0.0
    ax_h.axhline(peak, color="crimson", ls="--", lw=1.1, zorder=3)
    ax_h.text(
        0.002,
        peak,
        f" channel peak {peak:g} GB/s ({td.hbm_gbps:g} GB/s total)",
        transform=ax_h.get_yaxis_transform(),
        color="crimson",
        fontsize=8,
        va="bottom",
    )
    ax_h.set_ylim(0, peak * 1.18)
    ax_h.set_ylabel(f"HBM GB/s per channel\n(mean {avg:.1f}, {avg / peak:.0%} of peak)", fontsize=9)
    sec = ax_h.secondary_yaxis(
        "right", functions=(lambda x: x * max(n_ch, 1), lambda x: x / max(n_ch, 1))
    )
    sec.set_ylabel(f"all {n_ch} channels, GB/s", fontsize=8)
    sec.tick_params(labelsize=7)
    if n_ch:
        ax_h.legend(
            loc="upper right",
            fontsize=7,
            ncol=2,
            framealpha=0.85,
            handlelength=1.2,
            columnspacing=0.9,
            borderaxespad=0.2,
        )

    # (c) global-buffer occupancy
    occ_x = np.append(occ_t, cycles) * to_ms
    occ_y = np.append(occ_b, occ_b[-1]) / MiB
    ax_o.fill_between(occ_x, occ_y, step="post", color="#6a51a3", alpha=0.35, lw=0, zorder=2)
    ax_o.step(occ_x, occ_y, where="post", color="#4a1486", lw=0.6, zorder=3)
    cap = td.gbuf_bytes / MiB
    ax_o.axhline(cap, color="crimson", ls="--", lw=1.1, zorder=3)
    ax_o.text(
        0.002,
        cap,
        f" capacity {cap:g} MiB",
        transform=ax_o.get_yaxis_transform(),
        color="crimson",
        fontsize=8,
        va="bottom",
    )
    ax_o.set_ylim(0, cap * 1.15)
    ax_o.set_ylabel(f"buffer MiB\n(peak {td.peak_buffer_bytes / MiB:.2f})", fontsize=9)
    ax_o.set_xlabel("time (ms)")

    for ax in axes:
        ax.set_xlim(0, t_end)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", lw=0.4, alpha=0.5)
    for ax in (ax_u, ax_h):
        ax.tick_params(labelbottom=False)

    handles = [
        Patch(color=PASS_COLOR[p], alpha=0.5, label=f"{PASS_LABEL[p]} pass") for p, _s, _d in spans
    ]
    handles += [
        Line2D([], [], color="#1f3a68", lw=0.9, label="group forward start"),
        Line2D([], [], color="#8a3b12", lw=0.9, ls=(0, (3, 2)), label="group backward start"),
    ]
    fig.legend(
        handles=handles,
        loc="upper right",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.905, 0.955),
    )
    fig.suptitle(td.title, x=0.1, y=0.985, ha="left", fontsize=11)
    fig.savefig(path, format="png")
