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
:func:`analyze`).

Evaluation is vectorised: the program becomes one numpy array per instruction field, and
the formulas of :mod:`wavecore_sim.timing` (written once, for ints and arrays alike) run on
whole arrays; per-step sums are bincounts. Only the recurrence walks the steps in Python,
with each step's dependencies collapsed to the latest instruction per earlier step.

The bound of a step is the resource that attains the max. DRAM bytes are the program's
transfers, counted per layer.

What the simulator has and this model does not (docs/validation.md measures each, and
``validate`` splits every row's error by them): HBM contention with other layers'
transfers, buffer-port queueing behind other units, weight loads exposed when a core waits
on data, and prefetch across step boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from .compiler.program import GEMM, LOAD, STORE, VEC, Program, unit_kind
from .config import HardwareConfig
from .timing import (
    dma_ideal_cycles_many,
    gemm_buffer_bytes,
    gemm_timing,
    hbm_service_cycles,
    interleaved_totals,
    port_cycles,
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


def _queue_occupancy(work: np.ndarray, queues: list[str], blocks: np.ndarray) -> np.ndarray:
    """Occupancy of each DMA queue in each step (``work``: steps x queues, their transfers one
    after another), plus the part of every other queue's transfers that runs at the same time
    (the channels alternate between the queued transfers, so each waits for the other's).
    Queues of the same direction run side by side; loads and stores overlap on
    ``(blocks - 1) / blocks`` of the shorter stream (the first block's loads and the last
    block's stores run alone)."""
    direction = [q.rsplit(".", 1)[-1] for q in queues]
    out = work.copy()
    for u in range(len(queues)):
        same = np.zeros(len(work), dtype=np.int64)
        opposite = np.zeros(len(work), dtype=np.int64)
        for v in range(len(queues)):
            if v != u:
                shared = np.minimum(work[:, u], work[:, v])
                if direction[v] == direction[u]:
                    same += shared
                else:
                    opposite += shared
        out[:, u] += same + opposite * (blocks - 1) // blocks
    return out * (work > 0)


@dataclass
class _ProgramArrays:
    """The program as one array per field (struct of arrays), so that every closed form is
    evaluated for all instructions at once."""

    step: np.ndarray  # step index of each instruction
    op: np.ndarray  # 0 GEMM, 1 VEC, 2 LOAD, 3 STORE
    unit: np.ndarray  # index into ``units``
    units: list[str]
    m: np.ndarray
    k: np.ndarray
    n: np.ndarray
    accumulate: np.ndarray
    wgrad: np.ndarray
    ops: np.ndarray
    passes: np.ndarray
    nbytes: np.ndarray
    dram_addr: np.ndarray
    read_addr: np.ndarray  # buffer address of the first read access (or -1)
    read_bytes: np.ndarray  # summed sizes of the read accesses
    write_addr: np.ndarray
    write_bytes: np.ndarray
    dep_of: np.ndarray  # dependency edges: the instruction that waits
    dep_on: np.ndarray  # and the instruction it waits for


_OPCODE = {GEMM: 0, VEC: 1, LOAD: 2, STORE: 3}


def _arrays(program: Program, spans: list[tuple[int, int]]) -> _ProgramArrays:
    instrs, count = program.instrs, len(program.instrs)
    offsets = [al.offset for al in program.allocs]

    def column(name: str, convert=None) -> np.ndarray:
        values = map(attrgetter(name), instrs)
        return np.fromiter(map(convert, values) if convert else values, dtype=np.int64,
                           count=count)

    def first_address(accesses: tuple) -> int:
        return offsets[accesses[0].alloc] + accesses[0].lo if accesses else -1

    units: dict[str, int] = {}
    opcode = column("op", _OPCODE.__getitem__)
    vector_ops = np.flatnonzero(opcode == 1).tolist()  # only they need their access sizes
    sizes = np.zeros((2, count), dtype=np.int64)
    for side, name in enumerate(("reads", "writes")):
        sizes[side, vector_ops] = [sum(x.hi - x.lo for x in getattr(instrs[i], name))
                                   for i in vector_ops]
    deps = [ins.deps for ins in instrs]
    return _ProgramArrays(
        np.repeat(np.arange(len(spans)), [b - a + 1 for a, b in spans]), opcode,
        column("unit", lambda u: units.setdefault(u, len(units))), list(units),
        column("m"), column("k"), column("n"), column("accumulate"),
        column("vkind", "WGRAD".__eq__), column("ops"), column("passes"), column("nbytes"),
        column("dram_addr"), column("reads", first_address), sizes[0],
        column("writes", first_address), sizes[1],
        np.repeat(np.arange(count), [len(d) for d in deps]),
        np.fromiter((x for d in deps for x in d), dtype=np.int64))


def _per_step_unit(values: np.ndarray, mask: np.ndarray, pa: _ProgramArrays,
                   nsteps: int) -> np.ndarray:
    """(steps x units) sums of ``values`` over the instructions selected by ``mask``."""
    nunits = len(pa.units)
    key = pa.step[mask] * nunits + pa.unit[mask]
    return np.bincount(key, weights=values[mask], minlength=nsteps * nunits) \
        .astype(np.int64).reshape(nsteps, nunits)


def _step_terms(program: Program, spans: list[tuple[int, int]], pa: _ProgramArrays,
                cfg: HardwareConfig) -> list[StepEstimate]:
    """Every step's closed-form terms (see the module docstring), for all steps at once."""
    nsteps = len(spans)
    drain = gemm_timing(1, 1, 1, cfg).drain  # the same for every GEMM
    gemm, vec = pa.op == 0, pa.op == 1
    load, store = pa.op == 2, pa.op == 3
    transfer = load | store
    # GEMMs and vector ops: the shared formulas, evaluated on whole arrays
    t = gemm_timing(pa.m, pa.k, pa.n, cfg)
    body = t.stream + t.exposed_loads if cfg.weight_double_buffer else t.total
    core_time = _per_step_unit(body, gemm, pa, nsteps)
    core_used = _per_step_unit(np.ones_like(body), gemm, pa, nsteps) > 0
    if cfg.weight_double_buffer:  # one first weight tile per step and core
        core_time += core_used * t.first_load
    out_bytes = np.where(pa.wgrad == 1, cfg.accum_bytes, cfg.act_bytes)
    gemm_rd, gemm_wr = gemm_buffer_bytes(pa.m, pa.k, pa.n, pa.accumulate, out_bytes, cfg)
    vec_time = _per_step_unit(vector_cycles(pa.ops, pa.passes, cfg), vec, pa, nsteps)
    # buffer-port bytes per instruction, spread over the banks from the first access
    rd = np.select([gemm, vec, store], [gemm_rd, pa.read_bytes * pa.passes, pa.nbytes], 0)
    wr = np.select([gemm, vec, load], [gemm_wr, pa.write_bytes, pa.nbytes], 0)
    busiest_bank = np.zeros(nsteps, dtype=np.int64)
    for size, addr in ((rd, pa.read_addr), (wr, pa.write_addr)):
        sel = (size > 0) & (addr >= 0)
        banks = interleaved_totals(pa.step[sel], addr[sel], size[sel], nsteps, cfg.gbuf_banks,
                                   cfg.gbuf_interleave_bytes)
        busiest_bank = np.maximum(busiest_bank, banks.max(axis=1))
    # transfers: timing.dma_ideal_cycles each, and the busiest channel of each step
    times = np.zeros_like(pa.nbytes)
    times[transfer] = dma_ideal_cycles_many(pa.dram_addr[transfer], pa.nbytes[transfer], cfg)
    channels = interleaved_totals(pa.step[transfer], pa.dram_addr[transfer],
                                  pa.nbytes[transfer], nsteps, cfg.hbm_channels,
                                  cfg.hbm_interleave_bytes).max(axis=1)
    queue_time = _per_step_unit(times, transfer, pa, nsteps)
    loads = np.bincount(pa.step[load], weights=times[load], minlength=nsteps).astype(np.int64)
    stores = np.bincount(pa.step[store], weights=times[store], minlength=nsteps)
    stores = stores.astype(np.int64)
    read_bytes = np.bincount(pa.step[load], weights=pa.nbytes[load], minlength=nsteps)
    write_bytes = np.bincount(pa.step[store], weights=pa.nbytes[store], minlength=nsteps)
    macs = np.bincount(pa.step[gemm], weights=(pa.m * pa.k * pa.n)[gemm], minlength=nsteps)
    # prologue and epilogue: transfers before the step's first compute instruction, after
    # its last
    compute = gemm | vec
    ids = np.arange(len(pa.op))
    first_compute = np.full(nsteps, np.iinfo(np.int64).max)
    last_compute = np.full(nsteps, -1)
    np.minimum.at(first_compute, pa.step[compute], ids[compute])
    np.maximum.at(last_compute, pa.step[compute], ids[compute])
    has_compute = last_compute >= 0
    before = transfer & (ids < first_compute[pa.step]) & has_compute[pa.step]
    after = transfer & (ids > last_compute[pa.step]) & has_compute[pa.step]
    prologue = np.bincount(pa.step[before], weights=times[before], minlength=nsteps)
    epilogue = np.bincount(pa.step[after], weights=times[after], minlength=nsteps)
    blocks = np.maximum(1, _per_step_unit(np.ones_like(body), compute, pa, nsteps).max(axis=1))

    dma_units = [j for j, u in enumerate(pa.units) if unit_kind(u) == "dma"]
    queue_names = [pa.units[j] for j in dma_units]
    occupancy = _queue_occupancy(queue_time[:, dma_units], queue_names, blocks).tolist()
    steps = []
    cols = (core_time.max(axis=1), vec_time.max(axis=1), busiest_bank, channels, loads,
            stores, prologue, epilogue, read_bytes, write_bytes, macs, core_used.any(axis=1))
    rows = zip(*(x.tolist() for x in cols), strict=True)
    for i, ((a, b), row) in enumerate(zip(spans, rows, strict=True)):
        (comp, vect, bank, chan, ld, st, pro, epi, rb, wb, mc, any_gemm) = row
        head = program.instrs[a]
        est = StepEstimate(head.group, head.layer, head.phase, a, b, compute=comp, vector=vect,
                           loads=ld, stores=st, buffer=port_cycles(bank, cfg),
                           prologue=int(pro), epilogue=int(epi), dram_read_bytes=int(rb),
                           dram_write_bytes=int(wb), macs=int(mc))
        est.drain = drain if (any_gemm and cfg.weight_double_buffer) else 0
        est.memory = max(ld, st)
        if rb or wb:
            est.memory = max(est.memory, cfg.hbm_latency_cycles + hbm_service_cycles(chan, cfg))
        est.queues = {q: t for q, t in zip(queue_names, occupancy[i], strict=True) if t}
        steps.append(est)
    return steps


def _collapsed_dependencies(pa: _ProgramArrays, nsteps: int
                            ) -> tuple[list[list[tuple[int, int]]], list[list[tuple[int, int]]]]:
    """For each step, the earlier steps its loads, and its compute or stores, wait for, each
    with the latest instruction waited for in it (the recurrence needs only that one: an
    instruction of an earlier step is done at its share of that step's span)."""
    out: list[list[list[tuple[int, int]]]] = [[[] for _ in range(nsteps)] for _ in range(2)]
    me_step, d = pa.step[pa.dep_of], pa.dep_on
    d_step, kind = pa.step[d], (pa.op[pa.dep_of] == 2).astype(np.int64)
    other = me_step != d_step
    me_step, d, d_step, kind = me_step[other], d[other], d_step[other], kind[other]
    order = np.lexsort((d, d_step, me_step, kind))  # the latest d per (kind, step, dep step)
    me_step, d, d_step, kind = me_step[order], d[order], d_step[order], kind[order]
    last = np.ones(len(d), dtype=bool)
    last[:-1] = (kind[1:] != kind[:-1]) | (me_step[1:] != me_step[:-1]) | \
        (d_step[1:] != d_step[:-1])
    for kd, st, ds, dd in zip(kind[last].tolist(), me_step[last].tolist(),
                              d_step[last].tolist(), d[last].tolist(), strict=True):
        out[1 - kd][st].append((ds, dd))  # out[0]: loads' dependencies, out[1]: the rest
    return out[0], out[1]


def analyze(program: Program, cfg: HardwareConfig) -> AnalyticalResult:
    """Closed-form estimate of the whole program (see the module docstring).

    Steps are composed with a max-plus recurrence over four pipes (cores, vector units, load
    and store streams): a step's loads start when what they depend on is done and the load
    pipe is free; its compute starts when its inputs are done, its unit is free and its
    prologue has arrived; it ends when its stores are written. An instruction of an earlier
    step is taken as done at its share of that step's span (instructions run in order).
    """
    spans = split_steps(program)
    if not spans:
        return AnalyticalResult(0, [], 0, 0, dict.fromkeys(BOUNDS, 0))
    pa = _arrays(program, spans)
    steps = _step_terms(program, spans, pa, cfg)
    load_deps, work_deps = _collapsed_dependencies(pa, len(spans))

    def ready(deps: list[tuple[int, int]]) -> int:
        latest = 0.0
        for j, d in deps:
            s, (first, last) = steps[j], spans[j]
            latest = max(latest, s.start + (s.end - s.start) * (d - first + 1)
                         / (last - first + 1))
        return int(latest)

    end: list[int] = []
    free = {"core": 0, "vec": 0, "load": 0, "store": 0}
    for i, s in enumerate(steps):
        load_ready, work_ready = ready(load_deps[i]), ready(work_deps[i])
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
    # still running.
    prefix = 0
    for s, e in zip(steps, end, strict=True):
        s.partition = max(0, e - prefix)
        prefix = max(prefix, e)
    by_bound: dict[str, int] = dict.fromkeys(BOUNDS, 0)
    for s in steps:
        by_bound[s.bound] += s.partition
    return AnalyticalResult(prefix, steps, sum(s.dram_read_bytes for s in steps),
                            sum(s.dram_write_bytes for s in steps), by_bound)
