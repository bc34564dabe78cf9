"""Benchmark: compile and simulate ResNet-50 at batch 32 under baseline and mbs2.

Run: python benchmarks/bench_resnet50.py [--schedules baseline,mbs2] [--network resnet50]
Prints, per schedule: wall seconds (compile, simulate, total), peak RSS of this process,
instructions per second and simulated cycles per second. Not a test: numbers depend on
the machine. Target (issue 4): a whole iteration in <= 10 s wall and <= 1 GiB RSS.
"""

from __future__ import annotations

import argparse
import resource
import time

from wavecore_sim import api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="resnet50")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--schedules", default="baseline,mbs2")
    args = parser.parse_args()
    api.use_fast_gc()  # as the CLI does
    cfg = api.make_config()
    print(
        f"{'schedule':<9} {'compile s':>9} {'simulate s':>10} {'total s':>8} "
        f"{'instrs':>8} {'instr/s':>9} {'sim cycles/s':>13} {'peak RSS MiB':>12}"
    )
    for schedule in args.schedules.split(","):
        t0 = time.perf_counter()
        compiled = api.compile_network(args.network, args.batch, schedule, cfg=cfg)
        t1 = time.perf_counter()
        result, _ = api.simulate_program(compiled.program, cfg)
        t2 = time.perf_counter()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n = len(compiled.program)
        print(
            f"{schedule:<9} {t1 - t0:>9.2f} {t2 - t1:>10.2f} {t2 - t0:>8.2f} {n:>8,} "
            f"{n / (t2 - t0):>9,.0f} {result.cycles / (t2 - t1):>13,.0f} {rss:>12,.0f}"
        )


if __name__ == "__main__":
    main()
