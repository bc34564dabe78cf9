"""Compiler stage: schedule -> tiled, buffer-allocated, per-unit instruction streams."""

from __future__ import annotations

from ..config import HardwareConfig
from ..ir import Program
from ..progress import QUIET, Progress
from ..schedule import SchedulePlan
from ..training import TrainingGraph
from .dram import plan_dram
from .lower import Lowering


def compile_program(
    graph: TrainingGraph,
    plan: SchedulePlan,
    cfg: HardwareConfig,
    progress: Progress = QUIET,
    *,
    verify: bool = True,
) -> Program:
    """Lower a schedule of a training iteration into a verified program. The DRAM plan comes
    first: an iteration whose footprint exceeds ``hbm_bytes`` is refused before lowering.
    ``progress`` reports each of the three stages. ``verify=False`` skips the verifier (a
    quarter of the compile): only for ``explore``'s analytical screening, whose points are
    compiled again, verified, before any of them is simulated."""
    from .verify import verify_program

    with progress.step("compile: DRAM plan"):
        dram = plan_dram(graph, plan, cfg)
    with progress.step("compile: lower to instructions"):
        program = Lowering(graph, plan, cfg, dram).run()
    program.meta.update(
        {
            "network": graph.network.name,
            "batch": graph.batch,
            "schedule": plan.name,
            "norm": graph.network.norm,
            "notes": list(plan.notes),
            "config": cfg.to_dict(),
        }
    )
    if verify:
        with progress.step("compile: verify"):
            verify_program(program, cfg)
    return program
