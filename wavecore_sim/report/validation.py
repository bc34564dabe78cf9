"""Validation of the analytical model against the simulator: ``validation.csv`` and ``.png``.

Per (layer, phase) the two are compared on the layer's *bottleneck occupancy*, a quantity
both define without ambiguity even when steps overlap:

* simulated: the largest of (a) per core, the cycles its GEMMs of this layer occupied it,
  (b) per vector unit, the same for its vector ops, (c) the wall-clock union of the layer's
  DMA transfers in flight; occupancy includes contention stalls but not dependency waits;
* analytical: the largest of the layer's closed-form compute, vector, memory and buffer
  times (:mod:`wavecore_sim.analytical`).

Totals are compared on elapsed cycles: the simulator's against the analytical model's
composition of steps. DRAM bytes per layer must be identical: both count the same program,
the simulator through its HBM channels.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..analytical import AnalyticalResult
from ..compiler.program import LOAD, STORE, Program
from ..sim.machine import SimResult


def _union_length(intervals: list[tuple[int, int]]) -> int:
    intervals.sort()
    total, cur_s, cur_e = 0, intervals[0][0], intervals[0][1]
    for s, e in intervals[1:]:
        if s > cur_e:
            total += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    return total + cur_e - cur_s


def validation_rows(program: Program, analytical: AnalyticalResult,
                    result: SimResult) -> list[dict[str, Any]]:
    """One row per (layer, phase) in program order."""
    order: dict[tuple[str, str], int] = {}
    ana: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in analytical.steps:
        key = (s.layer, s.phase)
        order.setdefault(key, len(order))
        for name, value in (("compute", s.compute), ("vector", s.vector), ("memory", s.memory),
                            ("buffer", s.buffer), ("read", s.dram_read_bytes),
                            ("write", s.dram_write_bytes)):
            ana[key][name] += value
    unit_time: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    transfers: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    sim_bytes: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for ins in program.instrs:
        key = (ins.layer, ins.phase)
        span = result.end[ins.id] - result.start[ins.id]
        if ins.op in (LOAD, STORE):
            transfers[key].append((result.start[ins.id], result.end[ins.id]))
            sim_bytes[key][0 if ins.op == LOAD else 1] += result.moved[ins.id]
        else:
            unit_time[key][ins.unit] += span
    rows = []
    for key in sorted(order, key=order.__getitem__):
        a = ana[key]
        sim_parts = dict(unit_time[key])
        if transfers[key]:
            sim_parts["memory"] = _union_length(transfers[key])
        sim_cycles = max(sim_parts.values(), default=0)
        resources = {"compute": a["compute"], "vector": a["vector"], "memory": a["memory"],
                     "buffer": a["buffer"]}
        bound = max(resources, key=resources.__getitem__)
        ana_cycles = resources[bound]
        sim_unit = max(sim_parts, key=sim_parts.__getitem__) if sim_parts else ""
        rows.append({
            "layer": key[0], "phase": key[1],
            "analytical_cycles": ana_cycles, "simulated_cycles": sim_cycles,
            "error_pct": round(100.0 * (ana_cycles - sim_cycles) / sim_cycles, 3)
            if sim_cycles else 0.0,
            "bound": bound, "simulated_bottleneck": sim_unit,
            "analytical_dram_read_bytes": a["read"], "simulated_dram_read_bytes":
                sim_bytes[key][0],
            "analytical_dram_write_bytes": a["write"], "simulated_dram_write_bytes":
                sim_bytes[key][1],
            "analytical_compute": a["compute"], "analytical_vector": a["vector"],
            "analytical_memory": a["memory"], "analytical_buffer": a["buffer"],
        })
    return rows


def error_stats(rows: list[dict[str, Any]]) -> dict[str, float]:
    errs = sorted(abs(r["error_pct"]) for r in rows if r["simulated_cycles"] > 0)
    if not errs:
        return {"median_abs_error_pct": 0.0, "p90_abs_error_pct": 0.0, "max_abs_error_pct": 0.0,
                "layers": 0, "over_5pct": 0, "over_10pct": 0}
    weights = [r["simulated_cycles"] for r in rows if r["simulated_cycles"] > 0]
    weighted = sum(abs(r["error_pct"]) * r["simulated_cycles"] for r in rows
                   if r["simulated_cycles"] > 0) / sum(weights)
    return {"median_abs_error_pct": round(errs[len(errs) // 2] if len(errs) % 2 else
                                          (errs[len(errs) // 2 - 1] + errs[len(errs) // 2]) / 2,
                                          3),
            "p90_abs_error_pct": round(errs[min(len(errs) - 1, int(0.9 * len(errs)))], 3),
            "max_abs_error_pct": round(errs[-1], 3),
            "weighted_abs_error_pct": round(weighted, 3),
            "layers": len(errs), "over_5pct": sum(e > 5 for e in errs),
            "over_10pct": sum(e > 10 for e in errs)}


def plot_validation(rows: list[dict[str, Any]], stats: dict[str, Any], title: str,
                    path: Path) -> None:
    """Scatter of analytical vs simulated cycles (log-log) and error by layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"compute": "tab:blue", "vector": "tab:green", "memory": "tab:red",
              "buffer": "tab:purple"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1, 2]})
    for bound, color in colors.items():
        pts = [(r["simulated_cycles"], r["analytical_cycles"]) for r in rows
               if r["bound"] == bound and r["simulated_cycles"] > 0 and r["analytical_cycles"] > 0]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax1.scatter(xs, ys, s=10, alpha=0.6, color=color, label=f"{bound}-bound")
    lo = max(1, min((r["simulated_cycles"] for r in rows if r["simulated_cycles"] > 0),
                    default=1))
    hi = max((r["simulated_cycles"] for r in rows), default=10)
    ax1.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="analytical = simulated")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("simulated cycles (bottleneck occupancy)")
    ax1.set_ylabel("analytical cycles")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    xs = range(len(rows))
    ax2.bar(xs, [r["error_pct"] for r in rows],
            color=[colors[r["bound"]] for r in rows], width=1.0)
    ax2.axhline(5, color="grey", lw=0.6, ls="--")
    ax2.axhline(-5, color="grey", lw=0.6, ls="--")
    ax2.set_ylim(-100, 100)
    ax2.set_xlabel("layer and phase, program order")
    ax2.set_ylabel("error % (analytical - simulated) / simulated, clipped to +-100")
    ax2.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{title}: median |error| {stats['median_abs_error_pct']}%, max "
                 f"{stats['max_abs_error_pct']}%, cycle-weighted "
                 f"{stats.get('weighted_abs_error_pct', 0)}%")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
