"""Invariants checked at the end of every simulation (DESIGN section 6).

A violation is an :class:`InvariantError` naming the instruction or unit; a run never
reports a number that broke one of these. The checks run on whole per-instruction arrays;
only the message of a violation looks at the instruction itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..config import HardwareConfig
from ..errors import InvariantError
from ..ir import Program

if TYPE_CHECKING:  # the machine calls these checks; they only read its result
    from .machine import SimResult


def _describe(program: Program, i: int) -> str:
    ins = program.instr(i)
    return f"instruction {i} ({ins.unit} {ins.op.name}, layer {ins.layer!r})"


def check_invariants(program: Program, cfg: HardwareConfig, result: SimResult) -> None:
    """Every instruction retired after its dependencies; bytes moved equal bytes planned;
    the buffer stayed within capacity; per-unit cycle accounting adds up; no negative time."""
    s, e, d = result.start, result.end, result.done
    bad = np.flatnonzero((s < 0) | (s > e) | (e > d))
    if len(bad):
        i = int(bad[0])
        raise InvariantError(
            f"{_describe(program, i)} has inconsistent times start={s[i]} end={e[i]} done={d[i]}"
        )
    hbm, other, port, weight = (
        result.wait_hbm,
        result.wait_hbm_other,
        result.wait_port,
        result.wait_weight,
    )
    bad = np.flatnonzero(
        (np.minimum(np.minimum(hbm, other), np.minimum(port, weight)) < 0)
        | (other > hbm)
        | (hbm + port + weight > e - s)
    )
    if len(bad):
        i = int(bad[0])
        waits = (int(hbm[i]), int(other[i]), int(port[i]), int(weight[i]))
        raise InvariantError(
            f"{_describe(program, i)}: waits {waits} do not fit its occupancy {e[i] - s[i]}"
        )
    deps = program.cols["dep_ids"]
    owner = program.dep_instr()
    bad = np.flatnonzero(d[deps] > s[owner])
    if len(bad):
        j = int(bad[0])
        i, dep = int(owner[j]), int(deps[j])
        raise InvariantError(
            f"{_describe(program, i)} started at {s[i]} before its "
            f"dependency {dep} completed at {d[dep]}"
        )
    moved = result.dram_read_bytes + result.dram_write_bytes
    if result.channel_bytes != moved:
        raise InvariantError(
            f"HBM channels moved {result.channel_bytes} bytes but the transfers total {moved}"
        )
    if program.planned:
        planned_rd = sum(program.planned["read"].values())
        planned_wr = sum(program.planned["write"].values())
        if (planned_rd, planned_wr) != (result.dram_read_bytes, result.dram_write_bytes):
            raise InvariantError(
                f"DRAM bytes moved (read {result.dram_read_bytes}, write "
                f"{result.dram_write_bytes}) differ from the plan (read "
                f"{planned_rd}, write {planned_wr})"
            )
    if result.peak_buffer_bytes > cfg.gbuf_bytes:
        raise InvariantError(
            f"buffer peak {result.peak_buffer_bytes} exceeds gbuf_bytes {cfg.gbuf_bytes}"
        )
    for unit, st in result.units.items():
        parts = [st.busy, st.idle, *st.stalls.values()]
        if min(parts) < 0 or sum(parts) != result.cycles:
            raise InvariantError(
                f"unit {unit}: busy {st.busy} + stalls {st.stalls} + idle "
                f"{st.idle} does not add up to the {result.cycles} cycles "
                "elapsed without negative parts"
            )
