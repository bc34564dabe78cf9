"""Invariants checked at the end of every simulation (DESIGN section 6).

A violation is an :class:`InvariantError` naming the instruction or unit; a run never
reports a number that broke one of these.
"""

from __future__ import annotations

from ..compiler.program import Program
from ..config import HardwareConfig
from ..errors import InvariantError
from .machine import SimResult


def check_invariants(program: Program, cfg: HardwareConfig, result: SimResult) -> None:
    """Every instruction retired after its dependencies; bytes moved equal bytes planned;
    the buffer stayed within capacity; per-unit cycle accounting adds up; no negative time."""
    for ins in program.instrs:
        s, e, d = result.start[ins.id], result.end[ins.id], result.done[ins.id]
        if not 0 <= s <= e <= d:
            raise InvariantError(f"instruction {ins.id} ({ins.unit} {ins.op}, layer "
                                 f"{ins.layer!r}) has inconsistent times start={s} end={e} "
                                 f"done={d}")
        waits = (result.wait_hbm[ins.id], result.wait_hbm_other[ins.id],
                 result.wait_port[ins.id], result.wait_weight[ins.id])
        if min(waits) < 0 or waits[1] > waits[0] or \
                waits[0] + waits[2] + waits[3] > e - s:
            raise InvariantError(f"instruction {ins.id} ({ins.unit} {ins.op}): waits "
                                 f"{waits} do not fit its occupancy {e - s}")
        for dep in ins.deps:
            if result.done[dep] > s:
                raise InvariantError(f"instruction {ins.id} ({ins.unit}) started at {s} before "
                                     f"its dependency {dep} completed at {result.done[dep]}")
    moved = result.dram_read_bytes + result.dram_write_bytes
    if result.channel_bytes != moved:
        raise InvariantError(f"HBM channels moved {result.channel_bytes} bytes but the "
                             f"transfers total {moved}")
    if program.planned:
        planned_rd = sum(program.planned["read"].values())
        planned_wr = sum(program.planned["write"].values())
        if (planned_rd, planned_wr) != (result.dram_read_bytes, result.dram_write_bytes):
            raise InvariantError(f"DRAM bytes moved (read {result.dram_read_bytes}, write "
                                 f"{result.dram_write_bytes}) differ from the plan (read "
                                 f"{planned_rd}, write {planned_wr})")
    if result.peak_buffer_bytes > cfg.gbuf_bytes:
        raise InvariantError(f"buffer peak {result.peak_buffer_bytes} exceeds gbuf_bytes "
                             f"{cfg.gbuf_bytes}")
    for unit, st in result.units.items():
        parts = [st.busy, st.idle, *st.stalls.values()]
        if min(parts) < 0 or sum(parts) != result.cycles:
            raise InvariantError(f"unit {unit}: busy {st.busy} + stalls {st.stalls} + idle "
                                 f"{st.idle} does not add up to the {result.cycles} cycles "
                                 "elapsed without negative parts")
