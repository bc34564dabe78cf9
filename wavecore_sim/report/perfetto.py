"""``trace.json``: a run as a Chrome trace-event file, for https://ui.perfetto.dev or
``chrome://tracing``.

Layout (one process, ``wavecore``; times in microseconds as the format defines,
``cycles / clock_mhz``, rounded to 1 ns):

* ``passes`` and ``groups`` tracks: one slice per pass (forward, backward, update) and per
  schedule group and pass, from its first instruction's start to its last one's completion.
  Spans that overlap go to extra lanes (``groups #2``), so no track has overlapping slices;
* one track per unit (``core0 busy 57.8%``, ``vec0 ...``, ``dma0.ld ...``, ...) with one
  complete event per instruction spanning ``[start, end)``, the time its unit was occupied.
  Names come from the opcode and payload: ``GEMM wgrad 64x288x32`` (the training role),
  ``VEC relu``, ``LOAD saved_activations``. The stalls inside an instruction are child
  slices (category ``stall``: ``stall dram``, ``stall weight_load``, ``stall buffer_port``)
  and a core's result drain after ``end``, while it counts as busy, is a ``drain`` slice
  (category ``drain``; a drain under the next instruction is in its ``args.done_us``). So a
  unit's busy time, as :mod:`.busy` defines it and ``summary.json`` reports it, is the sum
  of its instruction slices less its stall slices plus its drain slices; the track name
  carries the resulting temporal utilization;
* one track per HBM channel (``hbm ch0`` ...) with the channel's transfers, named by size.
  Back-to-back transfers (one starting the cycle the previous ended) are merged into one
  slice; ``args.transfers`` counts them (more are merged only past a slice budget);
* counters: live global-buffer bytes, HBM bandwidth (GB/s, all channels and per channel,
  averaged over ``bw_buckets`` buckets).

The file is streamed to disk track by track, instructions in chunks, so memory stays bounded
however long the program is: nothing holds the whole event list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ..config import HardwareConfig
from ..ir import Op, Program, Traffic
from .busy import busy_cycles, unit_activity
from .timeline import (
    PASS_LABEL,
    InstrArrays,
    bucket_edges,
    channel_bytes,
    group_spans,
    instr_arrays,
    occupancy_steps,
    pass_spans,
)

if TYPE_CHECKING:
    from ..sim.machine import SimResult

PID = 1
CHUNK = 16_384  # instructions formatted at a time


def fmt_bytes(n: float) -> str:
    """``512 B``, ``3.1 KB``, ``1.5 MB`` (binary multiples)."""
    if n < 1024:
        return f"{int(n)} B"
    if n < 1 << 20:
        return f"{n / 1024:.1f} KB"
    if n < 1 << 30:
        return f"{n / (1 << 20):.1f} MB"
    return f"{n / (1 << 30):.2f} GB"


_js = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # one encoder


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
    return (
        s[idx].tolist(),
        e[last].tolist(),
        np.add.reduceat(b, idx).tolist(),
        np.diff(np.append(idx, len(s))).tolist(),
    )


class _Writer:
    """Writes trace events to a text file as one JSON array, comma-separated."""

    def __init__(self, fh: IO[str], mhz: float) -> None:
        self.fh, self.mhz, self.first = fh, mhz, True

    def times(self, s: Any, e: Any) -> tuple[list[float], list[float]]:
        """Start and duration in microseconds rounded to 1 ns (``ts + dur`` = rounded end)."""
        t0 = np.round(np.asarray(s, dtype=np.float64) / self.mhz, 3)
        t1 = np.round(np.asarray(e, dtype=np.float64) / self.mhz, 3)
        return t0.tolist(), np.round(t1 - t0, 3).tolist()

    def us(self, c: Any) -> list[float]:
        return np.round(np.asarray(c, dtype=np.float64) / self.mhz, 3).tolist()

    def lines(self, events: Iterable[str]) -> None:
        text = ",\n".join(events)
        if not text:
            return
        self.fh.write(text if self.first else ",\n" + text)
        self.first = False

    def slices(
        self, tid: int, s: Any, e: Any, names: list[str], cat: str | None, args: list[str]
    ) -> None:
        """Complete events; ``names`` and ``args`` are JSON text already."""
        ts, dur = self.times(s, e)
        cat_js = f',"cat":{_js(cat)}' if cat else ""
        self.lines(
            f'{{"ph":"X","pid":{PID},"tid":{tid},"ts":{t},"dur":{d},'
            f'"name":{name}{cat_js},"args":{a}}}'
            for t, d, name, a in zip(ts, dur, names, args, strict=True)
        )


def _instr_events(
    program: Program,
    arr: InstrArrays,
    w: _Writer,
    tid: int,
    ids: np.ndarray,
    text: dict[str, list[str]],
) -> Iterator[str]:
    """The slice events of instructions ``ids`` (of one unit), as JSON text. ``text``: JSON
    fragments per string (``label``, ``gemm``, ``vec``), per step (``step``, ``cat``) and
    per opcode and traffic kind (``transfer``)."""
    c = program.cols
    label_js, gemm_js, vec_js = text["label"], text["gemm"], text["vec"]
    step_js, cat_js, transfer_js = text["step"], text["cat"], text["transfer"]
    ts, dur = w.times(arr.start[ids], arr.end[ids])
    late = (arr.done[ids] > arr.end[ids]).tolist()
    done_us = w.us(arr.done[ids])
    cols = [
        c[name][ids].tolist()
        for name in ("op", "label", "step", "m", "k", "n", "elements", "ops", "nbytes", "traffic")
    ]
    for j, (i, op, label, step, m, k, n, elems, ops, nbytes, traffic) in enumerate(
        zip(ids.tolist(), *cols, strict=True)
    ):
        if op == Op.GEMM:
            name = f'{gemm_js[label]} {m}x{k}x{n}"'
            extra = f',"macs":{m * k * n}'
        elif op == Op.VEC:
            name = vec_js[label]
            extra = f',"elements":{elems},"ops":{ops}'
        else:
            name = transfer_js[op * len(Traffic) + traffic]
            extra = f',"bytes":{nbytes},"tensor":{label_js[label]}'
        if late[j]:
            extra += f',"done_us":{done_us[j]}'
        yield (
            f'{{"ph":"X","pid":{PID},"tid":{tid},"ts":{ts[j]},"dur":{dur[j]},'
            f'"name":{name},"cat":{cat_js[step]},'
            f'"args":{{"id":{i},{step_js[step]}{extra}}}}}'
        )


def write_perfetto(
    program: Program,
    cfg: HardwareConfig,
    result: SimResult,
    path: str | Path,
    bw_buckets: int = 200,
    channel_slice_budget: int = 100_000,
) -> None:
    """Write ``trace.json`` (compact JSON) for Perfetto / chrome://tracing, streamed.

    ``channel_slice_budget`` caps the HBM channel slices (all channels together) by merging
    transfers separated by small gaps (see :func:`_merge_transfers`)."""
    mhz = float(cfg.clock_mhz)
    arr = instr_arrays(program, result)
    n_ch = cfg.hbm_channels

    # tracks, in display order: pass lanes, group lanes, units, HBM channels
    passes = pass_spans(arr)
    pass_lanes = _lanes([(s, d) for _p, s, d in passes])
    groups = group_spans(arr)
    group_lanes = _lanes([(s, d) for _g, _p, s, d in groups])
    tracks = [
        ("passes" if k == 0 else f"passes #{k + 1}") for k in range(max(pass_lanes, default=-1) + 1)
    ]
    first_group_tid = len(tracks) + 1
    tracks += [
        ("groups" if k == 0 else f"groups #{k + 1}")
        for k in range(max(group_lanes, default=-1) + 1)
    ]
    first_unit_tid = len(tracks) + 1
    act = unit_activity(program, cfg, result)
    busy = busy_cycles(program, result, act)
    cycles_total = max(int(result.cycles), 1)
    tracks += [f"{u.name} busy {busy[i] / cycles_total:.1%}" for i, u in enumerate(program.units)]
    first_channel_tid = len(tracks) + 1
    tracks += [f"hbm ch{ch}" for ch in range(n_ch)]

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write('{"displayTimeUnit":"ns","traceEvents":[\n')
        w = _Writer(fh, mhz)
        meta = [
            {"ph": "M", "pid": PID, "tid": 0, "name": "process_name", "args": {"name": "wavecore"}},
            {
                "ph": "M",
                "pid": PID,
                "tid": 0,
                "name": "process_sort_index",
                "args": {"sort_index": 0},
            },
        ]
        for tid, name in enumerate(tracks, start=1):
            meta.append(
                {"ph": "M", "pid": PID, "tid": tid, "name": "thread_name", "args": {"name": name}}
            )
            meta.append(
                {
                    "ph": "M",
                    "pid": PID,
                    "tid": tid,
                    "name": "thread_sort_index",
                    "args": {"sort_index": tid},
                }
            )
        w.lines(_js(m) for m in meta)

        for (name, s, d), lane in zip(passes, pass_lanes, strict=True):
            w.slices(1 + lane, [s], [d], [_js(PASS_LABEL[name])], "pass", [_js({"pass": name})])
        info = {g.index: g for g in program.groups}
        for (g, p, s, d), lane in zip(groups, group_lanes, strict=True):
            args: dict[str, Any] = {"group": g, "pass": p}
            gi = info.get(g)
            if gi is not None:
                args.update(
                    layers=f"{gi.layers[0]}..{gi.layers[-1]}",
                    layer_count=len(gi.layers),
                    sub_batch=gi.sub_batch,
                    sub_batches=gi.sub_batches,
                )
            w.slices(first_group_tid + lane, [s], [d], [_js(f"G{g} {p}")], "group", [_js(args)])

        # one track per unit, one slice per instruction (category: the phase)
        text = {
            "label": [_js(x) for x in program.strings],
            # GEMM names end with the shape: the JSON string is left open
            "gemm": [_js(f"GEMM {x.lower()}" if x else "GEMM")[:-1] for x in program.strings],
            "vec": [_js(f"VEC {x or 'op'}") for x in program.strings],
            "transfer": [_js(f"{op.name} {t.label}") for op in Op for t in Traffic],
            "step": [
                f'"layer":{_js(s.layer)},"phase":{_js(s.phase)},"group":{s.group}'
                for s in program.steps
            ],
            "cat": [_js(s.phase or "none") for s in program.steps],
        }
        for u in range(len(program.units)):
            ids = program.stream(u)
            ids = ids[np.argsort(arr.start[ids], kind="stable")]
            for lo in range(0, len(ids), CHUNK):
                w.lines(
                    _instr_events(program, arr, w, first_unit_tid + u, ids[lo : lo + CHUNK], text)
                )
        unit_col = program.cols["unit"]
        pieces = (
            (act.head, act.head_cause, "stall"),
            (act.tail, None, "stall"),
            (act.drain, None, "drain"),
        )
        for iv, causes, cat in pieces:
            for lo in range(0, len(iv), CHUNK):  # a chunk at a time: flat memory
                part = slice(lo, lo + CHUNK)
                instr = iv.instr[part]
                tid = (first_unit_tid + unit_col[instr]).tolist()
                if cat == "drain":
                    names = ['"drain"'] * len(instr)
                elif causes is None:
                    names = ['"stall buffer_port"'] * len(instr)
                else:
                    names = [f'"stall {x}"' for x in causes[part].tolist()]
                ts, dur = w.times(iv.start[part], iv.end[part])
                w.lines(
                    f'{{"ph":"X","pid":{PID},"tid":{t},"ts":{a},"dur":{d},"name":{nm},'
                    f'"cat":"{cat}","args":{{"id":{i}}}}}'
                    for t, a, d, nm, i in zip(tid, ts, dur, names, instr.tolist(), strict=True)
                )

        # one track per HBM channel
        log = result.channel_log
        budget = max(1, channel_slice_budget // max(n_ch, 1))
        for ch in range(n_ch):
            sel = np.flatnonzero(log.channel == ch)
            iv = np.stack([log.start[sel], log.end[sel], log.nbytes[sel]], axis=1).astype(np.int64)
            iv = iv[np.argsort(iv[:, 0], kind="stable")]
            s, e, b, k = _merge_transfers(iv, budget)
            w.slices(
                first_channel_tid + ch,
                s,
                e,
                [f'"{fmt_bytes(x)}"' for x in b],
                None,
                [
                    f'{{"bytes":{x}}}' if m == 1 else f'{{"bytes":{x},"transfers":{m}}}'
                    for x, m in zip(b, k, strict=True)
                ],
            )

        # counters
        occ_t, occ_b = occupancy_steps(result)
        w.lines(
            f'{{"ph":"C","pid":{PID},"tid":0,"ts":{t},"name":"gbuf occupancy",'
            f'"args":{{"bytes":{b}}}}}'
            for t, b in zip(w.us(occ_t), occ_b.tolist(), strict=True)
        )
        cycles = max(int(result.cycles), 1)
        edges = bucket_edges(cycles, bw_buckets)
        if n_ch:
            width_s = np.diff(edges) / (mhz * 1e6)
            gbps = np.round(channel_bytes(result, edges, n_ch) / width_s / 1e9, 3)
            gbps = np.concatenate((gbps, np.zeros((n_ch, 1))), axis=1)  # 0 at the end
            total = np.round(np.sum(gbps, axis=0), 3).tolist()
            per = gbps.T.tolist()
            counter = []
            for k, ts in enumerate(w.us(edges)):
                counter.append(
                    _js(
                        {
                            "ph": "C",
                            "pid": PID,
                            "tid": 0,
                            "ts": ts,
                            "name": "hbm bandwidth GB/s",
                            "args": {"total": total[k]},
                        }
                    )
                )
                counter.append(
                    _js(
                        {
                            "ph": "C",
                            "pid": PID,
                            "tid": 0,
                            "ts": ts,
                            "name": "hbm channel GB/s",
                            "args": {f"ch{c}": per[k][c] for c in range(n_ch)},
                        }
                    )
                )
            w.lines(counter)

        pm = program.meta
        metadata = {
            "generator": "wavecore-sim",
            "time_unit": "us",
            "network": pm.get("network"),
            "batch": pm.get("batch"),
            "schedule": pm.get("schedule"),
            "norm": pm.get("norm"),
            "cycles": int(result.cycles),
            "clock_mhz": mhz,
            "seconds": cfg.cycles_to_seconds(result.cycles),
            "instructions": len(program),
            "units": program.unit_names,
            "hbm_channels": n_ch,
            "gbuf_bytes": cfg.gbuf_bytes,
            "busy_cycles": dict(zip(program.unit_names, busy.tolist(), strict=True)),
            "peak_buffer_bytes": int(result.peak_buffer_bytes),
            "dram_read_bytes": int(result.dram_read_bytes),
            "dram_write_bytes": int(result.dram_write_bytes),
        }
        fh.write(f'\n],"metadata":{_js(metadata)}}}\n')
    tmp.replace(path)
