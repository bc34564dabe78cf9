"""Running many points (a network under a schedule on a machine) in worker processes.

Every point runs in a worker process (:class:`~.executors.LocalExecutor`: spawned processes,
so workers start clean whatever the parent has imported); ``jobs=1`` runs them in this
process. A point that fails (typically a buffer too small for some layer)
becomes a ``failed`` record carrying the one-line reason; the other points still run. The
checks here find input errors (unknown network or schedule, bad jobs or batch) before any
run starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import HardwareConfig
from ..errors import WavecoreError
from ..progress import QUIET, Progress
from ..schedule import SCHEDULES
from ..workload import load_network
from .executors import LocalExecutor

DEFAULT_BATCH = 32

#: Relative simulation cost of the schedules (ResNet-50 wall times; MBS plans take longer to
#: build). Used to start the longest runs first, so the pool finishes sooner, and to weigh
#: finished runs in the ETA.
# Seconds of one core per unit of Point.cost (layers x SCHEDULE_COST) at batch 32: the prior
# for the ETA until the first run finishes. Measured on the 2-core development machine:
# `reproduce --jobs 2` ran 50,347 units in 62 s, `--quick` 13,546 units in 17 s (2.4-2.6 ms
# per unit). An assumption elsewhere; each finished run replaces it with the measured rate.
PRIOR_SECONDS_PER_COST = 0.0025

SCHEDULE_COST = {
    "baseline": 1.0,
    "il": 1.2,
    "mbs-fs": 7.0,
    "mbs1": 7.0,
    "mbs2": 6.0,
    "mbs2-time": 5.0,
    "mbs-opt": 7.0,  # its search, then an mbs2-like simulation (ResNet-50 batch 32: ~1.3 x mbs2)
}


#: options a schedule spec may set (``reproduce``): ``mbs-opt:objective=traffic:recompute=auto``
SPEC_KEYS = ("recompute", "objective", "referee")


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule with the options ``run`` takes for it (``--recompute``, ``--objective``,
    ``--referee``), parsed from ``NAME[:KEY=VALUE...]``."""

    name: str
    recompute: str = "none"
    objective: str = "time"
    referee: int = 0


def parse_schedule_spec(spec: str) -> ScheduleSpec:
    """``mbs2``, ``mbs2:recompute=all`` or ``mbs-opt:objective=traffic:recompute=auto`` ->
    :class:`ScheduleSpec`; anything else refused in one line naming the part and the fix."""
    from ..schedule import OBJECTIVES, check_recompute

    name, *options = spec.split(":")
    if name not in SCHEDULES:
        raise WavecoreError(
            f"unknown schedule {name!r} in {spec!r}; choose from {', '.join(SCHEDULES)}"
        )
    given: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in SPEC_KEYS or key in given:
            raise WavecoreError(
                f"schedule {spec!r}: {option!r} is not one of KEY=VALUE with KEY "
                f"{', '.join(SPEC_KEYS)}, each once (e.g. mbs-opt:objective=traffic:recompute=auto)"
            )
        given[key] = value
    objective = given.get("objective", "time")
    if objective not in OBJECTIVES or (objective != "time" and name != "mbs-opt"):
        raise WavecoreError(
            f"schedule {spec!r}: objective is one of {', '.join(OBJECTIVES)}, on mbs-opt only"
        )
    referee = given.get("referee", "0")
    if not referee.isdigit() or (int(referee) and name != "mbs-opt"):
        raise WavecoreError(f"schedule {spec!r}: referee is a count of plans >= 0, on mbs-opt only")
    recompute = given.get("recompute", "none")
    check_recompute(name, recompute)
    return ScheduleSpec(name, recompute, objective, int(referee))


def check_schedule_specs(specs: Sequence[str]) -> list[str]:
    """:func:`check_schedules` for schedule specs (:func:`parse_schedule_spec`)."""
    for spec in specs:
        parse_schedule_spec(spec)
    if len(set(specs)) != len(specs):
        raise WavecoreError("a schedule is listed twice; list each once")
    if not specs:
        raise WavecoreError(f"no schedule given; choose from {', '.join(SCHEDULES)}")
    return list(specs)


def schedule_cost(spec: str) -> float:
    """:data:`SCHEDULE_COST` of a spec's schedule; a referee runs up to ``N + 5`` plans."""
    parsed = parse_schedule_spec(spec)
    return SCHEDULE_COST[parsed.name] * ((parsed.referee + 5) if parsed.referee else 1)


@dataclass(frozen=True)
class Point:
    """One run: a network under a schedule on a machine. Picklable, for worker processes."""

    network: str  # zoo name or path, as the user gave it
    label: str  # the network's own name, for tables
    batch: int
    schedule: str  # a name, or a spec with options (:func:`parse_schedule_spec`)
    cfg: HardwareConfig
    params: tuple[tuple[str, Any], ...] = ()  # the swept fields' values at this point
    cost: float = 1.0


def run_point(point: Point) -> dict[str, Any]:
    """Run one point; return a plain record. Never raises for a run that fails: a failed
    point is a record with ``status='failed'`` and the one-line reason in ``error``."""
    from .. import api  # imported here so spawned workers pay for it only when they run

    api.use_fast_gc()
    started = time.perf_counter()
    record: dict[str, Any] = {
        "network": point.label,
        "batch": point.batch,
        "schedule": point.schedule,
        "params": dict(point.params),
    }
    try:
        spec = parse_schedule_spec(point.schedule)
        out = api.run(
            point.network,
            point.batch,
            spec.name,
            cfg=point.cfg,
            out_dir=None,
            plots=False,
            recompute=spec.recompute,
            objective=spec.objective,
            referee=spec.referee,
        )
    except WavecoreError as exc:
        record.update(status="failed", error=_one_line(str(exc)))
    except Exception as exc:  # a bug elsewhere: keep the other points, report it
        record.update(
            status="failed", error=_one_line(f"internal error: {type(exc).__name__}: {exc}")
        )
    else:
        summary = {k: v for k, v in out.summary.items() if k not in ("units", "config")}
        record.update(status="ok", error="", summary=summary)
    record["wall_seconds"] = round(time.perf_counter() - started, 3)
    return record


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_points(
    points: Sequence[Point], jobs: int, label: str, progress: Progress = QUIET
) -> list[dict[str, Any]]:
    """Run ``points`` on ``jobs`` worker processes; records come back in ``points`` order.

    ``progress`` counts finished runs (the ETA weighs them by :attr:`Point.cost`); each
    finished run is also a line of its own. Longest runs start first
    (:class:`~.executors.LocalExecutor`).
    """
    total = len(points)
    records: list[dict[str, Any] | None] = [None] * total
    all_cost = sum(p.cost for p in points) or 1.0
    done_cost = 0.0
    with progress.step(label, total=total, unit="runs") as task:
        workers = max(1, min(jobs, total))
        task.expect(PRIOR_SECONDS_PER_COST * sum(p.cost * p.batch / 32 for p in points) / workers)

        def finished(i: int, done: int) -> None:
            nonlocal done_cost
            done_cost += points[i].cost
            r = records[i]
            progress.note(
                f"  {done}/{total} {r['network']} {r['schedule']}"
                + "".join(f" {k}={v}" for k, v in r["params"].items())
                + f": {r['status']} in {r['wall_seconds']:.1f} s"
            )
            task.update(done, total, fraction=done_cost / all_cost)

        executor = LocalExecutor(min(jobs, total))
        finished_all = False
        try:
            runs = executor.run(run_point, points, [p.cost for p in points])
            for done, (i, record) in enumerate(runs, 1):
                records[i] = record
                finished(i, done)
            finished_all = True
        finally:
            executor.close(wait=finished_all)
    return [r for r in records if r is not None]


def default_jobs() -> int:
    return os.cpu_count() or 1


def check_jobs(jobs: int | None) -> int:
    jobs = default_jobs() if jobs is None else jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise WavecoreError(f"--jobs must be a positive integer, got {jobs!r}")
    return jobs


def check_batch(batch: int) -> int:
    if not isinstance(batch, int) or batch < 1:
        raise WavecoreError(f"--batch must be a positive integer, got {batch!r}")
    return batch


def check_schedules(schedules: Sequence[str]) -> list[str]:
    out: list[str] = []
    for s in schedules:
        if s not in SCHEDULES:
            raise WavecoreError(f"unknown schedule {s!r}; choose from {', '.join(SCHEDULES)}")
        if s in out:
            raise WavecoreError(f"schedule {s!r} is listed twice; list each schedule once")
        out.append(s)
    if not out:
        raise WavecoreError(f"no schedule given; choose from {', '.join(SCHEDULES)}")
    return out


def _network_label(name: str) -> str:
    """Load the network once in the parent: an unknown name fails before any run starts."""
    return load_network(name).name


def check_networks(networks: Sequence[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in networks:
        label = _network_label(name)
        if label in [lbl for _, lbl in out]:
            raise WavecoreError(f"network {label!r} is listed twice; list each network once")
        out.append((name, label))
    if not out:
        raise WavecoreError("no network given; list them, e.g. --networks resnet50,inception_v3")
    return out


def network_cost(name: str) -> float:
    return float(len(load_network(name).layers))


def check_out_dir(out_dir: str | Path) -> Path:
    """:func:`wavecore_sim.api.check_out_dir`: a writable output directory, or one line."""
    from ..api import check_out_dir as check

    return check(out_dir)
