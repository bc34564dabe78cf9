"""``trace.json``: a run as a Chrome trace-event file, for https://ui.perfetto.dev or
``chrome://tracing``.

Layout (one process, ``wavecore``; times in microseconds as the format defines,
``cycles / clock_mhz``, rounded to 1 ns):

* ``passes`` and ``groups`` tracks: one slice per pass (forward, backward, update) and per
  schedule group and pass, from its first instruction's start to its last one's completion.
  Spans that overlap go to extra lanes (``groups #2``), so no track has overlapping slices;
* one track per unit (``core0``, ``vec0``, ``dma0.ld``, ``dma0.st``, ...) with one complete
  event per instruction spanning ``[start, end)``, the time its unit was occupied (a GEMM's
  result drain after ``end`` is in ``args.done_us``);
* one track per HBM channel (``hbm ch0`` ...) with the channel's transfers, named by size.
  Back-to-back transfers (one starting the cycle the previous ended) are merged into one
  slice; ``args.transfers`` counts them (more are merged only past a slice budget);
* counters: live global-buffer bytes, HBM bandwidth (GB/s, all channels and per channel,
  averaged over ``bw_buckets`` buckets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.program import GEMM, LOAD, STORE, VEC, Instr, Program
from ..config import HardwareConfig
from ..sim.machine import SimResult
from .timeline import (
    PASS_LABEL,
    bucket_edges,
    channel_bytes,
    group_spans,
    instr_arrays,
    occupancy_steps,
    pass_spans,
)

PID = 1


def fmt_bytes(n: float) -> str:
    """``512 B``, ``3.1 KB``, ``1.5 MB`` (binary multiples)."""
    if n < 1024:
        return f"{int(n)} B"
    if n < 1 << 20:
        return f"{n / 1024:.1f} KB"
    if n < 1 << 30:
        return f"{n / (1 << 20):.1f} MB"
    return f"{n / (1 << 30):.2f} GB"


def instr_name(ins: Instr) -> str:
    if ins.op == GEMM:
        role = f" {ins.vkind.lower()}" if ins.vkind else ""
        return f"GEMM{role} {ins.m}x{ins.k}x{ins.n}"
    if ins.op in (LOAD, STORE):
        return f"{ins.op} {ins.traffic or 'data'}"
    if ins.op == VEC:
        return f"VEC {ins.vkind or 'op'}"
    return ins.op


def instr_args(ins: Instr, done_us: float | None) -> dict[str, Any]:
    """Slice arguments; ``done_us`` only where results completed after the unit was free."""
    args: dict[str, Any] = {"id": ins.id, "layer": ins.layer, "phase": ins.phase,
                            "group": ins.group}
    if ins.op == GEMM:
        args["macs"] = ins.m * ins.k * ins.n
    elif ins.op == VEC:
        args.update(elements=ins.elements, ops=ins.ops)
    else:
        args.update(bytes=ins.nbytes, tensor=ins.tensor)
    if done_us is not None:
        args["done_us"] = done_us
    return args


def _lanes(spans: list[tuple[int, int]]) -> list[int]:
    """Greedy lane per span (sorted by start) so spans in one lane never overlap."""
    ends: list[int] = []
    out = []
    for s, e in spans:
        for lane, last in enumerate(ends):
            if last <= s:
                ends[lane] = e
                out.append(lane)
                break
        else:
            ends.append(e)
            out.append(len(ends) - 1)
    return out


def _merge_transfers(iv: np.ndarray, budget: int) -> tuple[list, list, list, list]:
    """Channel transfers ``(start, end, bytes)`` sorted by start, merged where one starts
    within ``gap`` cycles of the previous one's end: ``gap = 0`` (back to back only) unless
    that leaves more than ``budget`` slices, then the smallest power of two that fits.
    Returns lists (start, end, bytes, transfers merged)."""
    if len(iv) == 0:
        return [], [], [], []
    s, e, b = iv[:, 0], iv[:, 1], iv[:, 2]
    gaps = s[1:] - e[:-1]
    gap = 0
    while True:
        new = np.ones(len(s), dtype=bool)
        new[1:] = gaps > gap
        if int(new.sum()) <= budget:
            break
        gap = gap * 2 or 1
    idx = np.flatnonzero(new)
    last = np.append(idx[1:], len(s)) - 1
    return (s[idx].tolist(), e[last].tolist(), np.add.reduceat(b, idx).tolist(),
            np.diff(np.append(idx, len(s))).tolist())


def build_trace(program: Program, cfg: HardwareConfig, result: SimResult,
                bw_buckets: int = 200, channel_slice_budget: int = 100_000) -> dict[str, Any]:
    """The trace-event object (``{"traceEvents": [...], ...}``).

    ``channel_slice_budget`` caps the HBM channel slices (all channels together) by merging
    transfers separated by small gaps (see :func:`_merge_transfers`)."""
    mhz = float(cfg.clock_mhz)

    def us(c: Any) -> Any:
        """Cycles (scalar or array) -> microseconds rounded to 1 ns, as Python numbers."""
        return np.round(np.asarray(c, dtype=np.float64) / mhz, 3).tolist()

    events: list[dict[str, Any]] = []
    tracks: list[str] = []

    def track(name: str) -> int:
        tracks.append(name)
        return len(tracks)

    def slices(tid: int, s: Any, e: Any, names: list[str], cats: list[str] | str | None,
               args: list[dict[str, Any]]) -> None:
        t0 = np.round(np.asarray(s, dtype=np.float64) / mhz, 3)
        t1 = np.round(np.asarray(e, dtype=np.float64) / mhz, 3)
        ts, dur = t0.tolist(), np.round(t1 - t0, 3).tolist()  # ts + dur = rounded end
        if cats is None or isinstance(cats, str):
            cats = [cats] * len(ts)
        for t, d, name, cat, a in zip(ts, dur, names, cats, args, strict=True):
            ev = {"ph": "X", "pid": PID, "tid": tid, "ts": t, "dur": d, "name": name,
                  "args": a}
            if cat:
                ev["cat"] = cat
            events.append(ev)

    arr = instr_arrays(program, result)

    # passes and groups, in lanes
    passes = pass_spans(arr)
    lanes = _lanes([(s, d) for _p, s, d in passes])
    pass_tids = [track("passes" if k == 0 else f"passes #{k + 1}")
                 for k in range(max(lanes, default=-1) + 1)]
    for (name, s, d), lane in zip(passes, lanes, strict=True):
        slices(pass_tids[lane], [s], [d], [PASS_LABEL[name]], "pass", [{"pass": name}])
    groups = group_spans(arr)
    info = {g.index: g for g in program.groups}
    lanes = _lanes([(s, d) for _g, _p, s, d in groups])
    group_tids = [track("groups" if k == 0 else f"groups #{k + 1}")
                  for k in range(max(lanes, default=-1) + 1)]
    for (g, p, s, d), lane in zip(groups, lanes, strict=True):
        args: dict[str, Any] = {"group": g, "pass": p}
        gi = info.get(g)
        if gi is not None:
            args.update(layers=f"{gi.layers[0]}..{gi.layers[-1]}", layer_count=len(gi.layers),
                        sub_batch=gi.sub_batch, sub_batches=gi.sub_batches)
        slices(group_tids[lane], [s], [d], [f"G{g} {p}"], "group", [args])

    # one track per unit, one slice per instruction (category: the phase)
    done_us = us(arr.done)
    for u, unit in enumerate(program.units):
        tid = track(unit)
        ids = np.flatnonzero(arr.unit == u)
        ids = ids[np.argsort(arr.start[ids], kind="stable")]
        instrs = [program.instrs[i] for i in ids.tolist()]
        slices(tid, arr.start[ids], arr.end[ids], [instr_name(x) for x in instrs],
               [x.phase or "none" for x in instrs],
               [instr_args(x, done_us[x.id] if arr.done[x.id] > arr.end[x.id] else None)
                for x in instrs])

    # one track per HBM channel
    n_ch = len(result.channel_busy)
    for ch, intervals in enumerate(result.channel_busy):
        tid = track(f"hbm ch{ch}")
        iv = np.asarray(intervals, dtype=np.int64).reshape(-1, 3)
        iv = iv[np.argsort(iv[:, 0], kind="stable")]
        s, e, b, n = _merge_transfers(iv, max(1, channel_slice_budget // max(n_ch, 1)))
        slices(tid, s, e, [fmt_bytes(x) for x in b], None,
               [{"bytes": x} if k == 1 else {"bytes": x, "transfers": k}
                for x, k in zip(b, n, strict=True)])

    # counters
    occ_t, occ_b = occupancy_steps(result)
    for t, b in zip(us(occ_t), occ_b.tolist(), strict=True):
        events.append({"ph": "C", "pid": PID, "tid": 0, "ts": t, "name": "gbuf occupancy",
                       "args": {"bytes": b}})
    cycles = max(int(result.cycles), 1)
    edges = bucket_edges(cycles, bw_buckets)
    if n_ch:
        width_s = np.diff(edges) / (mhz * 1e6)
        gbps = np.round(channel_bytes(result, edges) / width_s / 1e9, 3)
        gbps = np.concatenate((gbps, np.zeros((n_ch, 1))), axis=1).tolist()  # 0 at the end
        total = np.round(np.sum(gbps, axis=0), 3).tolist()
        for k, ts in enumerate(us(edges)):
            events.append({"ph": "C", "pid": PID, "tid": 0, "ts": ts,
                           "name": "hbm bandwidth GB/s", "args": {"total": total[k]}})
            events.append({"ph": "C", "pid": PID, "tid": 0, "ts": ts,
                           "name": "hbm channel GB/s",
                           "args": {f"ch{c}": gbps[c][k] for c in range(n_ch)}})

    meta = [{"ph": "M", "pid": PID, "tid": 0, "name": "process_name",
             "args": {"name": "wavecore"}},
            {"ph": "M", "pid": PID, "tid": 0, "name": "process_sort_index",
             "args": {"sort_index": 0}}]
    for tid, name in enumerate(tracks, start=1):
        meta.append({"ph": "M", "pid": PID, "tid": tid, "name": "thread_name",
                     "args": {"name": name}})
        meta.append({"ph": "M", "pid": PID, "tid": tid, "name": "thread_sort_index",
                     "args": {"sort_index": tid}})

    pm = program.meta
    return {
        "traceEvents": meta + events,
        "displayTimeUnit": "ns",
        "metadata": {
            "generator": "wavecore-sim", "time_unit": "us",
            "network": pm.get("network"), "batch": pm.get("batch"),
            "schedule": pm.get("schedule"), "norm": pm.get("norm"),
            "cycles": int(result.cycles), "clock_mhz": mhz,
            "seconds": cfg.cycles_to_seconds(result.cycles),
            "instructions": len(program.instrs), "units": list(program.units),
            "hbm_channels": n_ch, "gbuf_bytes": cfg.gbuf_bytes,
            "peak_buffer_bytes": result.peak_buffer_bytes,
            "dram_read_bytes": result.dram_read_bytes,
            "dram_write_bytes": result.dram_write_bytes,
        },
    }


def write_perfetto(program: Program, cfg: HardwareConfig, result: SimResult,
                   path: str | Path) -> None:
    """Write ``trace.json`` (compact JSON) for Perfetto / chrome://tracing."""
    trace = build_trace(program, cfg, result)
    Path(path).write_text(json.dumps(trace, separators=(",", ":"), ensure_ascii=False))
