"""Dependency inference from buffer accesses (a compile-time scoreboard).

Every instruction declares the byte ranges it reads and writes. The scoreboard keeps, per
allocation, which instructions last wrote and read each range, and derives the
dependencies: read-after-write, write-after-read, write-after-write. Accumulating writes
(``acc``) commute with each other. Reusing buffer space after a free makes the first users of
the new allocation wait for every last user of the old one (the "guard").

DRAM byte ranges are tracked the same way, so a load never overtakes the store that wrote
its bytes (they may sit on different DMA queues) and a store into reused DRAM bytes waits for
the last loads of the tensor that held them. That pass runs over the finished program's
transfers (:func:`add_dram_dependencies`), so sub-batch steps replayed by the lowering get
their DRAM orderings the same way as the steps it emitted one by one.

Dependencies on an earlier instruction of the *same* unit are dropped when program order
already implies them: DMA queues and vector units complete in order; a core's accumulation
into its own partial sums is forwarded inside the array pipeline (``acc`` accesses).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, replace

import numpy as np

from ..ir import Access, Op, Program


@dataclass
class _Seg:
    lo: int
    hi: int
    writers: dict[str, int] = field(default_factory=dict)  # unit -> latest instruction id
    readers: dict[str, int] = field(default_factory=dict)
    acc_only: bool = False  # every current writer was an accumulating write
    base: dict[str, int] = field(default_factory=dict)  # what every accumulating writer awaits

    def clone(self, lo: int, hi: int) -> _Seg:
        return _Seg(lo, hi, dict(self.writers), dict(self.readers), self.acc_only, dict(self.base))


class SegmentMap:
    """Non-overlapping segments ``[lo, hi)`` covering ``[0, size)``, sorted by ``lo``."""

    def __init__(self, size: int, guard: dict[str, int] | None = None) -> None:
        self.segs = [_Seg(0, size, dict(guard or {}))]
        self.starts = [0]  # segs[i].lo, kept in step for bisection

    def _split(self, lo: int, hi: int) -> list[_Seg]:
        """Split so that ``lo`` and ``hi`` fall on boundaries; return the segments inside."""
        segs, starts = self.segs, self.starts
        i = max(0, bisect_right(starts, lo) - 1)
        s = segs[i]
        if s.lo < lo < s.hi:
            segs[i : i + 1] = [s.clone(s.lo, lo), s.clone(lo, s.hi)]
            starts.insert(i + 1, lo)
            i += 1
        elif s.hi <= lo:
            i += 1
        out = []
        while i < len(segs) and segs[i].lo < hi:
            s = segs[i]
            if s.hi > hi:
                segs[i : i + 1] = [s.clone(s.lo, hi), s.clone(hi, s.hi)]
                starts.insert(i + 1, hi)
                s = segs[i]
            out.append(s)
            i += 1
        return out

    def assign(self, lo: int, hi: int, writers: dict[str, int]) -> None:
        """Make ``[lo, hi)`` one segment whose writers are ``writers`` (no readers)."""
        inside = self._split(lo, hi)
        i = bisect_right(self.starts, lo) - 1
        self.segs[i : i + len(inside)] = [_Seg(lo, hi, dict(writers))]
        self.starts[i : i + len(inside)] = [lo]

    def read(self, lo: int, hi: int, unit: str, iid: int, deps: dict[str, int]) -> None:
        for s in self._split(lo, hi):
            _merge(deps, s.writers)
            s.readers[unit] = iid

    def write(self, lo: int, hi: int, unit: str, iid: int, acc: bool, deps: dict[str, int]) -> None:
        inside = self._split(lo, hi)
        if not acc and len(inside) > 1:  # a plain write replaces everything: one segment
            for s in inside:
                _merge(deps, s.readers)
                _merge(deps, s.writers)
            self.assign(lo, hi, {unit: iid})
            return
        for s in inside:
            _merge(deps, s.readers)
            if acc and s.acc_only:  # commutes with the other accumulations, not with the past
                _merge(deps, s.base)
                s.writers[unit] = iid
                continue
            _merge(deps, s.writers)
            if acc:
                s.base = dict(s.writers)
                _merge(s.base, s.readers)
            else:
                s.readers = {}
            s.writers = {unit: iid}
            s.acc_only = acc

    def users(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.segs:
            _merge(out, s.writers)
            _merge(out, s.readers)
        return out


def _merge(into: dict[str, int], other: dict[str, int]) -> None:
    for unit, iid in other.items():
        if into.get(unit, -1) < iid:
            into[unit] = iid


class Scoreboard:
    """Tracks buffer allocations and derives each new instruction's dependencies."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.maps: dict[int, SegmentMap] = {}
        self.space = SegmentMap(capacity)  # last users of freed space, by buffer address
        self.placement: dict[int, tuple[int, int]] = {}

    def on_alloc(self, alloc_id: int, offset: int, size: int) -> None:
        guard: dict[str, int] = {}
        for s in self.space._split(offset, offset + size):
            _merge(guard, s.writers)
        self.maps[alloc_id] = SegmentMap(size, guard)
        self.placement[alloc_id] = (offset, size)

    def on_free(self, alloc_id: int) -> None:
        offset, size = self.placement[alloc_id]
        self.space.assign(offset, offset + size, self.maps.pop(alloc_id).users())

    def shift(self, floor: int, by: int) -> None:
        """Move every recorded instruction id at or above ``floor`` by ``by`` (the lowering
        replayed that many instructions as periods of the block that recorded them)."""
        for segmap in (*self.maps.values(), self.space):
            for seg in segmap.segs:
                for users in (seg.writers, seg.readers, seg.base):
                    for unit, iid in users.items():
                        if iid >= floor:
                            users[unit] = iid + by

    def deps_for(
        self,
        iid: int,
        unit: int,
        reads: tuple[Access, ...],
        writes: tuple[Access, ...],
        in_order: bool,
    ) -> tuple[int, ...]:
        """Record the buffer accesses of instruction ``iid`` (on unit index ``unit``) and
        return its dependencies."""
        deps: dict[int, int] = {}
        own: dict[int, int] = {}
        for a in reads:
            target = own if a.acc else deps
            self.maps[a.alloc].read(a.lo, a.hi, unit, iid, target)
        for a in writes:
            target = own if a.acc else deps
            self.maps[a.alloc].write(a.lo, a.hi, unit, iid, a.acc, target)
        own.pop(unit, None)
        _merge(deps, own)
        if in_order:
            deps.pop(unit, None)
        return tuple(sorted(v for v in deps.values() if v != iid))


def add_dram_dependencies(program: Program) -> Program:
    """``program`` with the DRAM orderings of its transfers added: a load of bytes an earlier
    store wrote waits for it, and a store waits for earlier loads and stores of its bytes.
    As for buffer accesses, an instruction keeps one dependency per unit (the latest) and
    none on its own in-order DMA queue."""
    c = program.cols
    op, unit = c["op"], c["unit"]
    transfers = np.flatnonzero(op >= Op.LOAD)
    arena, arena_base = _arenas(c["region_addr"], c["region_size"])
    # one segment map per arena: address ranges that no two arenas share, so each map stays
    # as small as the tensors that take turns in it
    maps: dict[int, SegmentMap] = {}
    extra_instr: list[int] = []
    extra_dep: list[int] = []
    for i, u, o, lo, n, a in zip(
        transfers.tolist(),
        unit[transfers].tolist(),
        op[transfers].tolist(),
        c["dram_addr"][transfers].tolist(),
        c["nbytes"][transfers].tolist(),
        arena[c["region"][transfers]].tolist(),
        strict=True,
    ):
        dram = maps.get(a)
        if dram is None:
            dram = maps[a] = SegmentMap(1 << 62)
        deps: dict[int, int] = {}
        lo -= arena_base[a]
        if o == Op.STORE:
            dram.write(lo, lo + n, u, i, False, deps)
        else:
            dram.read(lo, lo + n, u, i, deps)
        for du, d in deps.items():
            if du != u and d != i:
                extra_instr.append(i)
                extra_dep.append(d)
    if not extra_instr:
        return program
    n = len(program)
    inst = np.concatenate([program.dep_instr(), np.asarray(extra_instr, dtype=np.int64)])
    dep = np.concatenate([c["dep_ids"], np.asarray(extra_dep, dtype=np.int64)])
    # one dependency per (instruction, unit of the dependency): the latest
    key = inst * len(program.units) + unit[dep]
    order = np.lexsort((dep, key))
    key, dep, inst = key[order], dep[order], inst[order]
    last = np.r_[key[1:] != key[:-1], True]
    inst, dep = inst[last], dep[last]
    order = np.lexsort((dep, inst))
    inst, dep = inst[order], dep[order]
    cols = dict(c)
    cols["dep_ids"] = dep
    cols["dep_ptr"] = np.r_[0, np.cumsum(np.bincount(inst, minlength=n))].astype(np.int64)
    return replace(program, cols=cols, _cache={})


def _arenas(addr: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Group DRAM regions whose address ranges chain into overlaps: per region its arena,
    and each arena's lowest address."""
    arena = np.zeros(len(addr), dtype=np.int64)
    bases: list[int] = []
    end = -1
    for r in np.argsort(addr, kind="stable").tolist():
        if addr[r] >= end:
            bases.append(int(addr[r]))
        arena[r] = len(bases) - 1
        end = max(end, int(addr[r] + size[r]))
    return arena, bases
