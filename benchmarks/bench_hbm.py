"""Benchmark: the simulate stage under the ideal and the calibrated HBM model, same program.

Compiles one case once, then simulates it ``--repeat`` times per model and prints the best
seconds, instructions per second and cycles of each, and the calibrated model's slowdown.
Usage: ``python benchmarks/bench_hbm.py [--case resnet50:32:mbs2] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="resnet50:32:mbs2", help="network:batch:schedule")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from wavecore_sim import api
    from wavecore_sim.compiler.dram import plan_dram
    from wavecore_sim.compiler.lower import Lowering
    from wavecore_sim.ir import Op
    from wavecore_sim.schedule import build_schedule
    from wavecore_sim.sim import simulate

    api.use_fast_gc()
    network, batch, schedule = args.case.split(":")
    cfg = api.make_config()
    graph = api.expand(network, int(batch), api.default_norm(schedule), cfg)
    plan = build_schedule(graph, schedule, cfg)
    program = Lowering(graph, plan, cfg, plan_dram(graph, plan, cfg)).run()
    op = program.cols["op"]
    transfers = int(((op == Op.LOAD) | (op == Op.STORE)).sum())
    print(f"{args.case}: {len(program):,} instructions, {transfers:,} transfers")
    cfgs = {m: dataclasses.replace(cfg, hbm_model=m) for m in ("ideal", "calibrated")}
    times: dict[str, list[float]] = {m: [] for m in cfgs}
    cycles = {}
    for _ in range(args.repeat):  # alternate the models, so load on the machine hits both
        for model, mcfg in cfgs.items():
            t = time.perf_counter()
            cycles[model] = simulate(program, mcfg).cycles
            times[model].append(time.perf_counter() - t)
    best = {m: min(v) for m, v in times.items()}
    for model in cfgs:
        print(
            f"  hbm_model={model:10s} simulate {best[model]:.3f} s (best of {args.repeat}), "
            f"{len(program) / best[model]:,.0f} instructions/s, {cycles[model]:,} cycles"
        )
    print(f"  calibrated / ideal: {best['calibrated'] / best['ideal']:.3f}")


if __name__ == "__main__":
    main()
