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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from .config import HardwareConfig
from .errors import WavecoreError
from .tiling import ALIGN_SLACK, min_step_bytes
from .timing import gemm_timing
from .training import TrainingGraph, TrainingOp

SCHEDULES = ("baseline", "il", "mbs-fs", "mbs1", "mbs2", "mbs2-time")
RULE = {
    "baseline": "none",
    "il": "chain",
    "mbs1": "chain",
    "mbs2": "branch",
    "mbs-fs": "branch",
    "mbs2-time": "branch",
}
DEFAULT_NORM = {
    "baseline": "bn",
    "il": "bn",
    "mbs1": "gn",
    "mbs2": "gn",
    "mbs-fs": "gn",
    "mbs2-time": "gn",
}
#: what the greedy grouping minimises; every other schedule minimises estimated DRAM traffic
OBJECTIVE = {"mbs2-time": "time"}


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


def plan_residency(graph: TrainingGraph, ops: list[TrainingOp], rule: str) -> list[StepIO]:
    """Apply a residency rule to one pass (forward or backward ops) of one group."""
    per_sample = _per_sample_tensors(graph)
    produced_at: dict[str, int] = {}
    readers_at: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for t in op.reads:
            if t in per_sample:
                readers_at.setdefault(t, []).append(i)
        for t in op.writes:
            produced_at.setdefault(t, i)

    def outside_readers(t: str) -> bool:
        return len(graph.consumers.get(t, [])) > len(readers_at.get(t, []))

    resident_span: dict[str, tuple[int, int]] = {}  # tensor -> (first index, last reader)
    for t, readers in readers_at.items():
        if rule == "none":
            continue
        if t in produced_at:
            p = produced_at[t]
            later = [r for r in readers if r > p]
            if rule == "branch" and later:
                resident_span[t] = (p, max(later))
            elif rule == "chain" and p + 1 in later:
                resident_span[t] = (p, p + 1)
        elif rule == "branch" and len(readers) >= 2:
            resident_span[t] = (readers[0], readers[-1])

    steps = []
    for i, op in enumerate(ops):
        res_in, load_res, dram_in = set(), set(), set()
        for t in op.reads:
            if t not in per_sample:
                continue
            span = resident_span.get(t)
            if span and span[0] < i <= span[1]:
                res_in.add(t)
            elif span and span[0] == i:
                load_res.add(t)
            else:
                dram_in.add(t)
        res_out, store = set(), set()
        for t in op.writes:
            if t not in per_sample:
                continue
            if t in resident_span:
                res_out.add(t)
            in_group = readers_at.get(t, [])
            from_dram = [
                r for r in in_group if not (t in resident_span and resident_span[t][1] >= r)
            ]
            if graph.tensors[t].saved or outside_readers(t) or from_dram:
                store.add(t)
        frees = {t for t, (_, last) in resident_span.items() if last == i}
        steps.append(
            StepIO(
                op,
                frozenset(res_in),
                frozenset(load_res),
                frozenset(dram_in),
                frozenset(res_out),
                frozenset(store),
                frozenset(frees),
            )
        )
    return steps


# ------------------------------------------------------------------------- buffer fit


class FirstFit:
    """First-fit allocator over ``[0, capacity)``; free blocks coalesce."""

    def __init__(self, capacity: int, alignment: int = 64) -> None:
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
    """A pass replayed with the whole buffer: per step, the allocations' high-water mark, the
    largest hole below it, and the step's smallest working set (weights streamed or kept).

    Reserving R bytes at the bottom first (weights or dW kept on chip) shifts every first-fit
    placement by R without changing it, so one replay answers every reservation exactly."""

    top: tuple[int, ...]
    interior: tuple[int, ...]
    need: tuple[int, ...]
    need_kept: tuple[int, ...]
    peak_in_use: tuple[int, ...]

    def peak(self, capacity: int, reserve: int, weights_kept: bool) -> int | None:
        """Peak bytes in use with ``reserve`` bytes held, or None if a step does not fit."""
        limit = capacity - reserve
        needs = self.need_kept if weights_kept else self.need
        peak = 0
        for top, hole, need, used in zip(
            self.top, self.interior, needs, self.peak_in_use, strict=True
        ):
            if top > limit or max(hole, limit - top) < need + ALIGN_SLACK:
                return None
            peak = max(peak, used + need)
        return peak + reserve


def replay_layout(
    graph: TrainingGraph, steps: list[StepIO], samples: int, capacity: int, cfg: HardwareConfig
) -> LayoutProfile | None:
    """Replay a pass's allocations with first fit; None if the resident tensors alone overflow."""
    alloc = FirstFit(capacity)
    where: dict[str, tuple[int, int]] = {}
    tops, holes, needs, kept, used = [], [], [], [], []
    for step in steps:
        for t in sorted(step.load_resident | step.resident_out):
            size = graph.tensors[t].bytes_for(samples)
            off = alloc.alloc(size)
            if off is None:
                return None
            where[t] = (off, size)
        top = max((off + sz for off, sz in where.values()), default=0)
        top = -(-top // alloc.alignment) * alloc.alignment
        interior = max((sz for off, sz in alloc.free if off + sz <= top), default=0)
        tops.append(top)
        holes.append(interior)
        needs.append(_min_step_cached(graph, step, samples, cfg, False))
        kept.append(_min_step_cached(graph, step, samples, cfg, True))
        used.append(capacity - sum(sz for _, sz in alloc.free))
        for t in sorted(step.frees):
            alloc.release(*where.pop(t))
    return LayoutProfile(tuple(tops), tuple(holes), tuple(needs), tuple(kept), tuple(used))


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
        self, graph: TrainingGraph, cfg: HardwareConfig, rule: str, objective: str = "traffic"
    ) -> None:
        self.graph = graph
        self.cfg = cfg
        self.rule = rule
        self.objective = objective
        self.layer_order = [ly.name for ly in graph.network.layers]
        self.fwd_of: dict[str, list[TrainingOp]] = {}
        self.bwd_of: dict[str, list[TrainingOp]] = {}
        for op in graph.ops:
            if op.phase in ("FWD", "LOSS"):
                self.fwd_of.setdefault(op.layer, []).append(op)
            elif op.phase in ("BWD", "GRADSUM"):
                self.bwd_of.setdefault(op.layer, []).append(op)
        self.bwd_order = {op.name: i for i, op in enumerate(graph.ops)}
        self.evaluate = lru_cache(maxsize=None)(self._evaluate)

    def cost(self, group: Group) -> tuple[float, float]:
        """What the grouping minimises: (primary, tie-break) by the schedule's objective."""
        if self.objective == "time":
            return group.estimated_cycles, group.estimated_dram_bytes
        return group.estimated_dram_bytes, group.estimated_cycles

    def passes(self, lo: int, hi: int) -> tuple[list[TrainingOp], list[TrainingOp]]:
        names = self.layer_order[lo:hi]
        fwd = [op for n in names for op in self.fwd_of.get(n, [])]
        bwd = sorted(
            (op for n in names for op in self.bwd_of.get(n, [])),
            key=lambda op: self.bwd_order[op.name],
        )
        return fwd, bwd

    def spans_batch(self, lo: int, hi: int) -> bool:
        fwd, bwd = self.passes(lo, hi)
        return any(op.spans_batch for op in fwd + bwd)

    def _evaluate(
        self, lo: int, hi: int, only_full_batch: bool, only_single: bool, rule: str | None = None
    ) -> Group | None:
        """Best sub-batch and on-chip choices for layers [lo, hi), or None if nothing fits."""
        graph, cfg, batch = self.graph, self.cfg, self.graph.batch
        fwd_ops, bwd_ops = self.passes(lo, hi)
        rule = rule or self.rule
        fwd = plan_residency(graph, fwd_ops, rule)
        bwd = plan_residency(graph, bwd_ops, rule)
        weights = sum(graph.tensors[op.weights].fixed_bytes for op in fwd_ops if op.weights)
        wgrads = sum(graph.tensors[op.weight_grad].fixed_bytes for op in bwd_ops if op.weight_grad)
        # bytes the compiler's per-tensor allocations take (each rounded to the alignment);
        # the backward pass also keeps normalization scale/shift, which its ops read
        weights_held = sum(
            _aligned(graph.tensors[w].fixed_bytes)
            for w in dict.fromkeys(op.weights for op in fwd_ops if op.weights)
        )
        weights_held_bwd = sum(
            _aligned(graph.tensors[w].fixed_bytes)
            for w in dict.fromkeys(op.weights for op in bwd_ops if op.weights)
        )
        wgrads_held = sum(
            _aligned(graph.tensors[op.weight_grad].fixed_bytes) for op in bwd_ops if op.weight_grad
        )
        if only_full_batch or self.spans_batch(lo, hi):
            candidates = [batch]
        elif only_single:
            candidates = [1]
        else:
            candidates = _halvings(batch)
        best: Group | None = None
        cap = cfg.gbuf_bytes
        for b in candidates:
            subs = math.ceil(batch / b)
            prof_f = replay_layout(graph, fwd, b, cap, cfg)
            prof_b = replay_layout(graph, bwd, b, cap, cfg) if prof_f else None
            if prof_f is None or prof_b is None:
                continue
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
                traffic = self._traffic(
                    fwd + bwd, subs, weights, wgrads, keep_w, keep_dw, len(bwd) > 0
                )
                cycles = self._estimated_cycles(traffic, fwd_ops + bwd_ops, b)
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
                )
                if best is None or self.cost(candidate) < self.cost(best):
                    best = candidate
        return best

    def _estimated_cycles(self, traffic: int, ops: list[TrainingOp], b: int) -> int:
        """Estimated cycles of a group: its DRAM traffic at the full HBM bandwidth or its GEMMs
        on the arrays, whichever is longer (see the module docstring)."""
        cfg, subs = self.cfg, math.ceil(self.graph.batch / b)
        compute = sum(
            g.groups * gemm_timing(math.ceil(g.m / cfg.cores), g.k, g.n, cfg).total
            for op in ops
            for g in self.graph.gemms(op, b)
        )
        return max(math.ceil(traffic / cfg.hbm_bytes_per_cycle), compute * subs)

    def _traffic(
        self,
        steps: list[StepIO],
        subs: int,
        weights: int,
        wgrads: int,
        keep_w: bool,
        keep_dw: bool,
        has_bwd: bool,
    ) -> int:
        tensors, batch = self.graph.tensors, self.graph.batch
        total = 0
        for st in steps:
            moved = st.dram_in | st.load_resident | st.store_out
            total += sum(tensors[t].bytes_per_sample for t in moved) * batch
        passes = 2 if has_bwd else 1
        total += weights * (passes if keep_w else passes * subs)
        total += wgrads * (1 if keep_dw else 2 * subs - 1)
        return total


def _aligned(size: int, alignment: int = 64) -> int:
    """Bytes one allocation takes in the first-fit allocator (rounded up to its alignment)."""
    return -(-max(size, 1) // alignment) * alignment


def _halvings(n: int) -> list[int]:
    out = [n]
    while out[-1] > 1:
        out.append(math.ceil(out[-1] / 2))
    return out


def build_schedule(graph: TrainingGraph, schedule: str, cfg: HardwareConfig) -> SchedulePlan:
    """Group the layers of ``graph`` as the named schedule prescribes."""
    if schedule not in SCHEDULES:
        raise WavecoreError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    rule = RULE[schedule]
    builder = _GroupBuilder(graph, cfg, rule, OBJECTIVE.get(schedule, "traffic"))
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
        group.index = len(groups)
        groups.append(group)
        lo = hi
    if graph.network.norm == "bn" and rule != "none" and not full_batch:
        notes.append(
            "batch normalization spans the mini-batch: every BN layer runs as its own "
            "group at the full batch, which stops inter-layer reuse there; use --norm gn"
        )
    update_ops = [op for op in graph.ops if op.phase == "UPDATE"]
    return SchedulePlan(schedule, rule, graph.batch, groups, update_ops, notes)
