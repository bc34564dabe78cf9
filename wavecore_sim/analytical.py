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
  queue holds one transfer at a time). With the calibrated HBM (``hbm_model``, the default)
  the terms of :func:`timing.dma_cycles_many` in closed form: a channel serves
  ``1 - blackout / tREFI`` of the time (refresh), and a transfer's latency is the on-chip
  latency, a row opening after another row (tRP + tRCD) and the DRAM-core latency of its
  direction; the busiest channel also pays a turnaround pair per store that can run
  between the step's loads (:func:`timing.hbm_turnaround_cycles`). Bank conflicts are left
  out: the machine measures them as DRAM waits (under 0.1% of ResNet-50's cycles,
  docs/validation.md);
* DMA queue occupancy, per queue (what the validation compares with the machine's busiest
  queue): its transfers one after another, plus the channel time of the other queues'
  transfers that run at the same time, because the HBM channels alternate between queued
  transfers. Queues of one direction overlap fully; loads and stores overlap on ``(B-1)/B``
  of the shorter stream, for a step of ``B`` blocks per unit, and on the rest across the
  step's boundaries with its neighbours (:func:`_queue_occupancy`);
* buffer time: the busiest bank port's bytes over its bandwidth;
* overlap: under double buffering the resources work concurrently, so the step takes the
  largest of them, plus what cannot overlap: the prologue (loads issued before the first
  compute instruction) and the epilogue (stores issued after the last one)::

      step = max(core + drain, vector, memory, buffer) + prologue + epilogue

The iteration composes the steps with a max-plus recurrence over four pipes (see
:func:`analyze`).

Evaluation is vectorised: the program's columns (:class:`~wavecore_sim.ir.Program`) are
read as they are, and the formulas of :mod:`wavecore_sim.timing` (written once, for ints and
arrays alike) run on whole arrays; per-step sums are bincounts. Only the recurrence walks the
steps in Python, over plain lists, with each step's dependencies collapsed to the latest
instruction per earlier step. :class:`StepEstimate` objects are built only when asked for.

The bound of a step is the resource that attains the max. DRAM bytes are the program's
transfers, counted per layer.

What the simulator has and this model does not (docs/validation.md measures each, and
``validate`` splits every row's error by them): HBM contention with other layers'
transfers, buffer-port queueing behind other units, weight loads exposed when a core waits
on data, and prefetch across step boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress
from operator import ne

import numpy as np

from .config import HardwareConfig
from .ir import Op, Program, Unit, UnitKind
from .timing import (
    busiest_interleaved_totals,
    dma_cycles_many,
    dma_latency_cycles,
    gemm_buffer_bytes,
    gemm_timing,
    hbm_channel_cycles,
    hbm_turnaround_cycles,
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
    neighbours: dict[str, int] = field(default_factory=dict)  # of which: neighbouring steps
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
        return (
            max(self.compute + self.drain, self.vector, self.memory, self.buffer)
            + self.prologue
            + self.epilogue
        )


@dataclass
class AnalyticalResult:
    cycles: int
    dram_read_bytes: int
    dram_write_bytes: int
    by_bound: dict[str, int]
    table: _StepTable

    @cached_property
    def steps(self) -> list[StepEstimate]:
        """One :class:`StepEstimate` per step, in program order (built when first asked)."""
        return self.table.estimates()


def _queue_occupancy(
    work: np.ndarray, service: np.ndarray, queues: Sequence[Unit], blocks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy of each DMA queue in each step (steps x queues): its own transfers one after
    another (``work``), plus the channel time of the other queues' transfers that run at the
    same time (the channels alternate between queued transfers, so each waits for the
    other's). A transfer holds the channels for its ``service`` time only (its latency
    holds none), so the sharing is counted in service time.

    * Queues of the same direction run side by side: ``min`` of the two service times.
    * Loads and stores of a step overlap on ``(B - 1) / B`` of the shorter stream, for a
      step of ``B`` blocks per unit: its first block's loads and its last block's stores
      have no partner in the step. They have one across the step boundary, though: the
      first loads run while the previous step's last stores drain, the last stores while
      the next step's first loads arrive. Each boundary adds the remaining ``1 / B`` share,
      up to the neighbour's service time per block in the other direction.

    Returns the occupancy and, of it, the part shared with the neighbouring steps.
    """
    loads = np.array([q.kind is UnitKind.DMA_LD for q in queues], dtype=bool)
    out = work.copy()
    unpartnered = np.zeros_like(work)  # the 1/B share of the opposite stream, per queue
    for u in range(len(queues)):
        same = np.zeros(len(work), dtype=np.int64)
        opposite = np.zeros(len(work), dtype=np.int64)
        for v in range(len(queues)):
            if v != u:
                shared = np.minimum(service[:, u], service[:, v])
                if loads[v] == loads[u]:
                    same += shared
                else:
                    opposite += shared
        inside = opposite * (blocks - 1) // blocks
        out[:, u] += same + inside
        unpartnered[:, u] = opposite - inside
    load_block = service[:, loads].sum(axis=1) // blocks
    store_block = service[:, ~loads].sum(axis=1) // blocks
    neighbours = np.zeros_like(work)
    neighbours[1:, loads] = np.minimum(unpartnered[1:, loads], store_block[:-1, None])
    neighbours[:-1, ~loads] = np.minimum(unpartnered[:-1, ~loads], load_block[1:, None])
    busy = work > 0
    return (out + neighbours) * busy, neighbours * busy


@dataclass
class _StepTable:
    """Every step's terms, one array entry per step (the composed timeline fills ``start``,
    ``end`` and ``partition``)."""

    keys: list[tuple[int, str, str]]  # (group, layer, phase)
    first: np.ndarray
    last: np.ndarray
    compute: np.ndarray
    drain: np.ndarray
    vector: np.ndarray
    memory: np.ndarray
    buffer: np.ndarray
    loads: np.ndarray
    stores: np.ndarray
    prologue: np.ndarray
    epilogue: np.ndarray
    read_bytes: np.ndarray
    write_bytes: np.ndarray
    macs: np.ndarray
    queue_names: list[str]
    queues: np.ndarray  # steps x DMA queues
    neighbours: np.ndarray  # steps x DMA queues: the part of ``queues`` shared across steps
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    partition: list[int] = field(default_factory=list)

    def estimates(self) -> list[StepEstimate]:
        names = (
            "first",
            "last",
            "compute",
            "drain",
            "vector",
            "memory",
            "buffer",
            "loads",
            "stores",
            "prologue",
            "epilogue",
            "read_bytes",
            "write_bytes",
            "macs",
        )
        columns = [getattr(self, name).tolist() for name in names]
        queues, neighbours = self.queues.tolist(), self.neighbours.tolist()
        out = []
        for i, (group, layer, phase) in enumerate(self.keys):
            (first, last, comp, drain, vec, mem, buf, ld, st, pro, epi, rb, wb, macs) = (
                c[i] for c in columns
            )
            out.append(
                StepEstimate(
                    group,
                    layer,
                    phase,
                    first,
                    last,
                    compute=comp,
                    drain=drain,
                    vector=vec,
                    memory=mem,
                    loads=ld,
                    stores=st,
                    buffer=buf,
                    prologue=pro,
                    epilogue=epi,
                    dram_read_bytes=rb,
                    dram_write_bytes=wb,
                    macs=macs,
                    queues={q: t for q, t in zip(self.queue_names, queues[i], strict=True) if t},
                    neighbours={
                        q: t for q, t in zip(self.queue_names, neighbours[i], strict=True) if t
                    },
                    partition=self.partition[i],
                    start=self.start[i],
                    end=self.end[i],
                )
            )
        return out


@dataclass
class _Inputs:
    """What the model reads of a program: per instruction, int64 columns (``step`` renumbered
    to the model's steps), and the steps' keys and the units."""

    cols: dict[str, np.ndarray]
    keys: list[tuple[int, str, str]]  # (group, layer, phase) of each step
    units: tuple[Unit, ...]


_READ = (
    "op",
    "unit",
    "m",
    "k",
    "n",
    "accumulate",
    "out_bytes",
    "ops",
    "passes",
    "nbytes",
    "dram_addr",
)


def _inputs(program: Program) -> _Inputs:
    """The program's columns the model reads, as int64 arrays (views where they already are).

    A model step is a maximal run of consecutive instructions with the same (group, layer,
    phase); the program's steps are that already unless one was opened and left empty, which
    the renumbering here absorbs. Buffer addresses and sizes come from
    :meth:`Program.access_summary`: the first read's and first write's address (-1 if none)
    and the summed read and write bytes (used for vector ops only).
    """
    c = program.cols
    pa = {name: c[name].astype(np.int64, copy=False) for name in _READ}
    pa.update(program.access_summary())
    pa["dep_ids"] = c["dep_ids"].astype(np.int64, copy=False)
    pa["dep_instr"] = program.dep_instr()
    step = c["step"].astype(np.int64, copy=False)
    keys = [(s.group, s.layer, s.phase) for s in program.steps]
    if len(step):
        opened = np.diff(step, prepend=-1) != 0  # the first instruction of each step
        used = step[opened].tolist()
        if len(used) != len(keys):  # steps opened and left empty
            keys = [keys[j] for j in used]
        new = [True, *map(ne, keys, keys[1:])]  # False: continues the previous step
        if len(used) != len(program.steps) or not all(new):
            step = (np.cumsum(new) - 1)[np.cumsum(opened) - 1]
            keys = list(compress(keys, new))
    else:
        keys = []
    pa["step"] = step
    return _Inputs(pa, keys, program.units)


def _per_step_unit(
    values: np.ndarray,
    mask: np.ndarray,
    step: np.ndarray,
    unit: np.ndarray,
    nsteps: int,
    nunits: int,
) -> np.ndarray:
    """(steps x units) sums of ``values`` over the instructions selected by ``mask``."""
    key = step[mask] * nunits + unit[mask]
    return (
        np.bincount(key, weights=values[mask], minlength=nsteps * nunits)
        .astype(np.int64)
        .reshape(nsteps, nunits)
    )


def _runs(steps: np.ndarray, nsteps: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first and of the last entry of each run of equal values in ``steps``, a
    nondecreasing array of step indices below ``nsteps`` (a step is a run of instructions,
    so any selection of instructions keeps its steps in order)."""
    return (
        np.flatnonzero(np.diff(steps, prepend=-1)),
        np.flatnonzero(np.diff(steps, append=nsteps)),
    )


def _step_table(inputs: _Inputs, cfg: HardwareConfig) -> _StepTable:
    """Every step's closed-form terms (see the module docstring), for all steps at once."""
    pa = inputs.cols
    nsteps, nunits = len(inputs.keys), len(inputs.units)
    step, unit, op = pa["step"], pa["unit"], pa["op"]

    def per_step_unit(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return _per_step_unit(values, mask, step, unit, nsteps, nunits)

    def per_step(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.bincount(step[mask], weights=values[mask], minlength=nsteps).astype(np.int64)

    gemm, vec, load, store = (op == Op.GEMM), (op == Op.VEC), (op == Op.LOAD), (op == Op.STORE)
    transfer, compute = load | store, gemm | vec
    ones = np.ones_like(op)
    # GEMMs and vector ops: the shared formulas, evaluated on whole arrays
    t = gemm_timing(pa["m"], pa["k"], pa["n"], cfg)
    body = t.stream + t.exposed_loads if cfg.weight_double_buffer else t.total
    core_time = per_step_unit(body, gemm)
    core_used = per_step_unit(ones, gemm) > 0
    if cfg.weight_double_buffer:  # one first weight tile per step and core
        core_time += core_used * t.first_load
    gemm_rd, gemm_wr = gemm_buffer_bytes(
        pa["m"], pa["k"], pa["n"], pa["accumulate"], pa["out_bytes"], cfg
    )
    vec_time = per_step_unit(vector_cycles(pa["ops"], pa["passes"], cfg), vec)
    # buffer-port bytes per instruction, spread over the banks from the first access
    rd = np.select([gemm, vec, store], [gemm_rd, pa["read_bytes"] * pa["passes"], pa["nbytes"]], 0)
    wr = np.select([gemm, vec, load], [gemm_wr, pa["write_bytes"], pa["nbytes"]], 0)
    busiest_bank = np.zeros(nsteps, dtype=np.int64)
    for size, addr in ((rd, pa["read_addr"]), (wr, pa["write_addr"])):
        sel = (size > 0) & (addr >= 0)
        busiest_bank = np.maximum(
            busiest_bank,
            busiest_interleaved_totals(
                step[sel], addr[sel], size[sel], nsteps, cfg.gbuf_banks, cfg.gbuf_interleave_bytes
            ),
        )
    # transfers: timing.dma_ideal_cycles each, and the busiest channel of each step
    nbytes, dram_addr = pa["nbytes"], pa["dram_addr"]
    times = np.zeros_like(nbytes)
    times[transfer] = dma_cycles_many(dram_addr[transfer], nbytes[transfer], store[transfer], cfg)
    channels = busiest_interleaved_totals(
        step[transfer],
        dram_addr[transfer],
        nbytes[transfer],
        nsteps,
        cfg.hbm_channels,
        cfg.hbm_interleave_bytes,
    )
    loads, stores = per_step(times, load), per_step(times, store)
    read_bytes, write_bytes = per_step(nbytes, load), per_step(nbytes, store)
    memory = np.maximum(loads, stores)
    moves = (read_bytes > 0) | (write_bytes > 0)
    latency = np.zeros(len(op))  # each transfer's time that holds no channel
    latency[transfer] = dma_latency_cycles(store[transfer], cfg)
    first_latency = float(latency[transfer].min()) if transfer.any() else 0.0
    turnarounds = hbm_turnaround_cycles(per_step(ones, load), per_step(ones, store), cfg)
    busiest_channel = np.ceil(
        first_latency + hbm_channel_cycles(channels, cfg) + turnarounds
    ).astype(np.int64)
    memory = np.where(moves, np.maximum(memory, busiest_channel), memory)
    # prologue and epilogue: transfers before the step's first compute instruction, after
    # its last
    ids = np.arange(len(op))
    first_compute = np.full(nsteps, np.iinfo(np.int64).max)
    last_compute = np.full(nsteps, -1)
    compute_ids = ids[compute]
    compute_steps = step[compute_ids]
    run_first, run_last = _runs(compute_steps, nsteps)
    first_compute[compute_steps[run_first]] = compute_ids[run_first]
    last_compute[compute_steps[run_last]] = compute_ids[run_last]
    has_compute = (last_compute >= 0)[step]
    prologue = per_step(times, transfer & (ids < first_compute[step]) & has_compute)
    epilogue = per_step(times, transfer & (ids > last_compute[step]) & has_compute)
    blocks = np.maximum(1, per_step_unit(ones, compute).max(axis=1, initial=0))
    dma = [j for j, u in enumerate(inputs.units) if u.kind.is_dma]
    queue_units = [inputs.units[j] for j in dma]
    work = per_step_unit(times, transfer)[:, dma]
    service = work - _per_step_unit(latency, transfer, step, unit, nsteps, nunits)[:, dma]
    queues, neighbours = _queue_occupancy(work, service, queue_units, blocks)
    first, last = _runs(step, nsteps)
    drain = gemm_timing(1, 1, 1, cfg).drain if cfg.weight_double_buffer else 0
    return _StepTable(
        inputs.keys,
        first,
        last,
        core_time.max(axis=1, initial=0),
        core_used.any(axis=1) * drain,
        vec_time.max(axis=1, initial=0),
        memory,
        port_cycles(busiest_bank, cfg),
        loads,
        stores,
        prologue,
        epilogue,
        read_bytes,
        write_bytes,
        per_step(pa["m"] * pa["k"] * pa["n"], gemm),
        [u.name for u in queue_units],
        queues,
        neighbours,
    )


def _collapsed_dependencies(
    pa: dict[str, np.ndarray], first: np.ndarray, last: np.ndarray
) -> tuple[list[int], list[int], list[int], list[int]]:
    """For each step, the earlier steps its loads, and its compute or stores, wait for, each
    with the latest instruction waited for in it (the recurrence needs only that one: an
    instruction of an earlier step is done at its share of that step's span). Returned as
    lists, one entry per (step, earlier step): the earlier step, the instructions of it up
    to the one waited for and its length; with per-step offsets, loads' then the others'."""
    step = pa["step"]
    nsteps, ninstrs = len(first), len(step)
    waiting = pa["dep_instr"]
    d = pa["dep_ids"]
    # key: 0 if a load waits, else 1; then the waiting step. Steps are runs of consecutive
    # instructions, so ordering by instruction orders by step: after sorting the codes
    # (key, instruction waited for), the latest instruction per (key, earlier step) ends each
    # run of equal (key, earlier step). Sorting the codes themselves is faster than argsort.
    key = (pa["op"][waiting] != Op.LOAD) * nsteps + step[waiting]
    other = step[waiting] != step[d]
    code = np.sort(key[other] * ninstrs + d[other])
    key, d = np.divmod(code, ninstrs)
    d_step = step[d]
    latest = np.ones(len(d), dtype=bool)
    latest[:-1] = (key[1:] != key[:-1]) | (d_step[1:] != d_step[:-1])
    key, d, d_step = key[latest], d[latest], d_step[latest]
    offsets = np.searchsorted(key, np.arange(2 * nsteps + 1))
    return (
        d_step.tolist(),
        (d - first[d_step] + 1).tolist(),
        (last[d_step] - first[d_step] + 1).tolist(),
        offsets.tolist(),
    )


def analyze(program: Program, cfg: HardwareConfig) -> AnalyticalResult:
    """Closed-form estimate of the whole program (see the module docstring).

    Steps are composed with a max-plus recurrence over four pipes (cores, vector units, load
    and store streams): a step's loads start when what they depend on is done and the load
    pipe is free; its compute starts when its inputs are done, its unit is free and its
    prologue has arrived; it ends when its stores are written. An instruction of an earlier
    step is taken as done at its share of that step's span (instructions run in order).
    """
    inputs = _inputs(program)
    table = _step_table(inputs, cfg)
    nsteps = len(inputs.keys)
    dep_step, dep_done, dep_len, offsets = _collapsed_dependencies(
        inputs.cols, table.first, table.last
    )
    # per-step constants of the recurrence, computed on whole arrays
    compute, vector, buffer = table.compute, table.vector, table.buffer
    uses = np.where(compute > 0, 1, np.where(vector > 0, 2, 0)).tolist()  # core, vector pipe
    busy = np.maximum(np.maximum(compute, vector), buffer).tolist()  # drains overlap the next
    span = np.maximum(np.maximum(compute + table.drain, vector), buffer).tolist()
    store_lead = np.maximum(0, table.stores - table.epilogue).tolist()
    loads, stores, memory = table.loads.tolist(), table.stores.tolist(), table.memory.tolist()
    prologue = table.prologue.tolist()
    start_of, end_of = [0] * nsteps, [0] * nsteps

    def ready(lo: int, hi: int) -> int:
        latest = 0
        for k in range(lo, hi):
            j = dep_step[k]
            s0 = start_of[j]
            done = s0 + (end_of[j] - s0) * dep_done[k] // dep_len[k]
            if done > latest:
                latest = done
        return latest

    free_core = free_vec = free_load = free_store = 0
    load_deps, work_deps = offsets[: nsteps + 1], offsets[nsteps:]
    for i in range(nsteps):
        lo, hi = load_deps[i], load_deps[i + 1]
        load_start = ready(lo, hi) if lo != hi else 0
        if free_load > load_start:
            load_start = free_load
        free_load = load_start + loads[i]
        lo, hi = work_deps[i], work_deps[i + 1]
        work_ready = ready(lo, hi) if lo != hi else 0
        pipe = uses[i]
        if pipe:
            start = load_start + prologue[i]
            if work_ready > start:
                start = work_ready
            if pipe == 1:
                if free_core > start:
                    start = free_core
                free_core = start + busy[i]
            else:
                if free_vec > start:
                    start = free_vec
                free_vec = start + busy[i]
            results = start + span[i]  # the step's results are complete, drain included
            store_start = results - store_lead[i]
            if free_store > store_start:
                store_start = free_store
            start_of[i] = start
            hbm_from = load_start if load_start < start else start
        else:
            results = 0
            store_start = max(free_store, work_ready, free_load)
            start_of[i] = hbm_from = load_start
        free_store = store_start + stores[i]
        # HBM is shared: a step cannot beat its combined traffic either
        end_of[i] = max(free_load, free_store, results, hbm_from + memory[i])
    # Per-step cycles: the share of the timeline during which this step is the oldest one
    # still running.
    end = np.array(end_of, dtype=np.int64)
    prefix = np.maximum.accumulate(np.maximum(end, 0))
    partition = np.maximum(0, end - np.concatenate(([0], prefix[:-1])))
    bound = np.argmax(np.stack([table.compute, table.vector, table.memory, table.buffer]), axis=0)
    by_bound = {name: int(partition[bound == b].sum()) for b, name in enumerate(BOUNDS)}
    table.start, table.end, table.partition = start_of, end_of, partition.tolist()
    return AnalyticalResult(
        int(prefix.max(initial=0)),
        int(table.read_bytes.sum()),
        int(table.write_bytes.sum()),
        by_bound,
        table,
    )
