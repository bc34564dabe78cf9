"""``reproduce``, ``sweep`` and ``explore``: thin layers over :mod:`wavecore_sim.experiments`.

``cli.build_parser`` calls :func:`register` to add them; this module never imports ``cli``.
Their options mean what they mean on ``run``: ``--schedule`` takes a comma-separated list,
``--preset``, ``--config`` and ``--set`` build the machine, ``--progress``/``--quiet`` report.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .argtypes import add_progress_options, progress_from, schedule_list, schedule_spec_list
from .argtypes import positive_int as _positive_int

DEFAULT_SWEEP_SCHEDULES = "baseline,mbs2"


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default="wavecore",
        help="hardware preset (default: wavecore; `wavecore-sim config presets`)",
    )
    p.add_argument("--config", metavar="FILE", help="TOML file of hardware config fields")
    p.add_argument(
        "--set",
        metavar="FIELD=VALUE",
        action="append",
        default=[],
        help="override one config field for every run, e.g. --set hbm_gbps=600 (repeatable)",
    )


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments import reproduce

    progress = progress_from(args)
    result = reproduce(
        args.out,
        networks=None if args.networks is None else _names(args.networks),
        batch=args.batch,
        schedules=args.schedule,
        quick=args.quick,
        jobs=args.jobs,
        preset=args.preset,
        set_options=args.set,
        config_file=args.config,
        progress=progress,
    )
    progress.close()
    print(result.markdown)
    failed = f" ({len(result.failed)} failed)" if result.failed else ""
    print(
        f"{len(result.records)} runs{failed} in {result.wall_seconds:.1f} s; wrote "
        + ", ".join(result.files)
    )
    for r in result.failed:
        print(f"  failed: {r['network']} {r['schedule']}: {r['error']}")
    if not result.failed:
        return 0
    print(
        f"wavecore-sim: error: {len(result.failed)} of {len(result.records)} runs failed "
        "(listed above; the averages leave them out)",
        file=sys.stderr,
    )
    return 1


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments import sweep

    progress = progress_from(args)
    result = sweep(
        args.out,
        args.network,
        args.schedule,
        args.param,
        batch=args.batch,
        jobs=args.jobs,
        preset=args.preset,
        set_options=args.set,
        config_file=args.config,
        progress=progress,
    )
    progress.close()
    print(
        f"{len(result.rows)} points in {result.wall_seconds:.1f} s; wrote "
        + ", ".join(result.files)
    )
    for r in result.failed:
        point = ", ".join(f"{p.name}={r[p.name]}" for p in result.params)
        print(f"  failed: {r['schedule']} at {point}: {r['error']}")
    if result.failed:
        print(f"{len(result.failed)} of {len(result.rows)} points failed")
    if len(result.failed) == len(result.rows):
        print(
            f"wavecore-sim: error: every sweep point failed ({len(result.rows)}; listed above)",
            file=sys.stderr,
        )
        return 1
    return 0


def register_reproduce(sub: Any) -> None:
    from .experiments import DEFAULT_BATCH, DEFAULT_NETWORKS, QUICK_NETWORKS
    from .schedule import SCHEDULES

    p = sub.add_parser(
        "reproduce",
        help="run the paper's comparison: networks x schedules, tables and figures",
        description="Run every network under every schedule (in parallel processes) and write "
        "DIR/results.csv, results.json, results.md (DRAM traffic, speedup and "
        "energy against baseline, averaged and set beside the paper's -75% / "
        "+53% / -26%) and PNG figures.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--networks",
        metavar="A,B,...",
        help=f"comma-separated networks (default: {','.join(DEFAULT_NETWORKS)})",
    )
    group.add_argument(
        "--quick", action="store_true", help=f"only {' and '.join(QUICK_NETWORKS)} (a few minutes)"
    )
    p.add_argument(
        "--schedule",
        "--schedules",
        dest="schedule",
        type=schedule_spec_list,
        metavar="S[,S2...]",
        default=list(SCHEDULES),
        help=f"comma-separated schedules (default: all, {','.join(SCHEDULES)}; "
        "--schedules is the old spelling); a schedule may carry run's options, e.g. "
        "mbs2:recompute=all or mbs-opt:objective=traffic:recompute=auto:referee=4",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=DEFAULT_BATCH,
        help=f"mini-batch size (default {DEFAULT_BATCH})",
    )
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        help="worker processes (default: the number of CPUs)",
    )
    _add_machine_options(p)
    add_progress_options(p)
    p.set_defaults(func=_cmd_reproduce)


def register_sweep(sub: Any) -> None:
    from .experiments import DEFAULT_BATCH

    p = sub.add_parser(
        "sweep",
        help="sweep hardware parameters for one network and schedules",
        description="Run the cross product of --param values (any config field; sizes like "
        "2MiB accepted) for one network under each schedule, in parallel "
        "processes. Writes DIR/sweep.csv (one row per point, failed points with "
        "their reason), sweep.json and DIR/sweep_<param>.png (time, DRAM traffic, "
        "energy, speedup vs the parameter; other parameters held at their default "
        "value when swept over it, else at their middle value).",
    )
    p.add_argument(
        "--network",
        default="resnet50",
        help="zoo network name or path to a network .json file (default: resnet50)",
    )
    p.add_argument(
        "--schedule",
        "--schedules",
        dest="schedule",
        type=schedule_list,
        default=_names(DEFAULT_SWEEP_SCHEDULES),
        metavar="S[,S2...]",
        help=f"comma-separated schedules (default: {DEFAULT_SWEEP_SCHEDULES})",
    )
    p.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="FIELD=V1,V2,...",
        help="a config field and its values, e.g. --param gbuf_bytes=2MiB,10MiB "
        "(repeatable: the sweep is the cross product)",
    )
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=DEFAULT_BATCH,
        help=f"mini-batch size (default {DEFAULT_BATCH})",
    )
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        help="worker processes (default: the number of CPUs)",
    )
    _add_machine_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_progress_options(p)
    p.set_defaults(func=_cmd_sweep)


def _cmd_explore(args: argparse.Namespace) -> int:
    from .errors import WavecoreError
    from .experiments.explore import describe, explore, show

    if args.show is not None:
        others = [f"--{n}" for n in ("network", "space", "db", "out") if getattr(args, n)]
        if others:
            raise WavecoreError(f"--show reads a database; give it alone, not with {others[0]}")
        print(describe(show(args.show)))
        return 0
    for name in ("network", "space", "db", "out"):
        if not getattr(args, name):
            raise WavecoreError(f"explore needs --{name} (or --show DB to print a database)")
    progress = progress_from(args)
    result = explore(
        args.out,
        args.network,
        args.space,
        args.db,
        batch=args.batch,
        schedule=args.schedule,
        norm=args.norm,
        samples=args.samples,
        seed=args.seed,
        model=args.model,
        top=args.top,
        objectives=_names(args.objectives),
        executor=args.executor,
        scheduler=args.scheduler,
        jobs=args.jobs,
        preset=args.preset,
        set_options=args.set,
        config_file=args.config,
        progress=progress,
    )
    progress.close()
    print(describe(result))
    print(f"{result.wall_seconds:.1f} s; wrote {', '.join(result.files)} and {args.db}")
    if result.ok_points == 0:
        print(
            f"wavecore-sim: error: every point failed ({result.points}; the error column of "
            f"{args.db} says why)",
            file=sys.stderr,
        )
        return 1
    return 0


def register_explore(sub: Any) -> None:
    from .experiments import DEFAULT_BATCH
    from .experiments.executors import EXECUTORS
    from .experiments.explore import (
        DEFAULT_OBJECTIVES,
        DEFAULT_SCHEDULE,
        DEFAULT_TOP,
        MODEL_CHOICES,
        OBJECTIVE_CHOICES,
    )

    p = sub.add_parser(
        "explore",
        help="design-space exploration: analytical screening, cycle-level refereeing",
        description="Evaluate the points of a search space (a TOML file: any config field, "
        "schedule or batch, each { values = [...] } or { min, max, scale }) for one network: "
        "the grid of the values, or with --samples a seeded Latin-hypercube sample. Every "
        "finished point is committed to the SQLite --db (rerun the command to resume; done "
        "points are skipped). Writes DIR/pareto.csv (the Pareto front), explore.json, "
        "pareto.png and param_<name>.png. --show DB prints a database's front.",
    )
    p.add_argument("--show", metavar="DB", help="print the front stored in DB and exit")
    p.add_argument("--network", help="zoo network name or path to a network .json file")
    p.add_argument("--space", metavar="SPACE.toml", help="the search space (see above)")
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=DEFAULT_BATCH,
        help=f"mini-batch size when the space has no batch dimension (default {DEFAULT_BATCH})",
    )
    p.add_argument(
        "--schedule",
        type=schedule_list,
        default=[DEFAULT_SCHEDULE],
        metavar="S[,S2...]",
        help="schedule(s) when the space has no schedule dimension; a list is one more "
        f"dimension (default {DEFAULT_SCHEDULE})",
    )
    p.add_argument(
        "--norm",
        choices=["bn", "gn"],
        default=None,
        help="normalization (default: bn for baseline/il, gn for mbs*)",
    )
    p.add_argument(
        "--samples",
        type=_positive_int,
        metavar="K",
        help="sample K points (Latin hypercube) instead of the grid; needed for ranges",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument(
        "--model",
        choices=MODEL_CHOICES,
        default="analytical",
        help="analytical (fast screening), cycle (the simulator), or both: analytical on "
        "every point, then the simulator on the analytical front and the --top fastest, "
        "with the rank agreement (default: analytical)",
    )
    p.add_argument(
        "--top",
        type=int,
        default=DEFAULT_TOP,
        metavar="T",
        help=f"--model both also referees the T fastest points (default {DEFAULT_TOP})",
    )
    p.add_argument(
        "--objectives",
        default=",".join(DEFAULT_OBJECTIVES),
        metavar="A,B,...",
        help=f"metrics the Pareto front minimises, from {', '.join(OBJECTIVE_CHOICES)} "
        f"(default {','.join(DEFAULT_OBJECTIVES)})",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local worker processes, or a Dask cluster (pip install -e '.[dask]')",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler, e.g. tcp://host:8786 (default: start a local cluster of --jobs "
        "workers)",
    )
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        help="local workers, or the local Dask cluster's (default: the number of CPUs)",
    )
    _add_machine_options(p)
    p.add_argument("--db", metavar="FILE.sqlite", help="results database (created or resumed)")
    p.add_argument("--out", metavar="DIR", help="output directory")
    add_progress_options(p)
    p.set_defaults(func=_cmd_explore)


def register(sub: Any) -> None:
    """Add ``reproduce``, ``sweep`` and ``explore`` to the CLI's subcommands (called by
    ``cli``)."""
    register_reproduce(sub)
    register_sweep(sub)
    register_explore(sub)
