"""Benchmark: the analytical model over every zoo network and schedule (issue 5: "all zoo
networks x all five schedules at batch 32 in a few seconds together").

Run: python benchmarks/bench_analytical.py [--networks a,b] [--schedules s,t] [--batch 32]
Compiles each program (not timed: compiling is the compiler's cost, see
bench_resnet50.py), then times ``analytical.analyze`` on it. Prints one line per program and
the total analysis time, per schedule and for the paper's five schedules (all but
``mbs2-time``, which is ours). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import time

from wavecore_sim import api
from wavecore_sim.analytical import analyze
from wavecore_sim.schedule import SCHEDULES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(api.list_networks()))
    parser.add_argument("--schedules", default=",".join(SCHEDULES))
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    api.use_fast_gc()  # as the CLI does
    cfg = api.make_config()
    print(f"{'network':<13} {'schedule':<10} {'instrs':>8} {'analyze s':>9} {'cycles':>13}")
    total_time, total_instrs = 0.0, 0
    by_schedule: dict[str, float] = {}
    for network in args.networks.split(","):
        for schedule in args.schedules.split(","):
            program = api.compile_network(network, args.batch, schedule, cfg=cfg).program
            t0 = time.perf_counter()
            result = analyze(program, cfg)
            elapsed = time.perf_counter() - t0
            total_time += elapsed
            by_schedule[schedule] = by_schedule.get(schedule, 0.0) + elapsed
            total_instrs += len(program)
            print(
                f"{network:<13} {schedule:<10} {len(program):>8,} {elapsed:>9.3f} "
                f"{result.cycles:>13,}",
                flush=True,
            )
    print("by schedule: " + ", ".join(f"{s} {t:.2f} s" for s, t in by_schedule.items()))
    paper = [s for s in by_schedule if s != "mbs2-time"]  # the five
    print(f"paper's schedules ({', '.join(paper)}): {sum(by_schedule[s] for s in paper):.2f} s")
    print(
        f"total: {total_instrs:,} instructions analysed in {total_time:.2f} s "
        f"({total_instrs / total_time:,.0f} instructions/s)"
    )


if __name__ == "__main__":
    main()
