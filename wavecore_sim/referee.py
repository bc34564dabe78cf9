"""The cycle-level referee of ``mbs-opt`` (``--referee N``): its plans compiled and simulated.

The search of :mod:`schedule_opt` ranks plans by an estimate (group DRAM time or GEMM and
vector time, whichever is longer) that leaves out what the machine adds between steps:
prologues and epilogues, exposed weight tiles, DMA queues that pace a step (docs/mbs-opt.md
measures the gap: 22-35 % under the simulated cycles of the plans that minimise time,
between 5 % over and 16 % under for those that minimise traffic). Plans a few per cent apart
in the estimate can swap places in the machine. The referee settles it the only exact way:
it compiles and simulates a short list and keeps the best by the objective as simulated
(cycles, DRAM bytes or energy; cycles break ties):

* the search's ``N`` best plans under its objective,
* the best plan under each other objective (same ``--recompute``), and the best plan with
  groups of at most one block or module (beyond the greedy plans' groups),
* the greedy plans ``mbs2`` and ``mbs2-time`` (without recomputation, or with it under
  ``--recompute all``, which the plain plans would break).

Plans that are the same grouping are simulated once; a plan whose DRAM footprint exceeds
``hbm_bytes`` is left out with a note. The cost is one compile and one simulation per plan
(ResNet-50 batch 32: about 2 s each on one core), so it is off by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .compiler import compile_program
from .config import HardwareConfig
from .errors import WavecoreError
from .ir import Program
from .progress import QUIET, Progress
from .report.summary import build_summary
from .schedule import OBJECTIVES, SchedulePlan, build_schedule, optimal_schedule, tiled_estimate
from .schedule_opt import Footprint
from .sim import simulate
from .training import TrainingGraph

#: the simulated figure each objective compares (cycles break ties)
MEASURE = {"time": "cycles", "traffic": "dram_bytes", "energy": "energy_joules"}


@dataclass
class Candidate:
    """One plan the referee simulated (or could not compile), with its estimate as mbs-opt
    estimates its own groups (:func:`schedule.tiled_estimate`) and its simulated figures."""

    label: str
    plan: SchedulePlan
    estimated_cycles: int
    estimated_dram_bytes: int
    cycles: int | None = None
    dram_bytes: int | None = None
    energy_joules: float | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """The candidate as one JSON-ready row (``plan.json`` / ``program.meta``)."""
        return {
            "label": self.label,
            "groups": len(self.plan.groups),
            "estimated_cycles": self.estimated_cycles,
            "estimated_dram_bytes": self.estimated_dram_bytes,
            "cycles": self.cycles,
            "dram_bytes": self.dram_bytes,
            "energy_joules": self.energy_joules,
            "error": self.error,
        }


@dataclass
class RefereeResult:
    """The chosen plan, its compiled program and every candidate's figures."""

    plan: SchedulePlan
    program: Program
    chosen: str
    candidates: list[Candidate] = field(default_factory=list)


def candidate_plans(
    graph: TrainingGraph,
    cfg: HardwareConfig,
    recompute: str,
    objective: str,
    count: int,
    footprint: Footprint | None = None,
) -> list[tuple[str, SchedulePlan]]:
    """The short list of the module docstring, as ``(label, plan)``, duplicates removed."""
    found = optimal_schedule(graph, cfg, recompute, objective, count, footprint)
    plans = [
        (f"mbs-opt #{rank}" if rank > 1 else "mbs-opt", plan)
        for rank, plan in enumerate(found.plans, start=1)
    ]
    for other in OBJECTIVES:
        if other != objective:
            best = optimal_schedule(graph, cfg, recompute, other, 1, footprint).plan
            plans.append((f"mbs-opt --objective {other}", best))
    # groups of one block or module at most (and the greedy plans' groups): smaller groups
    # that the estimate ranks a little worse but the machine, on ResNets, runs faster
    narrow = optimal_schedule(graph, cfg, recompute, objective, 1, footprint, max_span=1)
    plans.append(("mbs-opt span 1", narrow.plan))
    greedy_recompute = "all" if recompute == "all" else "none"
    for name in ("mbs2", "mbs2-time"):
        plans.append((name, build_schedule(graph, name, cfg, greedy_recompute)))
    unique: dict[tuple, tuple[str, SchedulePlan]] = {}
    for label, plan in plans:  # each compiled as mbs-opt's plan, whichever found it
        unique.setdefault(_grouping(plan), (label, replace(plan, name="mbs-opt")))
    return list(unique.values())


def referee(
    graph: TrainingGraph,
    cfg: HardwareConfig,
    recompute: str,
    objective: str,
    count: int,
    footprint: Footprint | None = None,
    progress: Progress = QUIET,
    verify: bool = True,
) -> RefereeResult:
    """Compile and simulate the short list; the best plan by ``objective`` as simulated."""
    if count < 1:
        raise WavecoreError(f"--referee {count}: give the number of plans to simulate, 1 or more")
    with progress.step("referee: the plans to simulate"):
        plans = candidate_plans(graph, cfg, recompute, objective, count, footprint)
    measure = MEASURE[objective]
    candidates: list[Candidate] = []
    best: tuple[Candidate, Program] | None = None  # only the best program is kept in memory
    for at, (label, plan) in enumerate(plans, start=1):
        cand = Candidate(label, plan, *tiled_estimate(graph, cfg, plan))  # alike for all
        candidates.append(cand)
        with progress.step(f"referee: plan {at}/{len(plans)} ({label})"):
            try:
                program = compile_program(graph, plan, cfg, verify=verify)
            except WavecoreError as exc:  # e.g. over hbm_bytes: the others still run
                cand.error = str(exc)
                continue
            summary = build_summary(program, cfg, simulate(program, cfg), 0.0)
        cand.cycles = summary["cycles"]
        cand.dram_bytes = summary["dram_bytes"]
        cand.energy_joules = summary["energy_joules"]
        if best is None or _rank(cand, measure) < _rank(best[0], measure):  # ties: first
            best = (cand, program)
        del program, summary
    if best is None:
        raise WavecoreError(f"--referee: no candidate plan compiled ({candidates[0].error})")
    chosen, program = best
    ran = sum(c.error is None for c in candidates)
    chosen.plan.notes = [
        *chosen.plan.notes,
        f"refereed: {ran} plans simulated, {chosen.label!r} is best by simulated {measure}",
    ]
    return RefereeResult(chosen.plan, program, chosen.label, candidates)


def _rank(cand: Candidate, measure: str) -> tuple:
    """What the referee minimises: the objective's simulated figure, then cycles."""
    return getattr(cand, measure), cand.cycles


def _grouping(plan: SchedulePlan) -> tuple:
    """What tells two plans apart: each group's layers, sub-batch and on-chip choices."""
    return tuple(
        (g.layers, g.sub_batch, g.weights_resident, g.wgrad_resident, g.recompute)
        for g in plan.groups
    )
