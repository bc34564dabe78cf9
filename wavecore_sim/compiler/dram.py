"""DRAM as a managed address space: every tensor's lifetime, placement and the footprint.

The schedule fixes, before any instruction is emitted, which tensors each *pass* touches in
DRAM (a pass: one group's forward or backward sweep over all its sub-batches, or one
weight-update op). A tensor is live from the first pass that touches it to the last one; a
pass loops over sub-batches, so everything it touches counts as live for the whole pass.
*Persistent* tensors (weights, master weights, optimizer state, and the iteration's inputs,
which no op writes) hold data from before the iteration and keep it after: they are live
throughout. The others are written before they are read and freed after their last pass.

Placement is first fit over an address-ordered free list that coalesces, visiting passes in
program order (free what died, then place what is born). Every region is aligned to
:func:`dram_alignment`, a multiple of the HBM interleave period, so a tensor's split over
channels does not depend on where it is placed. The footprint is the high-water mark of the
address space (what ``hbm_bytes`` must hold); the breakdown by kind is of the regions live
when the most bytes were live.

The plan is made and checked against ``hbm_bytes`` before lowering, so an iteration that
does not fit is refused in one line, with its footprint, before any work is spent on it.
Reused addresses need no bookkeeping of their own in the lowering: the scoreboard orders
transfers by DRAM byte ranges, so a store into reused bytes waits for the last loads of the
tensor that held them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import HardwareConfig
from ..errors import WavecoreError
from ..ir import DramFootprint, Traffic
from ..schedule import SchedulePlan
from ..training import TrainingGraph

_PERSISTENT_KINDS = ("weight", "master_weight", "optimizer")
# DRAM-footprint categories of tensor kinds (activations saved for the backward pass apart)
_FOOTPRINT_KIND = {
    "weight": Traffic.WEIGHTS,
    "master_weight": Traffic.OPTIMIZER_STATE,
    "optimizer": Traffic.OPTIMIZER_STATE,
    "gradient": Traffic.GRADIENTS,
    "weight_grad": Traffic.WEIGHT_GRADIENTS,
}


def dram_alignment(cfg: HardwareConfig) -> int:
    """Region alignment: 4 KiB pages, rounded up to whole HBM interleave periods."""
    period = cfg.hbm_channels * cfg.hbm_interleave_bytes
    return -(-4096 // period) * period


@dataclass(frozen=True)
class DramPlan:
    """Where every DRAM tensor lives: ``addr[tensor]`` and ``size[tensor]`` (aligned),
    ``persistent`` tensors, and the iteration's footprint."""

    addr: dict[str, int]
    size: dict[str, int]
    persistent: frozenset[str]
    footprint: DramFootprint


def pass_tensors(graph: TrainingGraph, plan: SchedulePlan) -> list[set[str]]:
    """The DRAM tensors of each pass in program order: forward passes, backward passes in
    reverse group order, then one pass per weight-update op. A superset of what the lowering
    moves (a tensor listed but not moved only lives a little longer)."""
    passes: list[set[str]] = []
    for which in ("fwd", "bwd"):
        groups = plan.groups if which == "fwd" else list(reversed(plan.groups))
        for group in groups:
            touched: set[str] = set()
            for st in getattr(group, which):
                touched |= st.load_resident | st.dram_in | st.store_out
                touched.update(t for t in (st.op.weights, st.op.weight_grad) if t)
            if touched:
                passes.append(touched)
    passes += [set(op.reads) | set(op.writes) for op in plan.update_ops]
    return passes


def _footprint_kind(graph: TrainingGraph, tensor: str) -> Traffic:
    t = graph.tensors[tensor]
    if t.kind == "activation":
        return Traffic.SAVED_ACTIVATIONS if t.saved else Traffic.ACTIVATIONS
    return _FOOTPRINT_KIND[t.kind]


def plan_dram(
    graph: TrainingGraph, plan: SchedulePlan, cfg: HardwareConfig, refuse: bool = True
) -> DramPlan:
    """Place every DRAM tensor of the iteration; refuse a footprint over ``hbm_bytes``
    (``refuse=False``: return it, for a search that measures candidate plans)."""
    align = dram_alignment(cfg)
    passes = pass_tensors(graph, plan)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, touched in enumerate(passes):
        for t in sorted(touched):
            first.setdefault(t, i)
            last[t] = i
    written = {t for op in graph.ops for t in (*op.writes, op.weight_grad) if t}
    persistent = frozenset(
        t for t in first if graph.tensors[t].kind in _PERSISTENT_KINDS or t not in written
    )
    size = {t: -(-max(graph.tensors[t].bytes_for(graph.batch), 1) // align) * align for t in first}
    born: list[list[str]] = [[] for _ in passes]
    dies: list[list[str]] = [[] for _ in passes]
    for t in first:
        if t not in persistent:
            born[first[t]].append(t)
            dies[last[t]].append(t)
    addr: dict[str, int] = {}
    top = 0
    for t in sorted(persistent, key=lambda t: (first[t], t)):  # at the bottom, for good
        addr[t] = top
        top += size[t]
    free: list[tuple[int, int]] = []  # (addr, size) holes below ``top``, address order
    live = sum(size[t] for t in persistent)
    peak_live, peak_at = live, -1
    for i in range(len(passes)):
        for t in sorted(born[i]):
            addr[t], top = _first_fit(free, top, size[t])
            live += size[t]
        if live > peak_live:
            peak_live, peak_at = live, i
        for t in dies[i]:
            _release(free, addr[t], size[t])
            live -= size[t]
    by_kind = dict.fromkeys((k.label for k in Traffic), 0)
    for t in first:
        if t in persistent or first[t] <= peak_at <= last[t]:
            by_kind[_footprint_kind(graph, t).label] += size[t]
    footprint = DramFootprint(top, by_kind)
    if refuse and top > cfg.hbm_bytes:
        parts = ", ".join(f"{k} {_gib(v)}" for k, v in by_kind.items() if v)
        raise WavecoreError(
            f"the iteration's DRAM footprint is {_gib(top)} ({parts} at its peak) but "
            f"hbm_bytes = {_gib(cfg.hbm_bytes)}; raise hbm_bytes (--set hbm_bytes=...), lower "
            "--batch, or choose a schedule that keeps less in DRAM"
        )
    return DramPlan(addr, size, persistent, footprint)


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def _first_fit(free: list[tuple[int, int]], top: int, size: int) -> tuple[int, int]:
    """Take ``size`` bytes from the first hole that holds them, else from the top;
    return (address, new top)."""
    for i, (a, n) in enumerate(free):
        if n >= size:
            if n == size:
                del free[i]
            else:
                free[i] = (a + size, n - size)
            return a, top
    if free and free[-1][0] + free[-1][1] == top:  # extend the last hole upwards
        a = free.pop()[0]
        return a, a + size
    return top, top + size


def _release(free: list[tuple[int, int]], addr: int, size: int) -> None:
    """Return ``[addr, addr + size)`` to the free list, merging with its neighbours."""
    lo, hi = 0, len(free)
    while lo < hi:
        mid = (lo + hi) // 2
        if free[mid][0] < addr:
            lo = mid + 1
        else:
            hi = mid
    i = lo
    if i < len(free) and addr + size == free[i][0]:
        size += free[i][1]
        del free[i]
    if i > 0 and free[i - 1][0] + free[i - 1][1] == addr:
        addr, size = free[i - 1][0], free[i - 1][1] + size
        i -= 1
        del free[i]
    free.insert(i, (addr, size))
