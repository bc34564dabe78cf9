"""``reproduce``: every network under every schedule, compared with the baseline and the paper.

Each schedule is compared with ``baseline`` (or with the first schedule listed when baseline is
not run): DRAM traffic and energy normalised to it, speedup = its cycles / the schedule's
cycles. Averages across networks are arithmetic means of the per-network ratios, set beside
the paper's headline (:mod:`wavecore_sim.paper`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import OutputDir
from ..config import HardwareConfig, load_config, parse_set_options
from ..errors import WavecoreError
from ..paper import PAPER_HEADLINE, PAPER_SCHEDULE, REFERENCE_SCHEDULE
from ..progress import QUIET, Progress
from ..schedule import SCHEDULES
from .runner import (
    DEFAULT_BATCH,
    Point,
    check_batch,
    check_jobs,
    check_networks,
    check_out_dir,
    check_schedule_specs,
    network_cost,
    run_points,
    schedule_cost,
)
from .tables import csv_text, flat_row, json_safe

DEFAULT_NETWORKS = ("resnet50", "resnet101", "resnet152", "inception_v3", "inception_v4")
QUICK_NETWORKS = ("resnet50", "inception_v3")


@dataclass
class Comparison:
    """One schedule of one network against the reference schedule of that network."""

    network: str
    schedule: str
    traffic: float = math.nan  # DRAM bytes / reference DRAM bytes
    speedup: float = math.nan  # reference cycles / cycles
    energy: float = math.nan  # energy / reference energy
    error: str = ""


@dataclass
class ReproduceResult:
    records: list[dict[str, Any]]
    comparisons: list[Comparison]
    averages: dict[str, dict[str, float]]
    reference: str
    markdown: str
    files: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "ok"]


def compare(records: list[dict[str, Any]], reference: str) -> list[Comparison]:
    """Per network and schedule: traffic, speedup and energy against ``reference``."""
    by_key = {(r["network"], r["schedule"]): r for r in records}
    out = []
    for r in records:
        c = Comparison(r["network"], r["schedule"])
        ref = by_key.get((r["network"], reference))
        if r["status"] != "ok":
            c.error = r["error"]
        elif ref is None or ref["status"] != "ok":
            c.error = f"{reference} failed"
        else:
            s, b = r["summary"], ref["summary"]
            c.traffic = s["dram_bytes"] / b["dram_bytes"] if b["dram_bytes"] else math.nan
            c.speedup = b["cycles"] / s["cycles"] if s["cycles"] else math.nan
            c.energy = s["energy_joules"] / b["energy_joules"] if b["energy_joules"] else math.nan
        out.append(c)
    return out


def average(comparisons: list[Comparison], schedules: Sequence[str]) -> dict[str, dict]:
    """Arithmetic mean over networks of each ratio, per schedule (failed runs left out)."""
    out: dict[str, dict[str, float]] = {}
    for sched in schedules:
        rows = [c for c in comparisons if c.schedule == sched and not c.error]
        out[sched] = {
            key: (sum(getattr(c, key) for c in rows) / len(rows)) if rows else math.nan
            for key in ("traffic", "speedup", "energy")
        }
        out[sched]["networks"] = len(rows)
    return out


def _pct(ratio: float) -> str:
    if math.isnan(ratio):
        return "n/a"
    return f"{ratio:.2f} ({(ratio - 1) * 100:+.0f}%)"


def _speed(ratio: float) -> str:
    if math.isnan(ratio):
        return "n/a"
    return f"{ratio:.2f}x ({(ratio - 1) * 100:+.0f}%)"


def reproduce_markdown(
    records: list[dict[str, Any]],
    comparisons: list[Comparison],
    averages: dict[str, dict[str, float]],
    reference: str,
    batch: int,
    cfg: HardwareConfig,
    preset: str,
) -> str:
    by_key = {(r["network"], r["schedule"]): r for r in records}
    lines = [
        "# MBS on WaveCore: reproduction of Lym et al., MLSys 2019",
        "",
        f"One training iteration per network and schedule, batch {batch}, preset `{preset}` "
        f"({cfg.cores} cores of {cfg.array_rows}x{cfg.array_cols}, "
        f"{cfg.gbuf_bytes / 2**20:g} MiB buffer, HBM {cfg.hbm_gbps:g} GB/s). "
        f"Ratios are against `{reference}` on the same network: DRAM traffic and energy as "
        f"fractions of it, speedup = its cycles / the schedule's cycles. `baseline` and `il` "
        f"use batch normalization, the MBS schedules group normalization (as in the paper).",
        "",
        "| network | schedule | cycles | time (ms) | DRAM (GB) | DRAM traffic vs "
        f"{reference} | speedup vs {reference} | energy (J) | energy vs {reference} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in comparisons:
        r = by_key[(c.network, c.schedule)]
        if r["status"] != "ok":
            lines.append(f"| {c.network} | {c.schedule} | failed: {r['error']} | | | | | | |")
            continue
        s = r["summary"]
        lines.append(
            f"| {c.network} | {c.schedule} | {s['cycles']:,} | {s['seconds'] * 1e3:.2f} | "
            f"{s['dram_bytes'] / 1e9:.3f} | {_pct(c.traffic)} | {_speed(c.speedup)} | "
            f"{s['energy_joules']:.3f} | {_pct(c.energy)} |"
        )
    lines += [
        "",
        "## Averages across networks",
        "",
        "Arithmetic means of the per-network ratios above. The paper's row is its headline for "
        "MBS + WaveCore against conventional training (abstract); compare it with "
        f"`{PAPER_SCHEDULE}`.",
        "",
        f"| schedule | networks | DRAM traffic vs {reference} | speedup vs {reference} | "
        f"energy vs {reference} |",
        "|---|---:|---:|---:|---:|",
    ]
    for sched, avg in averages.items():
        lines.append(
            f"| {sched} | {avg['networks']} | {_pct(avg['traffic'])} | "
            f"{_speed(avg['speedup'])} | {_pct(avg['energy'])} |"
        )
    p = PAPER_HEADLINE
    lines.append(
        f"| **paper (MBS + WaveCore)** | | {_pct(p['traffic'])} | "
        f"{_speed(p['speedup'])} | {_pct(p['energy'])} |"
    )
    if PAPER_SCHEDULE in averages and reference == REFERENCE_SCHEDULE:
        a = averages[PAPER_SCHEDULE]
        lines += [
            "",
            f"`{PAPER_SCHEDULE}` against the paper: DRAM traffic "
            f"{(a['traffic'] - 1) * 100:+.0f}% (paper -75%), performance "
            f"{(a['speedup'] - 1) * 100:+.0f}% (paper +53%), system energy "
            f"{(a['energy'] - 1) * 100:+.0f}% (paper -26%).",
        ]
    lines += [
        "",
        "Energy components (J) and DRAM bytes by tensor kind are in `results.csv`; "
        "full run summaries in `results.json`. Energy constants: "
        "`wavecore_sim/energy.py` and `wavecore_sim/config.py`.",
        "",
    ]
    return "\n".join(lines)


def reproduce(
    out_dir: str | Path,
    networks: Sequence[str] | None = None,
    batch: int = DEFAULT_BATCH,
    schedules: Sequence[str] | None = None,
    quick: bool = False,
    jobs: int | None = None,
    preset: str = "wavecore",
    set_options: dict[str, Any] | list[str] | None = None,
    config_file: str | Path | None = None,
    progress: Progress = QUIET,
) -> ReproduceResult:
    """Run every network under every schedule and write the tables and figures to ``out_dir``.

    Writes ``results.csv``, ``results.json``, ``results.md`` and the PNG figures of
    :mod:`wavecore_sim.report.figures` atomically (all or none, other files in ``out_dir``
    untouched). ``quick`` runs ResNet-50 and Inception-v3 only.
    """
    if quick and networks:
        raise WavecoreError("give --quick or --networks, not both")
    nets = check_networks(
        list(networks)  # [] (--networks '') is refused there, not taken as the default
        if networks is not None
        else list(QUICK_NETWORKS if quick else DEFAULT_NETWORKS)
    )
    scheds = check_schedule_specs(list(schedules) if schedules else list(SCHEDULES))
    batch, jobs = check_batch(batch), check_jobs(jobs)
    overrides = set_options if isinstance(set_options, dict) else parse_set_options(set_options)
    cfg = load_config(preset, config_file, overrides)
    out_path = check_out_dir(out_dir)
    reference = REFERENCE_SCHEDULE if REFERENCE_SCHEDULE in scheds else scheds[0]

    points = [
        Point(name, label, batch, s, cfg, cost=network_cost(name) * schedule_cost(s))
        for name, label in nets
        for s in scheds
    ]
    started = time.perf_counter()
    records = run_points(points, jobs, "reproduce", progress)
    wall = time.perf_counter() - started
    if all(r["status"] != "ok" for r in records):
        first = records[0]
        raise WavecoreError(
            f"all {len(records)} runs failed, nothing written (first: {first['network']} "
            f"{first['schedule']}: {first['error']})"[:280]
        )

    comparisons = compare(records, reference)
    averages = average(comparisons, scheds)
    markdown = reproduce_markdown(records, comparisons, averages, reference, batch, cfg, preset)
    result = ReproduceResult(
        records, comparisons, averages, reference, markdown, wall_seconds=round(wall, 1)
    )
    with progress.step("output: results and figures"):
        _write_reproduce(out_path, result, nets, scheds, batch, cfg, preset)
    return result


def _write_reproduce(
    out_path: Path,
    result: ReproduceResult,
    nets: list[tuple[str, str]],
    scheds: list[str],
    batch: int,
    cfg: HardwareConfig,
    preset: str,
) -> None:
    from ..report import figures, tradeoff

    rows = [flat_row(r) for r in result.records]
    comp = {(c.network, c.schedule): c for c in result.comparisons}
    for row in rows:
        c = comp[(row["network"], row["schedule"])]
        row[f"traffic_vs_{result.reference}"] = None if math.isnan(c.traffic) else c.traffic
        row[f"speedup_vs_{result.reference}"] = None if math.isnan(c.speedup) else c.speedup
        row[f"energy_vs_{result.reference}"] = None if math.isnan(c.energy) else c.energy
    doc = {
        "experiment": "reproduce",
        "batch": batch,
        "preset": preset,
        "networks": [label for _, label in nets],
        "schedules": scheds,
        "reference": result.reference,
        "paper_headline": PAPER_HEADLINE,
        "paper_schedule": PAPER_SCHEDULE,
        "averages": result.averages,
        "wall_seconds": result.wall_seconds,
        "failed_runs": len(result.failed),
        "config": cfg.to_dict(),
        "runs": result.records,
    }
    out = OutputDir(out_path)
    try:
        files = {
            "results.csv": csv_text(rows),
            "results.json": json.dumps(json_safe(doc), indent=1),
            "results.md": result.markdown,
        }
        for name, text in files.items():
            out.path(name).write_text(text)
        pngs = figures.reproduce_figures(result.records, result.reference, out.tmp)
        pngs += [  # traffic against time, and the DRAM footprint, one mark per schedule
            tradeoff.tradeoff_figure(result.records, out.tmp / "tradeoff.png"),
            tradeoff.footprint_figure(result.records, out.tmp / "footprint.png"),
        ]
        out.commit()
    except BaseException:
        out.abort()
        raise
    result.files = [str(out_path / n) for n in [*files, *pngs]]
