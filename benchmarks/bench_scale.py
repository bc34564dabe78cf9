"""Benchmark: the whole pipeline stage by stage, at the sizes people train at.

Run: python benchmarks/bench_scale.py [--cases resnet50:32:mbs2,resnet152:256:mbs2] [--jobs 1]

For each case (network:batch:schedule, default preset) it prints, in a fresh process (so the
peak RSS is that case's own): instructions, seconds per stage (schedule, lowering with the
DRAM plan, verify, simulate, then each output: summary, CSVs, trace file, timeline.png,
trace.json), microseconds per instruction over all stages, simulated instructions per second
and the process's peak RSS. Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CASES = "resnet50:32:mbs2,resnet50:256:mbs2,resnet152:256:mbs2"


def run_case(network: str, batch: int, schedule: str) -> dict:
    """Every stage of one case in this process; returns the figures."""
    t0 = time.perf_counter()
    from wavecore_sim import api
    from wavecore_sim.compiler.dram import plan_dram
    from wavecore_sim.compiler.lower import Lowering
    from wavecore_sim.compiler.tracefile import write_trace
    from wavecore_sim.compiler.verify import verify_program
    from wavecore_sim.report.perfetto import write_perfetto
    from wavecore_sim.report.summary import build_summary, group_rows, layer_rows, write_csv
    from wavecore_sim.report.timeline import plot_timeline
    from wavecore_sim.schedule import build_schedule
    from wavecore_sim.sim import simulate

    api.use_fast_gc()
    stages: dict[str, float] = {"imports": time.perf_counter() - t0}

    def stage(name: str, start: float) -> float:
        now = time.perf_counter()
        stages[name] = now - start
        return now

    t = time.perf_counter()
    cfg = api.make_config()
    graph = api.expand(network, batch, api.default_norm(schedule), cfg)
    plan = build_schedule(graph, schedule, cfg)
    t = stage("schedule", t)
    program = Lowering(graph, plan, cfg, plan_dram(graph, plan, cfg)).run()
    program.meta.update(
        {
            "network": network,
            "batch": batch,
            "schedule": schedule,
            "norm": graph.network.norm,
            "notes": list(plan.notes),
            "config": cfg.to_dict(),
        }
    )
    t = stage("lowering", t)
    verify_program(program, cfg)
    t = stage("verify", t)
    result = simulate(program, cfg)
    simulate_seconds = time.perf_counter() - t
    t = stage("simulate", t)
    summary = build_summary(program, cfg, result, simulate_seconds)
    t = stage("summary", t)
    with tempfile.TemporaryDirectory() as out:
        out_dir = Path(out)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        write_csv(out_dir / "layers.csv", layer_rows(program, cfg, result))
        write_csv(out_dir / "groups.csv", group_rows(program, cfg, result))
        t = stage("csv", t)
        write_trace(program, out_dir)
        t = stage("trace file", t)
        plot_timeline(program, cfg, result, out_dir / "timeline.png")
        t = stage("timeline.png", t)
        write_perfetto(program, cfg, result, out_dir / "trace.json")
        t = stage("trace.json", t)
    n = len(program)
    total = sum(stages.values())
    return {
        "case": f"{network} b{batch} {schedule}",
        "instructions": n,
        "stages": stages,
        "total_s": total,
        "us_per_instr": 1e6 * total / n,
        "simulated_instr_per_s": n / stages["simulate"],
        "cycles": result.cycles,
        "dram_peak_gib": program.dram_footprint.peak_bytes / 2**30,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        default=DEFAULT_CASES,
        help="comma-separated network:batch:schedule (default: %(default)s)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    if args.one:
        network, batch, schedule = args.one.split(":")
        print(json.dumps(run_case(network, int(batch), schedule)))
        return
    for case in args.cases.split(","):
        print(f"{case}: running ...", flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--one", case], capture_output=True, text=True, check=False
        )
        if proc.returncode:
            print(f"{case}: failed\n{proc.stderr.strip()}", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
        print(
            f"{r['case']}: {r['instructions']:,} instructions, {r['cycles']:,} cycles, "
            f"DRAM footprint {r['dram_peak_gib']:.2f} GiB\n"
            f"  seconds: {stages}; total {r['total_s']:.2f} s\n"
            f"  {r['us_per_instr']:.1f} us/instruction, simulate "
            f"{r['simulated_instr_per_s']:,.0f} instructions/s, "
            f"peak RSS {r['peak_rss_mib']:,.0f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
