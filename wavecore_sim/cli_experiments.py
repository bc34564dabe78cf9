"""The ``reproduce`` and ``sweep`` commands: thin layers over :mod:`wavecore_sim.experiments`.

``cli.build_parser`` calls :func:`register` to add them; this module never imports ``cli``.
Their options mean what they mean on ``run``: ``--schedule`` takes a comma-separated list,
``--preset``, ``--config`` and ``--set`` build the machine, ``--progress``/``--quiet`` report.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .argtypes import add_progress_options, progress_from, schedule_list
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
        networks=_names(args.networks) if args.networks else None,
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
    print(
        f"{len(result.records)} runs in {result.wall_seconds:.1f} s; wrote "
        + ", ".join(result.files)
    )
    if result.failed:
        for r in result.failed:
            print(
                f"wavecore-sim: run failed: {r['network']} {r['schedule']}: {r['error']}",
                file=sys.stderr,
            )
        return 1
    return 0


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
        type=schedule_list,
        metavar="S[,S2...]",
        default=list(SCHEDULES),
        help=f"comma-separated schedules (default: all, {','.join(SCHEDULES)}; "
        "--schedules is the old spelling)",
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


def register(sub: Any) -> None:
    """Add ``reproduce`` and ``sweep`` to the CLI's subcommands (called by ``cli``)."""
    register_reproduce(sub)
    register_sweep(sub)
