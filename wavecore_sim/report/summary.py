"""Run summaries: ``summary.json``, ``layers.csv`` and ``groups.csv``.

Utilization (both reported per core and for the machine):

* temporal = busy cycles / elapsed cycles. Busy is a unit's own work: a core streaming rows
  and draining results, a vector unit's lane work, a transfer's uncontended time; the stalls
  inside an instruction (waits for HBM, buffer ports, weight loads) are not busy. The
  timeline and the trace draw the same busy time (:mod:`.busy`), so all three agree;
* spatial = useful MACs / (R * C * busy cycles): how full the array is while it is busy,
  which ragged tiles, short streams and fill/drain lower.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ..config import HardwareConfig
from ..energy import energy
from ..ir import Op, Program, UnitKind
from ..sim.machine import STALL_CAUSES, SimResult
from .plan_table import format_choices, format_footprint, plan_choices


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def build_summary(
    program: Program, cfg: HardwareConfig, result: SimResult, wall_seconds: float
) -> dict[str, Any]:
    """Everything a user asks of one run, as plain data (``summary.json``)."""
    cycles = result.cycles
    pe = cfg.array_rows * cfg.array_cols
    units = {}
    stall_totals = dict.fromkeys(STALL_CAUSES, 0)
    core_busy = 0
    for unit in program.units:
        name, st = unit.name, result.units[unit.name]
        entry = {
            "busy": st.busy,
            "idle": st.idle,
            "stalls": dict(st.stalls),
            "instructions": st.instructions,
            "temporal_utilization": round(_ratio(st.busy, cycles), 6),
        }
        if unit.kind == UnitKind.CORE:
            entry["macs"] = st.macs
            entry["spatial_utilization"] = round(_ratio(st.macs, pe * st.busy), 6)
            core_busy += st.busy
            for cause, value in st.stalls.items():
                stall_totals[cause] += value
        if unit.kind == UnitKind.VEC:
            entry["vector_ops"] = st.vector_ops
        if unit.kind.is_dma:
            entry["bytes"] = st.bytes_moved
        units[name] = entry
    traffic = program.traffic_by_kind()
    footprint = program.dram_footprint
    n_cores = cfg.cores
    summary = {
        "network": program.meta.get("network"),
        "batch": program.meta.get("batch"),
        "schedule": program.meta.get("schedule"),
        "norm": program.meta.get("norm"),
        # --recompute (MBS schedules) and --objective (mbs-opt), None where they do not apply
        **plan_choices(program.meta, [g.recompute for g in program.groups]),
        "cycles": cycles,
        "seconds": cfg.cycles_to_seconds(cycles),
        "macs": result.macs,
        "dram_read_bytes": result.dram_read_bytes,
        "dram_write_bytes": result.dram_write_bytes,
        "dram_bytes": result.dram_read_bytes + result.dram_write_bytes,
        "dram_by_kind": traffic,
        "dram_peak_bytes": footprint.peak_bytes if footprint else None,
        "dram_footprint_by_kind": dict(footprint.by_kind) if footprint else {},
        "instructions": len(program),
        "events": result.events,
        "wall_seconds": round(wall_seconds, 3),
        "throughput_tflops": round(
            2 * result.macs / max(cfg.cycles_to_seconds(cycles), 1e-30) / 1e12, 3
        ),
        "utilization": {
            "temporal": round(_ratio(core_busy, n_cores * cycles), 6),
            "spatial": round(_ratio(result.macs, pe * core_busy), 6),
            "overall": round(_ratio(result.macs, cfg.peak_macs_per_cycle * cycles), 6),
        },
        "core_stalls": stall_totals,
        "peak_buffer_bytes": result.peak_buffer_bytes,
        "gbuf_bytes": cfg.gbuf_bytes,
        "units": units,
        "groups": [
            {
                "index": g.index,
                "layers": g.layers,
                "sub_batch": g.sub_batch,
                "sub_batches": g.sub_batches,
                "footprint_bytes": g.footprint_bytes,
                "weights_resident": g.weights_resident,
                "wgrad_resident": g.wgrad_resident,
                "recompute": g.recompute,
            }
            for g in program.groups
        ],
        "notes": program.meta.get("notes", []),
        "config": cfg.to_dict(),
    }
    joules = energy(result, cfg)  # components in J; constants and sources in energy.py
    summary["energy_joules"] = joules["total"]
    summary["energy_breakdown"] = {k: v for k, v in joules.items() if k != "total"}
    return summary


def _row_table(
    program: Program,
    cfg: HardwareConfig,
    result: SimResult,
    key_of_step: list,
) -> tuple[list, dict[str, np.ndarray]]:
    """Per-key totals (span, core/vector/DMA cycles, bytes, MACs) computed on columns.

    ``key_of_step[s]`` is the row key of step ``s``. Returns the keys that have instructions,
    in order of their first instruction, and the per-key columns."""
    c = program.cols
    n = len(program)
    index: dict = {}
    step_row = np.fromiter(
        (index.setdefault(k, len(index)) for k in key_of_step),
        dtype=np.int64,
        count=len(key_of_step),
    )
    row = step_row[c["step"]] if n else np.zeros(0, dtype=np.int64)
    keys = list(index)
    start = np.asarray(result.start, dtype=np.int64)
    end = np.asarray(result.end, dtype=np.int64)
    done = np.asarray(result.done, dtype=np.int64)
    op = c["op"]
    gemm, vec = op == Op.GEMM, op == Op.VEC
    dma = ~(gemm | vec)
    busy = end - start
    k = len(keys)

    def total(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros(k, dtype=np.int64)
        if mask is None:
            np.add.at(out, row, values)
        else:
            np.add.at(out, row[mask], values[mask])
        return out

    first = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, row, start)
    last = np.zeros(k, dtype=np.int64)
    np.maximum.at(last, row, done)
    cols = {
        "first_start": first,
        "last_done": last,
        "core_cycles": total(busy, gemm),
        "vector_cycles": total(busy, vec),
        "dma_cycles": total(busy, dma),
        "macs": total(c["m"] * c["k"] * c["n"], gemm),
        "vector_ops": total(c["ops"], vec),
        "dram_read_bytes": total(c["nbytes"], op == Op.LOAD),
        "dram_write_bytes": total(c["nbytes"], op == Op.STORE),
        "instructions": np.bincount(row, minlength=k).astype(np.int64),
    }
    present = np.flatnonzero(cols["instructions"] > 0)
    cols = {name: v[present] for name, v in cols.items()}
    cols["span_cycles"] = cols["last_done"] - cols["first_start"]
    return [keys[i] for i in present.tolist()], cols


def _rows(
    keys: list, cols: dict[str, np.ndarray], cfg: HardwareConfig
) -> list[tuple[Any, dict[str, Any]]]:
    """``(key, row)`` pairs, rows as dicts of Python ints with their spatial utilization."""
    pe = cfg.array_rows * cfg.array_cols
    lists = {name: v.tolist() for name, v in cols.items()}
    out = []
    for i, key in enumerate(keys):
        row = {name: lists[name][i] for name in _ROW_FIELDS}
        row["spatial_utilization"] = round(_ratio(row["macs"], pe * row["core_cycles"]), 4)
        out.append((key, row))
    return out


_ROW_FIELDS = (
    "first_start",
    "last_done",
    "core_cycles",
    "vector_cycles",
    "dma_cycles",
    "macs",
    "vector_ops",
    "dram_read_bytes",
    "dram_write_bytes",
    "instructions",
    "span_cycles",
)


def layer_rows(program: Program, cfg: HardwareConfig, result: SimResult) -> list[dict]:
    """Per (layer, phase, group): one row of ``layers.csv``, in order of first start."""
    keys, cols = _row_table(
        program, cfg, result, [(s.layer, s.phase, s.group) for s in program.steps]
    )
    out = [{"layer": k[0], "phase": k[1], "group": k[2], **v} for k, v in _rows(keys, cols, cfg)]
    out.sort(key=lambda r: r["first_start"])
    return out


def _pass_of(phase: str) -> str:
    return "BWD" if phase in ("BWD", "GRADSUM") else "UPDATE" if phase == "UPDATE" else "FWD"


def group_rows(program: Program, cfg: HardwareConfig, result: SimResult) -> list[dict]:
    """Per (group, pass): one row of ``groups.csv``, in order of first start."""
    keys, cols = _row_table(
        program, cfg, result, [(s.group, _pass_of(s.phase)) for s in program.steps]
    )
    info = {g.index: g for g in program.groups}
    out = []
    for (gid, direction), v in _rows(keys, cols, cfg):
        g = info.get(gid)
        out.append(
            {
                "group": gid,
                "pass": direction,
                "layers": f"{g.layers[0]}..{g.layers[-1]}" if g else "update",
                "layer_count": len(g.layers) if g else 0,
                "sub_batch": g.sub_batch if g else "",
                # 1: the backward pass recomputes the forward; empty for the update row (and
                # for groups of a trace that did not record it)
                "recompute": "" if g is None or g.recompute is None else int(g.recompute),
                **v,
            }
        )
    out.sort(key=lambda r: r["first_start"])
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def fmt_bytes(n: float) -> str:
    """Bytes in the largest decimal unit that keeps at least one whole: ``512 B``,
    ``3.07 KB``, ``1.50 MB``, ``24.3 GB`` (three significant figures)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def fmt_cycles(n: float) -> str:
    """``812``, ``45.2K``, ``46.2M`` cycles (three significant figures)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{int(n)}"


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"


def format_summary(summary: dict[str, Any], process_seconds: float | None = None) -> str:
    """A short human-readable digest of a run for the terminal.

    ``process_seconds``: the whole process's wall time so far (the command line passes it),
    printed with the stage split; without it the digest shows the run's own wall time."""
    kinds = summary["dram_by_kind"]
    cores = [name for name in summary["units"] if name.startswith("core")]
    per_core = {cause: round(v / max(len(cores), 1)) for cause, v in summary["core_stalls"].items()}
    said = format_choices(summary, len(summary["groups"]))
    lines = [
        f"{summary['network']} batch {summary['batch']} schedule {summary['schedule']} "
        f"({summary['norm']})" + (f", {said}" if said else ""),
        f"  time          {summary['cycles']:,} cycles ({fmt_cycles(summary['cycles'])}), "
        f"{_fmt_seconds(summary['seconds'])}, {summary['throughput_tflops']} TFLOP/s",
        f"  DRAM          read {fmt_bytes(summary['dram_read_bytes'])}, write "
        f"{fmt_bytes(summary['dram_write_bytes'])}",
        "  by kind       "
        + ", ".join(
            f"{k} {fmt_bytes(kinds['read'][k] + kinds['write'][k])}"
            for k in kinds["read"]
            if kinds["read"][k] + kinds["write"][k]
        ),
    ]
    footprint = format_footprint(
        summary.get("dram_peak_bytes"), summary.get("dram_footprint_by_kind", {})
    )
    if footprint:
        lines.append(f"  footprint     DRAM {footprint}")
    util = summary["utilization"]
    lines += [
        f"  utilization   temporal {util['temporal']:.1%} (busy / elapsed), spatial "
        f"{util['spatial']:.1%} (MACs / PE-cycles while busy), overall {util['overall']:.1%}",
        f"  core stalls   cycles per core (mean of {len(cores)}): "
        + ", ".join(f"{k} {fmt_cycles(v)}" for k, v in per_core.items()),
        f"  groups        {len(summary['groups'])}, sub-batches "
        + " ".join(str(g["sub_batch"]) for g in summary["groups"][:24])
        + (" ..." if len(summary["groups"]) > 24 else ""),
    ]
    stages = summary.get("stage_seconds", {})
    split = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    if process_seconds is not None:
        rest = process_seconds - sum(stages.values())
        split = ", ".join(
            x for x in (f"start-up and imports {rest:.1f}" if stages else "", split) if x
        )
        wall = f"wall {process_seconds:.1f} s for the whole process" + (
            f" ({split})" if split else ""
        )
    else:
        wall = f"wall {summary['wall_seconds']:.1f} s" + (f" ({split})" if split else "")
    lines.append(f"  instructions  {summary['instructions']:,}; {wall}")
    if "energy_joules" in summary:
        joules = summary["energy_joules"]
        lines.append(
            f"  energy        {joules:.3g} J"
            if joules >= 0.01
            else f"  energy        {joules * 1e3:.3g} mJ"
        )
    lines += [f"  note: {n}" for n in summary.get("notes", [])]
    return "\n".join(lines)
