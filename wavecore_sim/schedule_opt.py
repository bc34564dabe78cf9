"""Schedule ``mbs-opt``: the layer grouping found by dynamic programming, not greedily.

A plan is a partition of the layer order (topological, as in ``mbs2``) into groups; each
group gets its best sub-batch, weight/dW residency and (``--recompute auto``) recompute
choice from ``schedule.GroupBuilder``: the same buffer-fit rule, ``branch`` residency (reuse
across branches) and estimates ``T(G, b)`` / ``C(G, b)`` as ``mbs2`` and ``mbs2-time``. The
objective (time, traffic or energy) is additive over groups (the update ops are the same in
every plan), so with ``cost(i, j)`` the best group of layers ``[i, j)``::

    F(0) = 0
    F(j) = min over cut points i < j with [i, j) allowed of  F(i) + cost(i, j)

and the plan is read back from the argmin chain ending at ``F(n)``. The ``K`` best plans (for
the ranking evidence) come from keeping the ``K`` smallest partial sums at each cut point:
exact, as every prefix of a ``K``-best plan is among the ``K`` best prefixes of its length.

Estimate. A plan's groups are estimated with the tiles the compiler will cut in the space
their resident tensors leave, plus their vector work (``GroupBuilder.tiled``): the group's
DRAM time or its compute, whichever is longer. Tiling every candidate of every group is what
would cost the time, so the search is lazy: a group's cost starts as a lower bound
(``GroupBuilder.lower_bound``: the DRAM time, or the GEMMs as one tile stream each, in the
cheaper WGRAD orientation since the tiler may stream ``dW`` transposed, plus the vector work),
and the recurrence reruns until every group of the ``K`` best plans is re-estimated. Within a
group, candidates are tiled one at a time in order of their bounds, each round tiling one
more candidate of each unresolved group on the best plans (``GroupingSearch._retiling``);
the group's bound is then the best tiled so far or the next candidate's bound, whichever is
less. As every bound is at most the re-estimate (``tests/test_schedule_opt.py`` checks it),
the result is the exact optimum of the re-estimated objective over the domain below, while
only the candidates that come close to the optimum pay for the tiling. (Ranking plans by the
untiled ``C`` alone, ResNet-50 batch 32 got 0.5 % fewer estimated cycles than ``mbs2-time``
but 15 % more simulated ones: its groups sat where one step's tiles degenerate.)

The estimate still leaves out what the machine adds between steps (prologues, epilogues,
exposed weight tiles, paced DMA queues), so plans a few per cent apart can swap places when
simulated; ``--referee N`` (:mod:`wavecore_sim.referee`) settles that by simulation.

Domain (named assumptions, so that the search is exact on it and fast):
    * Cut points: the *waists* of the layer order (positions crossed by at most one live
      activation: between residual blocks and Inception modules, and every position of a
      plain chain) and every cut of ``mbs2`` and ``mbs2-time``. A cut inside a block must
      keep the shortcut or the other branches in DRAM; such cuts are left to the greedy
      plans, which contribute theirs. So both greedy plans are paths of the search and, in
      its own estimate, it is never worse than either (``tests/test_schedule_opt.py``).
    * A group spans at most ``MAX_SPAN`` waist segments and ``MAX_LAYERS`` layers, plus
      every group of the two greedy plans (however long). Extending a group from ``i``
      stops at the first ``j`` where nothing fits the buffer, even at one sample (resident
      sets only grow with the group).
    * A layer whose statistics span the mini-batch (``--norm bn``) is a group of its own.
    * The DRAM capacity (``hbm_bytes``): the plan's footprint as the compiler's DRAM plan
      measures it (the API passes it in; else an estimate: persistent tensors plus the saved
      activations the groups store). When the best plan does not fit, the search reruns with
      a price ``lam`` per saved byte added to every group (Lagrangian relaxation, ``lam``
      doubled until a plan fits, or refused in one line).

Complexity: with ``S`` cut points, each group extended over at most ``MAX_SPAN`` segments
(``MAX_LAYERS`` layers), ``O(S * MAX_SPAN)`` groups are evaluated, each ``O(L * H)`` (``L``
layers, ``H = log2 B`` sub-batch sizes, two recompute variants; the builder shares the layout
walks of groups that grow by a layer); the recurrence is ``O(S * MAX_SPAN * K)`` per round
(``K = 1`` by default: one best sum per cut, its cuts built only when it improves), and the
rounds tile at most the candidates whose bounds come under the optimum. Measured at batch 256
on Inception-v4 (137 cut points, 1,271 groups): 6-8 s of one core, the greedy plans it
starts from included (``benchmarks/bench_opt.py search``).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .config import HardwareConfig
from .errors import WavecoreError
from .training import TrainingGraph

if TYPE_CHECKING:  # the schedule module calls this one (schedule -> schedule_opt)
    from .schedule import Group, GroupBuilder, SchedulePlan

#: Longest group, in waist segments (residual blocks, Inception modules), that the search
#: tries beyond the groups of the greedy plans. An assumption, for the 10 s budget: estimated
#: cycles at batch 256 with spans 1/2/4/6 were ResNet-50 128.62/128.52/127.84/127.80 M and
#: Inception-v3 229.83/229.68/229.68/229.24 M (span 4 within 0.2 % of 6, at half the time).
MAX_SPAN = 4
#: Longest group, in layers, that the search tries beyond the groups of the greedy plans. An
#: assumption, for the 10 s budget: the optimal plans at batch 32 and 256 never held more
#: than 28 layers in a group (ResNet-50/152 15, Inception-v3 27, Inception-v4 28; a long group
#: keeps more tensors on chip, so it fits only small sub-batches, which reload the weights),
#: while more than half of Inception-v4's groups within ``MAX_SPAN`` modules held 41-128
#: layers. With 40, 48 or no limit the plans are the same (all five networks of
#: ``benchmarks/bench_opt.py``, batch 32 and 256, each objective and recompute mode timed).
MAX_LAYERS = 40
#: Plans kept per cut point: the search returns this many best plans, for the ranking check.
KEEP = 20
#: Doublings of the price per saved byte before a plan over ``hbm_bytes`` is refused (from
#: the cost of moving one byte, 2^40 times that outweighs any plan's own cost).
MAX_PRICE_DOUBLINGS = 40

#: measures a plan's DRAM footprint in bytes (the compiler's DRAM plan, when the API has it)
Footprint = Callable[["SchedulePlan"], int]


@dataclass(frozen=True)
class RankedPlan:
    """One plan the search compared: its cuts (group starts, then ``n``) and its estimate."""

    cuts: tuple[int, ...]
    cost: float
    estimated_cycles: int
    estimated_dram_bytes: int


@dataclass
class SearchResult:
    """The best plan, the ``KEEP`` best plans (ranked, and as plans) and the search's CPU
    seconds."""

    plan: SchedulePlan
    best: list[RankedPlan]
    seconds: float
    groups_evaluated: int
    objective: str
    plans: list[SchedulePlan] = field(default_factory=list)  # of ``best``, in order


def waists(graph: TrainingGraph) -> list[int]:
    """Positions ``p`` of the layer order (a cut before layer ``p``) crossed by at most one
    activation that a layer before ``p`` made and a layer from ``p`` on reads."""
    layers = graph.network.layers
    index = {ly.name: i for i, ly in enumerate(layers)}
    last_read: dict[str, int] = {}
    for i, ly in enumerate(layers):
        for src in ly.inputs:
            last_read[src] = i
    crossing = [0] * (len(layers) + 1)
    for src, last in last_read.items():
        first = index[src] + 1 if src in index else 0  # the network input crosses from 0
        for p in range(first, last + 1):
            crossing[p] += 1
    return [p for p in range(len(layers) + 1) if crossing[p] <= 1]


def search_grouping(
    graph: TrainingGraph,
    cfg: HardwareConfig,
    builder: GroupBuilder,
    forced: Iterable[tuple[int, int]],
    make_plan: Callable[[list[Group]], SchedulePlan],
    keep: int = KEEP,
    footprint: Footprint | None = None,
    max_span: int = MAX_SPAN,
) -> SearchResult:
    """The recurrence of the module docstring over ``builder``'s groups (``forced``: groups
    always allowed, the greedy plans'; ``max_span``: waist segments a group may span beyond
    them), repeated with a rising price per saved byte until ``make_plan``'s plan fits
    ``hbm_bytes`` as ``footprint`` measures it (default: the module's estimate)."""
    started = time.process_time()
    search = GroupingSearch(graph, cfg, builder, forced, max_span=max_span)
    measure = footprint or (lambda p: search.footprint(cuts_of(p.groups)))
    lam = 0.0
    for _ in range(MAX_PRICE_DOUBLINGS):
        ranked = search.run(keep, lam)
        if not ranked:
            raise WavecoreError("internal: mbs-opt found no plan (a layer fits nowhere)")
        plan = make_plan(search.groups_of(ranked[0].cuts))
        peak = measure(plan)
        if peak <= cfg.hbm_bytes:
            break
        lam = lam * 2 if lam else search.unit_price()
    else:
        raise WavecoreError(
            f"mbs-opt: no grouping it found keeps the DRAM footprint ({peak / 2**30:.2f} GiB) "
            f"within hbm_bytes = {cfg.hbm_bytes / 2**30:.2f} GiB; raise hbm_bytes, lower "
            "--batch or add --recompute auto"
        )
    plans = [plan] + [make_plan(search.groups_of(r.cuts)) for r in ranked[1:]]
    return SearchResult(
        plan, ranked, time.process_time() - started, len(search.groups), builder.objective, plans
    )


def cuts_of(groups: list[Group]) -> tuple[int, ...]:
    """The cuts of consecutive groups: the first layer of each, then the layer count."""
    starts, at = [], 0
    for g in groups:
        starts.append(at)
        at += len(g.layers)
    return (*starts, at)


def k_best_partitions(
    edges: dict[int, list[int]],
    n: int,
    cost: Callable[[int, int], tuple[float, float]],
    keep: int = 1,
) -> list[tuple[float, tuple[int, ...]]]:
    """The ``keep`` cheapest partitions of ``[0, n)`` into allowed groups ``[i, j)`` (``j`` in
    ``edges[i]``, every ``j > i``), as ``(cost, cuts)``, cheapest first: the recurrence
    ``F(j) = min_i F(i) + cost(i, j)`` keeping the ``keep`` smallest sums at every cut.
    ``cost`` is ``(primary, tie-break)``; both add up over groups."""
    if keep == 1:
        return _best_partition(edges, n, cost)
    best: dict[int, list[tuple[float, float, tuple[int, ...]]]] = {0: [(0.0, 0.0, (0,))]}
    for i in sorted(edges):  # in order: every F(i) is final when i is reached
        for j in edges[i]:
            if i not in best:
                break
            primary, tie = cost(i, j)
            here = best.setdefault(j, [])
            here.extend((c + primary, t + tie, (*path, j)) for c, t, path in best[i])
            if len(here) > keep:
                best[j] = heapq.nsmallest(keep, here)
    return [(c, path) for c, _, path in sorted(best.get(n, []))[:keep]]


def _best_partition(
    edges: dict[int, list[int]], n: int, cost: Callable[[int, int], tuple[float, float]]
) -> list[tuple[float, tuple[int, ...]]]:
    """:func:`k_best_partitions` for ``keep = 1``, the same answer (ties go to the smaller
    cuts) without a list per cut point: a plan's cuts are built only when it improves."""
    best: dict[int, tuple[float, float, tuple[int, ...]]] = {0: (0.0, 0.0, (0,))}
    for i in sorted(edges):
        if i not in best:
            continue
        c0, t0, path = best[i]
        for j in edges[i]:
            primary, tie = cost(i, j)
            c, t = c0 + primary, t0 + tie
            here = best.get(j)
            if here is None or (c, t) < here[:2] or ((c, t) == here[:2] and (*path, j) < here[2]):
                best[j] = (c, t, (*path, j))
    return [(best[n][0], best[n][2])] if n in best else []


class GroupingSearch:
    """The recurrence over cut points, with every group it evaluates memoised."""

    def __init__(
        self,
        graph: TrainingGraph,
        cfg: HardwareConfig,
        builder: GroupBuilder,
        forced: Iterable[tuple[int, int]] = (),
        explore: bool = True,
        max_span: int = MAX_SPAN,
    ) -> None:
        """``explore=False``: no cut points or groups evaluated up front (to rebuild a plan)."""
        self.graph, self.cfg, self.builder = graph, cfg, builder
        self.max_span = max_span
        self.groups: dict[tuple[int, int], Group | None] = {}
        self.saved: dict[tuple[int, int], int] = {}
        self.streamed: set[tuple[int, int]] = set()  # lone layers that stream (rule none)
        self.retiled: set[tuple[int, int]] = set()  # groups re-estimated with their tiles
        self.bounds: dict[tuple[int, int], tuple[float, float]] = {}  # see bound
        self.retiling: dict[tuple[int, int], Generator[tuple[float, float], None, None]] = {}
        if not explore:
            return
        self.n = len(builder.layer_order)
        self.forced = set(forced)  # the greedy plans' groups, always allowed
        self.cuts = sorted(set(waists(graph)) | {c for f in self.forced for c in f})
        self.waist = set(waists(graph))
        self.persistent = sum(
            t.fixed_bytes
            for t in graph.tensors.values()
            if t.kind in ("weight", "master_weight", "optimizer", "weight_grad")
        )
        self.edges = self._edges()

    def group(self, lo: int, hi: int) -> Group | None:
        """The best group of layers ``[lo, hi)`` (a lone layer may stream, as in mbs2)."""
        key = (lo, hi)
        if key not in self.groups:
            b = self.builder
            if hi - lo > 1 and b.spans_batch(lo, hi):
                g = None
            else:
                g = b.evaluate(lo, hi, False, False)
                if g is None and hi == lo + 1:
                    g = b.evaluate(lo, hi, False, False, "none")
                    self.streamed.add(key)
            self.groups[key] = g
        return self.groups[key]

    def retile(self, lo: int, hi: int) -> None:
        """Replace the group ``[lo, hi)`` by its best choice as :meth:`GroupBuilder.tiled`
        estimates it (:meth:`_retiling`, run to the end)."""
        while (lo, hi) not in self.retiled:
            self.advance(lo, hi)

    def advance(self, lo: int, hi: int) -> None:
        """Tile one more candidate of the group ``[lo, hi)`` (the first call tiles none) and
        keep the lower bound of its cost that :meth:`_retiling` yields."""
        key = (lo, hi)
        if key not in self.retiling:
            self.retiling[key] = self._retiling(lo, hi)
        try:
            self.bounds[key] = next(self.retiling[key])
        except StopIteration:
            del self.retiling[key]

    def _retiling(self, lo: int, hi: int) -> Iterator[tuple[float, float]]:
        """The group ``[lo, hi)`` re-estimated one candidate at a time. Candidates are tried in
        order of :meth:`GroupBuilder.lower_bound` until the next bound is no better than the
        best tiled one found; before each is tiled, the generator yields a lower bound of the
        final cost (the best so far, the candidate's bound, which no later one is under, and
        the bound of the candidates of a later kind), so that the search tiles a group's
        candidates only while the group may still be on the best plan. When it ends, the
        group is replaced by the best choice (saving first; recomputing under ``all`` where
        it fits, under ``auto`` where it may win)."""
        b, key = self.builder, (lo, hi)
        rule = "none" if key in self.streamed else None

        def best_of(
            cands: tuple[Group, ...], best: Group | None, later: tuple[float, float] | None
        ) -> Generator[tuple[float, float], None, Group | None]:
            for cand in sorted(cands, key=b.lower_bound):
                low = b.lower_bound(cand)
                if best is not None and low[0] >= b.cost(best)[0]:
                    break
                yield min(c for c in (low, later, best and b.cost(best)) if c is not None)
                tiled = b.tiled(cand)
                if best is None or b.cost(tiled) < b.cost(best):
                    best = tiled
            return best

        best = None
        if b.recompute == "all" and rule is None:
            best = yield from best_of(b.candidates(lo, hi, rule, True), None, None)
        if best is None:
            auto = b.recompute == "auto" and rule is None
            later = self._recompute_bound(lo, hi) if auto else None
            best = yield from best_of(b.candidates(lo, hi, rule, False), None, later)
            if auto and (best is None or b.recompute_may_win(lo, hi, best)):
                best = yield from best_of(b.candidates(lo, hi, rule, True), best, None)
        self.groups[key] = best
        self.saved.pop(key, None)
        self.retiled.add(key)

    def _recompute_bound(self, lo: int, hi: int) -> tuple[float, float] | None:
        """A lower bound of the cost of recomputing ``[lo, hi)``: under the time objective its
        GEMMs (:meth:`GroupBuilder.recompute_bound`, no fit test), else the least bound of
        the recompute candidates; None when nothing can be recomputed."""
        b = self.builder
        if b.objective == "time":
            redo = b.recompute_bound(lo, hi, floor=True)
            return None if redo is None else (redo, 0)
        return min(map(b.lower_bound, b.candidates(lo, hi, None, True)), default=None)

    def bound(self, lo: int, hi: int) -> tuple[float, float]:
        """The group ``[lo, hi)``'s cost once re-estimated (:meth:`retile`), or before that the
        lower bound of it that :meth:`_retiling` yielded last."""
        key = (lo, hi)
        if key not in self.retiled and key not in self.bounds:
            self.advance(lo, hi)
        if key in self.retiled:
            g = self.groups[key]
            assert g is not None
            return self.builder.cost(g)
        return self.bounds[key]

    def _edges(self) -> dict[int, list[int]]:
        """Allowed groups by start: ``i -> [j, ...]``, grown from each cut point until
        ``max_span`` waists are crossed, ``MAX_LAYERS`` exceeded or nothing fits."""
        edges: dict[int, list[int]] = {i: [] for i in self.cuts}
        for a, i in enumerate(self.cuts):
            spans = 0
            for j in self.cuts[a + 1 :]:
                if j - i > MAX_LAYERS:
                    break
                if self.group(i, j) is None:
                    if j == i + 1:
                        raise WavecoreError(
                            f"layer {self.builder.layer_order[i]!r} does not fit the "
                            f"{self.cfg.gbuf_bytes}-byte global buffer; raise gbuf_bytes"
                        )
                    break
                edges[i].append(j)
                spans += j in self.waist
                if spans >= self.max_span:
                    break
        for i, j in self.forced:
            if j not in edges[i] and self.group(i, j) is not None:
                edges[i].append(j)
        return edges

    def saved_bytes(self, lo: int, hi: int) -> int:
        """Activation bytes the group's forward pass leaves in DRAM for the backward pass."""
        key = (lo, hi)
        if key not in self.saved:
            g = self.groups[key]
            assert g is not None
            tensors = self.graph.tensors
            stored = {t for st in g.fwd for t in st.store_out if tensors[t].saved}
            self.saved[key] = sum(tensors[t].bytes_per_sample for t in stored) * self.graph.batch
        return self.saved[key]

    def footprint(self, cuts: tuple[int, ...]) -> int:
        """Estimated DRAM footprint of a plan (see the module docstring)."""
        return self.persistent + sum(self.saved_bytes(i, j) for i, j in itertools.pairwise(cuts))

    def unit_price(self) -> float:
        """A first price per saved byte: the objective's cost of one byte of traffic."""
        if self.builder.objective == "time":
            return 1.0 / self.cfg.hbm_bytes_per_cycle
        if self.builder.objective == "energy":
            return 8 * self.cfg.dram_pj_per_bit
        return 1.0

    def run(self, keep: int, lam: float) -> list[RankedPlan]:
        """The ``keep`` best plans by the recurrence of the module docstring."""

        may_recompute = self.builder.recompute != "none"

        def priced(key: tuple[int, int]) -> tuple[float, float]:
            primary, tie = self.bound(*key)  # the cost itself once re-estimated
            if lam and may_recompute and key not in self.retiled:
                return primary, tie  # (its final choice may recompute and save nothing)
            return primary + lam * self.saved_bytes(*key), tie

        costs = {(i, j): priced((i, j)) for i, js in self.edges.items() for j in js}
        while True:  # re-estimate the groups of the best plans until they are all re-estimated
            found = k_best_partitions(self.edges, self.n, lambda i, j: costs[(i, j)], keep)
            todo = {
                key
                for _, path in found
                for key in itertools.pairwise(path)
                if key not in self.retiled
            }
            if not todo:
                break
            for key in sorted(todo):  # one more candidate each: their bounds rise
                self.advance(*key)
                costs[key] = priced(key)
        ranked = []
        for c, path in found:
            groups = [self.groups[(i, j)] for i, j in itertools.pairwise(path)]
            ranked.append(
                RankedPlan(
                    path,
                    c,
                    sum(g.estimated_cycles for g in groups if g),
                    sum(g.estimated_dram_bytes for g in groups if g),
                )
            )
        return ranked

    def groups_of(self, cuts: tuple[int, ...]) -> list[Group]:
        """The groups of a partition, each a fresh copy indexed in order (evaluated now if
        the search did not; refused if one does not fit the buffer)."""
        groups = []
        for i, j in itertools.pairwise(cuts):
            if self.group(i, j) is None:
                raise WavecoreError(f"layers [{i}, {j}) do not fit the global buffer as one group")
            if (i, j) not in self.retiled:
                self.retile(i, j)
            g = self.groups[(i, j)]
            assert g is not None
            groups.append(replace(g, index=len(groups)))
        return groups
