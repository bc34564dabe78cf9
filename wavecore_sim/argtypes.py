"""Argument types and option groups shared by the command-line modules (``cli``,
``cli_experiments``), so that one option means the same on every command."""

from __future__ import annotations

import argparse

from .errors import brief
from .progress import MODES, Progress


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, or a one-line error naming the value."""
    return _int_at_least(text, 1, "a positive integer")


def count_int(text: str) -> int:
    """argparse type: an integer >= 0 (0: off), or a one-line error naming the value."""
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{brief(text)} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def schedule_spec_list(text: str) -> list[str]:
    """argparse type: schedules, each a name or ``NAME:KEY=VALUE...`` with the options of
    ``run`` (``mbs-opt:objective=traffic:recompute=auto``), each once."""
    from .errors import WavecoreError
    from .experiments.runner import check_schedule_specs
    from .schedule import SCHEDULES

    specs = [t.strip() for t in text.split(",") if t.strip()]
    if not specs:
        raise argparse.ArgumentTypeError(f"give one or more of {', '.join(SCHEDULES)}")
    try:
        return check_schedule_specs(specs)
    except WavecoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def schedule_list(text: str) -> list[str]:
    """argparse type: ``mbs2`` or ``baseline,mbs2`` -> known schedule names, each once."""
    from .schedule import SCHEDULES

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"give one or more of {', '.join(SCHEDULES)}")
    for name in names:
        if name not in SCHEDULES:
            raise argparse.ArgumentTypeError(
                f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}"
            )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("a schedule is listed twice; list each once")
    return names


def add_progress_options(p: argparse.ArgumentParser) -> None:
    """``--progress MODE`` and ``--quiet``, the same on every long-running command."""
    p.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="how to report long steps on stderr: a bar on a terminal, timestamped "
        "lines otherwise (default: auto)",
    )
    p.add_argument("--quiet", action="store_true", help="report no progress (--progress quiet)")


def progress_from(args: argparse.Namespace) -> Progress:
    return Progress("quiet" if args.quiet else args.progress)
