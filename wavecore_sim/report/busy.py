"""Where each unit was busy and where it stalled, per instruction: the one definition of
utilization that ``summary.json``, ``timeline.png`` and ``trace.json`` all use.

A unit is *occupied* by an instruction over ``[start, end)``. Part of that is its own work
(*busy*), part is waiting inside the instruction (*stalls*), recorded by the machine per
instruction:

* ``weight_load``: a core waiting for its first weight tile (``wait_weight``) and the weight
  loads the double buffer does not hide (``exposed_loads`` of :func:`~..timing.gemm_timing`;
  every fold's load without double buffering);
* ``buffer_port``: the stretch when the global-buffer ports cannot keep up (``wait_port``);
* ``dram``: a transfer queued behind others on its HBM channels (``wait_hbm``).

A core also stays busy after ``end`` while its results drain, until the next instruction
starts (``[end, min(done, next start))``). Waiting *between* instructions, for a
dependency, is a stall too, but occupies no instruction: it is a gap.

So ``busy = sum(end - start) - stalls inside instructions + drains``, and the temporal
utilization of a unit is ``busy / elapsed``. Within one instruction the machine records how
long each stall was, not when: the pieces are placed at its start (waiting for HBM or
weights) and end (the port stretch), which is exact at the resolution of the timeline and
one instruction off at worst in the trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import HardwareConfig
from ..ir import Op, Program
from ..timing import gemm_timing

if TYPE_CHECKING:
    from ..sim.machine import SimResult


@dataclass(frozen=True)
class Intervals:
    """Intervals ``[start, end)`` with the instruction (and so the unit) of each."""

    instr: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def __len__(self) -> int:
        return len(self.instr)


@dataclass(frozen=True)
class UnitActivity:
    """Per instruction, its stalls at the start (HBM or weights) and at the end (buffer
    ports), their causes, and the cores' drain intervals."""

    head: Intervals  # stall at the start of an instruction
    head_cause: np.ndarray  # "dram" or "weight_load" per head interval
    tail: Intervals  # buffer-port stall at the end of an instruction
    drain: Intervals  # a core's results draining after ``end``, counted busy


def _nonempty(instr: np.ndarray, start: np.ndarray, end: np.ndarray) -> Intervals:
    keep = end > start
    return Intervals(instr[keep], start[keep], end[keep])


def unit_activity(program: Program, cfg: HardwareConfig, result: SimResult) -> UnitActivity:
    """The stall and drain intervals of a run (numpy, no loop over instructions)."""
    c = program.cols
    n = len(program)
    start = np.asarray(result.start, dtype=np.int64)
    end = np.asarray(result.end, dtype=np.int64)
    done = np.asarray(result.done, dtype=np.int64)

    def per_instr(values: np.ndarray) -> np.ndarray:
        return (
            np.asarray(values, dtype=np.int64) if len(values) == n else np.zeros(n, dtype=np.int64)
        )

    wait_hbm, wait_port = per_instr(result.wait_hbm), per_instr(result.wait_port)
    wait_weight = per_instr(result.wait_weight)
    op = c["op"]
    gemm = np.flatnonzero(op == Op.GEMM)
    exposed = np.zeros(n, dtype=np.int64)
    if len(gemm):
        t = gemm_timing(*(c[f][gemm].astype(np.int64) for f in ("m", "k", "n")), cfg)
        exposed[gemm] = t.exposed_loads if cfg.weight_double_buffer else t.first_load
    head_len = wait_hbm + wait_weight + exposed
    ids = np.arange(n, dtype=np.int64)
    head = _nonempty(ids, start, start + head_len)
    is_gemm = np.zeros(n, dtype=bool)
    is_gemm[gemm] = True
    head_cause = np.where(is_gemm[head.instr], "weight_load", "dram")
    tail = _nonempty(ids, end - wait_port, end)

    # drains: a core's GEMMs in stream order; each drains until the next one starts
    unit = c["unit"].astype(np.int64)
    d_instr, d_start, d_end = [], [], []
    for u in np.unique(unit[gemm]).tolist():
        g = gemm[unit[gemm] == u]
        g = g[np.argsort(start[g], kind="stable")]
        nxt = np.append(start[g][1:], np.iinfo(np.int64).max)
        d_instr.append(g)
        d_start.append(end[g])
        d_end.append(np.minimum(done[g], nxt))
    if d_instr:
        drain = _nonempty(np.concatenate(d_instr), np.concatenate(d_start), np.concatenate(d_end))
    else:
        drain = Intervals(*(np.zeros(0, dtype=np.int64) for _ in range(3)))
    return UnitActivity(head, head_cause, tail, drain)


def busy_cycles(program: Program, result: SimResult, act: UnitActivity) -> np.ndarray:
    """Per unit (index into ``program.units``): busy cycles by the definition above."""
    units = len(program.units)
    unit = program.cols["unit"].astype(np.int64)
    occupied = np.asarray(result.end, dtype=np.int64) - np.asarray(result.start, dtype=np.int64)

    def per_unit(instr: np.ndarray, length: np.ndarray) -> np.ndarray:
        return np.bincount(unit[instr], weights=length, minlength=units).astype(np.int64)

    return (
        per_unit(np.arange(len(unit)), occupied)
        - per_unit(act.head.instr, act.head.end - act.head.start)
        - per_unit(act.tail.instr, act.tail.end - act.tail.start)
        + per_unit(act.drain.instr, act.drain.end - act.drain.start)
    )
