"""Benchmark: compile time against network depth and against the number of cores.

Run: python benchmarks/bench_depth.py [--depths 100,300,1000] [--cores 1,2,8,32]
[--schedules baseline,mbs2] [--channels 16] [--size 8]

Depth: a chain of ``depth`` 3x3 convolutions (``channels`` in and out, ``size`` x ``size``
input, stride 1, padding 1), then global pooling, a classifier and the loss, at batch 8 on
the default preset. Cores: the tiny example network (workloads/example_tinynet.json) at batch
32 with ``cores`` set. Every case prints the CPU seconds of this process in each compile stage
(schedule, DRAM plan with lowering, verify) and their total: CPU time, not wall time, so that
other work on a shared machine skews the figures less. Not a test: the numbers depend on the
machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from wavecore_sim import api
from wavecore_sim.compiler.dram import plan_dram
from wavecore_sim.compiler.lower import Lowering
from wavecore_sim.compiler.verify import verify_program
from wavecore_sim.config import HardwareConfig
from wavecore_sim.schedule import build_schedule
from wavecore_sim.workload import Network, build_network

TINYNET = Path(__file__).resolve().parents[1] / "workloads" / "example_tinynet.json"


def conv_chain(depth: int, channels: int, size: int, norm: str) -> Network:
    """``depth`` 3x3 convs in a chain, then gap, fc and loss."""
    layers: list[dict[str, Any]] = [
        {"name": f"conv{i}", "kind": "conv", "out_channels": channels, "kernel": 3, "padding": 1}
        for i in range(depth)
    ]
    layers += [
        {"name": "gap", "kind": "gap"},
        {"name": "fc", "kind": "fc", "out_features": 10},
        {"name": "loss", "kind": "loss"},
    ]
    spec = {
        "format": "wavecore-network/1",
        "name": f"chain{depth}",
        "input": {"channels": channels, "height": size, "width": size},
        "layers": layers,
    }
    return build_network(spec, norm=norm)


def time_compile(
    network: str | Network, batch: int, schedule: str, cfg: HardwareConfig
) -> dict[str, float]:
    """Seconds of each compile stage (what ``api.compile_network`` runs, stage by stage)."""
    graph = api.expand(network, batch, api.default_norm(schedule), cfg)
    t0 = time.process_time()
    plan = build_schedule(graph, schedule, cfg)
    t1 = time.process_time()
    program = Lowering(graph, plan, cfg, plan_dram(graph, plan, cfg)).run()
    t2 = time.process_time()
    verify_program(program, cfg)
    t3 = time.process_time()
    return {
        "schedule": t1 - t0,
        "lower": t2 - t1,
        "verify": t3 - t2,
        "total": t3 - t0,
        "instructions": len(program),
        "groups": len(plan.groups),
    }


def report(label: str, figures: dict[str, float]) -> None:
    print(
        f"{label:<28} {figures['total']:8.2f} s  (schedule {figures['schedule']:7.2f}, "
        f"lower {figures['lower']:6.2f}, verify {figures['verify']:6.2f})  "
        f"{int(figures['groups']):5d} groups {int(figures['instructions']):8d} instructions",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="100,300,1000")
    parser.add_argument("--cores", default="1,2,8,32")
    parser.add_argument("--schedules", default="baseline,mbs2")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=8)
    args = parser.parse_args()
    api.use_fast_gc()
    cfg = api.make_config()
    schedules = [s for s in args.schedules.split(",") if s]
    for depth in (int(d) for d in args.depths.split(",") if d):
        for schedule in schedules:
            net = conv_chain(depth, args.channels, args.size, api.default_norm(schedule))
            report(f"depth {depth:5d} {schedule}", time_compile(net, 8, schedule, cfg))
    for cores in (int(c) for c in args.cores.split(",") if c):
        for schedule in schedules:
            figures = time_compile(
                str(TINYNET), 32, schedule, dataclasses.replace(cfg, cores=cores)
            )
            report(f"cores {cores:2d} tinynet {schedule}", figures)


if __name__ == "__main__":
    main()
