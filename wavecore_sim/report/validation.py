"""Validation of the analytical model against the simulator: ``validation.csv`` and ``.png``.

Per (layer, phase) the two are compared on the layer's *bottleneck occupancy*: the largest,
over the units that ran the layer, of the cycles the unit spent on the layer's instructions
(from an instruction's start, when its inputs were ready and its unit free, to its end). The
same definition serves cores, vector units and DMA queues, and is unambiguous when steps of
different layers overlap in time:

* simulated: per unit, the sum of ``end - start`` over the layer's instructions; the machine
  splits each into the instruction's own work (the shared formulas of ``timing.py``) and
  what it waited for: HBM channels held by transfers of the *same* layer, HBM channels held by
  *other* layers, buffer bank ports, and a core's first weight tile;
* analytical: the largest of the layer's closed-form compute, vector, memory (busiest DMA
  queue) and buffer times (:mod:`wavecore_sim.analytical`).

Every row whose error exceeds 5% is given the mechanism that contributes most to the
difference, with its measured cycles (see :func:`attribute`). Totals are compared on elapsed
cycles. DRAM bytes per layer must be identical: both count the same program, the simulator
through its HBM channels.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analytical import AnalyticalResult
from ..ir import Op, Program, UnitKind

if TYPE_CHECKING:
    from ..sim.machine import SimResult

ATTRIBUTION_THRESHOLD_PCT = 5.0
#: unit kind of the machine -> the analytical resource that models it
_RESOURCE_OF_KIND = {"core": "compute", "vec": "vector", "dma": "memory"}
#: what the rows call each unit kind
_KIND_NAME = {
    UnitKind.CORE: "core",
    UnitKind.VEC: "vec",
    UnitKind.DMA_LD: "dma",
    UnitKind.DMA_ST: "dma",
}

MECHANISMS = {
    "hbm_other_layers": "HBM contention with other layers' transfers, more or less than modelled",
    "hbm_same_layer": "HBM sharing between the layer's own queues, more or less than modelled",
    "buffer_ports": "buffer bank ports busy with other units' traffic",
    "weight_loads": "first weight tiles exposed while the core waited for data",
    "bottleneck": "the model and the machine disagree on the bounding resource",
}


def _parts() -> dict[str, int]:
    return dict.fromkeys(("occupancy", "work", "hbm_same", "hbm_other", "port", "weight"), 0)


def attribute(
    error_cycles: int,
    other_queue_cycles: int,
    analytical_resource: str,
    sim_kind: str,
    model_charge: int,
    parts: dict[str, int],
    neighbour_charge: int = 0,
) -> dict[str, int]:
    """Split ``analytical - simulated`` into the contribution of each mechanism (cycles).

    The machine's occupancy of its busiest unit is that unit's own work plus measured waits;
    the model's value for the same unit is the same work plus the model's own charge for
    overlap (``model_charge``: first weight loads, HBM sharing between the layer's queues,
    buffer-port time; for a queue, ``neighbour_charge`` of it is sharing with the
    neighbouring steps' transfers). The error is the sum of the contributions below, exactly:

    * ``bottleneck``: the model bounds the layer by another resource, or by another DMA queue
      (``other_queue_cycles`` above the machine's busiest queue);
    * ``hbm_other_layers``: what the model charges for sharing with the neighbouring steps
      minus the machine's waits for HBM channels held by other layers' transfers;
    * ``hbm_same_layer``, ``buffer_ports``, ``weight_loads``: what the model charges minus what
      the machine waited, for the unit's kind.
    """
    contributions = dict.fromkeys(MECHANISMS, 0)
    if _RESOURCE_OF_KIND.get(sim_kind) != analytical_resource and not (
        analytical_resource == "buffer" and sim_kind == "vec"
    ):
        contributions["bottleneck"] = error_cycles
        return contributions
    contributions.update(
        {
            "bottleneck": other_queue_cycles,
            "hbm_other_layers": -parts["hbm_other"],
            "buffer_ports": -parts["port"],
        }
    )
    if sim_kind == "dma":
        contributions["hbm_other_layers"] += neighbour_charge
        contributions["hbm_same_layer"] = model_charge - neighbour_charge - parts["hbm_same"]
    elif sim_kind == "core":
        contributions["weight_loads"] = model_charge - parts["weight"]
    else:  # a vector unit: the model's buffer term is its charge for the ports
        contributions["buffer_ports"] = model_charge - parts["port"]
    return contributions


def _layer_keys(keys: Sequence[tuple[Any, str, str]]) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The distinct (layer, phase) of ``keys`` (entries ``(group, layer, phase)``) in order of
    first appearance, and for each entry the index of its (layer, phase)."""
    index: dict[tuple[str, str], int] = {}
    of = np.array(
        [index.setdefault((layer, phase), len(index)) for _, layer, phase in keys], dtype=np.int64
    )
    return list(index), of


def _sums(values: np.ndarray, code: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``values`` by ``code`` (``size`` entries)."""
    return np.bincount(code, weights=values, minlength=size).astype(np.int64)


def validation_rows(
    program: Program, analytical: AnalyticalResult, result: SimResult
) -> list[dict[str, Any]]:
    """One row per (layer, phase) in program order."""
    # the model: its step table summed per (layer, phase)
    table = analytical.table
    order, step_row = _layer_keys(table.keys)
    nrows = len(order)
    ana = {
        name: _sums(values, step_row, nrows).tolist()
        for name, values in (
            ("compute", table.compute),
            ("vector", table.vector),
            ("buffer", table.buffer),
            ("read", table.read_bytes),
            ("write", table.write_bytes),
        )
    }
    ana_queues = np.zeros((nrows, len(table.queue_names)), dtype=np.int64)
    ana_neighbours = np.zeros_like(ana_queues)
    np.add.at(ana_queues, step_row, table.queues)
    np.add.at(ana_neighbours, step_row, table.neighbours)
    queue_used = np.zeros(ana_queues.shape, dtype=bool)
    np.logical_or.at(queue_used, step_row, table.queues != 0)
    queue_of = {name: q for q, name in enumerate(table.queue_names)}
    # the machine: per (layer, phase) and unit, sums over the instructions
    c = program.cols
    nunits = len(program.units)
    steps_order, step_key = _layer_keys([(s.group, s.layer, s.phase) for s in program.steps])
    position = {k: r for r, k in enumerate(order)}  # instructions of no step: an extra row
    remap = np.array([position.get(k, nrows) for k in steps_order], dtype=np.int64)
    row = remap[step_key][c["step"]] if len(c["step"]) else np.zeros(0, dtype=np.int64)
    code = row * nunits + c["unit"]
    size = (nrows + 1) * max(nunits, 1)
    start, end = np.asarray(result.start, dtype=np.int64), np.asarray(result.end, dtype=np.int64)
    wait_hbm = np.asarray(result.wait_hbm, dtype=np.int64)
    wait_other = np.asarray(result.wait_hbm_other, dtype=np.int64)
    wait_port = np.asarray(result.wait_port, dtype=np.int64)
    wait_weight = np.asarray(result.wait_weight, dtype=np.int64)
    span = end - start
    measured = {
        "occupancy": span,
        "hbm_other": wait_other,
        "hbm_same": wait_hbm - wait_other,
        "port": wait_port,
        "weight": wait_weight,
        "work": span - wait_hbm - wait_port - wait_weight,
    }
    per_unit = {
        name: _sums(values, code, size).reshape(-1, max(nunits, 1))
        for name, values in measured.items()
    }
    moved = np.asarray(result.moved, dtype=np.int64)
    op = c["op"]
    sim_read = _sums(np.where(op == Op.LOAD, moved, 0), row, nrows + 1).tolist()
    sim_write = _sums(np.where(op == Op.STORE, moved, 0), row, nrows + 1).tolist()
    # the busiest unit of each row: the most occupancy, ties to the unit seen first
    codes, first_seen = np.unique(code, return_index=True)
    occupancy = per_unit["occupancy"].reshape(-1)[codes]
    pick = np.lexsort((first_seen, -occupancy, codes // max(nunits, 1)))
    picked = codes[pick]
    picked_row = picked // max(nunits, 1)
    leaders = np.flatnonzero(np.diff(picked_row, prepend=-1))
    busiest = dict(
        zip(picked_row[leaders].tolist(), (picked[leaders] % max(nunits, 1)).tolist(), strict=True)
    )
    rows = []
    for r, key in enumerate(order):
        a = {name: values[r] for name, values in ana.items()}
        used = queue_used[r]
        a["memory"] = int(ana_queues[r][used].max()) if used.any() else 0
        resources = {
            "compute": a["compute"],
            "vector": a["vector"],
            "memory": a["memory"],
            "buffer": a["buffer"],
        }
        bound = max(resources, key=resources.__getitem__)
        ana_cycles = resources[bound]
        u = busiest.get(r)
        unit = program.units[u] if u is not None else None
        sim_unit = unit.name if unit is not None else ""
        parts = (
            {name: int(per_unit[name][r, u]) for name in measured} if u is not None else _parts()
        )
        sim_cycles = parts["occupancy"]
        error = ana_cycles - sim_cycles
        error_pct = round(100.0 * error / sim_cycles, 3) if sim_cycles else 0.0
        kind = _KIND_NAME[unit.kind] if unit is not None else ""
        q = queue_of.get(sim_unit)
        modelled = (int(ana_queues[r, q]) if q is not None else 0) if kind == "dma" else ana_cycles
        contributions = attribute(
            error,
            ana_cycles - modelled,
            bound,
            kind,
            modelled - parts["work"],
            parts,
            int(ana_neighbours[r, q]) if q is not None else 0,
        )
        mechanism = (
            max(contributions, key=lambda k: abs(contributions[k]))
            if abs(error_pct) > ATTRIBUTION_THRESHOLD_PCT
            else ""
        )
        rows.append(
            {
                "layer": key[0],
                "phase": key[1],
                "analytical_cycles": ana_cycles,
                "simulated_cycles": sim_cycles,
                "error_pct": error_pct,
                "bound": bound,
                "simulated_bottleneck": sim_unit,
                "mechanism": mechanism,
                **{f"contribution_{k}": v for k, v in contributions.items()},
                "simulated_work": parts["work"],
                "simulated_wait_hbm_same_layer": parts["hbm_same"],
                "simulated_wait_hbm_other_layers": parts["hbm_other"],
                "simulated_wait_buffer_ports": parts["port"],
                "simulated_wait_weight_loads": parts["weight"],
                "analytical_dram_read_bytes": a["read"],
                "simulated_dram_read_bytes": sim_read[r],
                "analytical_dram_write_bytes": a["write"],
                "simulated_dram_write_bytes": sim_write[r],
                "analytical_compute": a["compute"],
                "analytical_vector": a["vector"],
                "analytical_memory": a["memory"],
                "analytical_buffer": a["buffer"],
            }
        )
    return rows


def error_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Distribution of the per-row errors, and the rows over 5% counted by mechanism."""
    rows = [r for r in rows if r["simulated_cycles"] > 0]
    errs = sorted(abs(r["error_pct"]) for r in rows)
    if not errs:
        return {
            "median_abs_error_pct": 0.0,
            "p90_abs_error_pct": 0.0,
            "max_abs_error_pct": 0.0,
            "weighted_abs_error_pct": 0.0,
            "layers": 0,
            "over_5pct": 0,
            "over_10pct": 0,
            "over_5pct_by_mechanism": {},
        }
    weighted = sum(abs(r["error_pct"]) * r["simulated_cycles"] for r in rows) / sum(
        r["simulated_cycles"] for r in rows
    )
    by_mechanism: dict[str, int] = {}
    for r in rows:
        if r["mechanism"]:
            by_mechanism[r["mechanism"]] = by_mechanism.get(r["mechanism"], 0) + 1
    return {
        "median_abs_error_pct": round(statistics.median(errs), 3),
        "p90_abs_error_pct": round(errs[min(len(errs) - 1, int(0.9 * len(errs)))], 3),
        "max_abs_error_pct": round(errs[-1], 3),
        "weighted_abs_error_pct": round(weighted, 3),
        "layers": len(errs),
        "over_5pct": sum(e > 5 for e in errs),
        "over_10pct": sum(e > 10 for e in errs),
        "over_5pct_by_mechanism": dict(sorted(by_mechanism.items(), key=lambda kv: -kv[1])),
    }


def plot_validation(
    rows: list[dict[str, Any]], stats: dict[str, Any], title: str, path: Path
) -> None:
    """Scatter of analytical vs simulated cycles (log-log) and error by layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "compute": "tab:blue",
        "vector": "tab:green",
        "memory": "tab:red",
        "buffer": "tab:purple",
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1, 2]})
    for bound, color in colors.items():
        pts = [
            (r["simulated_cycles"], r["analytical_cycles"])
            for r in rows
            if r["bound"] == bound and r["simulated_cycles"] > 0 and r["analytical_cycles"] > 0
        ]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax1.scatter(xs, ys, s=10, alpha=0.6, color=color, label=f"{bound}-bound")
    lo = max(1, min((r["simulated_cycles"] for r in rows if r["simulated_cycles"] > 0), default=1))
    hi = max((r["simulated_cycles"] for r in rows), default=10)
    ax1.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="analytical = simulated")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("simulated cycles (bottleneck occupancy)")
    ax1.set_ylabel("analytical cycles")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    # the error of every row as stacked contributions of the mechanisms (they sum to it)
    xs = np.arange(len(rows))
    sim = np.array([max(1, r["simulated_cycles"]) for r in rows], dtype=float)
    up, down = np.zeros(len(rows)), np.zeros(len(rows))
    mech_colors = dict(
        zip(
            MECHANISMS, ("tab:red", "tab:orange", "tab:purple", "tab:blue", "tab:gray"), strict=True
        )
    )
    for name, color in mech_colors.items():
        pct = np.array([100.0 * r.get(f"contribution_{name}", 0) for r in rows]) / sim
        pos, neg = np.clip(pct, 0, None), np.clip(pct, None, 0)
        ax2.bar(xs, pos, bottom=up, color=color, width=1.0, label=name)
        ax2.bar(xs, neg, bottom=down, color=color, width=1.0)
        up += pos
        down += neg
    ax2.plot(xs, [r["error_pct"] for r in rows], "k.", ms=2, label="error")
    ax2.legend(fontsize=8, loc="lower left", ncol=3)
    ax2.axhline(5, color="grey", lw=0.6, ls="--")
    ax2.axhline(-5, color="grey", lw=0.6, ls="--")
    ax2.set_ylim(-100, 100)
    ax2.set_xlabel("layer and phase, program order")
    ax2.set_ylabel("error % of simulated, split by mechanism (clipped to +-100)")
    ax2.grid(alpha=0.3, axis="y")
    fig.suptitle(
        f"{title}: median |error| {stats['median_abs_error_pct']}%, max "
        f"{stats['max_abs_error_pct']}%, cycle-weighted "
        f"{stats.get('weighted_abs_error_pct', 0)}%"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
