"""The WaveCore machine in SimPy: one process per unit, one event per instruction phase.

Time is in integer cycles. Each unit (core, vector unit, DMA queue) runs its instruction
stream in order; an instruction waits for its dependencies, then takes the time the shared
timing formulas give (:mod:`wavecore_sim.timing`) plus any waiting for shared resources.

Shared resources are reservation tables (:mod:`.reservations`), served first come, first
served in simulated-time order (SimPy orders simultaneous events deterministically, so runs
are reproducible):

* HBM channels: a transfer's bytes split over channels by address; each channel serves its
  share after the transfers already queued on it, at ``hbm_gbps / hbm_channels``, and the
  data arrives ``hbm_latency_cycles`` after the last channel is done. Waiting behind other
  transfers is a DRAM stall. Reads and writes share the channels.
* Global-buffer banks: each bank has a read port and a write port of
  ``gbuf_port_bytes_per_cycle``. An instruction's buffer bytes split over banks by address
  (the bytes it reads as one range from its first read access, the bytes it writes from its
  first write access); if the ports cannot move them within the instruction's own duration
  it is stretched, and the stretch is a buffer-port stall. (Bytes are reserved at the start
  of the instruction's work, which models the aggregate bandwidth limit, not the exact
  interleaving of requests.)

A reservation table gives exactly the waiting times of a FIFO queue per channel or port while
costing one call per instruction instead of one event per channel request, which is what
lets a full ResNet-50 iteration simulate in seconds.

Cores model weight double-buffering across instructions: the first weight tile of the next
GEMM loads while the current GEMM's last fold streams, if its inputs are ready by then. A
core starts the next GEMM while the previous one's results drain out of the array; that
drain counts as busy.

Buffer space: an allocation is live from the start of its first user to the completion of
its last; live allocations never share bytes (a GEMM may take over bytes still draining from
earlier GEMMs of its own core), and the live bytes never exceed the buffer.

Waits are attributed: a unit waiting for a dependency is stalled on DRAM if the dependency
that completed last was a transfer and on another unit (``dependency``) if not; waiting for
channels and ports and a core's exposed weight loads are recorded per instruction too.

What does not depend on time is computed with numpy outside the event loop: per
instruction the GEMM cycle components, buffer bytes, vector cycles, the uncontended duration
of a transfer and the per-server cycles of each port and channel request (a few thousand
instructions of a unit at a time, so memory stays flat); after the run, the per-unit sums of
static values, the channel log (a channel is a FIFO queue, so its reservations follow from
the order in which transfers reserved) and the share of each HBM wait spent behind other
layers. The event loop itself only waits, queues and records, into ``array`` columns.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from ..config import HardwareConfig
from ..errors import InvariantError
from ..ir import Op, Program, UnitKind
from ..timing import (
    dma_ideal_cycles_many,
    dma_min_cycles_many,
    gemm_buffer_bytes,
    gemm_timing,
    vector_cycles,
)
from .hbm import HbmModel
from .reservations import InterleavedTable, fifo_starts, interleaved_shares, plans, service_cycles

STALL_CAUSES = ("dram", "buffer_port", "dependency", "weight_load")
CHUNK = 4096  # instructions of one unit whose static values are turned into lists at a time


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class UnitStats:
    """Cycle accounting of one unit: busy + stalls + idle = elapsed."""

    busy: int = 0
    stalls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STALL_CAUSES, 0))
    idle: int = 0
    instructions: int = 0
    macs: int = 0
    vector_ops: int = 0
    bytes_moved: int = 0


@dataclass
class ChannelLog:
    """Every HBM channel reservation, one row each, in reservation order: transfer
    ``instr`` held ``channel`` over ``[start, end)`` cycles to move ``nbytes``."""

    instr: np.ndarray = field(default_factory=_empty)
    channel: np.ndarray = field(default_factory=_empty)
    start: np.ndarray = field(default_factory=_empty)
    end: np.ndarray = field(default_factory=_empty)
    nbytes: np.ndarray = field(default_factory=_empty)

    def __len__(self) -> int:
        return len(self.instr)


@dataclass
class SimResult:
    """Everything a run measured. Times in cycles; per-instruction values are int64 arrays
    indexed by instruction id."""

    cycles: int
    units: dict[str, UnitStats]  # by unit name
    start: np.ndarray  # when it began (after its dependencies)
    end: np.ndarray  # when its unit was free again
    done: np.ndarray  # when its results were complete
    channel_log: ChannelLog
    # buffer bytes live after each change (an allocation made live or released), starting
    # at (0, 0) and ending at (cycles, bytes live then): the cycle of each change, in the
    # order the machine made them, and the bytes live after it
    occupancy_cycle: np.ndarray
    occupancy_bytes: np.ndarray
    peak_buffer_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    channel_bytes: int
    macs: int
    events: int
    moved: np.ndarray = field(default_factory=_empty)  # bytes through HBM
    gbuf_read_bytes: int = 0  # bytes read from the global buffer (cores, vector units, DMA)
    gbuf_write_bytes: int = 0
    vector_ops: int = 0
    # the parts of ``end - start`` that were not the instruction's own work: waiting for HBM
    # channels held by other transfers, for buffer bank ports, and for a core's first weight
    # tile (exposed when the core was not streaming as the instruction's data arrived)
    wait_hbm: np.ndarray = field(default_factory=_empty)
    wait_hbm_other: np.ndarray = field(default_factory=_empty)  # the part behind other layers
    wait_port: np.ndarray = field(default_factory=_empty)
    wait_weight: np.ndarray = field(default_factory=_empty)


def _int_array(n: int, value: int) -> array:
    return array("q", [value]) * n


def _to_numpy(a: array) -> np.ndarray:
    return np.frombuffer(a, dtype=np.int64).copy() if len(a) else _empty()


class Machine:
    """Simulates a compiled :class:`Program` on a :class:`HardwareConfig`."""

    def __init__(
        self,
        program: Program,
        cfg: HardwareConfig,
        ideal_memory: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.program, self.cfg = program, cfg
        self.ideal = ideal_memory
        self.on_progress = on_progress
        n = self.n = len(program)
        self.env = simpy.Environment()
        # per instruction, filled in as it runs (array("q"): 8 bytes an entry, fast to index)
        self.start = _int_array(n, -1)
        self.end = _int_array(n, -1)
        self.done = _int_array(n, -1)
        self.wait_hbm = _int_array(n, 0)
        self.wait_port = _int_array(n, 0)
        self.wait_weight = _int_array(n, 0)
        self.waiters: dict[int, simpy.Event] = {}
        ports = (cfg.gbuf_banks, cfg.gbuf_interleave_bytes, cfg.gbuf_port_bytes_per_cycle)
        self.read_ports = InterleavedTable(*ports)
        self.write_ports = InterleavedTable(*ports)
        self.channels = InterleavedTable(
            cfg.hbm_channels, cfg.hbm_interleave_bytes, cfg.hbm_channel_bytes_per_cycle
        )
        # the calibrated HBM (banks, rows, refresh, turnaround; :mod:`.hbm`), or None for the
        # ideal one (the FIFO table above after a fixed latency)
        self.calibrated = cfg.hbm_model == "calibrated"
        self.hbm = HbmModel(cfg) if self.calibrated and not ideal_memory else None
        # the transfers in the order they reserved the channels: with their start cycles
        # and static shares this gives every channel reservation after the run
        self.hbm_calls = array("q")
        self.events = 0
        # per unit index: cycles of drain counted busy, and dependency waits by cause
        units = len(program.units)
        self.drain_busy = [0] * units
        self.wait_dram_dep = [0] * units
        self.wait_other_dep = [0] * units
        self._static()
        self._liveness_tables()
        # buffer liveness: an allocation is live from its first user's start to its last
        # user's completion; live allocations must never share bytes
        c = program.cols
        self.alloc_offset = c["alloc_offset"].tolist()
        self.alloc_size = c["alloc_size"].tolist()
        self.live = bytearray(program.n_allocs)
        self.released_early: set[int] = set()
        self._users_of: tuple[np.ndarray, np.ndarray] | None = None
        self.live_starts: list[int] = []
        self.live_ids: list[int] = []
        self.live_bytes = 0
        self.peak = 0
        self.occ_cycle = array("q", [0])
        self.occ_bytes = array("q", [0])
        self.complete = self._completion()

    # ------------------------------------------------------------------ static values

    def _static(self) -> None:
        """Per-instruction values that do not depend on time and that both the event loop and
        the results need, as numpy columns. (The others are computed a chunk at a time, see
        :meth:`_chunks`, and again for the per-unit sums after the run.)"""
        program, cfg, c = self.program, self.cfg, self.program.cols
        n = self.n
        op = c["op"]
        self.is_gemm, self.is_vec = op == Op.GEMM, op == Op.VEC
        self.is_load, self.is_store = op == Op.LOAD, op == Op.STORE
        m, k, nn = (c[x].astype(np.int64) for x in ("m", "k", "n"))
        g_rd, g_wr = gemm_buffer_bytes(
            m, k, nn, c["accumulate"].astype(np.int64), c["out_bytes"].astype(np.int64), cfg
        )
        summary = program.access_summary()
        nbytes = c["nbytes"].astype(np.int64)
        # buffer bytes each instruction reads and writes (a vector op reads its inputs once
        # per pass); a transfer's buffer side is its whole size
        self.rd = np.select(
            [self.is_gemm, self.is_vec, self.is_store],
            [g_rd, summary["read_bytes"] * c["passes"], nbytes],
            0,
        )
        self.wr = np.select(
            [self.is_gemm, self.is_vec, self.is_load], [g_wr, summary["write_bytes"], nbytes], 0
        )
        xfer = self.is_load | self.is_store
        self.moved = np.where(xfer, np.maximum(nbytes, 0), 0)
        self.is_xfer = bytearray(xfer.astype(np.uint8).tobytes())
        self.dep_ids = memoryview(np.ascontiguousarray(c["dep_ids"], dtype=np.int64))
        # transfers are tagged by (layer, phase) to tell waits behind other layers apart
        pairs: dict[tuple[str, str], int] = {}
        step_tag = np.array(
            [pairs.setdefault((s.layer, s.phase), len(pairs)) for s in program.steps] or [0],
            dtype=np.int64,
        )
        self.tag = step_tag[c["step"]] if n else _empty()

    def _gemm_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Of GEMMs ``x``: the core's occupancy apart from waits (body), what of it counts as
        busy and what as exposed weight loads (see :meth:`_core`)."""
        c = self.program.cols
        t = gemm_timing(*(c[f][x].astype(np.int64) for f in ("m", "k", "n")), self.cfg)
        if self.cfg.weight_double_buffer:  # the drain follows the body
            return t.stream + t.exposed_loads, t.stream, t.exposed_loads
        return t.total, t.stream + t.drain, t.first_load

    def _addrs(self, side: str, x: np.ndarray) -> np.ndarray:
        """Buffer address of the first read (``side="read"``) or write access of each of
        ``x``: the ports see each side as one range from there. An instruction without
        buffer accesses (an ideal-memory GEMM) counts from address 0."""
        return np.maximum(self.program.access_summary()[f"{side}_addr"][x], 0)

    def _liveness_tables(self) -> None:
        """Which instructions can make an allocation live, and which can end its life.

        An allocation becomes live when its first user starts and dies when its last user
        completes. A unit starts its instructions in order and also completes them in order
        (a core too: every GEMM's results take the same drain after its stream), so only the
        first user of an allocation in each unit's stream can be the one to make it live, and
        only the last user in each stream the one to end it: the others need no bookkeeping.
        ``users_left`` counts the units still using each allocation."""
        program, c, n = self.program, self.program.cols, self.n
        allocs = max(program.n_allocs, 1)
        # distinct (instruction, allocation) pairs, in that order (accesses come grouped by
        # instruction, so a stable sort, which merges runs, is fast)
        key = np.sort(program.access_instr() * allocs + c["acc_alloc"], kind="stable")
        key = key[np.append(True, key[1:] != key[:-1])] if len(key) else key
        owner, alloc = key // allocs, key % allocs
        # kept (compactly) for the rare hand-over of bytes between GEMMs (_pending_users)
        self.user_owner, self.user_alloc = owner.astype(np.int32), alloc.astype(np.int32)
        units = max(len(program.units), 1)
        group = alloc * units + c["unit"].astype(np.int64)[owner]  # (allocation, unit)
        by_use = np.argsort(group, kind="stable")  # per group: its users in program order
        g = group[by_use]
        new_group = np.ones(len(key), dtype=bool)
        new_group[1:] = g[1:] != g[:-1]
        first = np.zeros(len(key), dtype=bool)
        first[by_use[new_group]] = True
        group_end = np.ones(len(key), dtype=bool)
        group_end[:-1] = new_group[1:]
        last = np.zeros(len(key), dtype=bool)
        last[by_use[group_end]] = True
        a = g // units
        self.users_left = np.bincount(a[new_group], minlength=program.n_allocs).tolist()
        bounds = np.arange(n + 1)
        self.acq = array("q", alloc[first].tobytes())
        self.acq_ptr = array("q", np.searchsorted(owner[first], bounds).astype(np.int64).tobytes())
        self.rel = array("q", alloc[last].tobytes())
        self.rel_ptr = array("q", np.searchsorted(owner[last], bounds).astype(np.int64).tobytes())

    def _chunks(self, ids: np.ndarray, kind: UnitKind) -> Iterator[tuple]:
        """The static values of instructions ``ids`` (one unit's stream) as lists, a chunk at
        a time, so memory stays flat however long the program is."""
        c, cfg = self.program.cols, self.cfg
        ptr = c["dep_ptr"]
        for lo in range(0, len(ids), CHUNK):
            x = ids[lo : lo + CHUNK]
            common = (x.tolist(), ptr[x].tolist(), ptr[x + 1].tolist())
            if kind == UnitKind.CORE:
                yield (
                    *common,
                    c["m"][x].tolist(),
                    self._gemm_parts(x)[0].tolist(),
                    self._port_plan(self._addrs("read", x), self.rd[x]),
                    self._port_plan(self._addrs("write", x), self.wr[x]),
                )
            elif kind == UnitKind.VEC:
                yield (
                    *common,
                    vector_cycles(c["ops"][x].astype(np.int64), c["passes"][x], cfg).tolist(),
                    self._port_plan(self._addrs("read", x), self.rd[x]),
                    self._port_plan(self._addrs("write", x), self.wr[x]),
                )
            else:  # a DMA queue, loads or stores
                load = self.is_load[x]
                addr, nbytes = c["dram_addr"][x], c["nbytes"][x]
                ports = self._port_plan(
                    np.where(load, self._addrs("write", x), self._addrs("read", x)),
                    np.where(load, self.wr[x], self.rd[x]),
                )
                if not self.calibrated:
                    yield (
                        *common,
                        load.tolist(),
                        dma_ideal_cycles_many(addr, nbytes, cfg).tolist(),
                        self._plan(self.channels, addr, nbytes),
                        ports,
                    )
                else:
                    yield (
                        *common,
                        load.tolist(),
                        dma_min_cycles_many(addr, nbytes, ~load, cfg).tolist(),
                        [None] * len(x)
                        if self.ideal
                        else plans(
                            addr,
                            nbytes,
                            cfg.hbm_channels,
                            cfg.hbm_interleave_bytes,
                            cfg.hbm_channel_bytes_per_cycle,
                            exact=True,
                        ),
                        ports,
                        addr.tolist(),
                        nbytes.tolist(),
                    )

    def _port_plan(self, addrs: np.ndarray, sizes: np.ndarray) -> list:
        return self._plan(self.read_ports, addrs, sizes)  # read and write ports alike

    def _plan(self, table: InterleavedTable, addrs: np.ndarray, sizes: np.ndarray) -> list:
        """Per request on ``table``: its plan (:func:`plans`)."""
        if self.ideal:
            return [None] * len(addrs)
        return plans(addrs, sizes, table.ways, table.granule, table.rate)

    # ------------------------------------------------------------------ bookkeeping

    def _completion(self) -> Callable[[int, int], None]:
        """The function that retires instruction ``iid`` at cycle ``now``: records it, ends
        the life of allocations it was the last user of, and wakes whoever waits for it.
        (A closure over its tables: it runs once per instruction.)"""
        done, rel, rel_ptr, users_left = self.done, self.rel, self.rel_ptr, self.users_left
        released_early, release, waiters = self.released_early, self._release, self.waiters
        on_progress, n = self.on_progress, self.n
        retired = 0

        def complete(iid: int, now: int) -> None:
            nonlocal retired
            done[iid] = now
            r0, r1 = rel_ptr[iid], rel_ptr[iid + 1]
            if r0 != r1:
                for a in rel[r0:r1]:
                    users_left[a] -= 1
                    if users_left[a] == 0 and a not in released_early:
                        release(a, now)
            ev = waiters.pop(iid, None)
            if ev is not None:
                ev.succeed()
            if on_progress:
                retired += 1
                if retired % 2048 == 0:
                    on_progress(retired, n)

        return complete

    def _acquire(self, iid: int, now: int) -> None:
        live, offset, size = self.live, self.alloc_offset, self.alloc_size
        starts, ids = self.live_starts, self.live_ids
        for a in self.acq[self.acq_ptr[iid] : self.acq_ptr[iid + 1]]:
            if live[a]:  # set at the first user's start, never cleared: one acquire each
                continue
            lo, hi = offset[a], offset[a] + size[a]
            while True:  # live allocations never overlap, so only the neighbours can clash
                i = bisect_left(starts, lo)
                clash = -1
                if i and offset[ids[i - 1]] + size[ids[i - 1]] > lo:
                    clash = ids[i - 1]
                elif i < len(ids) and starts[i] < hi and lo < starts[i] + size[ids[i]]:
                    clash = ids[i]
                if clash < 0:
                    break
                if not self._handoff(iid, clash, now):  # releases clash on success
                    self._overlap_error(iid, a, clash, now)
            starts.insert(i, lo)
            ids.insert(i, a)
            live[a] = 1
            self.live_bytes += size[a]
            if self.live_bytes > self.peak:
                self.peak = self.live_bytes
                if self.peak > self.cfg.gbuf_bytes:
                    raise InvariantError(
                        f"buffer over capacity at cycle {now}: "
                        f"{self.peak} > {self.cfg.gbuf_bytes} bytes"
                    )
            self.occ_cycle.append(now)
            self.occ_bytes.append(self.live_bytes)

    def _overlap_error(self, iid: int, a: int, clash: int, now: int) -> None:
        ins, program = self.program.instr(iid), self.program
        raise InvariantError(
            f"buffer overlap at cycle {now}: instruction {iid} ({ins.unit} {ins.op.name}, "
            f"layer {ins.layer!r}) starts using allocation {a} ({program.alloc(a).label}) "
            f"while allocation {clash} ({program.alloc(clash).label}) still holds the same "
            "bytes"
        )

    def _handoff(self, iid: int, other: int, now: int) -> bool:
        """A GEMM may take over bytes whose last users are earlier GEMMs of its own core that
        have finished streaming: their remaining results drain out of the array before any of
        this GEMM's, in order. The old allocation is released now."""
        if not self.is_gemm[iid]:
            return False
        unit = self.program.cols["unit"]
        for u in self._pending_users(other):
            if unit[u] != unit[iid] or not 0 <= self.end[u] <= now:
                return False
        self.released_early.add(other)
        self._release(other, now)
        return True

    def _pending_users(self, alloc: int) -> list[int]:
        if self._users_of is None:
            order = np.argsort(self.user_alloc, kind="stable")  # by allocation, then id
            ptr = np.searchsorted(self.user_alloc[order], np.arange(self.program.n_allocs + 1))
            self._users_of = (self.user_owner[order], ptr)
        users, ptr = self._users_of
        return [u for u in users[ptr[alloc] : ptr[alloc + 1]].tolist() if self.done[u] < 0]

    def _release(self, a: int, now: int) -> None:
        i = bisect_left(self.live_starts, self.alloc_offset[a])
        while self.live_ids[i] != a:
            i += 1
        del self.live_starts[i]
        del self.live_ids[i]
        self.live_bytes -= self.alloc_size[a]
        self.occ_cycle.append(now)
        self.occ_bytes.append(self.live_bytes)

    # ------------------------------------------------------------------ unit processes
    #
    # The two loops below (cores; the in-order vector units and DMA queues) open alike:
    # wait for each dependency not yet complete, note when the last completed (``ready``)
    # and which one it was (the first, if several tie), charge the unit's wait to it (DRAM
    # if it is a transfer, another unit if not; a core's draining results count as busy)
    # and make its buffer space live. This is written out in each because it is the
    # per-instruction hot path, where a helper generator per instruction costs more than
    # the work itself.

    def _core(self, unit: int, ids: np.ndarray):
        env, done, dep_ids, is_xfer = self.env, self.done, self.dep_ids, self.is_xfer
        waiters, acquire, complete = self.waiters, self._acquire, self.complete
        acq_ptr = self.acq_ptr
        start, end, wait_port, wait_weight = self.start, self.end, self.wait_port, self.wait_weight
        reserve_rd, reserve_wr = self.read_ports.reserve, self.write_ports.reserve
        r, double, ideal = self.cfg.array_rows, self.cfg.weight_double_buffer, self.ideal
        # double-buffered, a GEMM's results drain after its stream, the same for every GEMM
        tail = gemm_timing(1, 1, 1, self.cfg).drain if double else 0
        free = 0  # when the array can take the next stream
        busy_until = 0  # when the previous instruction's results finish draining
        last_fold_start = 0  # when the previous instruction's last fold began streaming
        events = drain_busy = wait_dram = wait_other = 0
        now = 0  # the simulated time, as of the process's last resumption
        for chunk in self._chunks(ids, self.program.units[unit].kind):
            for i, q0, q1, m, body, read, write in zip(*chunk, strict=True):
                ready = latest = -1
                for d in dep_ids[q0:q1]:
                    t = done[d]
                    if t < 0:
                        events += 1
                        ev = waiters.get(d)
                        if ev is None:
                            ev = waiters[d] = env.event()
                        yield ev
                        t = done[d]
                        now = env.now
                    if t > ready:
                        ready, latest = t, d
                if ready < 0:
                    ready = 0
                begin = max(free if double else busy_until, ready)
                if begin > free:
                    drained = (busy_until if busy_until < begin else begin) - free
                    if drained > 0:
                        drain_busy += drained
                        rest = begin - free - drained
                    else:
                        rest = begin - free
                    if rest:
                        if latest >= 0 and is_xfer[latest]:
                            wait_dram += rest
                        else:
                            wait_other += rest
                start[i] = begin
                if acq_ptr[i] != acq_ptr[i + 1]:
                    acquire(i, begin)
                if double:  # first tile's weights load during the previous GEMM's last fold
                    load_start = last_fold_start if last_fold_start > ready else ready
                    stream_start = max(begin, load_start + r)
                else:  # every fold: load, stream, drain, nothing overlapped
                    stream_start = begin
                stream_end = stream_start + body
                if not ideal:  # stretched if the ports cannot keep up
                    x = reserve_rd(stream_start, read)
                    if x > stream_end:
                        stream_end = x
                    x = reserve_wr(stream_start, write)
                    if x > stream_end:
                        stream_end = x
                finish = stream_end + tail
                wait_port[i] = stream_end - (stream_start + body)
                wait_weight[i] = stream_start - begin
                free = end[i] = stream_end
                busy_until = finish
                last_fold_start = stream_end - m
                events += 1
                if stream_end > now:
                    yield env.timeout(stream_end - now)
                    now = stream_end
                if finish > stream_end:
                    env.timeout(finish - stream_end).callbacks.append(
                        lambda _e, i=i, t=finish: complete(i, t)
                    )
                else:
                    complete(i, finish)
        self.drain_busy[unit] += drain_busy + max(0, busy_until - free)  # + the last drain
        self.wait_dram_dep[unit] += wait_dram
        self.wait_other_dep[unit] += wait_other
        self.events += events

    def _in_order(self, unit: int, ids: np.ndarray, service: Callable[..., int]):
        """A unit that finishes each instruction before starting the next (a vector unit, a
        DMA queue). ``service(i, begin, *static)`` reserves what instruction ``i`` needs from
        ``begin`` and returns when it is done (``static``: its precomputed values)."""
        env, done, dep_ids, is_xfer = self.env, self.done, self.dep_ids, self.is_xfer
        waiters, acquire, complete = self.waiters, self._acquire, self.complete
        acq_ptr, start, end = self.acq_ptr, self.start, self.end
        free = events = wait_dram = wait_other = now = 0
        for chunk in self._chunks(ids, self.program.units[unit].kind):
            for i, q0, q1, *static in zip(*chunk, strict=True):
                ready = latest = -1
                for d in dep_ids[q0:q1]:
                    t = done[d]
                    if t < 0:
                        events += 1
                        ev = waiters.get(d)
                        if ev is None:
                            ev = waiters[d] = env.event()
                        yield ev
                        t = done[d]
                        now = env.now
                    if t > ready:
                        ready, latest = t, d
                if ready > free:
                    if is_xfer[latest]:
                        wait_dram += ready - free
                    else:
                        wait_other += ready - free
                    begin = ready
                else:
                    begin = free
                start[i] = begin
                if acq_ptr[i] != acq_ptr[i + 1]:
                    acquire(i, begin)
                free = end[i] = finish = service(i, begin, *static)
                events += 1
                yield env.timeout(finish - now)
                now = finish
                complete(i, finish)
        self.wait_dram_dep[unit] += wait_dram
        self.wait_other_dep[unit] += wait_other
        self.events += events

    def _vector_op(self, i: int, begin: int, work: int, read: Any, write: Any) -> int:
        """A vector op: its lane work, stretched if the buffer ports cannot keep up."""
        finish = begin + work
        if not self.ideal:
            finish = max(
                finish, self.read_ports.reserve(begin, read), self.write_ports.reserve(begin, write)
            )
        self.wait_port[i] = finish - begin - work
        return finish

    def _transfer(
        self, i: int, begin: int, load: bool, uncontended: int, channels: Any, ports: Any, *_: Any
    ) -> int:
        """A DMA transfer: its HBM channels' FIFO service plus latency, and the buffer ports
        on the buffer side, whichever finishes later."""
        if self.ideal:
            return begin + uncontended
        self.hbm_calls.append(i)
        hbm_end = self.channels.reserve(begin, channels) + self.cfg.hbm_latency_cycles
        self.wait_hbm[i] = hbm_end - begin - uncontended
        ports_end = (self.write_ports if load else self.read_ports).reserve(begin, ports)
        finish = max(hbm_end, ports_end)
        self.wait_port[i] = finish - hbm_end
        return finish

    def _transfer_calibrated(
        self,
        i: int,
        begin: int,
        load: bool,
        least: int,
        channels: Any,
        ports: Any,
        addr: int,
        nbytes: int,
    ) -> int:
        """A DMA transfer on the calibrated HBM (:class:`.hbm.HbmModel`), rounded up to a
        whole cycle, and the buffer ports on the buffer side, whichever finishes later.
        ``least``: the fewest cycles it can take; what it takes beyond is a DRAM wait."""
        self.hbm_calls.append(i)
        done = self.hbm.reserve(begin, addr, nbytes, not load, channels)
        hbm_end = -int(-done // 1)
        if hbm_end < begin + least:  # (float rounding never makes it faster than that)
            hbm_end = begin + least
        self.wait_hbm[i] = hbm_end - begin - least
        ports_end = (self.write_ports if load else self.read_ports).reserve(begin, ports)
        finish = max(hbm_end, ports_end)
        self.wait_port[i] = finish - hbm_end
        return finish

    # ------------------------------------------------------------------ results

    def _channel_log(self) -> tuple[ChannelLog, np.ndarray, np.ndarray]:
        """Every channel reservation, in order (transfer by transfer as they reserved, each
        on its channels in ascending order); the transfers in that order and the first row
        of each.

        Only the order of the transfers was recorded: a channel is a FIFO queue, so each
        reservation's start follows from the transfer's start and the static service cycles
        of the earlier ones on that channel (:func:`fifo_starts`)."""
        if self.ideal:
            return ChannelLog(), _empty(), _empty()
        cfg, c = self.cfg, self.program.cols
        calls = _to_numpy(self.hbm_calls)
        shares = interleaved_shares(
            c["dram_addr"][calls], c["nbytes"][calls], cfg.hbm_channels, cfg.hbm_interleave_bytes
        )
        rows, channel = np.nonzero(shares > 0)
        nbytes = shares[rows, channel]
        if self.hbm is not None:  # each channel of a transfer: from when it was done there
            # back by its share's service, not before the transfer began (transfers
            # interleaved on a channel overlap), in reservation order
            # when its channels were done: its HBM end (its end less any port wait) less the
            # DRAM-core and on-chip latency of its direction
            hbm = self.hbm
            latency = np.where(self.is_store[calls], hbm.write_done, hbm.read_done)
            hbm_end = _to_numpy(self.end)[calls] - _to_numpy(self.wait_port)[calls]
            end = np.floor(hbm_end - latency).astype(np.int64)[rows]
            for ch in range(cfg.hbm_channels):  # a channel's reservations end in order
                on = np.flatnonzero(channel == ch)
                end[on] = np.maximum.accumulate(end[on]) if len(on) else end[on]
            begin = _to_numpy(self.start)[calls][rows]
            served = service_cycles(nbytes, cfg.hbm_channel_bytes_per_cycle)
            start = np.minimum(np.maximum(begin, end - served), end)
            first_row = np.searchsorted(rows, np.arange(len(calls)))
            log = ChannelLog(calls[rows], channel.astype(np.int64), start, end, nbytes)
            return log, calls, first_row
        cycles = service_cycles(nbytes, cfg.hbm_channel_bytes_per_cycle)
        begin = _to_numpy(self.start)[calls][rows]
        start = np.zeros(len(rows), dtype=np.int64)
        for ch in range(cfg.hbm_channels):
            on = np.flatnonzero(channel == ch)
            start[on] = fifo_starts(begin[on], cycles[on])
        first_row = np.searchsorted(rows, np.arange(len(calls)))
        return (
            ChannelLog(calls[rows], channel.astype(np.int64), start, start + cycles, nbytes),
            calls,
            first_row,
        )

    def _wait_behind_others(
        self, log: ChannelLog, calls: np.ndarray, first_row: np.ndarray, wait_hbm: np.ndarray
    ) -> np.ndarray:
        """Per instruction, the cycles of its wait for its critical HBM channel (the one
        that finished last; the lowest if several tie) that the channel spent on transfers
        of other (layer, phase) pairs: the contention a per-layer model cannot see. At most
        its whole HBM wait.

        A transfer that waited on channel ``ch`` over ``[begin, until)`` (``until`` its own
        start there): the earlier rows on ``ch`` that end after ``begin`` overlap that
        interval (a channel's reservations end in increasing order)."""
        out = np.zeros(self.n, dtype=np.int64)
        counts = np.diff(np.append(first_row, len(log)))
        has = counts > 0  # an empty transfer reserves nothing and never waits
        calls, first_row = calls[has], first_row[has]
        if not len(calls):
            return out
        # the critical row of each transfer: the first of its rows with the latest end
        row_call = np.repeat(np.arange(len(calls)), counts[has])
        latest = np.flatnonzero(log.end == np.maximum.reduceat(log.end, first_row)[row_call])
        critical = latest[np.append(True, row_call[latest][1:] != row_call[latest][:-1])]
        begin = _to_numpy(self.start)[calls]
        until = log.start[critical]
        waited = until > begin
        if not waited.any():
            return out
        critical, begin, until = critical[waited], begin[waited], until[waited]
        instr, ch, row = calls[waited], log.channel[critical], first_row[waited]
        # the log's rows grouped by channel, in log order within one (so with increasing
        # ends too): searching (channel, row) and (channel, end) keys finds, per wait, the
        # earlier rows of its channel and the first of them ending after begin
        by_channel = np.argsort(log.channel, kind="stable")
        channel = log.channel[by_channel]
        row_key = channel * (len(log) + 1) + by_channel
        span = int(log.end.max()) + 1
        end_key = channel * span + log.end[by_channel]
        upto = np.searchsorted(row_key, ch * (len(log) + 1) + row)
        frm = np.minimum(np.searchsorted(end_key, ch * span + begin, "right"), upto)
        counts = upto - frm
        which = np.repeat(np.arange(len(counts)), counts)
        pos = (
            np.arange(counts.sum())
            - np.repeat(np.cumsum(counts) - counts, counts)
            + np.repeat(frm, counts)
        )
        other_row = by_channel[pos]
        overlap = np.minimum(log.end[other_row], until[which]) - np.maximum(
            log.start[other_row], begin[which]
        )
        other = self.tag[log.instr[other_row]] != self.tag[instr[which]]
        total = np.bincount(
            which, weights=np.where(other, np.maximum(overlap, 0), 0), minlength=len(counts)
        ).astype(np.int64)
        out[instr] = np.minimum(wait_hbm[instr], total)
        return out

    # ------------------------------------------------------------------ run

    def run(self) -> SimResult:
        program, env, c = self.program, self.env, self.program.cols
        unit_col = c["unit"]
        order = np.argsort(unit_col, kind="stable")
        cuts = np.searchsorted(unit_col[order], np.arange(len(program.units) + 1))
        streams = [order[cuts[u] : cuts[u + 1]] for u in range(len(program.units))]
        for u, unit in enumerate(program.units):  # processes start in unit order
            if not len(streams[u]):
                continue
            if unit.kind == UnitKind.CORE:
                env.process(self._core(u, streams[u]))
            elif unit.kind == UnitKind.VEC:
                env.process(self._in_order(u, streams[u], self._vector_op))
            else:
                transfer = self._transfer if self.hbm is None else self._transfer_calibrated
                env.process(self._in_order(u, streams[u], transfer))
        env.run()
        done = _to_numpy(self.done)
        if (done < 0).any():
            self._deadlock(streams, done)
        cycles = int(done.max(initial=0))
        self.occ_cycle.append(cycles)
        self.occ_bytes.append(self.live_bytes)
        log, calls, first_row = self._channel_log()
        wait_hbm, wait_port, wait_weight = (
            _to_numpy(a) for a in (self.wait_hbm, self.wait_port, self.wait_weight)
        )
        stats = self._unit_stats(cycles, wait_hbm, wait_port, wait_weight)
        rd, wr = program.dram_bytes()
        vops = sum(st.vector_ops for st in stats.values())
        return SimResult(
            cycles,
            stats,
            _to_numpy(self.start),
            _to_numpy(self.end),
            done,
            log,
            _to_numpy(self.occ_cycle),
            _to_numpy(self.occ_bytes),
            self.peak,
            rd,
            wr,
            int(self.moved.sum()),
            program.macs(),
            self.events,
            self.moved,
            int(self.rd.sum()),
            int(self.wr.sum()),
            vops,
            wait_hbm,
            self._wait_behind_others(log, calls, first_row, wait_hbm),
            wait_port,
            wait_weight,
        )

    def _unit_stats(
        self, cycles: int, wait_hbm: np.ndarray, wait_port: np.ndarray, wait_weight: np.ndarray
    ) -> dict[str, UnitStats]:
        """Per unit: the static sums over its instructions plus the waits recorded."""
        c, units = self.program.cols, len(self.program.units)
        unit = c["unit"].astype(np.int64)

        def per_unit(values: np.ndarray, mask: np.ndarray | None = None) -> list[int]:
            v = values if mask is None else np.where(mask, values, 0)
            return np.bincount(unit, weights=v, minlength=units).astype(np.int64).tolist()

        count = np.bincount(unit, minlength=units).tolist()
        m, k, nn = (c[x].astype(np.int64) for x in ("m", "k", "n"))
        gemms, vecs = np.flatnonzero(self.is_gemm), np.flatnonzero(self.is_vec)
        xfers = np.flatnonzero(self.is_load | self.is_store)
        _, core_busy, core_weight = self._gemm_parts(gemms)
        work = np.zeros(self.n, dtype=np.int64)  # busy apart from draining: the own work
        work[gemms] = core_busy
        work[vecs] = vector_cycles(c["ops"][vecs].astype(np.int64), c["passes"][vecs], self.cfg)
        if not self.calibrated:
            work[xfers] = dma_ideal_cycles_many(c["dram_addr"][xfers], c["nbytes"][xfers], self.cfg)
        else:
            work[xfers] = dma_min_cycles_many(
                c["dram_addr"][xfers], c["nbytes"][xfers], self.is_store[xfers], self.cfg
            )
        weight = wait_weight.copy()
        weight[gemms] += core_weight
        busy, macs = per_unit(work), per_unit(m * k * nn, self.is_gemm)
        vops = per_unit(c["ops"].astype(np.int64), self.is_vec)
        moved = per_unit(c["nbytes"].astype(np.int64), self.is_load | self.is_store)
        weight = per_unit(weight, self.is_gemm)
        port, hbm = per_unit(wait_port), per_unit(wait_hbm)
        out = {}
        for u, name in enumerate(self.program.unit_names):
            st = UnitStats(
                busy[u] + self.drain_busy[u],
                instructions=count[u],
                macs=macs[u],
                vector_ops=vops[u],
                bytes_moved=moved[u],
            )
            st.stalls.update(
                dram=hbm[u] + self.wait_dram_dep[u],
                buffer_port=port[u],
                dependency=self.wait_other_dep[u],
                weight_load=weight[u],
            )
            st.idle = cycles - st.busy - sum(st.stalls.values())
            out[name] = st
        return out

    def _deadlock(self, streams: list[np.ndarray], done: np.ndarray) -> None:
        c, heads = self.program.cols, []
        for u, ids in enumerate(streams):
            blocked = ids[done[ids] < 0]
            if len(blocked):
                b = int(blocked[0])
                deps = c["dep_ids"][c["dep_ptr"][b] : c["dep_ptr"][b + 1]]
                waits = [int(d) for d in deps if done[d] < 0]
                heads.append(f"{self.program.units[u]}: instruction {b} waits for {waits[:3]}")
        raise InvariantError(
            f"deadlock: {int((done < 0).sum())} instructions never ran; " + "; ".join(heads[:4])
        )


def simulate(
    program: Program,
    cfg: HardwareConfig,
    ideal_memory: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Run ``program`` on the machine and check the run's invariants."""
    from .invariants import check_invariants

    result = Machine(program, cfg, ideal_memory, on_progress).run()
    check_invariants(program, cfg, result)
    return result
