"""Schedule stage: layer groups, sub-batch sizes and what stays in the global buffer.

A *group* is a run of consecutive layers (topological order) that processes the mini-batch
in sub-batches of ``b`` samples: for each sub-batch, every forward op of the group runs, then
(in the backward pass, groups in reverse) every backward op. Within a group, tensors passed
between its ops stay in the buffer ("resident"); group inputs and outputs, saved activations
and anything read by another group go through DRAM.

Residency rules
    * ``chain`` (il, mbs1): a tensor stays on chip only for the op right after its producer;
      any other reader gets it from DRAM (so it is also stored).
    * ``branch`` (mbs-fs, mbs2): a tensor stays on chip until its last reader in the group,
      and a group input read by two or more ops is loaded once and kept ("reuse across
      branches": a residual block's input serves the shortcut and the main path).
    * ``none`` (baseline): every op reads its inputs from and writes its outputs to DRAM.

Buffer-fit rule. For sub-batch ``b`` the group is laid out by replaying its steps with a
first-fit allocator: before step ``i`` its resident outputs (``b * bytes_per_sample``) are
placed, and the largest free hole must hold the step's smallest working set
(:func:`tiling.min_step_bytes`); after step ``i`` tensors whose last reader it was are freed.
Weights kept on chip across sub-batches and dW accumulators are reserved for the whole pass.
``fits(G, b) <=> for every step i: largest_hole_i >= min_step_bytes_i``.

Greedy grouping (mbs1, mbs2, mbs2-time). Estimated DRAM bytes of a group at sub-batch ``b``::

    T(G, b) = sum_ops B * (dram_in + dram_out bytes per sample)
            + ceil(B / b) * W_G * passes          (weights, unless kept on chip)
            + (2 ceil(B / b) - 1) * dW_G          (dW read-modify-write, unless kept on chip)

with ``b`` the size (among B, B/2, B/4, ..., 1) minimising ``T``. Starting from the first
layer, a group absorbs the next layer ``l`` while ``fits(G + l)`` and
``T(G + l) <= T(G) + T({l})``: merging saves the boundary tensor's store and reload but may
force a smaller sub-batch, hence more weight reloads.

Objective (``mbs2-time``). Small sub-batches cut traffic but starve the arrays: a GEMM of
``M < R`` streamed rows exposes ``R - M`` cycles of every weight load. ``mbs2-time`` is
``mbs2`` with the estimated cycles in place of ``T`` (ties broken by ``T``)::

    C(G, b) = max(T(G, b) / hbm_bytes_per_cycle,
                  ceil(B / b) * sum_GEMMs groups * gemm_cycles(ceil(M_b / cores), K, N))

with ``gemm_cycles`` the shared tile formula (``timing.gemm_timing``). It ignores vector
work and overlap between groups; it only has to rank candidates. Batch normalization spans the
mini-batch, so under MBS every BN layer is a group of its own at the full batch.

Recomputation (``--recompute``, on the ``branch`` schedules). A recomputing group's forward
pass stores only what other groups read; its backward pass starts, per sub-batch, with copies
of the forward ops its backward ops need (``recompute:fwd:<layer>``, the loss excepted),
loading only the group's inputs, and keeps their outputs on chip until their last backward
reader. So the saved activations made inside the group never reach DRAM, the recomputed
GEMMs and vector ops are real instructions, and the fit rule and ``T``/``C`` count them
(weights reloaded for the recomputed ops unless kept on chip). ``all`` recomputes every group
where that fits; ``auto`` chooses per group by the objective. ``mbs-opt`` searches the groups
(``schedule_opt``).
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from bisect import bisect_left
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from .config import HardwareConfig
from .errors import WavecoreError
from .schedule_opt import (
    KEEP,
    MAX_SPAN,
    Footprint,
    GroupingSearch,
    SearchResult,
    cuts_of,
    search_grouping,
)
from .tiling import (
    ALIGN_SLACK,
    ALIGNMENT,
    StepTiling,
    aligned_bytes,
    min_step_bytes,
    plan_step,
)
from .tiling import clear_caches as tiling_clear_caches
from .timing import gemm_timing, vector_cycles
from .training import TrainingGraph, TrainingOp

SCHEDULES = ("baseline", "il", "mbs-fs", "mbs1", "mbs2", "mbs2-time", "mbs-opt")
RULE = {
    "baseline": "none",
    "il": "chain",
    "mbs1": "chain",
    "mbs2": "branch",
    "mbs-fs": "branch",
    "mbs2-time": "branch",
    "mbs-opt": "branch",
}
DEFAULT_NORM = {
    "baseline": "bn",
    "il": "bn",
    "mbs1": "gn",
    "mbs2": "gn",
    "mbs-fs": "gn",
    "mbs2-time": "gn",
    "mbs-opt": "gn",
}
#: what the greedy grouping minimises; every other schedule minimises estimated DRAM traffic
#: (``mbs-opt`` takes its objective as an option: time by default)
OBJECTIVE = {"mbs2-time": "time"}
OBJECTIVES = ("time", "traffic", "energy")
#: activation recomputation per group: never, wherever it fits, or where the objective gains
RECOMPUTE = ("none", "all", "auto")
#: schedules that can recompute: a recomputed tensor must stay on chip until its last
#: backward reader, which only the ``branch`` rule allows, and there must be sub-batches
RECOMPUTING = ("mbs2", "mbs2-time", "mbs-opt", "mbs-fs")
#: name prefix of a recomputed forward op (``recompute:fwd:<layer>``)
RECOMPUTED = "recompute:"


@dataclass(frozen=True)
class StepIO:
    """Where one op of a group finds its operands and leaves its results."""

    op: TrainingOp
    resident_in: frozenset[str]  # read from the buffer (already there)
    load_resident: frozenset[str]  # loaded whole from DRAM, then kept for later readers
    dram_in: frozenset[str]  # streamed from DRAM block by block
    resident_out: frozenset[str]  # kept in the buffer for later readers
    store_out: frozenset[str]  # written to DRAM
    frees: frozenset[str]  # resident tensors whose last reader this is


@dataclass
class Group:
    """One layer group with its sub-batch size and buffer decisions."""

    index: int
    layers: tuple[str, ...]
    sub_batch: int
    fwd: list[StepIO]
    bwd: list[StepIO]
    weights_resident: bool = False
    wgrad_resident: bool = False
    footprint_bytes: int = 0
    estimated_dram_bytes: int = 0
    estimated_cycles: int = 0
    recompute: bool = False  # backward pass starts by recomputing the forward (bwd has both)
    tiled: bool = False  # estimates from the compiler's tiles (GroupBuilder.tiled)

    def sub_batches(self, batch: int) -> list[tuple[int, int]]:
        """``(first sample, samples)`` of each sub-batch; sizes balanced to differ by <= 1."""
        count = math.ceil(batch / self.sub_batch)
        base, extra = divmod(batch, count)
        out, start = [], 0
        for i in range(count):
            size = base + (1 if i < extra else 0)
            out.append((start, size))
            start += size
        return out


@dataclass
class SchedulePlan:
    """The schedule of one training iteration."""

    name: str
    rule: str
    batch: int
    groups: list[Group]
    update_ops: list[TrainingOp]
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------- residency


@lru_cache(maxsize=16)
def _per_sample_tensors(graph: TrainingGraph) -> frozenset[str]:
    return frozenset(n for n, t in graph.tensors.items() if t.per_sample)


def plan_residency(
    graph: TrainingGraph,
    ops: list[TrainingOp],
    rule: str,
    no_store: frozenset[str] = frozenset(),
) -> list[StepIO]:
    """Apply a residency rule to one pass (forward or backward ops) of one group.

    ``no_store``: tensors this pass never writes to DRAM because the group recomputes them
    (under ``branch`` they stay on chip for every later reader of the pass)."""
    position = {op.name: i for i, op in enumerate(ops)}
    # a recomputed op stands in for the forward op it copies (the graph knows that one's
    # tensors' writers and readers)
    position |= {op.name.removeprefix(RECOMPUTED): i for i, op in enumerate(ops) if op.recompute}
    return [step_io(graph, op, position, rule, no_store) for op in ops]


@lru_cache(maxsize=16)
def _writers(graph: TrainingGraph) -> dict[str, tuple[str, ...]]:
    """The ops that write each tensor."""
    out: dict[str, list[str]] = {}
    for op in graph.ops:
        for t in op.writes:
            out.setdefault(t, []).append(op.name)
    return {t: tuple(names) for t, names in out.items()}


def step_io(
    graph: TrainingGraph,
    op: TrainingOp,
    position: dict[str, int],
    rule: str,
    no_store: frozenset[str] = frozenset(),
) -> StepIO:
    """The residency of one op of a pass, from where the ops touching its tensors run in the
    pass (``position``: op name -> place in the pass, any order-preserving numbering; ops
    not in it are outside the pass). It reads only the op's own tensors' writers and
    readers, so the step of an op depends on the pass only through those ops."""
    per_sample = _per_sample_tensors(graph)
    writers = _writers(graph)
    i = position[op.name]

    def readers_in_pass(t: str) -> list[int]:
        return [position[c] for c in graph.consumers.get(t, ()) if c in position]

    def span(t: str) -> tuple[int, int] | None:
        """(first index, last reader) of a tensor kept in the buffer, or None."""
        readers = readers_in_pass(t)
        if rule == "none" or not readers:
            return None
        made = [position[w] for w in writers.get(t, ()) if w in position]
        if made:
            p = min(made)
            later = [r for r in readers if r > p]
            if rule == "branch" and later:
                return (p, max(later))
            if rule == "chain" and p + 1 in later:
                return (p, p + 1)
        elif rule == "branch" and len(readers) >= 2:
            return (min(readers), max(readers))
        return None

    res_in, load_res, dram_in, frees = set(), set(), set(), set()
    for t in op.reads:
        if t not in per_sample:
            continue
        sp = span(t)
        if sp and sp[0] < i <= sp[1]:
            res_in.add(t)
        elif sp and sp[0] == i:
            load_res.add(t)
        else:
            dram_in.add(t)
        if sp and sp[1] == i:
            frees.add(t)
    res_out, store = set(), set()
    for t in op.writes:
        if t not in per_sample:
            continue
        sp = span(t)
        if sp:
            res_out.add(t)
        from_dram = [r for r in readers_in_pass(t) if not (sp and sp[1] >= r)]
        outside = any(c not in position for c in graph.consumers.get(t, ()))
        # (a saved tensor's backward reader is an outside reader)
        if t not in no_store and (outside or from_dram):
            store.add(t)
    return StepIO(
        op,
        frozenset(res_in),
        frozenset(load_res),
        frozenset(dram_in),
        frozenset(res_out),
        frozenset(store),
        frozenset(frees),
    )


# ------------------------------------------------------------------------- buffer fit


class FirstFit:
    """First-fit allocator over ``[0, capacity)``; free blocks coalesce."""

    def __init__(self, capacity: int, alignment: int = ALIGNMENT) -> None:
        self.capacity = capacity
        self.alignment = alignment
        self.free: list[tuple[int, int]] = [(0, capacity)]  # sorted (offset, size)

    def _round(self, size: int) -> int:
        return -(-size // self.alignment) * self.alignment

    def alloc(self, size: int) -> int | None:
        size = self._round(max(size, 1))
        for i, (off, sz) in enumerate(self.free):
            if sz >= size:
                self.free[i] = (off + size, sz - size)
                if self.free[i][1] == 0:
                    del self.free[i]
                return off
        return None

    def release(self, offset: int, size: int) -> None:
        size = self._round(max(size, 1))
        self.free.append((offset, size))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for off, sz in self.free:
            if merged and merged[-1][0] + merged[-1][1] == off:
                merged[-1] = (merged[-1][0], merged[-1][1] + sz)
            else:
                merged.append((off, sz))
        self.free = merged

    def largest_hole(self) -> tuple[int, int]:
        """``(offset, size)`` of the largest free block (``(0, 0)`` when full)."""
        return max(self.free, key=lambda fb: (fb[1], -fb[0]), default=(0, 0))


@dataclass(frozen=True)
class LayoutProfile:
    """A pass replayed with the whole buffer, summarised for both weight choices (streamed,
    kept on chip): the smallest capacity left after a reservation at which every step fits,
    and the peak bytes in use.

    Per step, with ``top`` the allocations' high-water mark, ``hole`` the largest hole below
    it and ``need`` the step's smallest working set, the step fits a capacity ``limit`` iff
    ``top <= limit`` and ``max(hole, limit - top) >= need + ALIGN_SLACK``, i.e. iff ``limit``
    is at least ``top`` when the hole holds the working set and ``top + need + ALIGN_SLACK``
    when it does not; the pass fits iff ``limit`` is at least the largest of these. Its peak
    is the largest ``in use + need``. Reserving R bytes at the bottom first (weights or dW
    kept on chip) shifts every first-fit placement by R without changing it, so one replay
    answers every reservation exactly."""

    limit: tuple[int, int]  # smallest capacity that fits, (weights streamed, weights kept)
    in_use: tuple[int, int]  # peak bytes in use, same order

    def peak(self, capacity: int, reserve: int, weights_kept: bool) -> int | None:
        """Peak bytes in use with ``reserve`` bytes held, or None if a step does not fit."""
        if capacity - reserve < self.limit[weights_kept]:
            return None
        return self.in_use[weights_kept] + reserve


#: a step whose resident tensors do not fit the buffer at all
_OVERFLOW = None


def step_ids(steps: list[StepIO]) -> np.ndarray:
    """The identities of the steps, to compare runs of them at C speed."""
    return np.fromiter(map(id, steps), dtype=np.int64, count=len(steps))


#: an allocator state: free blocks (offset, size) and placed tensors (name, (offset, size))
_State = tuple[tuple[tuple[int, int], ...], tuple[tuple[str, tuple[int, int]], ...]]


#: what one step adds to a pass's profile, each the largest over the steps: the capacity it
#: needs and the bytes in use, with the weights streamed and with them kept on chip
_Mark = tuple[int, int, int, int]
_NONE: _Mark = (-(1 << 62), -(1 << 62), 0, 0)  # of no step (fits anything, uses nothing)


def _most(a: _Mark, b: _Mark) -> _Mark:
    return (max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass
class _Walk:
    """A recorded replay: per position ``i`` (0 to ``len(steps)``), the state before step
    ``i``, the marks of steps ``[0, i)`` (``head[i]``, known for ``i <= head_upto``) and of
    steps ``[i, end)`` (``tail[i - tail_from]``, known for ``i >= tail_from``)."""

    steps: list[StepIO]
    ids: np.ndarray  # id of each step, to compare runs of steps at C speed
    states: list[int]
    head: list[_Mark]
    tail: list[_Mark]
    head_upto: int
    tail_from: int


class LayoutReplayer:
    """First-fit replays of passes of one graph at one sub-batch size (:func:`replay_layout`).

    A replay is a walk over the allocator's states: the state after a step (free blocks and
    placed tensors) depends only on the state before it and on the step (steps are told apart
    by identity; the builder shares one StepIO per residency). So every move is computed
    once, and a pass that shares a run of steps with a recent one reuses its profile:

    * the same first steps (a group grown by a layer: its forward pass ends with new steps):
      the walk starts where the two first differ, from the recorded state and marks;
    * the same last steps entered in the same state (its backward pass starts with the new
      layer, then after a few steps reaches a state a recent walk was in with the same steps
      left): the walk stops there and takes the rest from the recorded one.

    Growing a group by one layer then costs a few moves and array comparisons, not a walk
    over the whole group."""

    RECENT = 16  # walks kept to start from or join

    def __init__(
        self, graph: TrainingGraph, samples: int, capacity: int, cfg: HardwareConfig
    ) -> None:
        self.graph, self.samples, self.capacity, self.cfg = graph, samples, capacity, cfg
        empty: _State = (((0, capacity),), ())
        self.states: list[_State] = [empty]
        self.state_ids: dict[_State, int] = {empty: 0}
        # (state, id(step)) -> (step, next state, mark) or _OVERFLOW; the step is held so that
        # its id stays its own
        self.moves: dict[tuple[int, int], tuple[StepIO, int, _Mark] | None] = {}
        self.overflowed: list[StepIO] = []  # the steps of the _OVERFLOW moves
        self.needs: dict[int, tuple[int, int]] = {}  # id(step) -> smallest working sets
        self.walks: list[_Walk] = []

    def replay(self, steps: list[StepIO], ids: np.ndarray | None = None) -> LayoutProfile | None:
        """The pass's profile; None if the resident tensors alone overflow the buffer.
        ``ids``: :func:`step_ids` of the steps, if known."""
        n = len(steps)
        ids = step_ids(steps) if ids is None else ids
        start, begin = 0, None
        first = id(steps[0]) if steps else None
        for walk in self.walks:  # the longest run of equal first steps
            m = min(n, walk.head_upto)
            if m == 0 or id(walk.steps[0]) != first:
                continue
            differ = np.flatnonzero(ids[:m] != walk.ids[:m])
            same = int(differ[0]) if len(differ) else m
            if same > start or begin is None:
                start, begin = same, walk
        states = begin.states[: start + 1] if begin else [0]
        head = begin.head[: start + 1] if begin else [_NONE]
        state, mark = states[-1], head[-1]
        joined: tuple[_Walk, int] | None = None
        for i in range(start, n):
            joined = self._join(ids, i, state)
            if joined:
                break
            key = (state, id(steps[i]))
            move = self.moves[key] if key in self.moves else self._move(key, steps[i])
            if move is _OVERFLOW:
                return None
            state, mark = move[1], _most(mark, move[2])
            states.append(state)
            head.append(mark)
        stop = len(states) - 1  # steps [start, stop) were walked here
        if joined:
            walk, j = joined
            rest = walk.tail[j - walk.tail_from :]
            states += walk.states[j + 1 :]
            total = _most(mark, rest[0])
        else:
            rest, total = [_NONE], mark
        walked = [rest[0]]  # marks of steps [i, end) for the walked ones, last first
        for i in range(stop - 1, start - 1, -1):
            walked.append(_most(self.moves[(states[i], id(steps[i]))][2], walked[-1]))
        tail = walked[:0:-1] + rest
        self._keep(_Walk(steps, ids, states, head, tail, stop, start))
        return LayoutProfile((total[0], total[1]), (total[2], total[3]))

    def _join(self, ids: np.ndarray, i: int, state: int) -> tuple[_Walk, int] | None:
        """A recent walk that was in ``state`` with the same steps left as ``ids[i:]``."""
        left = len(ids) - i
        for walk in self.walks:
            j = len(walk.states) - 1 - left  # (a walk has a state per step, and one after)
            if (
                j >= walk.tail_from
                and left
                and walk.states[j] == state
                and (walk.ids[j:] == ids[i:]).all()
            ):
                return walk, j
        return None

    def _keep(self, walk: _Walk) -> None:
        self.walks.insert(0, walk)
        del self.walks[self.RECENT :]

    def _move(self, key: tuple[int, int], step: StepIO) -> tuple[StepIO, int, _Mark] | None:
        """Place the step's resident tensors, measure, free those it reads last (memoised)."""
        free, placed = self.states[key[0]]
        alloc = FirstFit(self.capacity)
        alloc.free = list(free)
        where = dict(placed)
        for t in sorted(step.load_resident | step.resident_out):
            size = self.graph.tensors[t].bytes_for(self.samples)
            off = alloc.alloc(size)
            if off is None:
                self.overflowed.append(step)  # held, so that no other step gets its id
                self.moves[key] = _OVERFLOW
                return _OVERFLOW
            where[t] = (off, size)
        top = max((off + sz for off, sz in where.values()), default=0)
        top = -(-top // alloc.alignment) * alloc.alignment
        hole = max((sz for off, sz in alloc.free if off + sz <= top), default=0)
        used = self.capacity - sum(sz for _, sz in alloc.free)
        for t in sorted(step.frees):
            alloc.release(*where.pop(t))
        after: _State = (tuple(alloc.free), tuple(sorted(where.items())))
        if after not in self.state_ids:
            self.state_ids[after] = len(self.states)
            self.states.append(after)
        if id(step) not in self.needs:  # (the step is held by its move, so its id stays)
            self.needs[id(step)] = (
                _min_step_cached(self.graph, step, self.samples, self.cfg, False),
                _min_step_cached(self.graph, step, self.samples, self.cfg, True),
            )
        need, need_kept = self.needs[id(step)]
        mark = (
            top if hole >= need + ALIGN_SLACK else top + need + ALIGN_SLACK,
            top if hole >= need_kept + ALIGN_SLACK else top + need_kept + ALIGN_SLACK,
            used + need,
            used + need_kept,
        )
        move = self.moves[key] = (step, self.state_ids[after], mark)
        return move


def replay_layout(
    graph: TrainingGraph, steps: list[StepIO], samples: int, capacity: int, cfg: HardwareConfig
) -> LayoutProfile | None:
    """Replay a pass's allocations with first fit; None if the resident tensors alone overflow."""
    return LayoutReplayer(graph, samples, capacity, cfg).replay(steps)


def _min_step_cached(
    graph: TrainingGraph, step: StepIO, samples: int, cfg: HardwareConfig, weights_resident: bool
) -> int:
    return _min_step(
        graph,
        step.op,
        samples,
        step.dram_in,
        step.store_out - step.resident_out,
        cfg,
        weights_resident,
    )


@lru_cache(maxsize=65536)  # the graph hashes by identity and is kept alive by the key
def _min_step(
    graph: TrainingGraph,
    op: TrainingOp,
    samples: int,
    dram_in: frozenset[str],
    store_only: frozenset[str],
    cfg: HardwareConfig,
    weights_resident: bool,
) -> int:
    return min_step_bytes(graph, op, samples, set(dram_in), set(store_only), cfg, weights_resident)


# ------------------------------------------------------------------------- groups


class _GroupBuilder:
    """Evaluates candidate groups (fit and estimated traffic) with memoisation."""

    def __init__(
        self,
        graph: TrainingGraph,
        cfg: HardwareConfig,
        rule: str,
        objective: str = "traffic",
        recompute: str = "none",
    ) -> None:
        self.graph = graph
        self.cfg = cfg
        self.rule = rule
        self.objective = objective
        self.recompute = recompute
        self.layer_order = [ly.name for ly in graph.network.layers]
        self.fwd_of: dict[str, list[TrainingOp]] = {}
        self.bwd_of: dict[str, list[TrainingOp]] = {}
        for op in graph.ops:
            if op.phase in ("FWD", "LOSS"):
                self.fwd_of.setdefault(op.layer, []).append(op)
            elif op.phase in ("BWD", "GRADSUM"):
                self.bwd_of.setdefault(op.layer, []).append(op)
        self.bwd_order = {op.name: i for i, op in enumerate(graph.ops)}
        # All forward ops layer by layer, and all backward ops in their order, which runs
        # through the layers backwards: a group's passes are runs of these (see passes).
        self.layer_index = {n: i for i, n in enumerate(self.layer_order)}
        self.fwd_all = [op for n in self.layer_order for op in self.fwd_of.get(n, [])]
        self.bwd_all = [op for op in graph.ops if op.phase in ("BWD", "GRADSUM")]
        self.fwd_rank = {op.name: i for i, op in enumerate(self.fwd_all)}
        self.bwd_rank = {op.name: i for i, op in enumerate(self.bwd_all)}
        # fwd_all[fwd_start[i]:] are the ops of layers i and on; bwd_all[:bwd_stop[i]] too
        self.fwd_start, self.bwd_stop = [0], [len(self.bwd_all)]
        for n in self.layer_order:
            self.fwd_start.append(self.fwd_start[-1] + len(self.fwd_of.get(n, [])))
            self.bwd_stop.append(self.bwd_stop[-1] - len(self.bwd_of.get(n, [])))
        if [op.layer for op in self.bwd_all] != [
            op.layer for n in reversed(self.layer_order) for op in self.bwd_of.get(n, [])
        ]:
            raise WavecoreError("internal: backward ops are not in reverse layer order")
        self.op_of = {op.name: op for op in graph.ops}
        self.last_residency: dict[tuple[int, str], tuple[int, list[StepIO], list[StepIO]]] = {}
        self.steps: dict[tuple[str, str, int, int], StepIO] = {}  # see :meth:`residency`
        self.equal_steps: dict[StepIO, StepIO] = {}  # see :meth:`_shared`
        self.touching: dict[str, tuple[tuple[str, ...], list[int]]] = {}
        self.replayers: dict[int, LayoutReplayer] = {}  # by sub-batch size
        self.moved: dict[int, int] = {}  # id(step) -> bytes per sample moved
        self.moved_steps: list[StepIO] = []
        self.cycles_before: dict[int, list[int]] = {}  # see :meth:`_layer_cycles`
        self.weight_bytes_before: list[tuple[int, ...]] = []  # see :meth:`_layers_weight_bytes`
        # layers before each index whose statistics span the mini-batch (see spans_batch)
        self.spanning_before = [0]
        for name in self.layer_order:
            ops = self.fwd_of.get(name, []) + self.bwd_of.get(name, [])
            self.spanning_before.append(
                self.spanning_before[-1] + any(op.spans_batch for op in ops)
            )
        self.evaluate = lru_cache(maxsize=None)(self._evaluate)
        # every fitting candidate of a group, whatever the objective: shared by the builders
        # made with :meth:`with_objective`, so that one search can build several plans
        self.variants: dict[tuple, tuple[Group, ...]] = {}
        self.compute_cycles: dict[tuple[str, tuple[str, ...], int], int] = {}
        self.gemm_floors: dict[tuple[str, tuple[str, ...], int], int] = {}  # _gemm_floor
        self.tile_cache: dict[tuple, tuple[int, int]] = {}  # GroupBuilder._tiles
        self.pass_computes: dict[tuple[int, int], tuple[int, list]] = {}  # _pass_compute

    def with_objective(self, objective: str, recompute: str | None = None) -> _GroupBuilder:
        """A builder minimising ``objective`` (recomputing as ``recompute``, default as this
        one) that shares this one's evaluated candidates."""
        other = copy.copy(self)
        other.objective = objective
        other.recompute = recompute or self.recompute
        other.evaluate = lru_cache(maxsize=None)(other._evaluate)
        return other

    def cost(self, group: Group) -> tuple[float, float]:
        """What the grouping minimises: (primary, tie-break) by the schedule's objective."""
        if self.objective == "time":
            return group.estimated_cycles, group.estimated_dram_bytes
        if self.objective == "energy":
            return self.energy(group), group.estimated_cycles
        return group.estimated_dram_bytes, group.estimated_cycles

    def energy(self, group: Group) -> float:
        """Estimated energy (pJ) of a group: DRAM bytes, MACs and vector ops at the config's
        energy per bit, per MAC and per lane op (buffer accesses left out: they only rank)."""
        cfg, batch = self.cfg, self.graph.batch
        ops = [st.op for st in group.fwd + group.bwd]
        macs = sum(g.macs for op in ops for g in self.graph.gemms(op, batch))
        lane_ops = sum(op.vector.ops * batch for op in ops if op.vector)
        return (
            group.estimated_dram_bytes * 8 * cfg.dram_pj_per_bit
            + macs * cfg.mac_pj
            + lane_ops * cfg.vector_op_pj
        )

    def recompute_plan(
        self, fwd_ops: list[TrainingOp], bwd_ops: list[TrainingOp]
    ) -> tuple[list[TrainingOp], frozenset[str]] | None:
        """The forward ops a group's backward pass must run again so that it reads only the
        group's inputs (and gradients) from DRAM, and the saved tensors that then need no DRAM
        copy; None when there is nothing to recompute (no saved tensor made in the group)."""
        if not bwd_ops:
            return None
        made = {t: op for op in fwd_ops if op.phase == "FWD" for t in op.writes}
        need = {t for op in bwd_ops for t in op.reads if t in made}
        if not need:
            return None
        chosen: list[TrainingOp] = []
        for op in reversed([op for op in fwd_ops if op.phase == "FWD"]):
            if any(t in need for t in op.writes):
                chosen.append(op)
                need.update(t for t in op.reads if t in made)
        names = {op.name for op in fwd_ops + bwd_ops}
        dropped = frozenset(
            t
            for op in chosen
            for t in op.writes
            if self.graph.tensors[t].saved
            and all(c in names for c in self.graph.consumers.get(t, []))
        )
        redo = [_recomputed(op) for op in reversed(chosen)]
        return redo, dropped

    def passes(self, lo: int, hi: int) -> tuple[list[TrainingOp], list[TrainingOp]]:
        """The forward ops of layers ``[lo, hi)`` layer by layer and their backward ops in
        ``bwd_order``: runs of all forward and all backward ops."""
        return (
            self.fwd_all[self.fwd_start[lo] : self.fwd_start[hi]],
            self.bwd_all[self.bwd_stop[hi] : self.bwd_stop[lo]],
        )

    def residency(self, lo: int, hi: int, rule: str) -> tuple[list[StepIO], list[StepIO]]:
        """:func:`plan_residency` of both passes of layers ``[lo, hi)``, each step shared
        between the groups in which it is the same. A step depends on the pass only through
        the ops that touch the op's tensors (:func:`step_io`), numbered by their place among
        all forward (backward) ops (a group's pass is a run of those places, so the order and
        the neighbours are the pass's own); which of them the group holds is fixed by how
        many of their layers lie below ``lo`` and below ``hi``. So growing a group by a layer
        makes new steps only for the ops that share a tensor with it: the passes of
        ``[lo, hi)`` are those of ``[lo, hi - 1)`` (when just asked for) with the new layer's
        steps added and theirs replaced."""
        last = self.last_residency.get((lo, rule))
        if last is not None and last[0] == hi:
            return last[1], last[2]
        if last is not None and last[0] == hi - 1:
            new = self.layer_order[hi - 1]
            fwd = last[1] + [self._step(op, lo, hi, rule, True) for op in self.fwd_of.get(new, [])]
            bwd_new = self.bwd_all[self.bwd_stop[hi] : self.bwd_stop[hi - 1]]
            bwd = [self._step(op, lo, hi, rule, False) for op in bwd_new] + last[2]
            for name in self._touched_by(hi - 1):
                if not lo <= self.layer_index[self.op_of[name].layer] < hi - 1:
                    continue
                if name in self.fwd_rank:
                    at = self.fwd_rank[name] - self.fwd_start[lo]
                    fwd[at] = self._step(self.op_of[name], lo, hi, rule, True)
                elif name in self.bwd_rank:
                    at = self.bwd_rank[name] - self.bwd_stop[hi]
                    bwd[at] = self._step(self.op_of[name], lo, hi, rule, False)
        else:
            fwd_ops, bwd_ops = self.passes(lo, hi)
            fwd = [self._step(op, lo, hi, rule, True) for op in fwd_ops]
            bwd = [self._step(op, lo, hi, rule, False) for op in bwd_ops]
        self.last_residency[(lo, rule)] = (hi, fwd, bwd)
        return fwd, bwd

    def _shared(self, steps: list[StepIO]) -> list[StepIO]:
        """Each step replaced by the equal one made before, if any: the layout replays
        memoise their moves by step identity, so recompute variants of overlapping groups
        (whose steps are not made by :meth:`_step`) share them too."""
        return [self.equal_steps.setdefault(st, st) for st in steps]

    def _touching(self, name: str) -> tuple[tuple[str, ...], list[int]]:
        """The ops that read or write the op's per-sample tensors, and their layers' indices
        (sorted, each once)."""
        if name not in self.touching:
            op, per_sample, writers = self.op_of[name], *self._tensor_maps()
            names = tuple(
                dict.fromkeys(
                    other
                    for t in op.reads + op.writes
                    if t in per_sample
                    for other in writers.get(t, ()) + tuple(self.graph.consumers.get(t, ()))
                )
            )
            layers = sorted({self.layer_index[self.op_of[other].layer] for other in names})
            self.touching[name] = names, layers
        return self.touching[name]

    def _tensor_maps(self) -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
        return _per_sample_tensors(self.graph), _writers(self.graph)

    def _touched_by(self, layer: int) -> set[str]:
        """The ops whose step depends on whether layer ``layer`` is in the group: those
        touching a tensor that one of its ops touches (the relation is symmetric)."""
        name = self.layer_order[layer]
        ops = self.fwd_of.get(name, []) + self.bwd_of.get(name, [])
        return {other for op in ops for other in self._touching(op.name)[0]}

    def _step(self, op: TrainingOp, lo: int, hi: int, rule: str, forward: bool) -> StepIO:
        """The op's step in the group of layers ``[lo, hi)`` (see :meth:`residency`)."""
        names, layers = self._touching(op.name)
        key = (op.name, rule, bisect_left(layers, lo), bisect_left(layers, hi))
        if key not in self.steps:
            rank = self.fwd_rank if forward else self.bwd_rank
            position = {
                other: rank[other]
                for other in names
                if other in rank and lo <= self.layer_index[self.op_of[other].layer] < hi
            }
            position[op.name] = rank[op.name]
            self.steps[key] = step_io(self.graph, op, position, rule)
            self._count_moved(self.steps[key])
        return self.steps[key]

    def replayer(self, samples: int) -> LayoutReplayer:
        """The layout replays at ``samples`` samples per sub-batch, shared by all groups."""
        if samples not in self.replayers:
            self.replayers[samples] = LayoutReplayer(
                self.graph, samples, self.cfg.gbuf_bytes, self.cfg
            )
        return self.replayers[samples]

    def moved_bytes(self, steps: list[StepIO]) -> int:
        """Bytes per sample the steps move through DRAM (blocks in and out), each step's
        counted once (summed at C speed: a group's steps are mostly known already)."""
        ids = list(map(id, steps))
        if not all(map(self.moved.__contains__, ids)):  # steps not made by :meth:`_step`
            for st in [st for st in steps if id(st) not in self.moved]:
                self._count_moved(st)
        return sum(map(self.moved.__getitem__, ids))

    def _count_moved(self, st: StepIO) -> None:
        moved = st.dram_in | st.load_resident | st.store_out
        self.moved[id(st)] = sum(self.graph.tensors[t].bytes_per_sample for t in moved)
        self.moved_steps.append(st)  # held, so that its id stays its own

    def spans_batch(self, lo: int, hi: int) -> bool:
        """Whether an op of layers ``[lo, hi)`` has statistics spanning the mini-batch."""
        return self.spanning_before[hi] > self.spanning_before[lo]

    def _evaluate(
        self, lo: int, hi: int, only_full_batch: bool, only_single: bool, rule: str | None = None
    ) -> Group | None:
        """Best sub-batch, on-chip and recompute choices for layers [lo, hi) (recompute as
        ``self.recompute`` allows: ``all`` recomputes wherever that fits), or None."""
        rule = rule or self.rule
        key = (lo, hi, only_full_batch, only_single, rule)
        if self.recompute == "none" or rule != "branch":
            options = self._variant(*key, False)
        elif self.recompute == "all":
            options = self._variant(*key, True) or self._variant(*key, False)
        else:  # auto (ties: saving first)
            options = self._variant(*key, False)
            best = min(options, key=self.cost) if options else None
            if best is None or self._recompute_may_win(lo, hi, best):
                options += self._variant(*key, True)
        return min(options, key=self.cost) if options else None

    def candidates(
        self, lo: int, hi: int, rule: str | None = None, recompute: bool = False
    ) -> tuple[Group, ...]:
        """Every fitting choice for layers [lo, hi) at any sub-batch size, saving or
        (``recompute``) recomputing the activations: for a search that re-estimates them."""
        rule = rule or self.rule
        if recompute and rule != "branch":
            return ()
        return self._variant(lo, hi, False, False, rule, recompute)

    def recompute_may_win(self, lo: int, hi: int, saving: Group) -> bool:
        """Whether recomputing [lo, hi) may beat ``saving`` (see ``_recompute_may_win``)."""
        return self._recompute_may_win(lo, hi, saving)

    def tiled(self, group: Group) -> Group:
        """``group`` re-estimated with the tiles the compiler will cut: each GEMM step's pass
        replayed with first fit as the lowering allocates (weights and dW kept first, then each
        step's resident tensors), tiled by :func:`tiling.plan_step` in the space left, its
        cycles summed over blocks and weight chunks (each block fills and drains the arrays)
        and its staged inputs re-read once per extra weight chunk; vector ops add their
        cycles (``timing.vector_cycles``), as an op waits for the one before it in a
        sub-batch. ``C(G, b)`` assumes one tile stream per GEMM and no vector work, which a
        buffer nearly full of resident tensors does not allow; this is never below it (more
        blocks and chunks only add fills and re-reads)."""
        if group.tiled:
            return group
        b, kept_w = group.sub_batch, group.weights_resident
        subs = math.ceil(self.graph.batch / b)
        fwd = self._tiled_pass(group.fwd, b, kept_w, None)
        bwd = self._tiled_pass(group.bwd, b, kept_w, group.wgrad_resident)
        compute, reread = fwd[0] + bwd[0], fwd[1] + bwd[1]
        traffic = group.estimated_dram_bytes + reread * subs
        cycles = self._estimated_cycles(traffic, compute, subs)
        return replace(group, estimated_cycles=cycles, estimated_dram_bytes=traffic, tiled=True)

    def lower_bound(self, group: Group) -> tuple[float, float]:
        """A lower bound of :meth:`cost` of ``tiled(group)``, without tiling: under the time
        objective, the group's DRAM time or its GEMMs as one tile stream (``C(G, b)``) plus
        its vector work, as :meth:`tiled` adds it (the untiled ``C`` leaves the vector work
        out, so it is a looser bound). The search orders and prunes candidates by it."""
        if group.tiled or self.objective != "time":
            return self.cost(group)
        b = group.sub_batch
        compute = self._pass_compute(group.fwd, b) + self._pass_compute(group.bwd, b)
        cycles = self._estimated_cycles(
            group.estimated_dram_bytes, compute, math.ceil(self.graph.batch / b)
        )
        return max(cycles, group.estimated_cycles), group.estimated_dram_bytes

    def _pass_compute(self, steps: list[StepIO], b: int) -> int:
        """GEMM cycles as one tile stream each, plus vector cycles, of a pass on ``b``
        samples (memoised by the pass, which the candidates of a group share)."""
        key = (id(steps), b)
        if key not in self.pass_computes:
            cfg, compute = self.cfg, 0
            for st in steps:
                if st.op.is_gemm:
                    compute += self._gemm_floor(st.op, b)
                elif st.op.vector:
                    work = st.op.vector
                    compute += vector_cycles(-(-work.ops * b // cfg.cores), work.passes, cfg)
            self.pass_computes[key] = (compute, steps)  # (holds the pass: its id stays its own)
        return self.pass_computes[key][0]

    def _tiled_pass(
        self, steps: list[StepIO], b: int, kept_w: bool, kept_dw: bool | None
    ) -> tuple[int, int]:
        """(compute cycles, staged bytes re-read) of one pass of :meth:`tiled` on ``b``
        samples (``kept_dw`` None: the forward pass, which holds no dW)."""
        graph, cfg = self.graph, self.cfg
        compute, reread = 0, 0
        heap, where = FirstFit(cfg.gbuf_bytes), {}
        held = [st.op.weights for st in steps if st.op.weights and kept_w]
        if kept_dw:
            held += [st.op.weight_grad for st in steps if st.op.weight_grad]
        for t in dict.fromkeys(held):
            heap.alloc(graph.tensors[t].fixed_bytes)
        for st in steps:
            for t in sorted(st.load_resident | st.resident_out):
                size = graph.tensors[t].bytes_for(b)
                where[t] = (heap.alloc(size), size)
            if st.op.is_gemm:
                space = heap.largest_hole()[1] - ALIGN_SLACK
                cycles, chunks = self._tiles(st, b, space, kept_w)
                compute += cycles
                staged = sum(graph.tensors[t].bytes_for(b) for t in st.dram_in)
                reread += (chunks - 1) * staged
            elif st.op.vector:  # blocks alternate between the cores' vector units
                work = st.op.vector
                compute += vector_cycles(-(-work.ops * b // cfg.cores), work.passes, cfg)
            for t in sorted(st.frees):
                if t in where:
                    heap.release(*where.pop(t))
        return compute, reread

    def _tiles(self, st: StepIO, b: int, space: int, kept: bool) -> tuple[int, int]:
        """(cycles, weight chunks) of a GEMM step as :func:`tiling.plan_step` tiles it in
        ``space`` bytes (memoised). Rounding ``space`` down for more hits was tried: to a
        power of two it chose a ResNet-50 batch-32 plan 8.6 % slower when simulated."""
        kept = bool(st.op.weights and kept)
        key = (st.op.name, b, st.dram_in, st.store_out, st.resident_out, space, kept)
        if key not in self.tile_cache:
            args = (set(st.dram_in), set(st.store_out - st.resident_out))
            tiling = plan_step(self.graph, st.op, b, *args, space, self.cfg, kept)
            chunks = max((p.chunks for p in tiling.plans), default=1)
            self.tile_cache[key] = (_tiled_cycles(self.graph, st.op, tiling, self.cfg), chunks)
        return self.tile_cache[key]

    def _recompute_may_win(self, lo: int, hi: int, saving: Group) -> bool:
        """False when recomputing cannot beat the saving group ``saving`` in estimated cycles:
        its GEMMs alone (:meth:`recompute_bound`) take longer. Exact, and it spares the
        recompute variant's fit test on compute-bound groups. Other objectives always try
        it."""
        if self.objective != "time":
            return True
        bound = self.recompute_bound(lo, hi)
        return bound is not None and bound <= saving.estimated_cycles  # (ties may win on bytes)

    def recompute_bound(self, lo: int, hi: int, floor: bool = False) -> int | None:
        """Cycles that recomputing layers ``[lo, hi)`` takes: its GEMMs (forward, recomputed
        forward and backward) as one tile stream each (``floor``: in the cheaper WGRAD
        orientation, a bound of the tiled estimate too), at the sub-batch size that makes
        them fastest; None when there is nothing to recompute."""
        fwd_ops, bwd_ops = self.passes(lo, hi)
        redo = self.recompute_plan(fwd_ops, bwd_ops)
        if redo is None:
            return None
        batch, ops = self.graph.batch, fwd_ops + redo[0] + bwd_ops
        cycles = self._gemm_floor if floor else self._gemm_cycles
        return min(
            sum(cycles(op, b) for op in ops) * math.ceil(batch / b) for b in _halvings(batch)
        )

    def _variant(self, *key) -> tuple[Group, ...]:
        if key not in self.variants:
            self.variants[key] = self._variant_candidates(*key)
        return self.variants[key]

    def _variant_candidates(
        self,
        lo: int,
        hi: int,
        only_full_batch: bool,
        only_single: bool,
        rule: str,
        recompute: bool,
    ) -> tuple[Group, ...]:
        """Every fitting sub-batch and on-chip choice for layers [lo, hi) with the forward
        activations saved to DRAM or (``recompute``) recomputed (empty if nothing fits)."""
        graph, cfg, batch = self.graph, self.cfg, self.graph.batch
        fwd_ops, bwd_only = self.passes(lo, hi)
        bwd_ops = bwd_only
        if recompute:
            redo = self.recompute_plan(fwd_ops, bwd_only)
            if redo is None:
                return ()
            bwd_ops = redo[0] + bwd_only
            fwd = self._shared(plan_residency(graph, fwd_ops, rule, no_store=redo[1]))
            bwd = self._shared(plan_residency(graph, bwd_ops, rule, no_store=_writes(redo[0])))
        else:
            fwd, bwd = self.residency(lo, hi, rule)
        weights, wgrads, weights_held, weights_held_bwd, wgrads_held = (
            self._weight_bytes(fwd_ops, bwd_ops)
            if recompute  # (the recomputed ops read their layers' weights again)
            else self._layers_weight_bytes(lo, hi)
        )
        if only_full_batch or self.spans_batch(lo, hi):
            candidates = [batch]
        elif only_single:
            candidates = [1]
        else:
            candidates = _halvings(batch)
        found: list[Group] = []
        cap = cfg.gbuf_bytes
        moved = self.moved_bytes(fwd) + self.moved_bytes(bwd)
        ids_f, ids_b = step_ids(fwd), step_ids(bwd)  # (one for every sub-batch size)
        redone = bwd_ops[: len(bwd_ops) - len(bwd_only)]  # the recomputed forward ops
        for b in candidates:
            subs = math.ceil(batch / b)
            prof_f = self.replayer(b).replay(fwd, ids_f)
            prof_b = self.replayer(b).replay(bwd, ids_b) if prof_f else None
            if prof_f is None or prof_b is None:
                continue
            compute = self._layer_cycles(lo, hi, b) + sum(self._gemm_cycles(op, b) for op in redone)
            for keep_w, keep_dw in ((True, True), (True, False), (False, True), (False, False)):
                if (keep_w and (subs == 1 or not weights)) or (
                    keep_dw and (subs == 1 or not wgrads)
                ):
                    continue
                reserve_f = weights_held if keep_w else 0
                reserve_b = (weights_held_bwd if keep_w else 0) + (wgrads_held if keep_dw else 0)
                pf = prof_f.peak(cap, reserve_f, keep_w)
                if pf is None:
                    continue
                pb = prof_b.peak(cap, reserve_b, keep_w)
                if pb is None:
                    continue
                traffic = self._traffic(moved, subs, weights, wgrads, keep_w, keep_dw, len(bwd) > 0)
                if recompute and not keep_w:  # the recomputed ops load their weights again
                    traffic += subs * sum(
                        graph.tensors[op.weights].fixed_bytes
                        for op in bwd_ops
                        if op.recompute and op.weights
                    )
                cycles = self._estimated_cycles(traffic, compute, subs)
                candidate = Group(
                    0,
                    tuple(self.layer_order[lo:hi]),
                    b,
                    fwd,
                    bwd,
                    keep_w,
                    keep_dw,
                    max(pf, pb),
                    traffic,
                    cycles,
                    recompute,
                )
                found.append(candidate)
        return tuple(found)

    def _weight_bytes(
        self, fwd_ops: list[TrainingOp], bwd_ops: list[TrainingOp]
    ) -> tuple[int, int, int, int, int]:
        """Weight and dW bytes of the passes, and the bytes kept on chip hold: weights (in the
        forward, in the backward pass) and dW."""
        tensors = self.graph.tensors
        weights = sum(tensors[op.weights].fixed_bytes for op in fwd_ops if op.weights)
        wgrads = sum(tensors[op.weight_grad].fixed_bytes for op in bwd_ops if op.weight_grad)
        # bytes the compiler's per-tensor allocations take (each rounded to the alignment);
        # the backward pass also keeps normalization scale/shift, which its ops read
        weights_held = sum(
            aligned_bytes(tensors[w].fixed_bytes)
            for w in dict.fromkeys(op.weights for op in fwd_ops if op.weights)
        )
        weights_held_bwd = sum(
            aligned_bytes(tensors[w].fixed_bytes)
            for w in dict.fromkeys(op.weights for op in bwd_ops if op.weights)
        )
        wgrads_held = sum(
            aligned_bytes(tensors[op.weight_grad].fixed_bytes) for op in bwd_ops if op.weight_grad
        )
        return weights, wgrads, weights_held, weights_held_bwd, wgrads_held

    def _layers_weight_bytes(self, lo: int, hi: int) -> tuple[int, int, int, int, int]:
        """:meth:`_weight_bytes` of the passes of layers ``[lo, hi)``, from running sums over
        the layers (each layer's weights and dW are its own, so the totals add up)."""
        if not self.weight_bytes_before:
            running = [(0, 0, 0, 0, 0)]
            for name in self.layer_order:
                mine = self._weight_bytes(self.fwd_of.get(name, []), self.bwd_of.get(name, []))
                running.append(tuple(a + b for a, b in zip(running[-1], mine, strict=True)))
            self.weight_bytes_before = running
        after, before = self.weight_bytes_before[hi], self.weight_bytes_before[lo]
        return tuple(a - b for a, b in zip(after, before, strict=True))

    def _estimated_cycles(self, traffic: int, compute: int, subs: int) -> int:
        """Estimated cycles of a group: its DRAM traffic at the full HBM bandwidth or its GEMMs
        (``compute`` cycles per sub-batch, :meth:`_gemm_cycles`) on the arrays, whichever is
        longer (see the module docstring)."""
        return max(math.ceil(traffic / self.cfg.hbm_bytes_per_cycle), compute * subs)

    def _layer_cycles(self, lo: int, hi: int, b: int) -> int:
        """GEMM cycles (:meth:`_gemm_cycles`) of the forward and backward ops of layers
        ``[lo, hi)`` on ``b`` samples: a difference of running sums over the layer order."""
        if b not in self.cycles_before:
            running = [0]
            for name in self.layer_order:
                ops = self.fwd_of.get(name, []) + self.bwd_of.get(name, [])
                running.append(running[-1] + sum(self._gemm_cycles(op, b) for op in ops))
            self.cycles_before[b] = running
        return self.cycles_before[b][hi] - self.cycles_before[b][lo]

    def _gemm_cycles(self, op: TrainingOp, b: int) -> int:
        """Cycles of one op's GEMMs on ``b`` samples, split over the cores (memoised)."""
        key = (op.layer, op.roles, b)
        if key not in self.compute_cycles:
            cfg = self.cfg
            self.compute_cycles[key] = sum(
                g.groups * gemm_timing(math.ceil(g.m / cfg.cores), g.k, g.n, cfg).total
                for g in self.graph.gemms(op, b)
            )
        return self.compute_cycles[key]

    def _gemm_floor(self, op: TrainingOp, b: int) -> int:
        """:meth:`_gemm_cycles` with each WGRAD in its cheaper orientation (the tiling may
        stream ``dW`` transposed): the fewest cycles any tiling of the op can take."""
        key = (op.layer, op.roles, b)
        if key not in self.gemm_floors:
            cfg, total = self.cfg, 0
            for g in self.graph.gemms(op, b):
                shapes = [(g.m, g.k, g.n)] + ([(g.n, g.k, g.m)] if g.role == "WGRAD" else [])
                total += g.groups * min(
                    gemm_timing(math.ceil(m / cfg.cores), k, n, cfg).total for m, k, n in shapes
                )
            self.gemm_floors[key] = total
        return self.gemm_floors[key]

    def _traffic(
        self,
        moved: int,
        subs: int,
        weights: int,
        wgrads: int,
        keep_w: bool,
        keep_dw: bool,
        has_bwd: bool,
    ) -> int:
        """Estimated DRAM bytes (module docstring): ``moved`` bytes per sample of blocks
        (:meth:`moved_bytes`), then the weights and dW."""
        total = moved * self.graph.batch
        passes = 2 if has_bwd else 1
        total += weights * (passes if keep_w else passes * subs)
        total += wgrads * (1 if keep_dw else 2 * subs - 1)
        return total


def _tiled_cycles(
    graph: TrainingGraph, op: TrainingOp, tiling: StepTiling, cfg: HardwareConfig
) -> int:
    """GEMM cycles of one step as tiled: per block and weight chunk, rows split over cores."""
    layer = graph.network.layer(op.layer)
    total = 0
    for p in tiling.plans:
        cols = min(p.chunk_cols, p.n)
        for blk in tiling.blocks:
            positions = blk.samples * (blk.r1 - blk.r0) * layer.out_shape[2]
            m, k = (p.m, positions) if p.role == "WGRAD" else (positions, p.k)
            total += p.chunks * p.groups * gemm_timing(math.ceil(m / cfg.cores), k, cols, cfg).total
    return total


#: the builder under its public name, for the optimal search (``schedule_opt``)
GroupBuilder = _GroupBuilder


def optimal_schedule(
    graph: TrainingGraph,
    cfg: HardwareConfig,
    recompute: str = "none",
    objective: str = "time",
    keep: int = KEEP,
    footprint: Footprint | None = None,
    max_span: int = MAX_SPAN,
) -> SearchResult:
    """``mbs-opt``: the exact search of :mod:`schedule_opt` over this module's groups (branch
    rule), minimising the estimated ``objective``, with both greedy plans (mbs2, mbs2-time,
    no recomputation) among its candidates (``max_span``: see ``schedule_opt.MAX_SPAN``)."""
    if objective not in OBJECTIVES:
        raise WavecoreError(
            f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}"
        )
    check_recompute("mbs-opt", recompute)
    started = time.process_time()  # CPU seconds: the machine may be shared
    builder = _GroupBuilder(graph, cfg, "branch", objective, recompute)
    forced: list[tuple[int, int]] = []
    for s in ("mbs2", "mbs2-time"):
        greedy = greedy_schedule(builder.with_objective(OBJECTIVE.get(s, "traffic"), "none"), s)
        forced += itertools.pairwise(cuts_of(greedy.groups))
    result = search_grouping(
        graph,
        cfg,
        builder,
        forced,
        lambda groups: _plan_of(graph, groups),
        keep,
        footprint,
        max_span,
    )
    result.seconds = time.process_time() - started  # with the greedy plans
    return result


def tiled_estimate(
    graph: TrainingGraph, cfg: HardwareConfig, plan: SchedulePlan
) -> tuple[int, int]:
    """A plan's estimated (cycles, DRAM bytes) as ``mbs-opt`` estimates its groups
    (:meth:`GroupBuilder.tiled`), to compare any plan with the search's in its own terms."""
    builder = _GroupBuilder(graph, cfg, plan.rule)
    groups = [builder.tiled(g) for g in plan.groups]
    return sum(g.estimated_cycles for g in groups), sum(g.estimated_dram_bytes for g in groups)


def plan_of_cuts(
    graph: TrainingGraph,
    cfg: HardwareConfig,
    cuts: tuple[int, ...],
    recompute: str = "none",
    objective: str = "time",
) -> SchedulePlan:
    """The ``mbs-opt`` plan of a given partition (one of a search's ranked plans, say)."""
    builder = _GroupBuilder(graph, cfg, "branch", objective, recompute)
    return _plan_of(graph, GroupingSearch(graph, cfg, builder, explore=False).groups_of(cuts))


def _plan_of(graph: TrainingGraph, groups: list[Group]) -> SchedulePlan:
    notes = []
    if graph.network.norm == "bn":
        notes.append(
            "batch normalization spans the mini-batch: every BN layer runs as its own "
            "group at the full batch, which stops inter-layer reuse there; use --norm gn"
        )
    update_ops = [op for op in graph.ops if op.phase == "UPDATE"]
    return SchedulePlan("mbs-opt", "branch", graph.batch, groups, update_ops, notes)


def _recomputed(op: TrainingOp) -> TrainingOp:
    """A forward op run again in its group's backward pass."""
    return replace(op, name=f"{RECOMPUTED}{op.name}", recompute=True)


def _writes(ops: list[TrainingOp]) -> frozenset[str]:
    return frozenset(t for op in ops for t in op.writes)


def _halvings(n: int) -> list[int]:
    out = [n]
    while out[-1] > 1:
        out.append(math.ceil(out[-1] / 2))
    return out


def check_recompute(schedule: str, recompute: str) -> None:
    """Refuse a recompute mode that is unknown or that the schedule cannot use."""
    if recompute not in RECOMPUTE:
        raise WavecoreError(
            f"unknown --recompute {recompute!r}; choose one of {', '.join(RECOMPUTE)}"
        )
    if recompute != "none" and schedule not in RECOMPUTING:
        raise WavecoreError(
            f"--recompute {recompute} needs a schedule that keeps a group's activations on chip "
            f"between its ops ({', '.join(RECOMPUTING)}); {schedule} does not"
        )


def build_schedule(
    graph: TrainingGraph,
    schedule: str,
    cfg: HardwareConfig,
    recompute: str = "none",
    objective: str = "time",
    footprint: Footprint | None = None,
) -> SchedulePlan:
    """Group the layers of ``graph`` as the named schedule prescribes (``recompute``: none,
    all or auto, on the schedules that allow it; ``objective`` and ``footprint``, a plan's
    DRAM footprint, for the search of ``mbs-opt``)."""
    if schedule not in SCHEDULES:
        raise WavecoreError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    check_recompute(schedule, recompute)
    if schedule == "mbs-opt":
        return optimal_schedule(graph, cfg, recompute, objective, 1, footprint).plan
    rule = RULE[schedule]
    return greedy_schedule(
        _GroupBuilder(graph, cfg, rule, OBJECTIVE.get(schedule, "traffic"), recompute), schedule
    )


def greedy_schedule(builder: _GroupBuilder, schedule: str) -> SchedulePlan:
    """The greedy grouping of the module docstring, by ``builder`` (its objective, recompute
    mode and evaluated groups; the search of ``schedule_opt`` shares one between plans)."""
    graph, cfg, rule = builder.graph, builder.cfg, RULE[schedule]
    n = len(builder.layer_order)
    notes: list[str] = []
    groups: list[Group] = []
    full_batch = schedule in ("baseline", "il")
    single = schedule == "mbs-fs"

    def evaluate(lo: int, hi: int) -> Group | None:
        return builder.evaluate(lo, hi, full_batch, single)

    lo = 0
    while lo < n:
        group = evaluate(lo, lo + 1)
        if group is None:  # nothing on chip: stream the layer like the baseline does
            group = builder.evaluate(lo, lo + 1, full_batch, single, "none")
        if group is None:
            raise WavecoreError(
                f"layer {builder.layer_order[lo]!r} does not fit the "
                f"{cfg.gbuf_bytes}-byte global buffer; raise gbuf_bytes"
            )
        hi = lo + 1
        if schedule != "baseline" and not builder.spans_batch(lo, hi):
            while hi < n and not builder.spans_batch(hi, hi + 1):
                merged = evaluate(lo, hi + 1)
                if merged is None:
                    break
                if schedule in ("mbs1", "mbs2", "mbs2-time", "il"):
                    alone = evaluate(hi, hi + 1)
                    split_cost = builder.cost(group)[0] + (
                        builder.cost(alone)[0] if alone else math.inf
                    )
                    if builder.cost(merged)[0] > split_cost:
                        break
                group, hi = merged, hi + 1
        groups.append(replace(group, index=len(groups)))  # (evaluated groups are shared)
        lo = hi
    if graph.network.norm == "bn" and rule != "none" and not full_batch:
        notes.append(
            "batch normalization spans the mini-batch: every BN layer runs as its own "
            "group at the full batch, which stops inter-layer reuse there; use --norm gn"
        )
    update_ops = [op for op in graph.ops if op.phase == "UPDATE"]
    return SchedulePlan(schedule, rule, graph.batch, groups, update_ops, notes)


def clear_caches() -> None:
    """Forget the memoised per-graph tables and step sizes, and the tiling's step plans: they
    key on training graphs and keep them alive, so a long-lived process that compiles many
    networks calls this to return their memory."""
    for memo in (_per_sample_tensors, _writers, _min_step):
        memo.cache_clear()
    tiling_clear_caches()
