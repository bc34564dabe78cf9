"""The ``reproduce`` and ``sweep`` commands: thin layers over :mod:`wavecore_sim.experiments`.

``cli.py`` picks them up through its ``_EXTRA_COMMANDS`` registry. Importing this module from
``cli.py`` (``from . import cli_experiments``, after ``_EXTRA_COMMANDS`` is defined) adds
:func:`register` to that registry. It registers into the cli module that imported it, found
by its module spec, so it works both for the ``wavecore-sim`` script and for
``python -m wavecore_sim.cli`` (where the cli module is ``__main__``); this module never
imports ``cli`` itself, which would load a second copy of it under ``-m``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .argtypes import positive_int as _positive_int

DEFAULT_SWEEP_SCHEDULES = "baseline,mbs2"


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="wavecore", help="hardware preset (default: wavecore)")
    p.add_argument("--set", metavar="FIELD=VALUE", action="append", default=[],
                   help="override one config field for every run, e.g. --set hbm_gbps=600 "
                        "(repeatable)")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments import reproduce
    result = reproduce(args.out, networks=_names(args.networks) if args.networks else None,
                       batch=args.batch, schedules=_names(args.schedules), quick=args.quick,
                       jobs=args.jobs, preset=args.preset, set_options=args.set)
    print(result.markdown)
    print(f"{len(result.records)} runs in {result.wall_seconds:.1f} s; wrote "
          + ", ".join(result.files))
    if result.failed:
        for r in result.failed:
            print(f"wavecore-sim: run failed: {r['network']} {r['schedule']}: {r['error']}",
                  file=sys.stderr)
        return 1
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments import sweep
    result = sweep(args.out, args.network, _names(args.schedule), args.param, batch=args.batch,
                   jobs=args.jobs, preset=args.preset, set_options=args.set)
    print(f"{len(result.rows)} points in {result.wall_seconds:.1f} s; wrote "
          + ", ".join(result.files))
    for r in result.failed:
        point = ", ".join(f"{p.name}={r[p.name]}" for p in result.params)
        print(f"  failed: {r['schedule']} at {point}: {r['error']}")
    return 0


def register_reproduce(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    from .experiments import DEFAULT_BATCH, DEFAULT_NETWORKS, QUICK_NETWORKS
    from .schedule import SCHEDULES
    p = sub.add_parser(
        "reproduce", help="run the paper's comparison: networks x schedules, tables and figures",
        description="Run every network under every schedule (in parallel processes) and write "
                    "DIR/results.csv, results.json, results.md (DRAM traffic, speedup and "
                    "energy against baseline, averaged and set beside the paper's -75% / "
                    "+53% / -26%) and PNG figures.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--networks", metavar="A,B,...",
                       help=f"comma-separated networks (default: {','.join(DEFAULT_NETWORKS)})")
    group.add_argument("--quick", action="store_true",
                       help=f"only {' and '.join(QUICK_NETWORKS)} (a few minutes)")
    p.add_argument("--schedules", metavar="S,S2,...", default=",".join(SCHEDULES),
                   help=f"comma-separated schedules (default: all, {','.join(SCHEDULES)})")
    p.add_argument("--batch", type=_positive_int, default=DEFAULT_BATCH,
                   help=f"mini-batch size (default {DEFAULT_BATCH})")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="worker processes (default: the number of CPUs)")
    _add_machine_options(p)
    p.set_defaults(func=_cmd_reproduce)


def register_sweep(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    from .experiments import DEFAULT_BATCH
    p = sub.add_parser(
        "sweep", help="sweep hardware parameters for one network and schedules",
        description="Run the cross product of --param values (any config field; sizes like "
                    "2MiB accepted) for one network under each schedule, in parallel "
                    "processes. Writes DIR/sweep.csv (one row per point, failed points with "
                    "their reason), sweep.json and DIR/sweep_<param>.png (time, DRAM traffic, "
                    "energy, speedup vs the parameter; other parameters held at their default "
                    "value when swept over it, else at their middle value).")
    p.add_argument("--network", default="resnet50",
                   help="zoo network name or path to a network .json file (default: resnet50)")
    p.add_argument("--schedule", default=DEFAULT_SWEEP_SCHEDULES, metavar="S[,S2...]",
                   help=f"comma-separated schedules (default: {DEFAULT_SWEEP_SCHEDULES})")
    p.add_argument("--param", action="append", required=True, metavar="FIELD=V1,V2,...",
                   help="a config field and its values, e.g. --param gbuf_bytes=2MiB,10MiB "
                        "(repeatable: the sweep is the cross product)")
    p.add_argument("--batch", type=_positive_int, default=DEFAULT_BATCH,
                   help=f"mini-batch size (default {DEFAULT_BATCH})")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="worker processes (default: the number of CPUs)")
    _add_machine_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=_cmd_sweep)


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``reproduce`` and ``sweep`` to the CLI's subcommands (an ``_EXTRA_COMMANDS`` hook)."""
    register_reproduce(sub, parser_class)
    register_sweep(sub, parser_class)


def _install() -> None:
    """Append :func:`register` to the ``_EXTRA_COMMANDS`` of every loaded copy of the cli
    module (normally one: ``wavecore_sim.cli``, or ``__main__`` under ``python -m``)."""
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        commands = getattr(module, "_EXTRA_COMMANDS", None)
        if (spec is not None and spec.name == "wavecore_sim.cli"
                and isinstance(commands, list) and register not in commands):
            commands.append(register)


_install()
