"""Benchmark (issue 16): ``mbs-opt`` and recomputation against the greedy MBS schedules.

Run: python benchmarks/bench_opt.py table [--networks a,b] [--batches 32,256] [--out F.jsonl]
     python benchmarks/bench_opt.py rank [--networks a,b] [--batch 32] [--out F.jsonl]
     python benchmarks/bench_opt.py spread [--networks a,b] [--batch 32] [--out S.jsonl]
     python benchmarks/bench_opt.py estimates [--networks a,b] [--batches 32,256] [--out E]
     python benchmarks/bench_opt.py report --table F [--rank G] [--estimates E] [--plots DIR]

``table``: every network under ``baseline``, ``mbs2``, ``mbs2-time``, ``mbs-opt``,
``mbs-opt --recompute auto`` and ``mbs-opt --objective traffic --recompute auto``: the
plan's estimate, the search's seconds, then the simulated cycles, DRAM traffic, DRAM
footprint and energy. One JSON line per run, appended as each finishes (a rerun skips the rows
already in the file), so a long table survives an interruption.

``rank``: the search's ``KEEP`` best plans per network (time objective), each compiled and
simulated: estimated vs simulated cycles and their Kendall tau-b.

``spread``: widely different plans per network (greedy, mbs-opt under each objective,
recompute mode and group span), estimated alike and simulated, with their Kendall tau-b.

``estimates``: the greedy plans re-estimated as ``mbs-opt`` estimates its groups (tiles
and vector work), to compare them in its own terms.

``report``: the markdown table, the Crane comparison, the tau per network, and (``--plots``)
``tradeoff.png`` (DRAM traffic vs iteration time, one point per schedule, per network) and
``footprint.png`` (DRAM footprint per schedule). Not a test: wall times depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from wavecore_sim import api
from wavecore_sim.compiler import compile_program
from wavecore_sim.errors import WavecoreError
from wavecore_sim.schedule import build_schedule, optimal_schedule, plan_of_cuts, tiled_estimate
from wavecore_sim.schedule_opt import KEEP

NETWORKS = "resnet50,resnet101,resnet152,inception_v3,inception_v4"
#: (label, schedule, recompute, objective, referee)
VARIANTS = [
    ("baseline", "baseline", "none", "time", 0),
    ("mbs2", "mbs2", "none", "time", 0),
    ("mbs2-time", "mbs2-time", "none", "time", 0),
    ("mbs-opt", "mbs-opt", "none", "time", 0),
    ("mbs-opt --recompute auto", "mbs-opt", "auto", "time", 0),
    ("mbs-opt --objective traffic --recompute auto", "mbs-opt", "auto", "traffic", 0),
    ("mbs-opt --referee 4", "mbs-opt", "none", "time", 4),
]
#: the searches timed by ``search``: (label, recompute, objective)
SEARCHES = [
    ("mbs-opt", "none", "time"),
    ("mbs-opt --recompute auto", "auto", "time"),
    ("mbs-opt --objective traffic --recompute auto", "auto", "traffic"),
]
#: Crane (MICRO'25): DRAM traffic reduction over MBS at batch 256, as claimed
CRANE_CLAIM = (1.42, 2.22)


def _done(path: Path) -> set[tuple]:
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["network"], r["batch"], r["label"]) for r in rows}


def _simulate(graph, plan, cfg, program=None) -> dict[str, Any]:
    program = program or compile_program(graph, plan, cfg)
    _, summary = api.simulate_program(program, cfg)
    return {
        "cycles": summary["cycles"],
        "dram_bytes": summary["dram_bytes"],
        "dram_peak_bytes": summary["dram_peak_bytes"],
        "energy_joules": summary["energy_joules"],
        "saved_activation_bytes": sum(
            summary["dram_by_kind"][d].get("saved_activations", 0) for d in ("read", "write")
        ),
    }


def cmd_table(args: argparse.Namespace) -> None:
    out = Path(args.out)
    done = _done(out)
    cfg = api.make_config()
    for batch in map(int, args.batches.split(",")):
        for network in args.networks.split(","):
            for label, schedule, recompute, objective, referee in VARIANTS:
                if (network, batch, label) in done:
                    continue
                graph = api.expand(network, batch, api.default_norm(schedule), cfg)
                started = time.perf_counter()
                program, extra = None, {}
                if referee:
                    refereed = api.run_referee(graph, cfg, recompute, objective, referee)
                    plan, program = refereed.plan, refereed.program
                    extra = {
                        "refereed": refereed.chosen,
                        "candidates": [c.row() for c in refereed.candidates],
                    }
                else:
                    plan = api.plan_schedule(graph, schedule, cfg, recompute, objective)
                row = {
                    "network": network,
                    "batch": batch,
                    "label": label,
                    "plan_seconds": round(time.perf_counter() - started, 2),
                    "groups": len(plan.groups),
                    "recomputed_groups": sum(g.recompute for g in plan.groups),
                    "estimated_cycles": sum(g.estimated_cycles for g in plan.groups),
                    "estimated_dram_bytes": sum(g.estimated_dram_bytes for g in plan.groups),
                    **extra,
                }
                try:
                    row.update(_simulate(graph, plan, cfg, program))
                except WavecoreError as exc:  # one line, the other rows still run
                    row["error"] = str(exc)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def cmd_estimates(args: argparse.Namespace) -> None:
    """The greedy plans estimated as mbs-opt estimates its own (tiles and vector work)."""
    out = Path(args.out)
    cfg = api.make_config()
    for batch in map(int, args.batches.split(",")):
        for network in args.networks.split(","):
            graph = api.expand(network, batch, "gn", cfg)
            for schedule in ("mbs2", "mbs2-time"):
                plan = build_schedule(graph, schedule, cfg)
                cycles, traffic = tiled_estimate(graph, cfg, plan)
                row = {
                    "network": network,
                    "batch": batch,
                    "label": schedule,
                    "tiled_estimated_cycles": cycles,
                    "tiled_estimated_dram_bytes": traffic,
                }
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


#: plans of one network that differ widely, for the rank check: (label, schedule,
#: recompute, objective, MAX_SPAN)
SPREAD = [
    ("mbs1", "mbs1", "none", "time", None),
    ("mbs2", "mbs2", "none", "time", None),
    ("mbs2-time", "mbs2-time", "none", "time", None),
    ("mbs2 --recompute all", "mbs2", "all", "time", None),
    ("mbs-opt", "mbs-opt", "none", "time", None),
    ("mbs-opt span 1", "mbs-opt", "none", "time", 1),
    ("mbs-opt span 2", "mbs-opt", "none", "time", 2),
    ("mbs-opt --objective traffic", "mbs-opt", "none", "traffic", None),
    ("mbs-opt --objective energy", "mbs-opt", "none", "energy", None),
    ("mbs-opt --objective traffic --recompute auto", "mbs-opt", "auto", "traffic", None),
    ("mbs-opt --recompute all", "mbs-opt", "all", "time", None),
]


def cmd_spread(args: argparse.Namespace) -> None:
    """Widely different plans of each network, all estimated as mbs-opt estimates its
    groups, then simulated: does the estimate rank them as the machine does?"""
    out = Path(args.out)
    cfg = api.make_config()
    for network in args.networks.split(","):
        graph = api.expand(network, args.batch, "gn", cfg)
        for label, schedule, recompute, objective, max_span in SPREAD:
            if max_span:
                plan = optimal_schedule(graph, cfg, recompute, objective, 1, None, max_span).plan
            else:
                plan = build_schedule(graph, schedule, cfg, recompute, objective)
            cycles, traffic = tiled_estimate(graph, cfg, plan)
            row = {
                "network": network,
                "batch": args.batch,
                "label": label,
                "estimated_cycles": cycles,
                "estimated_dram_bytes": traffic,
            }
            try:
                row.update(_simulate(graph, plan, cfg))
            except WavecoreError as exc:
                row["error"] = str(exc)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def cmd_rank(args: argparse.Namespace) -> None:
    out = Path(args.out)
    cfg = api.make_config()
    for network in args.networks.split(","):
        graph = api.expand(network, args.batch, "gn", cfg)
        search = optimal_schedule(graph, cfg, "none", "time", keep=KEEP)
        for rank, ranked in enumerate(search.best):
            plan = plan_of_cuts(graph, cfg, ranked.cuts)
            row = {
                "network": network,
                "batch": args.batch,
                "rank": rank,
                "search_seconds": round(search.seconds, 2),
                "estimated_cycles": ranked.estimated_cycles,
            }
            row.update(_simulate(graph, plan, cfg))
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def cmd_search(args: argparse.Namespace) -> None:
    """CPU seconds of the search alone (``schedule.optimal_schedule``, one plan kept, the
    greedy plans it starts from included), the least of ``--repeat`` runs, each with the
    compiler's memo tables cleared: what ``--schedule mbs-opt`` spends before compiling."""
    from wavecore_sim.schedule import clear_caches

    out = Path(args.out)
    cfg = api.make_config()
    for batch in map(int, args.batches.split(",")):
        for network in args.networks.split(","):
            for label, recompute, objective in SEARCHES:
                times = []
                for _ in range(args.repeat):
                    clear_caches()
                    graph = api.expand(network, batch, "gn", cfg)
                    started = time.process_time()
                    found = optimal_schedule(graph, cfg, recompute, objective, keep=1)
                    times.append(time.process_time() - started)
                row = {
                    "network": network,
                    "batch": batch,
                    "label": label,
                    "cpu_seconds": round(min(times), 2),
                    "runs": [round(t, 2) for t in times],
                    "groups_evaluated": found.groups_evaluated,
                    "estimated_cycles": found.best[0].estimated_cycles,
                }
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def _rows(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def kendall_tau_b(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (ties in either list counted as in scipy.stats.kendalltau)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denom if denom else float("nan")


def cmd_report(args: argparse.Namespace) -> None:
    rows = _rows(args.table)
    print("| network | batch | schedule | cycles (M) | DRAM traffic (GB) | DRAM footprint (GiB) "
          "| energy (J) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    order = {v[0]: i for i, v in enumerate(VARIANTS)}
    rows.sort(key=lambda r: (r["batch"], NETWORKS.split(",").index(r["network"]),
                             order.get(r["label"], 99)))  # fmt: skip
    for r in rows:
        if "error" in r:
            print(f"| {r['network']} | {r['batch']} | {r['label']} | failed: {r['error']} ||||")
            continue
        print(
            f"| {r['network']} | {r['batch']} | {r['label']} | {r['cycles'] / 1e6:.2f} | "
            f"{r['dram_bytes'] / 1e9:.2f} | {r['dram_peak_bytes'] / 2**30:.2f} | "
            f"{r['energy_joules']:.2f} |"
        )
    by = {(r["network"], r["batch"], r["label"]): r for r in rows if "error" not in r}
    _report_referee(rows, by)
    if args.search:
        _report_search(_rows(args.search))
    tiled = {}
    if args.estimates:
        tiled = {
            (r["network"], r["batch"], r["label"]): r["tiled_estimated_cycles"]
            for r in _rows(args.estimates)
        }
    print("\nmbs-opt against the greedy plans (estimated cycles, all three estimated as mbs-opt")
    print("estimates its groups; simulated cycles):")
    for (network, batch, label), r in by.items():
        if label != "mbs-opt":
            continue
        m2, mt = by.get((network, batch, "mbs2")), by.get((network, batch, "mbs2-time"))
        if not (m2 and mt and (network, batch, "mbs2") in tiled):
            continue
        best_est = min(tiled[(network, batch, s)] for s in ("mbs2", "mbs2-time"))
        best_sim = min(m2["cycles"], mt["cycles"])
        print(
            f"  {network} b{batch}: estimate {r['estimated_cycles']:,} vs {best_est:,} "
            f"({'ok' if r['estimated_cycles'] <= best_est else 'WORSE'}); simulated "
            f"{r['cycles']:,} vs {best_sim:,} ({r['cycles'] / best_sim:.3f}x)"
        )
    print(f"\nTraffic reduction over mbs2 at batch 256 (Crane claims {CRANE_CLAIM[0]}-"
          f"{CRANE_CLAIM[1]}x):")  # fmt: skip
    for network in NETWORKS.split(","):
        base = by.get((network, 256, "mbs2"))
        if not base:
            continue
        best = min(
            (r for (n, b, _), r in by.items() if n == network and b == 256),
            key=lambda r: r["dram_bytes"],
        )
        print(
            f"  {network}: {best['label']} {base['dram_bytes'] / best['dram_bytes']:.2f}x "
            f"({base['dram_bytes'] / 1e9:.1f} -> {best['dram_bytes'] / 1e9:.1f} GB)"
        )
    if args.rank:
        ranks = _rows(args.rank)
        print("\nThe search's best plans (estimated vs simulated cycles):")
        for network in dict.fromkeys(r["network"] for r in ranks):
            rs = [r for r in ranks if r["network"] == network]
            tau = kendall_tau_b([r["estimated_cycles"] for r in rs], [r["cycles"] for r in rs])
            # the search's own order: estimated cycles, then estimated bytes (its tie-break)
            order = kendall_tau_b([r["rank"] for r in rs], [r["cycles"] for r in rs])
            sims = [r["cycles"] for r in rs]
            print(
                f"  {network} b{rs[0]['batch']}: {len(rs)} plans, tau-b "
                f"{'undefined (all estimates equal)' if tau != tau else f'{tau:.2f}'}, "
                f"by the search's order (bytes break ties) {order:.2f}; "
                f"estimates {min(r['estimated_cycles'] for r in rs):,}-"
                f"{max(r['estimated_cycles'] for r in rs):,}, simulated {min(sims):,}-"
                f"{max(sims):,}; search {rs[0]['search_seconds']} s"
            )
    if args.spread:
        rows_s = [r for r in _rows(args.spread) if "error" not in r]
        print("\nRank agreement over widely different plans (all estimated as mbs-opt does):")
        for network in dict.fromkeys(r["network"] for r in rows_s):
            rs = [r for r in rows_s if r["network"] == network]
            tau = kendall_tau_b([r["estimated_cycles"] for r in rs], [r["cycles"] for r in rs])
            best_est = min(rs, key=lambda r: r["estimated_cycles"])["label"]
            best_sim = min(rs, key=lambda r: r["cycles"])["label"]
            print(
                f"  {network} b{rs[0]['batch']}: {len(rs)} plans, tau-b {tau:.2f}; best "
                f"estimated: {best_est}; best simulated: {best_sim}"
            )
    if args.plots:
        from wavecore_sim.report.tradeoff import footprint_figure, tradeoff_figure

        Path(args.plots).mkdir(parents=True, exist_ok=True)
        for batch in sorted({r["batch"] for r in rows}):
            sel = [r for r in rows if r["batch"] == batch]
            title = f"batch {batch}, default preset"
            tradeoff_figure(sel, Path(args.plots) / f"tradeoff_b{batch}.png", title)
            footprint_figure(sel, Path(args.plots) / f"footprint_b{batch}.png", title)


def _report_referee(rows: list[dict[str, Any]], by: dict[tuple, dict[str, Any]]) -> None:
    """mbs-opt --referee against the greedy plans, and the estimate against the machine on
    every plan it simulated (Kendall tau-b of estimated vs simulated cycles)."""
    refereed = [r for r in rows if r.get("refereed") and "error" not in r]
    if not refereed:
        return
    print("\nmbs-opt --referee 4 (simulated cycles) against the better greedy plan, and the")
    print("estimate against the machine on the plans it simulated (all estimated as mbs-opt")
    print("estimates its groups):")
    for r in refereed:
        key = (r["network"], r["batch"])
        greedy = [by[(*key, s)]["cycles"] for s in ("mbs2", "mbs2-time") if (*key, s) in by]
        ran = [c for c in r["candidates"] if c["error"] is None]
        tau = kendall_tau_b([c["estimated_cycles"] for c in ran], [c["cycles"] for c in ran])
        best_est = min(ran, key=lambda c: c["estimated_cycles"])["label"]
        print(
            f"  {key[0]} b{key[1]}: {r['cycles']:,} vs {min(greedy):,} "
            f"({r['cycles'] / min(greedy):.3f}x), chosen {r['refereed']!r}; {len(ran)} plans, "
            f"tau-b {tau:.2f}, best estimated {best_est!r}; referee {r['plan_seconds']:.0f} s"
        )
        for c in ran:
            print(
                f"      {c['label']:30s} estimated {c['estimated_cycles'] / 1e6:8.2f} M, "
                f"simulated {c['cycles'] / 1e6:8.2f} M, {c['dram_bytes'] / 1e9:6.2f} GB"
            )


def _report_search(rows: list[dict[str, Any]]) -> None:
    """The search's CPU seconds per network (``search``)."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for batch in sorted({r["batch"] for r in rows}):
        print(f"\nSearch CPU seconds at batch {batch} (least of the runs; groups evaluated):")
        print("| network | " + " | ".join(labels) + " |")
        print("|---" * (len(labels) + 1) + "|")
        for network in dict.fromkeys(r["network"] for r in rows):
            cells = []
            for label in labels:
                hit = [r for r in rows if (r["network"], r["batch"], r["label"]) ==
                       (network, batch, label)]  # fmt: skip
                cells.append(
                    f"{hit[0]['cpu_seconds']:.1f} ({hit[0]['groups_evaluated']})" if hit else "-"
                )
            print(f"| {network} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("--networks", default=NETWORKS)
    t.add_argument("--batches", default="32,256")
    t.add_argument("--out", default="opt_table.jsonl")
    r = sub.add_parser("rank")
    r.add_argument("--networks", default=NETWORKS)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--out", default="opt_rank.jsonl")
    w = sub.add_parser("spread")
    w.add_argument("--networks", default=NETWORKS)
    w.add_argument("--batch", type=int, default=32)
    w.add_argument("--out", default="opt_spread.jsonl")
    c = sub.add_parser("search")
    c.add_argument("--networks", default=NETWORKS)
    c.add_argument("--batches", default="256")
    c.add_argument("--repeat", type=int, default=3)
    c.add_argument("--out", default="opt_search.jsonl")
    e = sub.add_parser("estimates")
    e.add_argument("--networks", default=NETWORKS)
    e.add_argument("--batches", default="32,256")
    e.add_argument("--out", default="opt_estimates.jsonl")
    p = sub.add_parser("report")
    p.add_argument("--estimates")
    p.add_argument("--spread")
    p.add_argument("--table", required=True)
    p.add_argument("--rank")
    p.add_argument("--search")
    p.add_argument("--plots")
    args = parser.parse_args()
    commands = {
        "table": cmd_table,
        "rank": cmd_rank,
        "spread": cmd_spread,
        "search": cmd_search,
        "estimates": cmd_estimates,
    }
    {**commands, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
