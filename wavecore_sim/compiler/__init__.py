"""Compiler stage: schedule -> tiled, buffer-allocated, per-unit instruction streams."""

from __future__ import annotations

from ..config import HardwareConfig
from ..schedule import SchedulePlan
from ..training import TrainingGraph
from .lower import Lowering
from .program import Program


def compile_program(graph: TrainingGraph, plan: SchedulePlan, cfg: HardwareConfig) -> Program:
    """Lower a schedule of a training iteration into a verified program."""
    from .verify import verify_program

    program = Lowering(graph, plan, cfg).run()
    program.meta.update({"network": graph.network.name, "batch": graph.batch,
                         "schedule": plan.name, "norm": graph.network.norm,
                         "notes": list(plan.notes), "config": cfg.to_dict()})
    verify_program(program, cfg)
    return program
