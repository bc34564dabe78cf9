"""Dependency inference from buffer accesses (a compile-time scoreboard).

Every instruction declares the byte ranges it reads and writes. The scoreboard keeps, per
allocation, which instructions last wrote and read each range, and derives the
dependencies: read-after-write, write-after-read, write-after-write. Accumulating writes
(``acc``) commute with each other. Reusing buffer space after a free makes the first users of
the new allocation wait for every last user of the old one (the "guard").

DRAM byte ranges are tracked the same way, so a load never overtakes the store that wrote
its bytes (they may sit on different DMA queues).

Dependencies on an earlier instruction of the *same* unit are dropped when program order
already implies them: DMA queues and vector units complete in order; a core's accumulation
into its own partial sums is forwarded inside the array pipeline (``acc`` accesses).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from ..ir import Access


@dataclass
class _Seg:
    lo: int
    hi: int
    writers: dict[str, int] = field(default_factory=dict)  # unit -> latest instruction id
    readers: dict[str, int] = field(default_factory=dict)
    acc_only: bool = False  # every current writer was an accumulating write
    base: dict[str, int] = field(default_factory=dict)  # what every accumulating writer awaits

    def clone(self, lo: int, hi: int) -> _Seg:
        return _Seg(lo, hi, dict(self.writers), dict(self.readers), self.acc_only,
                    dict(self.base))


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
            segs[i:i + 1] = [s.clone(s.lo, lo), s.clone(lo, s.hi)]
            starts.insert(i + 1, lo)
            i += 1
        elif s.hi <= lo:
            i += 1
        out = []
        while i < len(segs) and segs[i].lo < hi:
            s = segs[i]
            if s.hi > hi:
                segs[i:i + 1] = [s.clone(s.lo, hi), s.clone(hi, s.hi)]
                starts.insert(i + 1, hi)
                s = segs[i]
            out.append(s)
            i += 1
        return out

    def assign(self, lo: int, hi: int, writers: dict[str, int]) -> None:
        """Make ``[lo, hi)`` one segment whose writers are ``writers`` (no readers)."""
        inside = self._split(lo, hi)
        i = bisect_right(self.starts, lo) - 1
        self.segs[i:i + len(inside)] = [_Seg(lo, hi, dict(writers))]
        self.starts[i:i + len(inside)] = [lo]

    def read(self, lo: int, hi: int, unit: str, iid: int, deps: dict[str, int]) -> None:
        for s in self._split(lo, hi):
            _merge(deps, s.writers)
            s.readers[unit] = iid

    def write(self, lo: int, hi: int, unit: str, iid: int, acc: bool,
              deps: dict[str, int]) -> None:
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

    def __init__(self, capacity: int, dram_bytes: int = 1 << 62) -> None:
        self.capacity = capacity
        self.maps: dict[int, SegmentMap] = {}
        self.dram = SegmentMap(dram_bytes)  # DRAM byte ranges: stores and loads order too
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

    def deps_for(self, iid: int, unit: str, reads: tuple[Access, ...],
                 writes: tuple[Access, ...], in_order: bool,
                 dram: tuple[int, int, bool] | None = None) -> tuple[int, ...]:
        """Record the accesses of instruction ``iid`` and return its dependencies.

        ``dram`` is ``(lo, hi, is_write)`` for a transfer: a load of bytes an earlier store
        wrote waits for it, and a store waits for earlier loads and stores of its bytes."""
        deps: dict[str, int] = {}
        own: dict[str, int] = {}
        if dram is not None:
            lo, hi, is_write = dram
            if is_write:
                self.dram.write(lo, hi, unit, iid, False, deps)
            else:
                self.dram.read(lo, hi, unit, iid, deps)
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
