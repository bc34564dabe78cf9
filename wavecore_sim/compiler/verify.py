"""Static verifier, run on every compile (and on every trace read back).

Checks, each failing with the offending instruction or allocation named:

1. Dependencies form a DAG in program order: every dependency names an earlier instruction,
   so every consumer follows its producer and no schedule can deadlock.
2. Every instruction is well formed (known unit and opcode, positive sizes, transfer sizes
   equal their buffer ranges, accesses inside their allocation).
3. The buffer never exceeds capacity: every allocation lies inside ``[0, gbuf_bytes)``, and two
   allocations that share addresses are never live at once. "Happens-before" is computed with
   vector clocks over the dependency edges and each unit's program order (DMA queues and vector
   units finish in order; a core only starts in order); every user of an allocation must
   happen after every user of the previous occupant of its addresses.
4. Inside each allocation, reads happen after the writes of their bytes and writes after
   earlier reads and writes (accumulations commute).
5. DRAM hazards: a LOAD of bytes an earlier STORE wrote, and a STORE over bytes loaded or
   stored earlier, happen after them.
6. Planned DRAM bytes per tensor kind equal the bytes of the emitted LOAD and STORE
   instructions, for reads and for writes.
"""

from __future__ import annotations

from bisect import bisect_right

from ..config import HardwareConfig
from ..errors import InvariantError
from .program import GEMM, LOAD, OPCODES, STORE, TRAFFIC_KINDS, VEC, Program


def _fail(msg: str) -> InvariantError:
    return InvariantError(f"program verification failed: {msg}")


def verify_program(program: Program, cfg: HardwareConfig | None = None) -> None:
    """Raise :class:`InvariantError` unless the program passes every check above."""
    units = {u: i for i, u in enumerate(program.units)}
    allocs = program.allocs
    capacity = program.gbuf_bytes
    for a in allocs:
        if a.offset < 0 or a.size <= 0 or a.offset + a.size > capacity:
            raise _fail(f"allocation {a.id} ({a.label}) [{a.offset}, {a.offset + a.size}) lies "
                        f"outside the {capacity}-byte buffer")

    n_units = len(units)
    position: list[int] = []
    counters = [0] * n_units
    last_on_unit = [-1] * n_units
    unit_of: list[int] = []
    clocks: list[list[int]] = []
    users: dict[int, list[int]] = {}
    for idx, ins in enumerate(program.instrs):
        if ins.id != idx:
            raise _fail(f"instruction at index {idx} has id {ins.id}; ids must be 0..n-1 in order")
        if ins.unit not in units:
            raise _fail(f"instruction {idx} runs on unknown unit {ins.unit!r}")
        if ins.op not in OPCODES:
            raise _fail(f"instruction {idx} has unknown opcode {ins.op!r}")
        _check_fields(ins, allocs)
        u = units[ins.unit]
        clock = [-1] * n_units
        for d in ins.deps:
            if not 0 <= d < idx:
                raise _fail(f"instruction {idx} ({ins.unit} {ins.op}, layer {ins.layer!r}) depends "
                            f"on {d}, which does not come before it")
            clock = list(map(max, clock, clocks[d]))
            du = unit_of[d]
            if position[d] > clock[du]:
                clock[du] = position[d]
        prev = last_on_unit[u]
        if prev >= 0:  # the previous instruction of this unit started first: its deps are done
            clock = list(map(max, clock, clocks[prev]))
            if not ins.unit.startswith("core"):  # DMA queues and vector units finish in order
                clock[u] = max(clock[u], position[prev])
        last_on_unit[u] = idx
        unit_of.append(u)
        position.append(counters[u])
        counters[u] += 1
        clocks.append(clock)
        for a in ins.reads + ins.writes:
            users.setdefault(a.alloc, []).append(idx)

    # Allocations sharing addresses: the newer one's users follow all of the older one's.
    starts: list[int] = [0]
    occupant: list[int] = [-1]
    last_use: dict[int, list[int]] = {}
    for a in allocs:
        lo, hi = a.offset, a.offset + a.size
        i = bisect_right(starts, lo) - 1
        previous = set()
        j = i
        while j < len(starts) and starts[j] < hi:
            if occupant[j] >= 0:
                previous.add(occupant[j])
            j += 1
        mine = users.get(a.id, [])
        floor = list(map(min, *(clocks[y] for y in mine))) if len(mine) > 1 else \
            (clocks[mine[0]] if mine else [])
        for prev in previous:
            last = last_use.get(prev)
            if last is None:  # the latest position of prev's users, per unit (computed once)
                last = [-1] * n_units
                for x in users.get(prev, []):
                    ux = unit_of[x]
                    if position[x] > last[ux]:
                        last[ux] = position[x]
                last_use[prev] = last
            if floor and all(c >= v for c, v in zip(floor, last, strict=True)):
                continue  # every user of the new allocation waits for all the old one's users
            for y in mine:
                cy = clocks[y]
                uy = unit_of[y]
                if all(c >= v for c, v in zip(cy, last, strict=True)):
                    continue
                for k in range(n_units):
                    # a unit's own stream is ordered by program order (the array pipeline
                    # forwards in order), so only other units need a happens-before path
                    if k == uy and last[k] < position[y]:
                        continue
                    if last[k] > cy[k]:
                        p = allocs[prev]
                        raise _fail(f"allocation {a.id} ({a.label}) reuses bytes of allocation "
                                    f"{prev} ({p.label}) while it may still be in use: "
                                    f"instruction {y} ({program.instrs[y].unit}) does not wait "
                                    f"for {program.units[k]}")
        # record a as the occupant of [lo, hi)
        end_occ = occupant[j - 1] if j - 1 >= 0 else -1
        first = i + 1 if starts[i] < lo else i
        mid_starts, mid_occ = [lo], [a.id]
        if j >= len(starts) or starts[j] > hi:
            mid_starts.append(hi)
            mid_occ.append(end_occ)
        starts[first:j] = mid_starts  # in place: the segment list is long
        occupant[first:j] = mid_occ

    from .scoreboard import SegmentMap

    def ordered(x: int, y: int, same_unit_ok: bool) -> bool:
        """Instruction x completes before y starts (or program order on y's unit suffices)."""
        ux = unit_of[x]
        if ux == unit_of[y] and (same_unit_ok or not program.instrs[y].unit.startswith("core")):
            return position[x] < position[y]
        return position[x] <= clocks[y][ux]

    # Inside every allocation: reads follow the writes of their bytes, writes follow earlier
    # reads and writes (accumulating writes commute with each other; a core's accumulation
    # into its own partial sums is forwarded by the array pipeline, in program order).
    maps = {a.id: SegmentMap(a.size) for a in allocs}
    for ins in program.instrs:
        for accesses, is_write in ((ins.reads, False), (ins.writes, True)):
            for a in accesses:
                earlier: dict[str, int] = {}
                if is_write:
                    maps[a.alloc].write(a.lo, a.hi, ins.unit, ins.id, a.acc, earlier)
                else:
                    maps[a.alloc].read(a.lo, a.hi, ins.unit, ins.id, earlier)
                for x in earlier.values():
                    if x != ins.id and not ordered(x, ins.id, a.acc):
                        raise _fail(f"instruction {ins.id} ({ins.unit} {ins.op}, layer "
                                    f"{ins.layer!r}) {'writes' if is_write else 'reads'} bytes "
                                    f"[{a.lo}, {a.hi}) of allocation {a.alloc} "
                                    f"({allocs[a.alloc].label}) without waiting for "
                                    f"instruction {x} ({program.instrs[x].unit} "
                                    f"{program.instrs[x].op})")

    # DRAM: a load of bytes a store wrote, and a store over bytes loaded or stored before,
    # must happen after it (the same happens-before as above).
    dram = SegmentMap(1 << 62)
    for ins in program.instrs:
        if ins.op not in (LOAD, STORE):
            continue
        earlier: dict[str, int] = {}
        lo, hi = ins.dram_addr, ins.dram_addr + ins.nbytes
        if ins.op == STORE:
            dram.write(lo, hi, ins.unit, ins.id, False, earlier)
        else:
            dram.read(lo, hi, ins.unit, ins.id, earlier)
        for x in earlier.values():
            if x != ins.id and not ordered(x, ins.id, False):
                raise _fail(f"{ins.op} {ins.id} ({ins.unit}, {ins.tensor}) touches DRAM bytes "
                            f"[{lo}, {hi}) that instruction {x} ({program.instrs[x].op} on "
                            f"{program.instrs[x].unit}) also touches, without waiting for it")

    emitted = program.traffic_by_kind()
    if program.planned:
        for direction in ("read", "write"):
            for kind in TRAFFIC_KINDS:
                plan = program.planned.get(direction, {}).get(kind, 0)
                if plan != emitted[direction][kind]:
                    raise _fail(f"planned DRAM {direction} bytes of {kind} ({plan}) differ from "
                                f"the transfers emitted ({emitted[direction][kind]})")


def _check_fields(ins, allocs) -> None:
    for a in ins.reads + ins.writes:
        if not 0 <= a.alloc < len(allocs) or not 0 <= a.lo < a.hi <= allocs[a.alloc].size:
            raise _fail(f"instruction {ins.id} ({ins.unit} {ins.op}) accesses bytes "
                        f"[{a.lo}, {a.hi}) of allocation {a.alloc}, outside it")
    if ins.op == GEMM and min(ins.m, ins.k, ins.n) < 1:
        raise _fail(f"instruction {ins.id}: GEMM with empty shape {ins.m}x{ins.k}x{ins.n}")
    if ins.op == VEC and (ins.elements < 1 or ins.passes < 1 or ins.ops < 1):
        raise _fail(f"instruction {ins.id}: vector op with no work")
    if ins.op in (LOAD, STORE):
        side = ins.writes if ins.op == LOAD else ins.reads
        if ins.nbytes < 1 or len(side) != 1 or side[0].hi - side[0].lo != ins.nbytes:
            raise _fail(f"instruction {ins.id}: {ins.op} of {ins.nbytes} bytes must move exactly "
                        "one buffer range of that size")
        if ins.traffic not in TRAFFIC_KINDS:
            raise _fail(f"instruction {ins.id}: unknown traffic kind {ins.traffic!r}")
