"""Analytical model: closed-form cycles and bytes for a compiled program (no SimPy).

The program is cut into *steps*: maximal runs of consecutive instructions with the same
(group, layer, phase), i.e. one op on one sub-batch. For each step, with the formulas of
:mod:`wavecore_sim.timing`:

* core time (the busiest core's occupancy): ``sum(stream + exposed_loads)`` over its GEMMs
  plus one first weight load per step (double-buffered weights: later loads hide behind the
  previous stream); the drain (R-1 + C-1) is kept apart, because the array drains while the
  next GEMM streams; without double-buffering, ``sum(total)``;
* vector time, per vector unit: ``sum(vector_cycles)``;
* memory time: the larger of the busiest HBM channel's bytes over its bandwidth (plus one
  latency) and each DMA stream's transfers one after another (latency plus service each: a
  queue holds one transfer at a time);
* DMA queue occupancy, per queue (what the validation compares with the machine's busiest
  queue): its transfers one after another, plus the part of the other queues' transfers
  that runs at the same time, because the HBM channels alternate between queued transfers.
  Queues of one direction overlap fully; loads and stores overlap on ``(B-1)/B`` of the
  shorter stream, for a step of ``B`` blocks per unit (:func:`queue_occupancy`);
* buffer time: the busiest bank port's bytes over its bandwidth;
* overlap: under double buffering the resources work concurrently, so the step takes the
  largest of them, plus what cannot overlap: the prologue (loads issued before the first
  compute instruction) and the epilogue (stores issued after the last one)::

      step = max(core + drain, vector, memory, buffer) + prologue + epilogue

The iteration composes the steps with a max-plus recurrence over four pipes (see
:func:`analyze`). The bound of a step is the resource that attains the max. DRAM bytes are
the program's transfers, counted per layer.

What the simulator has and this model does not (docs/validation.md measures each, and
``validate`` splits every row's error by them): HBM contention with other layers'
transfers, buffer-port queueing behind other units, weight loads exposed when a core waits
on data, and prefetch across step boundaries.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .compiler.program import GEMM, LOAD, STORE, VEC, Instr, Program
from .config import HardwareConfig
from .timing import (
    dma_ideal_cycles,
    gemm_buffer_bytes,
    gemm_timing,
    hbm_service_cycles,
    port_cycles,
    split_interleaved,
    vector_cycles,
)

BOUNDS = ("compute", "vector", "memory", "buffer")


@dataclass
class StepEstimate:
    """One step: instruction id range and its closed-form time components."""

    group: int
    layer: str
    phase: str
    first: int  # first instruction id
    last: int  # last instruction id (inclusive)
    compute: int = 0  # busiest core's occupancy: weight loads and streams, not the drain
    drain: int = 0  # the last results leaving the array after the stream (once per step)
    vector: int = 0
    memory: int = 0
    queues: dict[str, int] = field(default_factory=dict)  # DMA queue -> occupancy (shared HBM)
    loads: int = 0  # memory time of the step's loads alone
    stores: int = 0  # and of its stores
    buffer: int = 0
    prologue: int = 0
    epilogue: int = 0
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    macs: int = 0
    partition: int = 0  # cycles of the composed timeline attributed to this step
    start: int = 0  # composed timeline: when the step's compute (or first transfer) starts
    end: int = 0  # and when its last result is complete

    @property
    def cycles(self) -> int:
        return max(self.compute + self.drain, self.vector, self.memory, self.buffer) + \
            self.prologue + self.epilogue

    @property
    def bound(self) -> str:
        parts = dict(zip(BOUNDS, (self.compute, self.vector, self.memory, self.buffer),
                         strict=True))
        return max(parts, key=parts.__getitem__)


@dataclass
class AnalyticalResult:
    cycles: int
    steps: list[StepEstimate]
    dram_read_bytes: int
    dram_write_bytes: int
    by_bound: dict[str, int] = field(default_factory=dict)


def split_steps(program: Program) -> list[tuple[int, int]]:
    """(first, last) instruction ids of each step, in program order."""
    out: list[tuple[int, int]] = []
    key = None
    for ins in program.instrs:
        k = (ins.group, ins.layer, ins.phase)
        if k != key:
            out.append((ins.id, ins.id))
            key = k
        else:
            out[-1] = (out[-1][0], ins.id)
    return out


def _transfer_cycles(instrs: list[Instr], cfg: HardwareConfig) -> int:
    """Busiest channel's service time for these transfers, plus one latency."""
    if not instrs:
        return 0
    per_channel = [0] * cfg.hbm_channels
    for ins in instrs:
        for ch, share in enumerate(split_interleaved(ins.dram_addr, ins.nbytes, cfg.hbm_channels,
                                                     cfg.hbm_interleave_bytes)):
            per_channel[ch] += share
    return cfg.hbm_latency_cycles + max(hbm_service_cycles(b, cfg) for b in per_channel)


def _queue_cycles(instrs: list[Instr], cfg: HardwareConfig) -> int:
    """Transfers one after another, as a DMA queue runs them: latency plus service each."""
    return sum(dma_ideal_cycles(i.dram_addr, i.nbytes, cfg) for i in instrs)


def queue_occupancy(transfers: list[Instr], blocks: int, cfg: HardwareConfig
                    ) -> dict[str, int]:
    """Occupancy of each DMA queue in a step: its own transfers, plus the part of every other
    queue's transfers that runs at the same time (the channels alternate between the queued
    transfers, so each waits for the other's). Queues of the same direction run side by side;
    loads and stores overlap on all but one of the step's ``blocks`` (the first block's loads
    and the last block's stores run alone)."""
    work: dict[str, int] = defaultdict(int)
    for ins in transfers:
        work[ins.unit] += dma_ideal_cycles(ins.dram_addr, ins.nbytes, cfg)
    out = {}
    for u, w in work.items():
        direction = u.rsplit(".", 1)[-1]
        shared = sum(min(w, other) * (1.0 if v.rsplit(".", 1)[-1] == direction
                                      else (blocks - 1) / blocks)
                     for v, other in work.items() if v != u)
        out[u] = w + int(shared)
    return out


def estimate_step(program: Program, first: int, last: int, cfg: HardwareConfig) -> StepEstimate:
    instrs = program.instrs[first:last + 1]
    head = instrs[0]
    est = StepEstimate(head.group, head.layer, head.phase, first, last)
    core: dict[str, int] = defaultdict(int)
    core_seen: set[str] = set()
    vec: dict[str, int] = defaultdict(int)
    bank_read = [0] * cfg.gbuf_banks
    bank_write = [0] * cfg.gbuf_banks
    transfers: list[Instr] = []
    compute_ids = [i.id for i in instrs if i.op in (GEMM, VEC)]
    for ins in instrs:
        if ins.op == GEMM:
            t = gemm_timing(ins.m, ins.k, ins.n, cfg)
            if cfg.weight_double_buffer:
                core[ins.unit] += t.stream + t.exposed_loads
                if ins.unit not in core_seen:
                    core[ins.unit] += t.first_load
                    est.drain = t.drain
                    core_seen.add(ins.unit)
            else:
                core[ins.unit] += t.total
            out_bytes = cfg.accum_bytes if ins.vkind == "WGRAD" else cfg.act_bytes
            rd, wr = gemm_buffer_bytes(ins.m, ins.k, ins.n, ins.accumulate, out_bytes, cfg)
            est.macs += ins.m * ins.k * ins.n
        elif ins.op == VEC:
            vec[ins.unit] += vector_cycles(ins.ops, ins.passes, cfg)
            rd = sum(a.hi - a.lo for a in ins.reads) * ins.passes
            wr = sum(a.hi - a.lo for a in ins.writes)
        else:
            transfers.append(ins)
            if ins.op == LOAD:
                est.dram_read_bytes += ins.nbytes
                rd, wr = 0, ins.nbytes
            else:
                est.dram_write_bytes += ins.nbytes
                rd, wr = ins.nbytes, 0
        for accesses, banks, nbytes in ((ins.reads, bank_read, rd), (ins.writes, bank_write, wr)):
            if nbytes and accesses:
                a = accesses[0]
                addr = program.allocs[a.alloc].offset + a.lo
                for b, share in enumerate(split_interleaved(addr, nbytes, cfg.gbuf_banks,
                                                            cfg.gbuf_interleave_bytes)):
                    banks[b] += share
    blocks = max(Counter(i.unit for i in instrs if i.op in (GEMM, VEC)).values(), default=1)
    est.queues = queue_occupancy(transfers, blocks, cfg)
    est.compute = max(core.values(), default=0)
    est.vector = max(vec.values(), default=0)
    est.loads = _queue_cycles([i for i in transfers if i.op == LOAD], cfg)
    est.stores = _queue_cycles([i for i in transfers if i.op == STORE], cfg)
    est.memory = max(_transfer_cycles(transfers, cfg), est.loads, est.stores)
    est.buffer = max(port_cycles(b, cfg) for b in bank_read + bank_write)
    if compute_ids:
        before = [i for i in transfers if i.id < compute_ids[0]]
        after = [i for i in transfers if i.id > compute_ids[-1]]
        est.prologue = _queue_cycles(before, cfg)
        est.epilogue = _queue_cycles(after, cfg)
    return est


def _step_dependencies(program: Program, spans: list[tuple[int, int]]
                       ) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """Step of each instruction, and the earlier instructions (in other steps) that each
    step's loads, and its compute or stores, depend on."""
    step_of = [0] * len(program.instrs)
    for i, (a, b) in enumerate(spans):
        for j in range(a, b + 1):
            step_of[j] = i
    load_deps: list[list[int]] = [[] for _ in spans]
    work_deps: list[list[int]] = [[] for _ in spans]
    for ins in program.instrs:
        me = step_of[ins.id]
        target = load_deps[me] if ins.op == LOAD else work_deps[me]
        target.extend(d for d in ins.deps if step_of[d] != me)
    return step_of, load_deps, work_deps


def analyze(program: Program, cfg: HardwareConfig) -> AnalyticalResult:
    """Closed-form estimate of the whole program (see the module docstring).

    Steps are composed with a max-plus recurrence over four pipes (cores, vector units, load
    and store streams): a step's loads start when what they depend on is done and the load
    pipe is free; its compute starts when its inputs are done, its unit is free and its
    prologue has arrived; it ends when its stores are written. An instruction of an earlier
    step is taken as done at its share of that step's span (instructions run in order).
    """
    spans = split_steps(program)
    steps = [estimate_step(program, a, b, cfg) for a, b in spans]
    step_of, load_deps, work_deps = _step_dependencies(program, spans)

    def done_at(d: int) -> float:
        s = steps[step_of[d]]
        first, last = spans[step_of[d]]
        return s.start + (s.end - s.start) * (d - first + 1) / (last - first + 1)

    end: list[int] = []
    free = {"core": 0, "vec": 0, "load": 0, "store": 0}
    for i, s in enumerate(steps):
        load_ready = int(max((done_at(d) for d in load_deps[i]), default=0))
        work_ready = int(max((done_at(d) for d in work_deps[i]), default=0))
        load_start = max(load_ready, free["load"])
        free["load"] = load_start + s.loads
        results = 0  # when the step's compute results are complete (the drain included)
        if s.compute or s.vector:
            pipe = "core" if s.compute else "vec"
            start = max(work_ready, free[pipe], load_start + s.prologue)
            free[pipe] = start + max(s.compute, s.vector, s.buffer)  # drains overlap the next
            results = start + max(s.compute + s.drain, s.vector, s.buffer)
            store_start = max(free["store"], results - max(0, s.stores - s.epilogue))
        else:
            store_start = max(free["store"], work_ready, load_start + s.loads)
            start = store_start
        free["store"] = store_start + s.stores
        # HBM is shared: a step cannot beat its combined traffic either
        finish = max(free["load"], free["store"], results, min(load_start, start) + s.memory)
        end.append(finish)
        s.start, s.end = (start if (s.compute or s.vector) else load_start), finish
    # Per-step cycles: the share of the timeline during which this step is the oldest one
    # still running (the same partition the validation applies to simulated times).
    prefix = 0
    for s, e in zip(steps, end, strict=True):
        s.partition = max(0, e - prefix)
        prefix = max(prefix, e)
    by_bound: dict[str, int] = dict.fromkeys(BOUNDS, 0)
    for s in steps:
        by_bound[s.bound] += s.partition
    return AnalyticalResult(prefix, steps, sum(s.dram_read_bytes for s in steps),
                            sum(s.dram_write_bytes for s in steps), by_bound)


def partition_times(spans: list[tuple[int, int]], done: list[int]) -> list[int]:
    """Split a timeline into steps: each step gets the cycles during which it is the oldest
    unfinished step (prefix maximum of completion times, in program order)."""
    out, prefix = [], 0
    for a, b in spans:
        finish = max(done[a:b + 1])
        out.append(max(0, finish - prefix))
        prefix = max(prefix, finish)
    return out
