"""Run summaries: ``summary.json``, ``layers.csv`` and ``groups.csv``.

Utilization (both reported per core and for the machine):

* temporal = busy cycles / elapsed cycles (busy: streaming rows and draining results);
* spatial = useful MACs / (R * C * busy cycles): how full the array is while it is busy,
  which ragged tiles, short streams and fill/drain lower.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..compiler.program import GEMM, LOAD, VEC, Program
from ..config import HardwareConfig
from ..energy import energy
from ..sim.machine import STALL_CAUSES, SimResult


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def build_summary(program: Program, cfg: HardwareConfig, result: SimResult,
                  wall_seconds: float) -> dict[str, Any]:
    """Everything a user asks of one run, as plain data (``summary.json``)."""
    cycles = result.cycles
    pe = cfg.array_rows * cfg.array_cols
    units = {}
    stall_totals = dict.fromkeys(STALL_CAUSES, 0)
    core_busy = 0
    for name, st in result.units.items():
        entry = {"busy": st.busy, "idle": st.idle, "stalls": dict(st.stalls),
                 "instructions": st.instructions,
                 "temporal_utilization": round(_ratio(st.busy, cycles), 6)}
        if name.startswith("core"):
            entry["macs"] = st.macs
            entry["spatial_utilization"] = round(_ratio(st.macs, pe * st.busy), 6)
            core_busy += st.busy
            for cause, value in st.stalls.items():
                stall_totals[cause] += value
        if name.startswith("vec"):
            entry["vector_ops"] = st.vector_ops
        if name.startswith("dma"):
            entry["bytes"] = st.bytes_moved
        units[name] = entry
    traffic = program.traffic_by_kind()
    n_cores = cfg.cores
    summary = {
        "network": program.meta.get("network"), "batch": program.meta.get("batch"),
        "schedule": program.meta.get("schedule"), "norm": program.meta.get("norm"),
        "cycles": cycles, "seconds": cfg.cycles_to_seconds(cycles),
        "macs": result.macs,
        "dram_read_bytes": result.dram_read_bytes, "dram_write_bytes": result.dram_write_bytes,
        "dram_bytes": result.dram_read_bytes + result.dram_write_bytes,
        "dram_by_kind": traffic,
        "instructions": len(program.instrs), "events": result.events,
        "wall_seconds": round(wall_seconds, 3),
        "throughput_tflops": round(2 * result.macs / max(cfg.cycles_to_seconds(cycles), 1e-30)
                                   / 1e12, 3),
        "utilization": {
            "temporal": round(_ratio(core_busy, n_cores * cycles), 6),
            "spatial": round(_ratio(result.macs, pe * core_busy), 6),
            "overall": round(_ratio(result.macs, cfg.peak_macs_per_cycle * cycles), 6),
        },
        "core_stalls": stall_totals,
        "peak_buffer_bytes": result.peak_buffer_bytes, "gbuf_bytes": cfg.gbuf_bytes,
        "units": units,
        "groups": [{"index": g.index, "layers": g.layers, "sub_batch": g.sub_batch,
                    "sub_batches": g.sub_batches, "footprint_bytes": g.footprint_bytes,
                    "weights_resident": g.weights_resident, "wgrad_resident": g.wgrad_resident}
                   for g in program.groups],
        "notes": program.meta.get("notes", []),
        "config": cfg.to_dict(),
    }
    joules = energy(result, cfg)  # components in J; constants and sources in energy.py
    summary["energy_joules"] = joules["total"]
    summary["energy_breakdown"] = {k: v for k, v in joules.items() if k != "total"}
    return summary


def _rows_by(program: Program, cfg: HardwareConfig, result: SimResult,
             key) -> dict[Any, dict[str, Any]]:
    """Per-key totals: span, core/vector/DMA cycles, bytes, MACs."""
    rows: dict[Any, dict[str, Any]] = defaultdict(lambda: {
        "first_start": None, "last_done": 0, "core_cycles": 0, "vector_cycles": 0,
        "dma_cycles": 0, "macs": 0, "vector_ops": 0, "dram_read_bytes": 0,
        "dram_write_bytes": 0, "instructions": 0})
    for ins in program.instrs:
        row = rows[key(ins)]
        s, e, d = result.start[ins.id], result.end[ins.id], result.done[ins.id]
        row["first_start"] = s if row["first_start"] is None else min(row["first_start"], s)
        row["last_done"] = max(row["last_done"], d)
        row["instructions"] += 1
        if ins.op == GEMM:
            row["core_cycles"] += e - s
            row["macs"] += ins.m * ins.k * ins.n
        elif ins.op == VEC:
            row["vector_cycles"] += e - s
            row["vector_ops"] += ins.ops
        else:
            row["dma_cycles"] += e - s
            row["dram_read_bytes" if ins.op == LOAD else "dram_write_bytes"] += ins.nbytes
    pe = cfg.array_rows * cfg.array_cols
    for row in rows.values():
        row["span_cycles"] = row["last_done"] - row["first_start"]
        row["spatial_utilization"] = round(_ratio(row["macs"], pe * row["core_cycles"]), 4)
    return rows


def layer_rows(program: Program, cfg: HardwareConfig, result: SimResult) -> list[dict]:
    rows = _rows_by(program, cfg, result, lambda i: (i.layer, i.phase, i.group))
    out = [{"layer": k[0], "phase": k[1], "group": k[2], **v} for k, v in rows.items()]
    out.sort(key=lambda r: r["first_start"])
    return out


def group_rows(program: Program, cfg: HardwareConfig, result: SimResult) -> list[dict]:
    rows = _rows_by(program, cfg, result, lambda i: (i.group, "BWD" if i.phase in (
        "BWD", "GRADSUM") else i.phase if i.phase == "UPDATE" else "FWD"))
    info = {g.index: g for g in program.groups}
    out = []
    for (gid, direction), v in rows.items():
        g = info.get(gid)
        out.append({"group": gid, "pass": direction,
                    "layers": f"{g.layers[0]}..{g.layers[-1]}" if g else "update",
                    "layer_count": len(g.layers) if g else 0,
                    "sub_batch": g.sub_batch if g else "", **v})
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


def format_summary(summary: dict[str, Any]) -> str:
    """A short human-readable digest of a run for the terminal."""
    gb = 1e9
    kinds = summary["dram_by_kind"]
    lines = [
        f"{summary['network']} batch {summary['batch']} schedule {summary['schedule']} "
        f"({summary['norm']})",
        f"  cycles        {summary['cycles']:,} ({summary['seconds'] * 1e3:.2f} ms), "
        f"{summary['throughput_tflops']} TFLOP/s",
        f"  DRAM          read {summary['dram_read_bytes'] / gb:.3f} GB, write "
        f"{summary['dram_write_bytes'] / gb:.3f} GB",
        "  by kind (GB)  " + ", ".join(
            f"{k} {(kinds['read'][k] + kinds['write'][k]) / gb:.3f}" for k in kinds["read"]),
        f"  utilization   temporal {summary['utilization']['temporal']:.1%}, spatial "
        f"{summary['utilization']['spatial']:.1%}, overall {summary['utilization']['overall']:.1%}",
        "  core stalls   " + ", ".join(f"{k} {v:,}" for k, v in summary["core_stalls"].items()),
        f"  groups        {len(summary['groups'])}, sub-batches "
        + " ".join(str(g["sub_batch"]) for g in summary["groups"][:24])
        + (" ..." if len(summary["groups"]) > 24 else ""),
        f"  instructions  {summary['instructions']:,}, wall {summary['wall_seconds']} s",
    ]
    if "energy_joules" in summary:
        lines.append(f"  energy        {summary['energy_joules']:.3f} J")
    lines += [f"  note: {n}" for n in summary.get("notes", [])]
    return "\n".join(lines)

