"""Analytical model: closed-form cycles and bytes for a compiled program (no SimPy).

The program is cut into *steps*: maximal runs of consecutive instructions with the same
(group, layer, phase), i.e. one op on one sub-batch. For each step, with the formulas of
:mod:`wavecore_sim.timing`:

* core time (the busiest core's occupancy): ``sum(stream + exposed_loads)`` over its GEMMs
  plus each GEMM's first weight tile where it shows (double-buffered weights: a GEMM's first
  tile loads while the core's previous GEMM streams its last fold of ``M`` rows, so
  ``max(0, R - M_previous)`` of it shows; the first GEMM of a step pays the whole tile,
  :func:`_unit_streams`); the drain (R-1 + C-1) is kept apart, because the array
  drains while the next GEMM streams; without double-buffering, ``sum(total)``;
* chains inside a step (``core_waits``, ``vector_waits``): a compute instruction that waits
  for a transfer of its own step that waits for the step's compute (a buffer slot stored
  or refilled before it is used again) waits for it if the slot comes round sooner than the
  transfer is done (:func:`_waits_on_own_transfers`); when the slot waits for a store, the
  store queue paces the step: from its first store on it is busy its occupancy (below), so
  the step's stores end no earlier than that after its compute start
  (:func:`_paced_by_store_queue`);
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
  largest of them, plus what cannot overlap: the prologue (the loads the step's first
  compute instructions wait for, :func:`_prologue`) and the epilogue (stores issued after
  the last compute instruction)::

      step = max(core + core_waits + drain, vector + vector_waits, memory, buffer)
             + prologue + epilogue

The iteration composes the steps with a max-plus recurrence over four pipes (see
:func:`analyze`): an instruction of an earlier step is done at its unit's time into that
step (stretched as the step was) or, for a transfer, at its queue's share of the step; a
DMA queue runs its loads in order; the load and store streams of different steps that run
at the same time share the channels (processor sharing).

Evaluation is vectorised: the program's columns (:class:`~wavecore_sim.ir.Program`) are
read as they are, and the formulas of :mod:`wavecore_sim.timing` (written once, for ints and
arrays alike) run on whole arrays; per-step sums are bincounts. Only the recurrence walks the
steps in Python, over plain lists, with each step's dependencies collapsed to the latest
instruction per earlier step. :class:`StepEstimate` objects are built only when asked for.

The bound of a step is the resource that attains the max. DRAM bytes are the program's
transfers, counted per layer.

What the simulator has and this model does not (docs/validation.md measures each, and
``validate`` splits every row's error by them): HBM contention with other layers'
transfers beyond the last stores before a step's loads, buffer-port queueing behind other
units, and weight loads exposed when a core waits on data from another step.
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
#: entries (target columns plus ranges) of one pass of :func:`_busiest_per_step`: a pass's
#: work arrays then stay in a core's cache (measured on the zoo: 2**16 is within 10% of the
#: fastest pass size on every program tried, and up to 3x faster than 4,096 steps a pass)
PASS_ENTRIES = 1 << 16
#: a transfer's share of its step's span is kept in units of 2**-SHARE_BITS
SHARE_BITS = 20


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
    core_waits: int = 0  # the busiest core's waits for the step's own transfers (chains)
    vector_waits: int = 0  # and the busiest vector unit's
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
            max(
                self.compute + self.core_waits + self.drain,
                self.vector + self.vector_waits,
                self.memory,
                self.buffer,
            )
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
    core_waits: np.ndarray  # the busiest core's waits for the step's own transfers (chains)
    vector_waits: np.ndarray  # and the busiest vector unit's
    memory: np.ndarray
    buffer: np.ndarray
    loads: np.ndarray
    stores: np.ndarray
    load_service: np.ndarray  # of ``loads``, the time the transfers hold channels
    store_service: np.ndarray  # and of ``stores``
    prologue: np.ndarray
    epilogue: np.ndarray
    paced: np.ndarray  # compute start to the end of a store queue the compute waits for
    read_bytes: np.ndarray
    write_bytes: np.ndarray
    macs: np.ndarray
    queue_names: list[str]
    queues: np.ndarray  # steps x DMA queues
    neighbours: np.ndarray  # steps x DMA queues: the part of ``queues`` shared across steps
    compute_op: np.ndarray  # per instruction: a GEMM or vector op
    # per instruction, when it is done in its step: a compute op, its unit's time from the
    # step's compute start; a transfer, its share of the step's span (2**-SHARE_BITS units)
    when: np.ndarray
    tail: np.ndarray  # per load: its queue's load time in the step from it to the end
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
            "core_waits",
            "vector_waits",
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
            (first, last, comp, drain, vec, cw, vw, mem, buf, ld, st, pro, epi, rb, wb, macs) = (
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
                    core_waits=cw,
                    vector_waits=vw,
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
    # the dependencies, (instruction waiting, instruction waited for), inside a step and
    # across steps
    waiting, d = program.dep_instr(), pa["dep_ids"]
    step_waiting, step_d = step[waiting], step[d]
    inner = step_waiting == step_d
    cross = ~inner
    pa["inner_waiting"], pa["inner_d"] = waiting[inner], d[inner]
    pa["cross_step_waiting"], pa["cross_step_d"] = step_waiting[cross], step_d[cross]
    pa["inner_op_waiting"], pa["inner_op_d"] = (
        pa["op"][pa["inner_waiting"]],
        pa["op"][pa["inner_d"]],
    )
    pa["cross_waiting"], pa["cross_d"] = waiting[cross], d[cross]
    return _Inputs(pa, keys, program.units)


def _per_step_unit(
    values: np.ndarray, mask: np.ndarray, key: np.ndarray, nsteps: int, nunits: int
) -> np.ndarray:
    """(steps x units) sums of ``values`` over the instructions selected by ``mask``
    (``key``: each instruction's ``step * nunits + unit``)."""
    return (
        np.bincount(key[mask], weights=values[mask], minlength=nsteps * nunits)
        .astype(np.int64)
        .reshape(nsteps, nunits)
    )


def _waits_on_own_transfers(
    pa: dict[str, np.ndarray],
    own: np.ndarray,
    offset: np.ndarray,
    position: np.ndarray,
    tile: np.ndarray,
    gemm: np.ndarray,
    drain: int,
    cfg: HardwareConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Chains inside a step: a compute instruction waiting for a transfer of its own step
    that itself waits for a compute instruction of the step (a buffer slot stored, or
    refilled, before it is used again). Times count from the step's compute start, each
    unit running its instructions back to back (``offset``: when each is done, ``position``:
    its place in its unit's stream). The transfer is done at its latest producer's
    ``offset`` plus its own time; the consumer's unit could start it at its own ``offset``
    less its time. If the transfer is ``x`` later than that, the unit waits ``x``, and a
    GEMM's first weight tile (``R`` cycles, ``tile`` of which is charged already) loads only
    once the data is there: ``max(0, x + R - tile)`` beyond the unit's own time, of which
    ``max(0, x)`` is a wait (not occupancy) and the rest an exposed tile.

    A chain from a producer ``k`` instructions back in the stream repeats every ``k``
    instructions (``k`` slots in turn), so each instruction carries ``1/k`` of its excess;
    the waits of a step then add up. Returns, per instruction, the exposed tile cycles and
    the wait (floats: the step sums them); and, for :func:`_paced_by_store_queue`, when each
    transfer fed by the step's compute can start (its latest producer's ``offset``, -1 if
    none) and which transfers the step's compute waits for.
    """
    waiting, d = pa["inner_waiting"], pa["inner_d"]
    op_waiting, op_d = pa["inner_op_waiting"], pa["inner_op_d"]
    transfer_waits = (op_waiting == Op.LOAD) | (op_waiting == Op.STORE)
    transfer_waited = (op_d == Op.LOAD) | (op_d == Op.STORE)
    # transfers of a step that wait for its compute: when they are done (step-relative),
    # and the position of the latest such producer in its unit's stream
    fed = transfer_waits & ~transfer_waited
    t, c = waiting[fed], d[fed]
    ready = np.full(len(own), -1, dtype=np.int64)
    np.maximum.at(ready, t, offset[c])
    produced = np.zeros(len(own), dtype=np.int64)
    np.maximum.at(produced, t, position[c])
    done = np.where(ready >= 0, ready + own, -1)
    # compute instructions waiting for such a transfer: how late it is, from when the unit
    # could start them, and over how many of the unit's instructions the chain repeats
    waits = ~transfer_waits & transfer_waited
    i, t = waiting[waits], d[waits]
    awaited = np.zeros(len(own), dtype=bool)
    awaited[t] = True
    chained = done[t] >= 0
    i, t = i[chained], t[chained]
    free = offset[i] - gemm[i] * drain - own[i]
    x = done[t] - free
    head = gemm[i] * (cfg.array_rows if cfg.weight_double_buffer else 0) - tile[i]
    span = np.maximum(1, position[i] - produced[t])
    waited, exposed = np.zeros(len(own)), np.zeros(len(own))
    np.maximum.at(waited, i, np.maximum(0, x) / span)
    np.maximum.at(exposed, i, np.maximum(0, np.minimum(x, 0) + head) / span)
    return exposed, waited, ready, awaited


def _paced_by_store_queue(
    op: np.ndarray,
    ready: np.ndarray,
    awaited: np.ndarray,
    key: np.ndarray,
    occupancy: np.ndarray,
    dma: Sequence[int],
    nsteps: int,
    nunits: int,
) -> np.ndarray:
    """Per step, the time from its compute start to the end of its busiest store queue, when
    the step's compute waits for that queue (a chain: a compute instruction reusing a buffer
    slot only once a store of the step has left; ``awaited``). A queue holds one transfer at
    a time, so once its first store can start (``lead``: the earliest ``ready`` of its
    stores, when their producers are done, step-relative) the queue is busy at least its
    occupancy (its own transfers plus the channel time it shares with the other queues,
    ``occupancy``, steps x DMA queues), and the compute that waits for it cannot run ahead.
    0 where no compute instruction waits for a store of its own step. (``key``: each
    instruction's ``step * nunits + unit``.)"""
    store = op == Op.STORE
    first = store & (ready >= 0)
    never = np.iinfo(np.int64).max
    lead = np.full(nsteps * nunits, never)
    np.minimum.at(lead, key[first], ready[first])
    paces = np.zeros(nsteps * nunits, dtype=bool)
    paces[key[store & awaited]] = True
    lead, paces = lead.reshape(nsteps, nunits)[:, dma], paces.reshape(nsteps, nunits)[:, dma]
    paced = np.where(paces & (lead < never), lead + occupancy, 0)
    return paced.max(axis=1, initial=0)


def _prologue(
    pa: dict[str, np.ndarray],
    load_time: np.ndarray,
    opens: np.ndarray,
    first: np.ndarray,
    nsteps: int,
) -> np.ndarray:
    """Per step, the load time before its compute can start: the step's loads in program
    order (the model's load pipe) up to the latest one that an instruction opening the step
    on its unit (``opens``: its first compute instruction on a core or vector unit) waits
    for. Loads it does not wait for (later blocks, prefetched data) overlap the compute."""
    step = pa["step"]
    total = np.cumsum(load_time)
    upto = total - (total - load_time)[first][step]  # the step's load time through each
    loaded = pa["inner_op_d"] == Op.LOAD
    waiting, d = pa["inner_waiting"][loaded], pa["inner_d"][loaded]
    sel = opens[waiting]
    out = np.zeros(nsteps, dtype=np.int64)
    np.maximum.at(out, step[waiting[sel]], upto[d[sel]])
    return out


def _unit_streams(
    own: np.ndarray,
    m: np.ndarray,
    gemm: np.ndarray,
    step: np.ndarray,
    unit: np.ndarray,
    nunits: int,
    cfg: HardwareConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each unit's stream of instructions, step by step (a unit runs its instructions in
    order, back to back once the step runs). Per instruction:

    * ``tile``: under weight double-buffering, the cycles a GEMM's first weight tile shows.
      The tile (R cycles to shift in) loads while the core's previous GEMM streams its last
      fold, ``M`` rows of that GEMM, so ``max(0, R - M_previous)`` of it shows. The first
      GEMM of a step and core is charged the whole tile: it waits for the step's inputs
      rather than for the previous fold;
    * ``offset``: the unit's time (``own``, plus ``tile``) over the step's instructions up
      to and including it: when it is done, counted from the unit's start on the step;
    * ``position``: its place in the unit's stream in the step, from 1.
    """
    tile, offset, position = (np.zeros(len(own), dtype=np.int64) for _ in range(3))
    r = cfg.array_rows if cfg.weight_double_buffer else 0
    for u in range(nunits):
        ids = np.flatnonzero(unit == u)
        if not len(ids):
            continue
        opened = np.diff(step[ids], prepend=-1) != 0  # its first in each step
        x = own[ids]
        if r and gemm[ids[0]]:  # a core
            previous = np.concatenate(([0], m[ids[:-1]]))
            tile[ids] = np.where(opened, r, np.maximum(0, r - previous))
            x = x + tile[ids]
        firsts = np.flatnonzero(opened)
        runs = np.diff(np.append(firsts, len(ids)))
        total = np.cumsum(x)
        offset[ids] = total - np.repeat((total - x)[firsts], runs)
        position[ids] = np.arange(1, len(ids) + 1) - np.repeat(firsts, runs)
    return tile, offset, position


def _busiest_per_step(
    step: np.ndarray, addr: np.ndarray, size: np.ndarray, nsteps: int, ways: int, granule: int
) -> np.ndarray:
    """Per step, the bytes of its busiest interleaved target
    (:func:`timing.busiest_interleaved_totals`; ``step`` ascending). A range of a whole
    number of turns (``ways * granule`` bytes each) puts ``size / ways`` on every target
    wherever it starts, so those ranges only add that to the step's busiest target; the
    others go through the prefix sums, as many steps a pass as keep a pass near
    ``PASS_ENTRIES`` entries (``ways + 1`` per step and, on average, its ranges)."""
    uniform = size % (ways * granule) == 0
    even = np.bincount(step[uniform], weights=size[uniform] // ways, minlength=nsteps)
    rest = ~uniform
    step, addr, size = step[rest], addr[rest], size[rest]
    per_step = ways + 1 + -(-len(step) // max(1, nsteps))
    return even.astype(np.int64) + busiest_interleaved_totals(
        step, addr, size, nsteps, ways, granule, groups_per_pass=max(1, PASS_ENTRIES // per_step)
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
    key = step * nunits + unit  # (step, unit) of each instruction

    def per_step_unit(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return _per_step_unit(values, mask, key, nsteps, nunits)

    def per_step(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.bincount(step[mask], weights=values[mask], minlength=nsteps).astype(np.int64)

    gemm, vec, load, store = (op == Op.GEMM), (op == Op.VEC), (op == Op.LOAD), (op == Op.STORE)
    transfer, compute = load | store, gemm | vec
    ones = np.ones_like(op)
    # GEMMs and vector ops: the shared formulas, evaluated on whole arrays
    t = gemm_timing(pa["m"], pa["k"], pa["n"], cfg)
    body = t.stream + t.exposed_loads if cfg.weight_double_buffer else t.total
    core_used = per_step_unit(ones, gemm) > 0
    gemm_rd, gemm_wr = gemm_buffer_bytes(
        pa["m"], pa["k"], pa["n"], pa["accumulate"], pa["out_bytes"], cfg
    )
    vec_cycles = vector_cycles(pa["ops"], pa["passes"], cfg)
    # buffer-port bytes per instruction, spread over the banks from the first access
    rd = np.select([gemm, vec, store], [gemm_rd, pa["read_bytes"] * pa["passes"], pa["nbytes"]], 0)
    wr = np.select([gemm, vec, load], [gemm_wr, pa["write_bytes"], pa["nbytes"]], 0)
    busiest_bank = np.zeros(nsteps, dtype=np.int64)
    for size, addr in ((rd, pa["read_addr"]), (wr, pa["write_addr"])):
        sel = (size > 0) & (addr >= 0)
        busiest_bank = np.maximum(
            busiest_bank,
            _busiest_per_step(
                step[sel], addr[sel], size[sel], nsteps, cfg.gbuf_banks, cfg.gbuf_interleave_bytes
            ),
        )
    # transfers: timing.dma_ideal_cycles each, and the busiest channel of each step
    nbytes, dram_addr = pa["nbytes"], pa["dram_addr"]
    times = np.zeros_like(nbytes)
    times[transfer] = dma_cycles_many(dram_addr[transfer], nbytes[transfer], store[transfer], cfg)
    channels = _busiest_per_step(
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
    # epilogue: transfers after the step's last compute instruction
    ids = np.arange(len(op))
    last_compute = np.full(nsteps, -1)
    compute_ids = ids[compute]
    compute_steps = step[compute_ids]
    run_last = _runs(compute_steps, nsteps)[1]
    last_compute[compute_steps[run_last]] = compute_ids[run_last]
    has_compute = (last_compute >= 0)[step]
    epilogue = per_step(times, transfer & (ids > last_compute[step]) & has_compute)
    blocks = np.maximum(1, per_step_unit(ones, compute).max(axis=1, initial=0))
    dma = [j for j, u in enumerate(inputs.units) if u.kind.is_dma]
    queue_units = [inputs.units[j] for j in dma]
    per_queue = per_step_unit(times, transfer)
    work = per_queue[:, dma]
    service = work - per_step_unit(latency, transfer)[:, dma]
    queues, neighbours = _queue_occupancy(work, service, queue_units, blocks)
    first, last = _runs(step, nsteps)
    drain = gemm_timing(1, 1, 1, cfg).drain if cfg.weight_double_buffer else 0
    own = np.select([gemm, vec, transfer], [body, vec_cycles, times], 0)
    tile, offset, position = _unit_streams(own, pa["m"], gemm, step, unit, nunits, cfg)
    body, own = body + tile, own + tile  # first weight tiles exposed between GEMMs
    offset += gemm * drain  # a GEMM's results are done after the drain
    prologue = _prologue(pa, times * load, compute & (position == 1), first, nsteps)
    exposed, waited, ready, awaited = _waits_on_own_transfers(
        pa, own, offset, position, tile, gemm, drain, cfg
    )
    paced = _paced_by_store_queue(op, ready, awaited, key, queues, dma, nsteps, nunits)
    core_time = per_step_unit(body + exposed, gemm)
    vec_time = per_step_unit(vec_cycles, vec)
    unit_waits = per_step_unit(waited, compute)
    core_busiest, vec_busiest = core_time.max(axis=1, initial=0), vec_time.max(axis=1, initial=0)
    core_chain = (core_time + unit_waits * core_used).max(axis=1, initial=0)
    vec_chain = (vec_time + unit_waits * (per_step_unit(ones, vec) > 0)).max(axis=1, initial=0)
    queue_total = per_queue.ravel()[key]
    share = (offset << SHARE_BITS) // np.maximum(1, queue_total)
    return _StepTable(
        inputs.keys,
        first,
        last,
        core_busiest,
        core_used.any(axis=1) * drain,
        vec_busiest,
        core_chain - core_busiest,
        vec_chain - vec_busiest,
        memory,
        port_cycles(busiest_bank, cfg),
        loads,
        stores,
        per_step(times - latency, load),
        per_step(times - latency, store),
        prologue,
        epilogue,
        paced,
        read_bytes,
        write_bytes,
        per_step(pa["m"] * pa["k"] * pa["n"], gemm),
        [u.name for u in queue_units],
        queues,
        neighbours,
        compute,
        np.where(compute, offset, share),
        np.where(load, queue_total - offset + own, 0),
    )


def _max_per_group(group: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``group`` (ascending) and the largest ``value`` of each
    (nonnegative ints both): sort the codes ``(group, value)`` and keep the last of each run.
    Sorting the codes themselves is faster than argsort or lexsort, where they fit, and a
    stable sort (timsort) is 4x faster than the default here: dependencies come in runs
    already sorted (by waiting instruction, then mostly by the one waited for)."""
    span = int(value.max(initial=0)) + 1
    if (int(group.max(initial=0)) + 1) * span < np.iinfo(np.int64).max:
        group, value = np.divmod(np.sort(group * span + value, kind="stable"), span)
    else:  # (programs far beyond the zoo's size)
        order = np.lexsort((value, group))
        group, value = group[order], value[order]
    last = np.ones(len(group), dtype=bool)
    last[:-1] = group[1:] != group[:-1]
    return group[last], value[last]


def _collapsed_dependencies(
    pa: dict[str, np.ndarray], table: _StepTable
) -> tuple[list[tuple[int, bool, int, int]], list[int]]:
    """For each step, the earlier steps its loads, and its compute or stores, wait for
    (the dependencies across steps, ``pa["cross_*"]``): one entry per (step,
    earlier step), with the latest instruction waited for there (its ``table.when`` times
    it). A loads' entry also carries the longest ``table.tail`` of the step's loads that wait
    for that step: a DMA queue runs its loads in order, so the step's loads are not done
    before the instruction waited for plus the queue time from the load that waits to the
    end of the step. Returned as one tuple per entry: the earlier step, whether the
    instruction waited for is a compute one, its ``when``, the tail (-1 for compute and
    stores, which have none); and offsets into them: step ``i``'s entries from
    ``offsets[2 * i]`` to ``offsets[2 * i + 2]``, its loads' first."""
    nsteps = len(table.first)
    waiting, d = pa["cross_waiting"], pa["cross_d"]
    # key: the waiting step; then 0 if a load waits, else 1; then the earlier step
    loads = pa["op"][waiting] == Op.LOAD
    pair = (pa["cross_step_waiting"] * 2 + ~loads) * nsteps + pa["cross_step_d"]
    pairs, d = _max_per_group(pair, d)
    tail = np.full(len(pairs), -1, dtype=np.int64)
    tail_pairs, longest = _max_per_group(pair[loads], table.tail[waiting[loads]])
    tail[np.searchsorted(pairs, tail_pairs)] = longest
    key, d_step = np.divmod(pairs, nsteps)
    offsets = np.searchsorted(key, np.arange(2 * nsteps + 1))
    columns = (d_step, table.compute_op[d], table.when[d], tail)
    return list(zip(*(c.tolist() for c in columns), strict=True)), offsets.tolist()


def analyze(program: Program, cfg: HardwareConfig) -> AnalyticalResult:
    """Closed-form estimate of the whole program (see the module docstring).

    Steps are composed with a max-plus recurrence over four pipes (cores, vector units, load
    and store streams), in program order:

    * a step's loads start when the load pipe is free; they are done no earlier than any
      instruction they wait for plus the load time that follows it on its queue (a queue
      runs in order, :func:`_collapsed_dependencies`);
    * while the previous stores still hold the channels, the loads and those stores share
      them: both are delayed by the channel time of the other in the overlap, up to the
      stores' channel time not shared yet (processor sharing);
    * its compute starts when its inputs are done, its unit is free and its prologue has
      arrived; it ends when its stores are written (if its compute waits for a store
      queue of its own, no earlier than that queue's occupancy after its first store can
      start, ``paced``), and no earlier than its traffic takes on the shared channels
      (``memory``), which then holds both its load and store pipes;
    * an instruction of an earlier step is done, if a compute one, at its unit's time into
      that step stretched to the step's actual compute span; if a transfer, at its queue's
      share of the step's span.
    """
    inputs = _inputs(program)
    table = _step_table(inputs, cfg)
    nsteps = len(inputs.keys)
    pa = inputs.cols
    entries, offsets = _collapsed_dependencies(pa, table)
    # per-step constants of the recurrence, computed on whole arrays
    compute, vector = table.compute + table.core_waits, table.vector + table.vector_waits
    buffer = table.buffer
    uses = np.where(compute > 0, 1, np.where(vector > 0, 2, 0)).tolist()  # core, vector pipe
    busy = np.maximum(np.maximum(compute, vector), buffer).tolist()  # drains overlap the next
    span = np.maximum(np.maximum(compute + table.drain, vector), buffer).tolist()
    # the units' own time in a step (no waits): what ``when`` counts, stretched to the step
    own_span = np.maximum(1, np.maximum(table.compute + table.drain, table.vector)).tolist()
    store_lead = np.maximum(0, table.stores - table.epilogue).tolist()
    loads, stores, memory = table.loads.tolist(), table.stores.tolist(), table.memory.tolist()
    prologue, epilogue = table.prologue.tolist(), table.epilogue.tolist()
    paced = table.paced.tolist()
    load_service, store_service = table.load_service.tolist(), table.store_service.tolist()
    start_of, end_of = [0] * nsteps, [0] * nsteps
    width = [1] * nsteps  # from the start of a step's compute to its last result
    per_step = zip(
        *(offsets[0:-1:2], offsets[2::2], loads, stores, memory, load_service),
        *(store_service, prologue, epilogue, uses, busy, span, store_lead, paced),
        strict=True,
    )
    free_core = free_vec = free_load = free_store = 0
    store_rate = 1.0  # the share of the last stores' time that holds channels
    stores_began = store_backlog = 0  # and when they began, and their channel time not shared
    for i, row in enumerate(per_step):
        lo, hi, ld, st, mem, ld_service, st_service, pro, epi, pipe, bz, sp, lead, pace = row
        # when the instructions this step's loads, and its other instructions, wait for are
        # done (the latest of each; for loads, plus the load time that follows each on its
        # queue: ``tail``)
        load_ready = work_ready = 0
        for j, by_compute, when, tail in entries[lo:hi]:
            s0, e = start_of[j], end_of[j]
            if by_compute:  # its unit's time into the step, stretched as the step was
                t = s0 + when * width[j] // own_span[j]
            else:  # a transfer: its share of the step's span
                t = s0 + ((e - s0) * when >> SHARE_BITS)
            if t > e:
                t = e
            if tail >= 0:
                t += tail
                if t > load_ready:
                    load_ready = t
            elif t > work_ready:
                work_ready = t
        free_load += ld
        if load_ready > free_load:
            free_load = load_ready
        load_start = free_load - ld
        # the loads share the channels with the last stores while both run (processor
        # sharing: each waits for the other's channel time in the overlap)
        shared = 0
        if free_store > load_start and ld:
            overlap = (free_store if free_store < free_load else free_load) - (
                stores_began if stores_began > load_start else load_start
            )
            if overlap > 0:
                shared = int(min(overlap * store_rate, ld_service, store_backlog))
                store_backlog -= shared
                free_load += shared
                free_store += shared
        if pipe:
            start = load_start + pro + (shared if pro else 0)
            if work_ready > start:
                start = work_ready
            if pipe == 1:
                if free_core > start:
                    start = free_core
                free_core = start + bz
            else:
                if free_vec > start:
                    start = free_vec
                free_vec = start + bz
            results = start + sp  # the step's results are complete, drain included
            store_start = results - lead
            if free_store > store_start:
                store_start = free_store
            start_of[i] = start
            hbm_from = load_start if load_start < start else start
        else:
            results = 0
            store_start = max(free_store, work_ready, free_load)
            start_of[i] = hbm_from = load_start
        free_store = store_start + st
        if pipe and pace and start + pace > free_store:
            free_store = start + pace  # a store queue the compute waits for paces it
        if st:
            store_rate = st_service / st
            stores_began, store_backlog = store_start, st_service
        # HBM is shared: a step cannot beat its combined traffic either; the load and store
        # pipes' ends are this step's only if it uses them
        end = results
        if ld and free_load > end:
            end = free_load
        if st and free_store > end:
            end = free_store
        if mem and hbm_from + mem > end:
            end = hbm_from + mem
            # the channels are shared, so both streams last as long as the step's traffic:
            # the loads until its last stores, the stores to the end
            if ld and end - epi > free_load:
                free_load = end - epi
            if st:
                free_store = end
        end_of[i] = end
        if pipe:
            width[i] = max(results, end - epi) - start_of[i]
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
