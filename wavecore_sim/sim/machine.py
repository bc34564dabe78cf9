"""The WaveCore machine in SimPy: one process per unit, one event per instruction phase.

Time is in integer cycles. Each unit (core, vector unit, DMA queue) runs its instruction
stream in order; an instruction waits for its dependencies, then takes the time the shared
timing formulas give (:mod:`wavecore_sim.timing`) plus any waiting for shared resources.

Shared resources are reservation tables, served first come, first served in simulated-time
order (SimPy orders simultaneous events deterministically, so runs are reproducible):

* HBM channels: a transfer's bytes split over channels by address; each channel serves its
  share after the transfers already queued on it, at ``hbm_gbps / hbm_channels``. Waiting
  behind other transfers is a DRAM stall. Reads and writes share the channels.
* Global-buffer banks: each bank has a read port and a write port of
  ``gbuf_port_bytes_per_cycle``. An instruction's buffer bytes split over banks by address;
  if the ports cannot move them within the instruction's own duration it is stretched, and the
  stretch is a buffer-port stall. (Bytes are reserved at the start of the instruction, which
  models the aggregate bandwidth limit, not the exact interleaving of requests.)

A reservation table gives exactly the waiting times of a FIFO queue per channel or port while
costing one event per instruction instead of one per channel request, which is what lets a
full ResNet-50 iteration simulate in seconds.

Cores model weight double-buffering across instructions: the first weight tile of the next
GEMM loads while the current GEMM's last fold streams, if its inputs are ready by then.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

import simpy

from ..compiler.program import GEMM, LOAD, STORE, Instr, Program, unit_kind
from ..config import HardwareConfig
from ..errors import InvariantError
from ..timing import (
    gemm_buffer_bytes,
    gemm_timing,
    hbm_service_cycles,
    split_interleaved,
    vector_cycles,
)

STALL_CAUSES = ("dram", "buffer_port", "dependency", "weight_load")


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
class SimResult:
    """Everything a run measured. Times in cycles."""

    cycles: int
    units: dict[str, UnitStats]
    start: list[int]  # per instruction: when it began (after its dependencies)
    end: list[int]  # per instruction: when its unit was free again
    done: list[int]  # per instruction: when its results were complete
    channel_busy: list[list[tuple[int, int, int]]]  # per HBM channel: (start, end, bytes)
    occupancy: list[tuple[int, int]]  # (cycle, buffer bytes live) after each change
    peak_buffer_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    channel_bytes: int
    macs: int
    events: int
    moved: list[int] = field(default_factory=list)  # per instruction: bytes through HBM
    gbuf_read_bytes: int = 0  # bytes read from the global buffer (cores, vector units, DMA)
    gbuf_write_bytes: int = 0
    vector_ops: int = 0
    # per instruction, the parts of ``end - start`` that were not its own work: waiting for
    # HBM channels held by other transfers, for buffer bank ports, and for a core's first
    # weight tile (exposed when the core was not streaming as the instruction's data arrived)
    wait_hbm: list[int] = field(default_factory=list)
    wait_hbm_other: list[int] = field(default_factory=list)  # the part behind other layers
    wait_port: list[int] = field(default_factory=list)
    wait_weight: list[int] = field(default_factory=list)


class _BankPorts:
    """Read or write ports of the global buffer's banks, as a reservation table."""

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        self.free_at = [0] * cfg.gbuf_banks

    def reserve(self, now: int, addr: int, nbytes: int) -> int:
        """Reserve the ports for ``nbytes`` at ``addr``; return when the last bank is done."""
        if nbytes <= 0:
            return now
        cfg = self.cfg
        rate = cfg.gbuf_port_bytes_per_cycle  # port_cycles(share) == -(-share // rate)
        shares = split_interleaved(addr, nbytes, cfg.gbuf_banks, cfg.gbuf_interleave_bytes)
        self.free_at = [((f if f > now else now) - (-sh // rate)) if sh else f
                        for f, sh in zip(self.free_at, shares, strict=True)]
        return max(now, max((f for f, sh in zip(self.free_at, shares, strict=True) if sh),
                            default=now))


class Machine:
    """Simulates a compiled :class:`Program` on a :class:`HardwareConfig`."""

    def __init__(self, program: Program, cfg: HardwareConfig, ideal_memory: bool = False,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        self.program, self.cfg = program, cfg
        self.ideal = ideal_memory
        self.on_progress = on_progress
        n = len(program.instrs)
        self.env = simpy.Environment()
        self.start = [-1] * n
        self.end = [-1] * n
        self.done = [-1] * n
        self.moved = [0] * n
        self.wait_hbm = [0] * n
        self.wait_hbm_other = [0] * n
        self.wait_port = [0] * n
        self.wait_weight = [0] * n
        self.waiters: dict[int, simpy.Event] = {}
        self.stats = {u: UnitStats() for u in program.units}
        self.channel_free = [0] * cfg.hbm_channels
        self.channel_busy: list[list[tuple[int, int, int]]] = [[] for _ in
                                                                range(cfg.hbm_channels)]
        self.channel_owner: list[list[int]] = [[] for _ in range(cfg.hbm_channels)]
        self.read_ports = _BankPorts(cfg)
        self.write_ports = _BankPorts(cfg)
        self.events = 0
        self.gbuf_read = 0
        self.gbuf_write = 0
        self.retired = 0
        self.channel_bytes = 0
        # buffer liveness: an allocation is live from its first user's start to its last
        # user's completion; live allocations must never share bytes
        self.users_left = [0] * len(program.allocs)
        self.instr_allocs: list[tuple[int, ...]] = []
        for ins in program.instrs:
            ids = tuple(sorted({a.alloc for a in ins.reads + ins.writes}))
            self.instr_allocs.append(ids)
            for a in ids:
                self.users_left[a] += 1
        self.live = [False] * len(program.allocs)
        self.released_early: set[int] = set()
        self._users_of: list[list[int]] | None = None
        self.live_starts: list[int] = []
        self.live_ids: list[int] = []
        self.live_bytes = 0
        self.peak = 0
        self.occupancy: list[tuple[int, int]] = [(0, 0)]

    # ------------------------------------------------------------------ bookkeeping

    def _wait_event(self, iid: int) -> simpy.Event:
        ev = self.waiters.get(iid)
        if ev is None:
            ev = self.waiters[iid] = self.env.event()
        return ev

    def _complete(self, iid: int) -> None:
        now = int(self.env.now)
        self.done[iid] = now
        self.retired += 1
        for a in self.instr_allocs[iid]:
            self.users_left[a] -= 1
            if self.users_left[a] == 0 and a not in self.released_early:
                self._release(a, now)
        ev = self.waiters.pop(iid, None)
        if ev is not None:
            ev.succeed()
        if self.on_progress and self.retired % 2048 == 0:
            self.on_progress(self.retired, len(self.program.instrs))

    def _acquire(self, iid: int, now: int) -> None:
        allocs = self.program.allocs
        for a in self.instr_allocs[iid]:
            if self.live[a]:
                continue
            al = allocs[a]
            while True:  # live allocations never overlap, so only the neighbours can clash
                i = bisect_left(self.live_starts, al.offset)
                clash = next((allocs[self.live_ids[j]] for j in (i - 1, i)
                              if 0 <= j < len(self.live_ids)
                              and allocs[self.live_ids[j]].offset < al.offset + al.size
                              and al.offset < allocs[self.live_ids[j]].offset
                              + allocs[self.live_ids[j]].size), None)
                if clash is None:
                    break
                if not self._handoff(iid, clash.id, now):  # releases clash on success
                    ins = self.program.instrs[iid]
                    raise InvariantError(
                        f"buffer overlap at cycle {now}: instruction {iid} ({ins.unit} "
                        f"{ins.op}, layer {ins.layer!r}) starts using allocation {a} "
                        f"({al.label}) while allocation {clash.id} ({clash.label}) still "
                        "holds the same bytes")
            self.live_starts.insert(i, al.offset)
            self.live_ids.insert(i, a)
            self.live[a] = True
            self.live_bytes += al.size
            if self.live_bytes > self.peak:
                self.peak = self.live_bytes
                if self.peak > self.cfg.gbuf_bytes:
                    raise InvariantError(f"buffer over capacity at cycle {now}: "
                                         f"{self.peak} > {self.cfg.gbuf_bytes} bytes")
            self.occupancy.append((now, self.live_bytes))

    def _handoff(self, iid: int, other: int, now: int) -> bool:
        """A GEMM may take over bytes whose last users are earlier GEMMs of its own core that
        have finished streaming: their remaining results drain out of the array before any of
        this GEMM's, in order. The old allocation is released now."""
        ins = self.program.instrs[iid]
        if ins.op != GEMM:
            return False
        pending = self._pending_users(other)
        if not all(self.program.instrs[u].unit == ins.unit and 0 <= self.end[u] <= now
                   for u in pending):
            return False
        self.released_early.add(other)
        self._release(other, now)
        return True

    def _pending_users(self, alloc: int) -> list[int]:
        if self._users_of is None:
            self._users_of = [[] for _ in self.program.allocs]
            for i, ids in enumerate(self.instr_allocs):
                for a in ids:
                    self._users_of[a].append(i)
        return [u for u in self._users_of[alloc] if self.done[u] < 0]

    def _release(self, a: int, now: int) -> None:
        al = self.program.allocs[a]
        i = bisect_left(self.live_starts, al.offset)
        while self.live_ids[i] != a:
            i += 1
        del self.live_starts[i]
        del self.live_ids[i]
        self.live_bytes -= al.size
        self.occupancy.append((now, self.live_bytes))

    def _account_wait(self, st: UnitStats, ins: Instr, start: int, end: int,
                      busy_until: int) -> None:
        """Attribute ``[start, end)``: draining counts as busy, the rest to the blocking dep."""
        if end <= start:
            return
        draining = max(0, min(end, busy_until) - start)
        st.busy += draining
        rest = end - start - draining
        if rest:
            latest = max(ins.deps, key=self.done.__getitem__) if ins.deps else None
            cause = "dependency"
            if latest is not None and self.program.instrs[latest].op in (LOAD, STORE):
                cause = "dram"
            st.stalls[cause] += rest

    def _port_finish(self, ins: Instr, now: int, read_bytes: int, write_bytes: int) -> int:
        """When the buffer ports have moved this instruction's bytes (starting ``now``)."""
        if self.ideal:
            return now
        allocs = self.program.allocs
        addr_r = allocs[ins.reads[0].alloc].offset + ins.reads[0].lo if ins.reads else 0
        addr_w = allocs[ins.writes[0].alloc].offset + ins.writes[0].lo if ins.writes else 0
        return max(self.read_ports.reserve(now, addr_r, read_bytes),
                   self.write_ports.reserve(now, addr_w, write_bytes))

    # ------------------------------------------------------------------ unit processes

    def _deps_ready(self, ins: Instr):
        """Generator: wait until every dependency of ``ins`` has completed."""
        for d in ins.deps:
            if self.done[d] < 0:
                self.events += 1
                yield self._wait_event(d)

    def _core(self, unit: str, stream: list[Instr]):
        env, cfg, st = self.env, self.cfg, self.stats[unit]
        r = cfg.array_rows
        double = cfg.weight_double_buffer
        free = 0  # when the array can take the next stream
        busy_until = 0  # when the previous instruction's results finish draining
        last_fold_start = 0  # when the previous instruction's last fold began streaming
        for ins in stream:
            yield from self._deps_ready(ins)
            now = int(env.now)
            ready = max((self.done[d] for d in ins.deps), default=0)
            begin = max(free if double else busy_until, ready)
            self._account_wait(st, ins, free, begin, busy_until)
            t = gemm_timing(ins.m, ins.k, ins.n, cfg)
            self.start[ins.id] = begin
            self._acquire(ins.id, begin)
            if double:  # first tile's weights load during the previous GEMM's last fold
                load_start = max(last_fold_start, ready)
                stream_start = max(begin, load_start + r)
                body = t.stream + t.exposed_loads
                weight_stall = stream_start - begin + t.exposed_loads
                busy, tail = t.stream, t.drain
            else:  # every fold: load, stream, drain, nothing overlapped
                stream_start = begin
                body = t.total
                weight_stall = t.first_load
                busy, tail = t.stream + t.drain, 0
            out_bytes = cfg.accum_bytes if ins.vkind == "WGRAD" else cfg.act_bytes
            rd, wr = gemm_buffer_bytes(ins.m, ins.k, ins.n, ins.accumulate, out_bytes, cfg)
            self.gbuf_read += rd
            self.gbuf_write += wr
            stream_end = max(stream_start + body, self._port_finish(ins, stream_start, rd, wr))
            finish = stream_end + tail
            st.busy += busy
            st.stalls["weight_load"] += weight_stall
            port_wait = self.wait_port[ins.id] = stream_end - (stream_start + body)
            st.stalls["buffer_port"] += port_wait
            self.wait_weight[ins.id] = stream_start - begin
            st.instructions += 1
            st.macs += ins.m * ins.k * ins.n
            free = stream_end
            busy_until = finish
            last_fold_start = stream_end - ins.m
            self.end[ins.id] = stream_end
            self.events += 1
            if stream_end > now:
                yield env.timeout(stream_end - now)
            if finish > stream_end:
                ev = env.timeout(finish - stream_end)
                ev.callbacks.append(lambda _e, i=ins.id: self._complete(i))
            else:
                self._complete(ins.id)
        st.busy += max(0, busy_until - free)  # the last drain

    def _in_order(self, unit: str, stream: list[Instr],
                  run: Callable[[Instr, int, UnitStats], int]):
        """A unit that finishes each instruction before starting the next (vector units, DMA
        queues): wait for the dependencies, then ``run`` returns when the work is done."""
        env, st = self.env, self.stats[unit]
        free = 0
        for ins in stream:
            yield from self._deps_ready(ins)
            ready = max((self.done[d] for d in ins.deps), default=0)
            begin = max(free, ready)
            self._account_wait(st, ins, free, begin, 0)
            self.start[ins.id] = begin
            self._acquire(ins.id, begin)
            finish = run(ins, begin, st)
            st.instructions += 1
            free = finish
            self.end[ins.id] = finish
            self.events += 1
            yield env.timeout(finish - int(env.now))
            self._complete(ins.id)

    def _vector_op(self, ins: Instr, begin: int, st: UnitStats) -> int:
        work = vector_cycles(ins.ops, ins.passes, self.cfg)
        rd = sum(a.hi - a.lo for a in ins.reads) * ins.passes
        wr = sum(a.hi - a.lo for a in ins.writes)
        self.gbuf_read += rd
        self.gbuf_write += wr
        finish = max(begin + work, self._port_finish(ins, begin, rd, wr))
        st.busy += work
        port_wait = self.wait_port[ins.id] = finish - begin - work
        st.stalls["buffer_port"] += port_wait
        st.vector_ops += ins.ops
        return finish

    def _transfer(self, ins: Instr, begin: int, st: UnitStats) -> int:
        cfg = self.cfg
        shares = split_interleaved(ins.dram_addr, ins.nbytes, cfg.hbm_channels,
                                   cfg.hbm_interleave_bytes)
        ideal = cfg.hbm_latency_cycles + max(hbm_service_cycles(b, cfg) for b in shares)
        if self.ideal:
            hbm_end = begin + ideal
        else:
            last, critical, critical_start = begin, -1, begin
            reserved = []
            for ch, share in enumerate(shares):
                if share:
                    s = max(begin, self.channel_free[ch])
                    e = s + hbm_service_cycles(share, cfg)
                    if e > last:
                        last, critical, critical_start = e, ch, s
                    self.channel_free[ch] = e
                    reserved.append((ch, s, e, share))
            hbm_end = last + cfg.hbm_latency_cycles
            if critical_start > begin:  # waited: how much of it behind other layers
                self.wait_hbm_other[ins.id] = min(
                    hbm_end - begin - ideal,
                    self._foreign_wait(ins, critical, begin, critical_start))
            for ch, s, e, share in reserved:  # after the wait: not behind itself
                self.channel_busy[ch].append((s, e, share))
                self.channel_owner[ch].append(ins.id)
        self.moved[ins.id] = sum(shares)
        self.channel_bytes += self.moved[ins.id]
        side = ins.writes[0] if ins.op == LOAD else ins.reads[0]
        addr = self.program.allocs[side.alloc].offset + side.lo
        if ins.op == LOAD:
            self.gbuf_write += ins.nbytes
        else:
            self.gbuf_read += ins.nbytes
        if self.ideal:
            ports = begin
        elif ins.op == LOAD:
            ports = self.write_ports.reserve(begin, addr, ins.nbytes)
        else:
            ports = self.read_ports.reserve(begin, addr, ins.nbytes)
        finish = max(hbm_end, ports)
        st.busy += ideal
        hbm_wait = self.wait_hbm[ins.id] = hbm_end - begin - ideal
        port_wait = self.wait_port[ins.id] = finish - hbm_end
        st.stalls["dram"] += hbm_wait
        st.stalls["buffer_port"] += port_wait
        st.bytes_moved += ins.nbytes
        return finish

    def _foreign_wait(self, ins: Instr, ch: int, begin: int, until: int) -> int:
        """Cycles of ``[begin, until)`` that channel ``ch`` spent on transfers of other
        (layer, phase) pairs: the contention a per-layer model cannot see."""
        busy, owners, instrs = self.channel_busy[ch], self.channel_owner[ch], self.program.instrs
        total = 0
        for j in range(len(busy) - 1, -1, -1):
            s, e, _ = busy[j]
            if e <= begin:
                break
            other = instrs[owners[j]]
            if other.layer != ins.layer or other.phase != ins.phase:
                total += max(0, min(e, until) - max(s, begin))
        return total

    # ------------------------------------------------------------------ run

    def run(self) -> SimResult:
        program, env = self.program, self.env
        streams: dict[str, list[Instr]] = {u: [] for u in program.units}
        for ins in program.instrs:
            streams[ins.unit].append(ins)
        for unit, stream in streams.items():
            if not stream:
                continue
            kind = unit_kind(unit)
            if kind == "core":
                env.process(self._core(unit, stream))
            else:
                env.process(self._in_order(unit, stream, self._vector_op if kind == "vec"
                                           else self._transfer))
        env.run()
        missing = [i for i, d in enumerate(self.done) if d < 0]
        if missing:
            heads = []
            for unit, stream in streams.items():
                blocked = next((i for i in stream if self.done[i.id] < 0), None)
                if blocked is not None:
                    waits = [d for d in blocked.deps if self.done[d] < 0]
                    heads.append(f"{unit}: instruction {blocked.id} waits for {waits[:3]}")
            raise InvariantError(f"deadlock: {len(missing)} instructions never ran; "
                                 + "; ".join(heads[:4]))
        cycles = max(self.done, default=0)
        for st in self.stats.values():
            st.idle = cycles - st.busy - sum(st.stalls.values())
        rd = sum(i.nbytes for i in program.instrs if i.op == LOAD)
        wr = sum(i.nbytes for i in program.instrs if i.op == STORE)
        macs = sum(i.m * i.k * i.n for i in program.instrs if i.op == GEMM)
        self.occupancy.append((cycles, self.live_bytes))
        vops = sum(st.vector_ops for st in self.stats.values())
        return SimResult(cycles, self.stats, self.start, self.end, self.done, self.channel_busy,
                         self.occupancy, self.peak, rd, wr, self.channel_bytes, macs,
                         self.events, self.moved, self.gbuf_read, self.gbuf_write, vops,
                         self.wait_hbm, self.wait_hbm_other, self.wait_port, self.wait_weight)


def simulate(program: Program, cfg: HardwareConfig, ideal_memory: bool = False,
             on_progress: Callable[[int, int], None] | None = None) -> SimResult:
    """Run ``program`` on the machine and check the run's invariants."""
    from .invariants import check_invariants

    result = Machine(program, cfg, ideal_memory, on_progress).run()
    check_invariants(program, cfg, result)
    return result

