"""Flat rows of run records: the CSV columns shared by ``reproduce`` and ``sweep``."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from ..energy import COMPONENTS
from ..ir import TRAFFIC_KINDS


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """The CSV columns of one record (empty cells for a failed run). Deterministic: no wall
    times, so the same inputs always give the same file."""
    row: dict[str, Any] = {
        "network": record["network"],
        "batch": record["batch"],
        "schedule": record["schedule"],
    }
    row.update(record.get("params", {}))
    row["status"] = record["status"]
    row["error"] = record["error"]
    row.update(metric_columns(record.get("summary")))
    return row


def metric_columns(s: dict[str, Any] | None) -> dict[str, Any]:
    """The metric columns of a run's summary, ``None`` where it has no value: all of them
    for a failed run; utilization over time, stalls and buffer occupancy for the
    analytical model's summaries, which do not have them."""
    cols: dict[str, Any] = {
        "norm": None,
        "cycles": None,
        "seconds": None,
        "dram_read_bytes": None,
        "dram_write_bytes": None,
        "dram_bytes": None,
    }
    cols.update({f"dram_{k}_bytes": None for k in TRAFFIC_KINDS})
    cols.update({f"energy_{c}_j": None for c in COMPONENTS})
    cols.update(
        {
            "energy_total_j": None,
            "util_temporal": None,
            "util_spatial": None,
            "util_overall": None,
            "throughput_tflops": None,
            "stall_dram_cycles": None,
            "stall_buffer_port_cycles": None,
            "stall_dependency_cycles": None,
            "stall_weight_load_cycles": None,
            "groups": None,
            "min_sub_batch": None,
            "max_sub_batch": None,
            "peak_buffer_bytes": None,
        }
    )
    if s is None:
        return cols
    kinds = s["dram_by_kind"]
    cols.update(
        norm=s["norm"],
        cycles=s["cycles"],
        seconds=s["seconds"],
        dram_read_bytes=s["dram_read_bytes"],
        dram_write_bytes=s["dram_write_bytes"],
        dram_bytes=s["dram_bytes"],
    )
    for k in TRAFFIC_KINDS:
        cols[f"dram_{k}_bytes"] = kinds["read"].get(k, 0) + kinds["write"].get(k, 0)
    for c in COMPONENTS:
        cols[f"energy_{c}_j"] = s["energy_breakdown"][c]
    cols["energy_total_j"] = s["energy_joules"]
    util = s["utilization"]
    cols.update(
        util_temporal=util.get("temporal"),
        util_spatial=util.get("spatial"),
        util_overall=util["overall"],
        throughput_tflops=s["throughput_tflops"],
    )
    for cause, cycles in s.get("core_stalls", {}).items():
        cols[f"stall_{cause}_cycles"] = cycles
    subs = [g["sub_batch"] for g in s["groups"]]
    cols.update(
        groups=len(subs),
        min_sub_batch=min(subs, default=None),
        max_sub_batch=max(subs, default=None),
        peak_buffer_bytes=s.get("peak_buffer_bytes"),
    )
    return cols


def csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def json_safe(obj: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj
