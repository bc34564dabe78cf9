"""Reproduce the paper's comparison and sweep the hardware: many runs, in parallel processes.

Two experiments, both thin layers over :func:`wavecore_sim.api.run`:

* :func:`reproduce` runs every requested network under every schedule (default: the five
  networks of the paper's evaluation that the zoo has, all five schedules, batch 32) and
  writes ``results.csv``, ``results.json``, ``results.md`` and figures. Each schedule is
  compared with ``baseline`` (or with the first schedule listed when baseline is not run):
  DRAM traffic and energy normalised to it, speedup = its cycles / the schedule's cycles.
  Averages across networks are arithmetic means of the per-network ratios, set beside the
  paper's headline for MBS + WaveCore against conventional training (Lym et al., MLSys 2019,
  abstract): DRAM traffic -75 %, performance +53 %, system energy -26 %.
* :func:`sweep` runs the cross product of hardware-parameter values (any
  :class:`~wavecore_sim.config.HardwareConfig` field) for one network and one or more
  schedules, and writes ``sweep.csv`` (one row per point, in the order of the cross product,
  so the file does not depend on ``jobs``) and one figure per parameter.

Every point runs in a worker process (``concurrent.futures.ProcessPoolExecutor`` with the
``spawn`` context, so workers start clean whatever the parent has imported); ``jobs=1`` runs
them in this process. A point that fails (typically a buffer too small for some layer)
becomes a ``failed`` row carrying the one-line reason; the other points still run. Input
errors (unknown network, schedule or field, bad value, impossible config) are found before
any run starts and before anything is written.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import HardwareConfig, load_config, parse_set_options
from .energy import COMPONENTS
from .errors import WavecoreError
from .ir import TRAFFIC_KINDS
from .progress import ProgressBar
from .schedule import SCHEDULES
from .workload import load_network

DEFAULT_NETWORKS = ("resnet50", "resnet101", "resnet152", "inception_v3", "inception_v4")
QUICK_NETWORKS = ("resnet50", "inception_v3")
DEFAULT_BATCH = 32

#: The paper's headline for MBS + WaveCore against conventional training (abstract of
#: Lym et al., MLSys 2019), as ratios to the baseline: traffic and energy x, speedup x.
PAPER_HEADLINE = {"traffic": 0.25, "speedup": 1.53, "energy": 0.74}
#: The schedule the headline is compared with: the paper's full MBS (mbs1 + branch reuse).
PAPER_SCHEDULE = "mbs2"
REFERENCE_SCHEDULE = "baseline"

#: Relative simulation cost of the schedules (ResNet-50 wall times; MBS plans take longer to
#: build). Only used to start the longest runs first, so the pool finishes sooner.
_SCHEDULE_COST = {"baseline": 1.0, "il": 1.2, "mbs-fs": 7.0, "mbs1": 7.0, "mbs2": 6.0,
                  "mbs2-time": 5.0}



# --------------------------------------------------------------------------- running points


@dataclass(frozen=True)
class Point:
    """One run: a network under a schedule on a machine. Picklable, for worker processes."""

    network: str  # zoo name or path, as the user gave it
    label: str  # the network's own name, for tables
    batch: int
    schedule: str
    cfg: HardwareConfig
    params: tuple[tuple[str, Any], ...] = ()  # the swept fields' values at this point
    cost: float = 1.0


def run_point(point: Point) -> dict[str, Any]:
    """Run one point; return a plain record. Never raises for a run that fails: a failed
    point is a record with ``status='failed'`` and the one-line reason in ``error``."""
    from . import api  # imported here so spawned workers pay for it only when they run

    api.use_fast_gc()
    started = time.perf_counter()
    record: dict[str, Any] = {"network": point.label, "batch": point.batch,
                              "schedule": point.schedule, "params": dict(point.params)}
    try:
        out = api.run(point.network, point.batch, point.schedule, cfg=point.cfg, out_dir=None,
                      plots=False)
    except WavecoreError as exc:
        record.update(status="failed", error=_one_line(str(exc)))
    except Exception as exc:  # a bug elsewhere: keep the other points, report it
        record.update(status="failed", error=_one_line(f"internal error: "
                                                       f"{type(exc).__name__}: {exc}"))
    else:
        summary = {k: v for k, v in out.summary.items() if k not in ("units", "config")}
        record.update(status="ok", error="", summary=summary)
    record["wall_seconds"] = round(time.perf_counter() - started, 3)
    return record


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_points(points: Sequence[Point], jobs: int, label: str) -> list[dict[str, Any]]:
    """Run ``points`` on ``jobs`` worker processes; records come back in ``points`` order.

    A progress bar on stderr (when it is a terminal) counts finished runs. Longest runs are
    submitted first.
    """
    total = len(points)
    records: list[dict[str, Any] | None] = [None] * total
    bar = ProgressBar(label, enabled=None)
    bar(0, total)
    try:
        if jobs <= 1 or total <= 1:
            for i, point in enumerate(points):
                records[i] = run_point(point)
                bar(i + 1, total)
        else:
            order = sorted(range(total), key=lambda i: -points[i].cost)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, total), mp_context=ctx) as pool:
                futures = {pool.submit(run_point, points[i]): i for i in order}
                try:
                    for done, future in enumerate(as_completed(futures), 1):
                        records[futures[future]] = future.result()
                        bar(done, total)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return [r for r in records if r is not None]


def default_jobs() -> int:
    return os.cpu_count() or 1


def _check_jobs(jobs: int | None) -> int:
    jobs = default_jobs() if jobs is None else jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise WavecoreError(f"--jobs must be a positive integer, got {jobs!r}")
    return jobs


def _check_batch(batch: int) -> int:
    if not isinstance(batch, int) or batch < 1:
        raise WavecoreError(f"--batch must be a positive integer, got {batch!r}")
    return batch


def _check_schedules(schedules: Sequence[str]) -> list[str]:
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


def _check_networks(networks: Sequence[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in networks:
        label = _network_label(name)
        if label in [lbl for _, lbl in out]:
            raise WavecoreError(f"network {label!r} is listed twice; list each network once")
        out.append((name, label))
    if not out:
        raise WavecoreError("no network given; list them, e.g. --networks resnet50,inception_v3")
    return out


def _network_cost(name: str) -> float:
    return float(len(load_network(name).layers))


def _check_out_dir(out_dir: str | Path) -> Path:
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise WavecoreError(f"--out {str(path)!r} is a file; give a directory")
    return path


# --------------------------------------------------------------------------- flat rows


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """The CSV columns of one record (empty cells for a failed run). Deterministic: no wall
    times, so the same inputs always give the same file."""
    row: dict[str, Any] = {"network": record["network"], "batch": record["batch"],
                           "schedule": record["schedule"]}
    row.update(record.get("params", {}))
    row["status"] = record["status"]
    row["error"] = record["error"]
    s = record.get("summary")
    cols: dict[str, Any] = {
        "norm": None, "cycles": None, "seconds": None, "dram_read_bytes": None,
        "dram_write_bytes": None, "dram_bytes": None}
    cols.update({f"dram_{k}_bytes": None for k in TRAFFIC_KINDS})
    cols.update({f"energy_{c}_j": None for c in COMPONENTS})
    cols.update({"energy_total_j": None, "util_temporal": None, "util_spatial": None,
                 "util_overall": None, "throughput_tflops": None, "stall_dram_cycles": None,
                 "stall_buffer_port_cycles": None, "stall_dependency_cycles": None,
                 "stall_weight_load_cycles": None, "groups": None, "min_sub_batch": None,
                 "max_sub_batch": None, "peak_buffer_bytes": None})
    if s is not None:
        kinds = s["dram_by_kind"]
        cols.update(norm=s["norm"], cycles=s["cycles"], seconds=s["seconds"],
                    dram_read_bytes=s["dram_read_bytes"], dram_write_bytes=s["dram_write_bytes"],
                    dram_bytes=s["dram_bytes"])
        for k in TRAFFIC_KINDS:
            cols[f"dram_{k}_bytes"] = kinds["read"].get(k, 0) + kinds["write"].get(k, 0)
        for c in COMPONENTS:
            cols[f"energy_{c}_j"] = s["energy_breakdown"][c]
        cols["energy_total_j"] = s["energy_joules"]
        util = s["utilization"]
        cols.update(util_temporal=util["temporal"], util_spatial=util["spatial"],
                    util_overall=util["overall"], throughput_tflops=s["throughput_tflops"])
        for cause, cycles in s["core_stalls"].items():
            cols[f"stall_{cause}_cycles"] = cycles
        subs = [g["sub_batch"] for g in s["groups"]]
        cols.update(groups=len(subs), min_sub_batch=min(subs, default=None),
                    max_sub_batch=max(subs, default=None),
                    peak_buffer_bytes=s["peak_buffer_bytes"])
    row.update(cols)
    return row


def csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


# --------------------------------------------------------------------------- reproduce


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
        out[sched] = {key: (sum(getattr(c, key) for c in rows) / len(rows)) if rows
                      else math.nan for key in ("traffic", "speedup", "energy")}
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


def reproduce_markdown(records: list[dict[str, Any]], comparisons: list[Comparison],
                       averages: dict[str, dict[str, float]], reference: str, batch: int,
                       cfg: HardwareConfig, preset: str) -> str:
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
            f"{s['energy_joules']:.3f} | {_pct(c.energy)} |")
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
        lines.append(f"| {sched} | {avg['networks']} | {_pct(avg['traffic'])} | "
                     f"{_speed(avg['speedup'])} | {_pct(avg['energy'])} |")
    p = PAPER_HEADLINE
    lines.append(f"| **paper (MBS + WaveCore)** | | {_pct(p['traffic'])} | "
                 f"{_speed(p['speedup'])} | {_pct(p['energy'])} |")
    if PAPER_SCHEDULE in averages and reference == REFERENCE_SCHEDULE:
        a = averages[PAPER_SCHEDULE]
        lines += ["", f"`{PAPER_SCHEDULE}` against the paper: DRAM traffic "
                  f"{(a['traffic'] - 1) * 100:+.0f}% (paper -75%), performance "
                  f"{(a['speedup'] - 1) * 100:+.0f}% (paper +53%), system energy "
                  f"{(a['energy'] - 1) * 100:+.0f}% (paper -26%)."]
    lines += ["", "Energy components (J) and DRAM bytes by tensor kind are in `results.csv`; "
              "full run summaries in `results.json`. Energy constants: "
              "`wavecore_sim/energy.py` and `wavecore_sim/config.py`.", ""]
    return "\n".join(lines)


def reproduce(out_dir: str | Path, networks: Sequence[str] | None = None,
              batch: int = DEFAULT_BATCH, schedules: Sequence[str] | None = None,
              quick: bool = False, jobs: int | None = None, preset: str = "wavecore",
              set_options: dict[str, Any] | list[str] | None = None) -> ReproduceResult:
    """Run every network under every schedule and write the tables and figures to ``out_dir``.

    Writes ``results.csv``, ``results.json``, ``results.md`` and the PNG figures of
    :mod:`wavecore_sim.report.figures` atomically (all or none, other files in ``out_dir``
    untouched). ``quick`` runs ResNet-50 and Inception-v3 only.
    """
    if quick and networks:
        raise WavecoreError("give --quick or --networks, not both")
    nets = _check_networks(list(networks) if networks else
                           list(QUICK_NETWORKS if quick else DEFAULT_NETWORKS))
    scheds = _check_schedules(list(schedules) if schedules else list(SCHEDULES))
    batch, jobs = _check_batch(batch), _check_jobs(jobs)
    overrides = (set_options if isinstance(set_options, dict)
                 else parse_set_options(set_options))
    cfg = load_config(preset, None, overrides)
    out_path = _check_out_dir(out_dir)
    reference = REFERENCE_SCHEDULE if REFERENCE_SCHEDULE in scheds else scheds[0]

    points = [Point(name, label, batch, s, cfg, cost=_network_cost(name) * _SCHEDULE_COST[s])
              for name, label in nets for s in scheds]
    started = time.perf_counter()
    records = run_points(points, jobs, f"reproduce: {len(points)} runs")
    wall = time.perf_counter() - started

    comparisons = compare(records, reference)
    averages = average(comparisons, scheds)
    markdown = reproduce_markdown(records, comparisons, averages, reference, batch, cfg, preset)
    result = ReproduceResult(records, comparisons, averages, reference, markdown,
                             wall_seconds=round(wall, 1))
    _write_reproduce(out_path, result, nets, scheds, batch, cfg, preset)
    return result


def _write_reproduce(out_path: Path, result: ReproduceResult, nets: list[tuple[str, str]],
                     scheds: list[str], batch: int, cfg: HardwareConfig, preset: str) -> None:
    from .api import _OutputDir
    from .report import figures

    rows = [flat_row(r) for r in result.records]
    comp = {(c.network, c.schedule): c for c in result.comparisons}
    for row in rows:
        c = comp[(row["network"], row["schedule"])]
        row[f"traffic_vs_{result.reference}"] = None if math.isnan(c.traffic) else c.traffic
        row[f"speedup_vs_{result.reference}"] = None if math.isnan(c.speedup) else c.speedup
        row[f"energy_vs_{result.reference}"] = None if math.isnan(c.energy) else c.energy
    doc = {
        "experiment": "reproduce", "batch": batch, "preset": preset,
        "networks": [label for _, label in nets], "schedules": scheds,
        "reference": result.reference, "paper_headline": PAPER_HEADLINE,
        "paper_schedule": PAPER_SCHEDULE, "averages": result.averages,
        "wall_seconds": result.wall_seconds, "config": cfg.to_dict(),
        "runs": result.records,
    }
    out = _OutputDir(out_path)
    try:
        files = {"results.csv": csv_text(rows),
                 "results.json": json.dumps(_json_safe(doc), indent=1),
                 "results.md": result.markdown}
        for name, text in files.items():
            out.path(name).write_text(text)
        pngs = figures.reproduce_figures(result.records, result.reference, out.tmp)
        out.commit()
    except BaseException:
        out.abort()
        raise
    result.files = [str(out_path / n) for n in [*files, *pngs]]


def _json_safe(obj: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class SweepParam:
    """One swept field: its name, the values as typed (for labels) and as config values."""

    name: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]


def parse_param(text: str, base: HardwareConfig) -> SweepParam:
    """``'gbuf_bytes=2MiB,5MiB'`` -> a :class:`SweepParam`; one-line WavecoreError if bad."""
    from .config import apply_overrides

    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise WavecoreError(f"--param {text!r}: write it as FIELD=V1,V2,..., e.g. "
                            "--param gbuf_bytes=2MiB,10MiB")
    if name not in base.to_dict():
        raise WavecoreError(f"--param {text!r}: unknown config field {name!r}; "
                            "`wavecore-sim config show` lists the fields")
    texts = tuple(t.strip() for t in rest.split(","))
    if not rest.strip() or any(not t for t in texts):
        raise WavecoreError(f"--param {text!r}: give one or more comma-separated values, "
                            f"e.g. --param {name}=1,2")
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
            held[p.name] = {"value": default, "text": p.texts[p.values.index(default)],
                            "why": "default"}
        else:
            order = sorted(range(len(p.values)), key=lambda i: p.values[i])
            mid = order[len(order) // 2]
            held[p.name] = {"value": p.values[mid], "text": p.texts[mid], "why": "middle value"}
    return held


def sweep(out_dir: str | Path, network: str, schedules: Sequence[str], params: Sequence[str],
          batch: int = DEFAULT_BATCH, jobs: int | None = None, preset: str = "wavecore",
          set_options: dict[str, Any] | list[str] | None = None) -> SweepResult:
    """Run the cross product of ``params`` for ``network`` under each schedule.

    Writes ``sweep.csv`` (rows in cross-product order: the first parameter varies slowest,
    then the next, ..., then the schedule in the order given), ``sweep.json`` and
    ``sweep_<param>.png`` per parameter (see :func:`fixed_values` for what the other
    parameters are held at), atomically. Failed points are rows with ``status=failed``.
    """
    overrides = (set_options if isinstance(set_options, dict)
                 else parse_set_options(set_options))
    base = load_config(preset, None, overrides)
    if not params:
        raise WavecoreError("give at least one --param FIELD=V1,V2,...")
    parsed = [parse_param(p, base) for p in params]
    names = [p.name for p in parsed]
    for name in names:
        if names.count(name) > 1:
            raise WavecoreError(f"--param {name} is given twice; list all its values in one "
                                f"--param {name}=V1,V2,...")
    scheds = _check_schedules(list(schedules))
    batch, jobs = _check_batch(batch), _check_jobs(jobs)
    (net_name, label), = _check_networks([network])
    out_path = _check_out_dir(out_dir)

    points = []
    net_cost = _network_cost(net_name)
    for combo in itertools.product(*[range(len(p.values)) for p in parsed]):
        values = {p.name: p.values[i] for p, i in zip(parsed, combo, strict=True)}
        try:  # every combination is a valid machine, or nothing runs
            cfg = load_config(preset, None, {**overrides, **values})
        except WavecoreError as exc:
            point = ", ".join(f"{p.name}={p.texts[i]}" for p, i in zip(parsed, combo,
                                                                        strict=True))
            raise WavecoreError(f"sweep point {point}: {exc}") from None
        for s in scheds:
            points.append(Point(net_name, label, batch, s, cfg, tuple(values.items()),
                                cost=net_cost * _SCHEDULE_COST[s]))

    started = time.perf_counter()
    records = run_points(points, jobs, f"sweep: {len(points)} runs")
    wall = time.perf_counter() - started
    rows = [flat_row(r) for r in records]
    result = SweepResult(rows, parsed, scheds, fixed_values(parsed, base),
                         wall_seconds=round(wall, 1))
    _write_sweep(out_path, result, label, batch, preset, base)
    return result


def _write_sweep(out_path: Path, result: SweepResult, label: str, batch: int, preset: str,
                 base: HardwareConfig) -> None:
    from .api import _OutputDir
    from .report import figures

    doc = {"experiment": "sweep", "network": label, "batch": batch, "preset": preset,
           "schedules": result.schedules,
           "params": {p.name: list(p.texts) for p in result.params},
           "held_at_in_figures": result.fixed, "wall_seconds": result.wall_seconds,
           "base_config": base.to_dict()}
    out = _OutputDir(out_path)
    try:
        out.path("sweep.csv").write_text(csv_text(result.rows))
        out.path("sweep.json").write_text(json.dumps(_json_safe(doc), indent=1))
        pngs = [figures.sweep_figure(result.rows, p, result.params, result.fixed,
                                     result.schedules, label, batch,
                                     out.path(f"sweep_{p.name}.png"))
                for p in result.params]
        out.commit()
    except BaseException:
        out.abort()
        raise
    result.files = [str(out_path / n) for n in ["sweep.csv", "sweep.json", *pngs]]
