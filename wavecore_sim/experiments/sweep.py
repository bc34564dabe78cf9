"""``sweep``: the cross product of hardware-parameter values for one network and schedules.

Any :class:`~wavecore_sim.config.HardwareConfig` field can be swept. ``sweep.csv`` has one row
per point in the order of the cross product (so the file does not depend on ``jobs``), and
there is one figure per parameter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import OutputDir
from ..config import HardwareConfig, apply_overrides, load_config, parse_set_options
from ..errors import WavecoreError
from ..progress import QUIET, Progress
from .executors import LocalExecutor
from .explore import build_designs, evaluate_designs
from .runner import (
    DEFAULT_BATCH,
    check_batch,
    check_jobs,
    check_networks,
    check_out_dir,
    check_schedules,
)
from .space import SCHEDULE, Dimension, Space
from .tables import csv_text, flat_row, json_safe


@dataclass(frozen=True)
class SweepParam:
    """One swept field: its name, the values as typed (for labels) and as config values."""

    name: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]


def parse_param(text: str, base: HardwareConfig) -> SweepParam:
    """``'gbuf_bytes=2MiB,5MiB'`` -> a :class:`SweepParam`; one-line WavecoreError if bad."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise WavecoreError(
            f"--param {text!r}: write it as FIELD=V1,V2,..., e.g. --param gbuf_bytes=2MiB,10MiB"
        )
    if name not in base.to_dict():
        raise WavecoreError(
            f"--param {text!r}: unknown config field {name!r}; "
            "`wavecore-sim config show` lists the fields"
        )
    texts = tuple(t.strip() for t in rest.split(","))
    if not rest.strip() or any(not t for t in texts):
        raise WavecoreError(
            f"--param {text!r}: give one or more comma-separated values, e.g. --param {name}=1,2"
        )
    values = []
    for t in texts:
        try:
            cfg = apply_overrides(base, {name: t}, "--param")
        except WavecoreError as exc:
            raise WavecoreError(f"--param {name}: {exc}") from None
        values.append(getattr(cfg, name))
    if len(set(values)) != len(values):
        raise WavecoreError(f"--param {text!r}: a value is repeated; list each value once")
    return SweepParam(name, texts, tuple(values))


@dataclass
class SweepResult:
    rows: list[dict[str, Any]]
    params: list[SweepParam]
    schedules: list[str]
    fixed: dict[str, dict[str, Any]]
    files: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]


def fixed_values(params: list[SweepParam], base: HardwareConfig) -> dict[str, dict[str, Any]]:
    """For each parameter's figure, the value every *other* swept parameter is held at: its
    value in the base config (preset plus ``--set``) when that is one of the swept values,
    else the middle of its values in numeric order (the upper middle for an even count)."""
    held = {}
    for p in params:
        default = getattr(base, p.name)
        if default in p.values:
            held[p.name] = {
                "value": default,
                "text": p.texts[p.values.index(default)],
                "why": "default",
            }
        else:
            order = sorted(range(len(p.values)), key=lambda i: p.values[i])
            mid = order[len(order) // 2]
            held[p.name] = {"value": p.values[mid], "text": p.texts[mid], "why": "middle value"}
    return held


def sweep(
    out_dir: str | Path,
    network: str,
    schedules: Sequence[str],
    params: Sequence[str],
    batch: int = DEFAULT_BATCH,
    jobs: int | None = None,
    preset: str = "wavecore",
    set_options: dict[str, Any] | list[str] | None = None,
    config_file: str | Path | None = None,
    progress: Progress = QUIET,
) -> SweepResult:
    """Run the cross product of ``params`` for ``network`` under each schedule.

    A thin case of ``explore``: the grid of the values, the cycle-level model, local
    workers, no database (:func:`~.explore.evaluate_designs` runs the points; points that
    differ only in execution-only fields share one compile). Writes ``sweep.csv`` (rows in
    cross-product order: the first parameter varies slowest, then the next, ..., then the
    schedule in the order given), ``sweep.json`` and ``sweep_<param>.png`` per parameter
    (see :func:`fixed_values` for what the other parameters are held at), atomically.
    Failed points are rows with ``status=failed``.
    """
    overrides = set_options if isinstance(set_options, dict) else parse_set_options(set_options)
    base = load_config(preset, config_file, overrides)
    if not params:
        raise WavecoreError("give at least one --param FIELD=V1,V2,...")
    parsed = [parse_param(p, base) for p in params]
    names = [p.name for p in parsed]
    for name in names:
        if names.count(name) > 1:
            raise WavecoreError(
                f"--param {name} is given twice; list all its values in one "
                f"--param {name}=V1,V2,..."
            )
    scheds = check_schedules(list(schedules))
    batch, jobs = check_batch(batch), check_jobs(jobs)
    ((net_name, label),) = check_networks([network])
    out_path = check_out_dir(out_dir)

    space = Space(
        (*(Dimension(p.name, p.values) for p in parsed), Dimension(SCHEDULE, tuple(scheds)))
    )
    designs = build_designs(
        space.grid(), label, batch, scheds[0], None, preset, config_file, overrides
    )
    for d in designs:  # every combination is a valid machine, or nothing runs
        if d.cfg is None:
            point = ", ".join(
                f"{p.name}={p.texts[p.values.index(dict(d.params)[p.name])]}" for p in parsed
            )
            raise WavecoreError(f"sweep point {point}: {d.error}")

    records: dict[int, dict[str, Any]] = {}

    def keep(batch_records: list[dict[str, Any]]) -> None:
        records.update((r["index"], r) for r in batch_records)

    started = time.perf_counter()
    executor = LocalExecutor(jobs)
    try:
        evaluate_designs(
            designs, net_name, "cycle", lambda: executor, keep, progress, "sweep", note_each=True
        )
    finally:
        executor.close()
    wall = time.perf_counter() - started
    rows = [
        flat_row(
            {
                "network": label,
                "batch": d.batch,
                "schedule": d.schedule,
                "params": {k: v for k, v in d.params if k != SCHEDULE},
                **records[d.index],
            }
        )
        for d in designs
    ]
    result = SweepResult(
        rows, parsed, scheds, fixed_values(parsed, base), wall_seconds=round(wall, 1)
    )
    with progress.step("output: sweep tables and figures"):
        _write_sweep(out_path, result, label, batch, preset, base)
    return result


def _write_sweep(
    out_path: Path, result: SweepResult, label: str, batch: int, preset: str, base: HardwareConfig
) -> None:
    from ..report import figures

    doc = {
        "experiment": "sweep",
        "network": label,
        "batch": batch,
        "preset": preset,
        "schedules": result.schedules,
        "params": {p.name: list(p.texts) for p in result.params},
        "held_at_in_figures": result.fixed,
        "wall_seconds": result.wall_seconds,
        "base_config": base.to_dict(),
    }
    out = OutputDir(out_path)
    try:
        out.path("sweep.csv").write_text(csv_text(result.rows))
        out.path("sweep.json").write_text(json.dumps(json_safe(doc), indent=1))
        pngs = [
            figures.sweep_figure(
                result.rows,
                p,
                result.params,
                result.fixed,
                result.schedules,
                label,
                batch,
                out.path(f"sweep_{p.name}.png"),
            )
            for p in result.params
        ]
        out.commit()
    except BaseException:
        out.abort()
        raise
    result.files = [str(out_path / n) for n in ["sweep.csv", "sweep.json", *pngs]]
