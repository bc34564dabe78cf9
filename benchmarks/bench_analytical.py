"""Benchmark: the analytical model over every zoo network and schedule (issue 5: "all zoo
networks x all five schedules at batch 32 in a few seconds together").

Run: python benchmarks/bench_analytical.py [--networks a,b] [--schedules s,t] [--batch 32]
Compiles each program and times that too (the compile dominates the run: minutes for the
whole zoo against seconds of analysis; bench_resnet50.py splits it by stage), then times
``analytical.analyze`` on it. Prints one line per program (compile and analysis seconds) and
the total analysis time, per schedule and for the paper's five schedules (all but
``mbs2-time``, which is ours), then the total compile time, main()'s wall time and the
peak memory. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import resource
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
    start = time.perf_counter()
    api.use_fast_gc()  # as the CLI does
    cfg = api.make_config()
    print(
        f"{'network':<13} {'schedule':<10} {'instrs':>8} {'compile s':>9} {'analyze s':>9} "
        f"{'cycles':>13}"
    )
    total_time, total_compile, total_instrs, programs = 0.0, 0.0, 0, 0
    by_schedule: dict[str, float] = {}
    for network in args.networks.split(","):
        for schedule in args.schedules.split(","):
            t0 = time.perf_counter()
            program = api.compile_network(network, args.batch, schedule, cfg=cfg).program
            compiled = time.perf_counter() - t0
            total_compile += compiled
            programs += 1
            t0 = time.perf_counter()
            result = analyze(program, cfg)
            elapsed = time.perf_counter() - t0
            total_time += elapsed
            by_schedule[schedule] = by_schedule.get(schedule, 0.0) + elapsed
            total_instrs += len(program)
            print(
                f"{network:<13} {schedule:<10} {len(program):>8,} {compiled:>9.3f} {elapsed:>9.3f} "
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
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        f"compile: {programs} programs in {total_compile:.2f} s (not part of the analysis "
        f"time above); main() ran {time.perf_counter() - start:.2f} s, peak memory "
        f"{peak_mib:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
