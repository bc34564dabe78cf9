"""``explore``: a design-space exploration, screened analytically, refereed at cycle level.

The space (:mod:`.space`) gives the points: a grid, or a seeded Latin-hypercube sample. Each
point is a machine (the base config of ``--preset``/``--config``/``--set`` with the point's
values), a schedule and a batch. Points that compile to the same program share one compile
(:mod:`.evaluate`, keyed on :func:`~wavecore_sim.config.program_key`); jobs run on an
executor (:mod:`.executors`); every finished point is committed to the results database
(:mod:`.results_db`) as it arrives, so a rerun of the same command skips what is done.

Models (``--model``):

* ``analytical``: the analytical model on every point (fast screening);
* ``cycle``: the cycle-level simulator on every point;
* ``both``: the analytical model on every point, then the simulator on the analytical
  Pareto front and the ``--top`` fastest points, and the rank agreement (Kendall's tau,
  :mod:`.pareto`) between the two models' seconds on those refereed points.

The Pareto front minimises :data:`DEFAULT_OBJECTIVES` (``--objectives``): time, energy and
the area proxy of :mod:`.evaluate` (buffer bytes and processing elements), so a point is on
it when no other point is as fast, as frugal and as small at once, and better in one.

``sweep`` is the special case of a grid over ``--param`` values at cycle level without a
database: :func:`evaluate_designs` is what both run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import OutputDir, check_out_dir, default_norm
from ..config import HardwareConfig, load_config, parse_set_options, program_key
from ..errors import WavecoreError
from ..progress import QUIET, Progress
from ..workload import resolve_network_path
from .evaluate import MODELS, Job, PointSpec, area_proxy, code_version, run_job
from .executors import Executor, check_executor, make_executor
from .pareto import kendall_tau, pareto_front, ranks
from .results_db import TIMING_COLUMNS, ResultsDB, check_db_path
from .runner import (
    DEFAULT_BATCH,
    PRIOR_SECONDS_PER_COST,
    SCHEDULE_COST,
    check_batch,
    check_jobs,
    check_networks,
    check_schedules,
    network_cost,
)
from .space import BATCH, SCHEDULE, Dimension, Space, read_space
from .tables import csv_text, json_safe, metric_columns

MODEL_CHOICES = (*MODELS, "both")
DEFAULT_SCHEDULE = "mbs2"
DEFAULT_TOP = 10
#: Minimised by the Pareto front unless ``--objectives`` says otherwise.
DEFAULT_OBJECTIVES = ("seconds", "energy_total_j", "area_pes", "area_buffer_bytes")
#: Metrics that can be objectives (all are "smaller is better").
OBJECTIVE_CHOICES = (
    "seconds",
    "cycles",
    "energy_total_j",
    "dram_bytes",
    "dram_peak_bytes",
    "area_pes",
    "area_buffer_bytes",
)
#: Share of a point's cost (runner.SCHEDULE_COST: compile and simulate) that one more point
#: of the same program adds, per model: the analytical model is about a tenth of a compile,
#: a simulation about a half (README, "Speed and memory": ResNet-50 b32 mbs2 compiles in
#: 1.3 s, simulates in 0.55 s; bench_analytical: 0.1 s).
EXTRA_POINT_COST = {"analytical": 0.1, "cycle": 0.4}
#: Share of a point's compile-and-simulate cost that compiling without the verifier and
#: running the analytical model takes (same sources): for the ETA before a job finishes.
ANALYTICAL_COST_SHARE = 0.6
OUTPUT_FILES = ("pareto.csv", "explore.json", "pareto.png")
ID_COLUMNS = (
    "point_key",
    "model",
    "point_index",
    "network",
    "batch",
    "schedule",
    "norm",
    "params",
    "config",
    "config_hash",
    "code_version",
    "status",
    "error",
)
EXTRA_COLUMNS = ("instructions", "dram_peak_bytes", "area_pes", "area_buffer_bytes")


def db_columns() -> list[str]:
    """The ``results`` table's columns: identity, metrics, timing."""
    metrics = [c for c in metric_columns(None) if c != "norm"]
    return [*ID_COLUMNS, *metrics, *EXTRA_COLUMNS, *TIMING_COLUMNS]


@dataclass(frozen=True)
class Design:
    """One point of the space: its machine (or why there is none), schedule and batch."""

    index: int
    key: str
    schedule: str
    batch: int
    norm: str
    params: tuple[tuple[str, Any], ...]  # the swept values, in the space's order
    config: dict[str, Any]  # every config field (as given, when they make no machine)
    cfg: HardwareConfig | None
    error: str = ""  # why ``cfg`` is None


def _digest(doc: Any) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def point_key(network: str, batch: int, schedule: str, norm: str, config: dict) -> str:
    """What identifies a point across runs: network, batch, schedule, norm, whole config."""
    return _digest(
        {"network": network, "batch": batch, "schedule": schedule, "norm": norm, "config": config}
    )


def build_designs(
    points: Sequence[dict[str, Any]],
    label: str,
    batch: int,
    schedule: str,
    norm: str | None,
    preset: str,
    config_file: str | Path | None,
    overrides: dict[str, Any],
) -> list[Design]:
    """One :class:`Design` per distinct point (a repeated point is kept once, first)."""
    base = load_config(preset, config_file, overrides).to_dict()
    out, seen = [], set()
    for values in points:
        sched = values.get(SCHEDULE, schedule)
        b = values.get(BATCH, batch)
        n = norm or default_norm(sched)
        fields = {k: v for k, v in values.items() if k not in (SCHEDULE, BATCH)}
        try:
            cfg: HardwareConfig | None = load_config(preset, config_file, {**overrides, **fields})
            config, error = cfg.to_dict(), ""
        except WavecoreError as exc:
            cfg, config, error = None, {**base, **fields}, str(exc)
        key = point_key(label, b, sched, n, config)
        if key in seen:
            continue
        seen.add(key)
        out.append(Design(len(out), key, sched, b, n, tuple(values.items()), config, cfg, error))
    return out


def _job_cost(network: str, design: Design, model: str, points: int) -> float:
    share = EXTRA_POINT_COST[model]
    return (
        network_cost(network)
        * SCHEDULE_COST[design.schedule]
        * design.batch
        / 32
        * (1 + share * (points - 1))
    )


def make_jobs(network: str, designs: Sequence[Design], model: str) -> list[Job]:
    """The compile cache: one job per program (schedule, batch, norm, program key)."""
    groups: dict[str, list[Design]] = {}
    for d in designs:
        assert d.cfg is not None
        key = _digest([d.schedule, d.batch, d.norm, program_key(d.cfg)])
        groups.setdefault(key, []).append(d)
    return [
        Job(
            network,
            g[0].batch,
            g[0].schedule,
            g[0].norm,
            model,
            tuple(PointSpec(d.index, d.key, d.cfg) for d in g if d.cfg is not None),
            _job_cost(network, g[0], model, len(g)),
        )
        for g in groups.values()
    ]


def failed_record(design: Design, model: str) -> dict[str, Any]:
    """The record of a point whose values make no machine."""
    return {
        "index": design.index,
        "key": design.key,
        "model": model,
        "code_version": code_version(),
        "status": "failed",
        "error": " ".join(design.error.split()),
        "summary": None,
        "wall_seconds": 0.0,
    }


def evaluate_designs(
    designs: Sequence[Design],
    network: str,
    model: str,
    executor: Callable[[], Executor],
    on_records: Callable[[list[dict[str, Any]]], None],
    progress: Progress = QUIET,
    label: str = "explore",
    note_each: bool = False,
) -> None:
    """Evaluate ``designs`` under ``model``; hand each finished job's records (one per
    point) to ``on_records`` as it arrives. ``executor`` is called only if there is work.
    A point without a machine is a failed record at once; ``note_each``: a progress note
    per finished point (else only per failed one)."""
    by_key = {d.key: d for d in designs}
    bad = [failed_record(d, model) for d in designs if d.cfg is None]
    if bad:
        on_records(bad)
    jobs = make_jobs(network, [d for d in designs if d.cfg is not None], model)
    if not jobs:
        return
    total = sum(len(j.points) for j in jobs)
    costs = [j.cost for j in jobs]
    all_cost = sum(costs) or 1.0
    pool = executor()
    prior_share = ANALYTICAL_COST_SHARE if model == "analytical" else 1.0
    with progress.step(label, total=total, unit="points") as task:
        task.expect(PRIOR_SECONDS_PER_COST * prior_share * all_cost / max(1, pool.workers))
        done, done_cost = 0, 0.0
        for j, records in pool.run(run_job, jobs, costs):
            on_records(records)
            done += len(records)
            done_cost += costs[j]
            for r in records:
                if note_each or r["status"] != "ok":
                    d = by_key[r["key"]]
                    what = " ".join(f"{k}={v}" for k, v in d.params)
                    progress.note(
                        f"  {d.schedule} {what}: {r['status']} in {r['wall_seconds']:.1f} s"
                        + (f" ({r['error']})" if r["status"] != "ok" and not note_each else "")
                    )
            task.label = f"{label}, {done / max(task.elapsed(), 1e-9):.2f} points/s"
            task.update(done, total, fraction=done_cost / all_cost)


def db_row(design: Design, record: dict[str, Any], label: str) -> dict[str, Any]:
    """The database row of one evaluated point."""
    summary = record["summary"]
    metrics = {k: v for k, v in metric_columns(summary).items() if k != "norm"}
    extras = dict.fromkeys(EXTRA_COLUMNS)
    if summary is not None:
        extras.update(
            instructions=summary.get("instructions"),
            dram_peak_bytes=summary.get("dram_peak_bytes"),
        )
    if design.cfg is not None:
        extras.update(area_proxy(design.cfg))
    return {
        "point_key": design.key,
        "model": record["model"],
        "point_index": design.index,
        "network": label,
        "batch": design.batch,
        "schedule": design.schedule,
        "norm": design.norm,
        "params": dict(design.params),
        "config": design.config,
        "config_hash": _digest(design.config),
        "code_version": record["code_version"],
        "status": record["status"],
        "error": record["error"],
        **metrics,
        **extras,
        "wall_seconds": record["wall_seconds"],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


@dataclass
class PhaseCount:
    """What one model did in this run: points run now, found done, failed overall."""

    ran: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class ExploreResult:
    network: str
    batch: int
    model: str
    objectives: tuple[str, ...]
    params: list[str]
    points: int  # distinct points
    requested: int  # grid size or --samples
    phases: dict[str, PhaseCount]
    front: list[dict[str, Any]]  # rows of the final front, fastest first
    refereed: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    tau: float | None = None
    wall_seconds: float = 0.0
    code_version: str = ""
    files: list[str] = field(default_factory=list)
    ok_points: int = 0  # points with at least one successful evaluation
    from_db: bool = False  # read by ``explore --show``, not run


def _check_options(
    model: str,
    executor: str,
    scheduler: str | None,
    top: int,
    objectives: Sequence[str],
    norm: str | None,
) -> tuple[str, ...]:
    if model not in MODEL_CHOICES:
        raise WavecoreError(f"--model {model!r}: choose one of {', '.join(MODEL_CHOICES)}")
    check_executor(executor, scheduler)
    if not isinstance(top, int) or top < 0:
        raise WavecoreError(f"--top must be a whole number >= 0, got {top!r}")
    if norm not in (None, "bn", "gn"):
        raise WavecoreError(f"--norm {norm!r}: use bn or gn")
    objectives = tuple(objectives)
    for o in objectives:
        if o not in OBJECTIVE_CHOICES:
            raise WavecoreError(f"--objectives: {o!r} is not one of {', '.join(OBJECTIVE_CHOICES)}")
    if not objectives or len(set(objectives)) != len(objectives):
        raise WavecoreError("--objectives: list one or more metrics, each once")
    return objectives


@dataclass(frozen=True)
class Plan:
    """A checked exploration: its points and where its results go."""

    network: str  # as given (zoo name or path)
    label: str  # the network's own name
    space: Space
    requested: int  # grid size or --samples
    designs: list[Design]
    definition: dict[str, Any]  # what a rerun must repeat to resume (results_db "meta")
    out_path: Path
    db_path: str


def plan_exploration(
    out_dir: str | Path,
    network: str,
    space: str | Path | Space,
    db: str | Path,
    batch: int,
    schedule: str | Sequence[str],
    norm: str | None,
    samples: int | None,
    seed: int,
    preset: str,
    set_options: dict[str, Any] | list[str] | None,
    config_file: str | Path | None,
) -> Plan:
    """Read and check every input of :func:`explore` (one-line errors, nothing written)."""
    overrides = set_options if isinstance(set_options, dict) else parse_set_options(set_options)
    base = load_config(preset, config_file, overrides)
    batch = check_batch(batch)
    schedules = check_schedules([schedule] if isinstance(schedule, str) else list(schedule))
    parsed = space if isinstance(space, Space) else read_space(space, base)
    if len(schedules) > 1 and SCHEDULE not in parsed.names:  # a list: one more dimension
        parsed = Space((*parsed.dims, Dimension(SCHEDULE, tuple(schedules))), parsed.source)
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
    ):
        raise WavecoreError(f"--samples must be a positive integer, got {samples!r}")
    values = parsed.sample(samples, seed) if samples else parsed.grid()
    ((net_name, label),) = check_networks([network])
    out_path = check_out_dir(out_dir)
    check_db_path(str(db), must_exist=False)
    designs = build_designs(
        values, label, batch, schedules[0], norm, preset, config_file, overrides
    )
    network_file = resolve_network_path(net_name).read_bytes()
    definition = {
        "network": label,
        "network_sha256": hashlib.sha256(network_file).hexdigest()[:16],
        "batch": batch,
        "schedule": schedules[0],
        "norm": norm,
        "base_config": base.to_dict(),
        "space": parsed.describe(),
        "samples": samples,
        "seed": seed if samples else None,
    }
    definition = json.loads(json.dumps(definition, sort_keys=True))  # as the database has it
    return Plan(net_name, label, parsed, len(values), designs, definition, out_path, str(db))


def explore(
    out_dir: str | Path,
    network: str,
    space: str | Path | Space,
    db: str | Path,
    *,
    batch: int = DEFAULT_BATCH,
    schedule: str | Sequence[str] = DEFAULT_SCHEDULE,
    norm: str | None = None,
    samples: int | None = None,
    seed: int = 0,
    model: str = "analytical",
    top: int = DEFAULT_TOP,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    executor: str = "local",
    scheduler: str | None = None,
    jobs: int | None = None,
    preset: str = "wavecore",
    set_options: dict[str, Any] | list[str] | None = None,
    config_file: str | Path | None = None,
    progress: Progress = QUIET,
) -> ExploreResult:
    """Explore ``space`` for ``network`` (see the module docstring); results go to ``db``
    (created, or resumed when it holds the same exploration) and the front's files to
    ``out_dir``. Input errors are one :class:`WavecoreError` line, raised before any work
    and before anything is written."""
    started = time.perf_counter()
    objectives = _check_options(model, executor, scheduler, top, objectives, norm)
    jobs = check_jobs(jobs)
    plan = plan_exploration(
        out_dir,
        network,
        space,
        db,
        batch,
        schedule,
        norm,
        samples,
        seed,
        preset,
        set_options,
        config_file,
    )
    version = code_version()
    result = ExploreResult(
        plan.label,
        batch,
        model,
        objectives,
        plan.space.names,
        len(plan.designs),
        plan.requested,
        {},
        [],
        code_version=version,
    )
    pool: Executor | None = None

    def get_pool() -> Executor:
        nonlocal pool
        if pool is None:
            pool = make_executor(executor, jobs, scheduler)
        return pool

    with ResultsDB(plan.db_path, db_columns()) as rdb:
        _claim(rdb, plan)
        finished = False
        try:
            for phase in _phases(model):
                chosen = (
                    plan.designs
                    if phase != "referee"
                    else _referee_set(rdb, plan.designs, objectives, top)
                )
                m = "analytical" if phase == "analytical" else "cycle"
                result.phases[m] = _run_phase(
                    rdb, chosen, m, plan.network, plan.label, get_pool, progress
                )
            finished = True
        finally:
            if pool is not None:
                pool.close(wait=finished)
        rdb.set_meta(objectives=list(objectives), model=model, top=top)
        keys = {d.key for d in plan.designs}
        rows = [r for r in rdb.rows() if r["point_key"] in keys]
    _analyse(result, rows)
    result.ok_points = len({r["point_key"] for r in rows if r["status"] == "ok"})
    result.wall_seconds = round(time.perf_counter() - started, 1)
    with progress.step("output: pareto.csv, explore.json, figures"):
        _write_outputs(plan.out_path, result, rows, plan.definition)
    return result


def _claim(rdb: ResultsDB, plan: Plan) -> None:
    """Record the exploration in a new database; in a used one, check it is the same."""
    stored = rdb.meta().get("definition")
    if stored is not None and stored != plan.definition:
        differ = sorted(k for k in plan.definition if stored.get(k) != plan.definition[k])
        raise WavecoreError(
            f"--db {plan.db_path!r} holds another exploration (it differs in "
            f"{', '.join(differ)}); give a new --db, or the options that made it"
        )
    rdb.set_meta(definition=plan.definition, params=plan.space.names)


def _phases(model: str) -> list[str]:
    return {"analytical": ["analytical"], "cycle": ["cycle"], "both": ["analytical", "referee"]}[
        model
    ]


def _run_phase(
    rdb: ResultsDB,
    designs: Sequence[Design],
    model: str,
    network: str,
    label: str,
    get_pool: Callable[[], Executor],
    progress: Progress,
) -> PhaseCount:
    done = rdb.done(model)
    todo = [d for d in designs if d.key not in done]
    count = PhaseCount(skipped=len(designs) - len(todo))
    if count.skipped:
        progress.note(
            f"explore {model}: {count.skipped} of {len(designs)} points are in the database "
            "already; running the other " + str(len(todo))
        )
    by_key = {d.key: d for d in designs}

    def commit(records: list[dict[str, Any]]) -> None:
        count.ran += rdb.add(db_row(by_key[r["key"]], r, label) for r in records)

    evaluate_designs(todo, network, model, get_pool, commit, progress, f"explore {model}")
    count.failed = sum(
        1 for r in rdb.rows(model) if r["point_key"] in by_key and r["status"] != "ok"
    )
    return count


def _objective_rows(
    rows: Sequence[dict[str, Any]], objectives: Sequence[str]
) -> list[dict[str, Any]]:
    return [
        r for r in rows if r["status"] == "ok" and all(r.get(o) is not None for o in objectives)
    ]


def _front(rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> list[dict[str, Any]]:
    ok = _objective_rows(rows, objectives)
    idx = pareto_front([[float(r[o]) for o in objectives] for r in ok])
    return sorted((ok[i] for i in idx), key=lambda r: (r["seconds"], r["point_index"]))


def _referee_set(
    rdb: ResultsDB, designs: Sequence[Design], objectives: Sequence[str], top: int
) -> list[Design]:
    """The analytical front and the ``top`` fastest points: what ``both`` simulates."""
    keys = {d.key for d in designs}
    rows = [r for r in rdb.rows("analytical") if r["point_key"] in keys]
    chosen = {r["point_key"] for r in _front(rows, objectives)}
    fastest = sorted(
        _objective_rows(rows, ["seconds"]), key=lambda r: (r["seconds"], r["point_index"])
    )
    chosen.update(r["point_key"] for r in fastest[:top])
    return [d for d in designs if d.key in chosen]


def _analyse(result: ExploreResult, rows: list[dict[str, Any]]) -> None:
    """The final front and, for ``both``, the refereed pairs and Kendall's tau."""
    by_model: dict[str, list[dict[str, Any]]] = {m: [] for m in MODELS}
    for r in rows:
        by_model[r["model"]].append(r)
    if result.model == "both":
        estimates = {r["point_key"]: r for r in by_model["analytical"]}
        sims = [r for r in by_model["cycle"] if r["status"] == "ok"]
        pairs = [
            (estimates[s["point_key"]], s)
            for s in sims
            if s["point_key"] in estimates and estimates[s["point_key"]]["status"] == "ok"
        ]
        result.refereed = sorted(pairs, key=lambda p: p[0]["point_index"])
        if len(pairs) >= 2:
            result.tau = kendall_tau(
                [a["seconds"] for a, _ in result.refereed],
                [c["seconds"] for _, c in result.refereed],
            )
        result.front = _front(sims, result.objectives)
    else:
        result.front = _front(by_model[result.model], result.objectives)


def _front_rows_for_csv(result: ExploreResult) -> list[dict[str, Any]]:
    estimates = {a["point_key"]: a for a, _ in result.refereed}
    est_rank = {}
    if result.refereed:
        r_a = ranks([a["seconds"] for a, _ in result.refereed])
        r_c = ranks([c["seconds"] for _, c in result.refereed])
        for (a, _), ra, rc in zip(result.refereed, r_a, r_c, strict=True):
            est_rank[a["point_key"]] = (ra, rc)
    out = []
    for r in result.front:
        row: dict[str, Any] = {
            "point_index": r["point_index"],
            "point_key": r["point_key"],
            "model": r["model"],
            "schedule": r["schedule"],
            "batch": r["batch"],
        }
        row.update({k: v for k, v in r["params"].items() if k not in (SCHEDULE, BATCH)})
        for c in (
            "seconds",
            "cycles",
            "energy_total_j",
            "area_pes",
            "area_buffer_bytes",
            "dram_bytes",
            "dram_peak_bytes",
            "util_overall",
        ):
            row[c] = r[c]
        if result.model == "both":
            a = estimates.get(r["point_key"])
            row["analytical_seconds"] = a["seconds"] if a else None
            row["analytical_energy_total_j"] = a["energy_total_j"] if a else None
            ra, rc = est_rank.get(r["point_key"], (None, None))
            row["analytical_rank"], row["cycle_rank"] = ra, rc
        out.append(row)
    return out


def _write_outputs(
    out_path: Path, result: ExploreResult, rows: list[dict[str, Any]], definition: dict
) -> None:
    from ..report.explore_figures import parameter_figure, pareto_figure

    screen = "cycle" if result.model == "cycle" else "analytical"
    plotted = [
        {**r["params"], **r}
        for r in _objective_rows([r for r in rows if r["model"] == screen], result.objectives)
    ]
    front_keys = {r["point_key"] for r in result.front}
    title = (
        f"{result.network} batch {result.batch}: {len(plotted)} points ({screen}), "
        f"front of {len(front_keys)}"
    )
    swept = [n for n in result.params if n != SCHEDULE]
    names = [*OUTPUT_FILES, *(f"param_{n}.png" for n in swept)]
    doc = {
        "experiment": "explore",
        "definition": definition,
        "model": result.model,
        "objectives": list(result.objectives),
        "points": result.points,
        "requested": result.requested,
        "phases": {m: dataclasses.asdict(c) for m, c in result.phases.items()},
        "front_size": len(result.front),
        "refereed": len(result.refereed),
        "kendall_tau": result.tau,
        "wall_seconds": result.wall_seconds,
        "code_version": result.code_version,
    }
    with OutputDir(out_path) as out:
        front_csv = _front_rows_for_csv(result)
        out.path("pareto.csv").write_text(csv_text(front_csv) if front_csv else "")
        out.path("explore.json").write_text(json.dumps(json_safe(doc), indent=1))
        if plotted:
            pareto_figure(
                plotted,
                front_keys,
                result.refereed,
                title,
                out.path("pareto.png"),
            )
            for n in swept:
                scale = definition["space"][n].get("scale")
                values = [r[n] for r in plotted if isinstance(r[n], int | float)]
                log_x = scale == "log" or (
                    bool(values) and min(values) > 0 and max(values) / min(values) >= 8
                )
                parameter_figure(plotted, n, front_keys, log_x, title, out.path(f"param_{n}.png"))
    result.files = [str(out_path / n) for n in names if (out_path / n).exists()]


# ------------------------------------------------------------------------- showing a DB


def front_table(result: ExploreResult, limit: int | None = None) -> str:
    """The front as a fixed-width table, fastest first (``limit``: at most that many rows)."""
    swept = [n for n in result.params if n != SCHEDULE]
    header = ["#", "schedule", *swept, "ms", "energy J", "PEs", "buffer MiB"]
    if result.model == "both":
        header += ["analytical ms", "error"]
    estimates = {a["point_key"]: a for a, _ in result.refereed}
    lines = []
    for r in result.front[:limit]:
        cells = [
            str(r["point_index"]),
            r["schedule"],
            *(_fmt(n, r["params"].get(n)) for n in swept),
            f"{r['seconds'] * 1e3:.2f}",
            f"{r['energy_total_j']:.3f}",
            f"{r['area_pes']:,}",
            f"{r['area_buffer_bytes'] / 2**20:.2f}",
        ]
        if result.model == "both":
            a = estimates.get(r["point_key"])
            cells += (
                [f"{a['seconds'] * 1e3:.2f}", f"{(a['seconds'] / r['seconds'] - 1) * 100:+.1f}%"]
                if a
                else ["", ""]
            )
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    text = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    text += ["  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    more = len(result.front) - len(lines)
    if more > 0:
        text.append(f"... and {more} more (pareto.csv, or explore --show DB)")
    return "\n".join(text)


def _fmt(name: str, v: Any) -> str:
    """A swept value as a table cell: sizes in MiB, floats short."""
    if name.endswith("_bytes") and isinstance(v, int) and v >= 2**20:
        return f"{v / 2**20:.2f}MiB"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def show(db: str | Path) -> ExploreResult:
    """The exploration stored in ``db`` (read only): its front and agreement, as
    :func:`explore` returned them."""
    with ResultsDB(str(db)) as rdb:
        meta = rdb.meta()
        rows = rdb.rows()
    definition = meta.get("definition") or {}
    model = meta.get("model", "analytical")
    objectives = tuple(meta.get("objectives", DEFAULT_OBJECTIVES))
    result = ExploreResult(
        definition.get("network", "?"),
        definition.get("batch", 0),
        model,
        objectives,
        list(meta.get("params", [])),
        len({r["point_key"] for r in rows}),
        definition.get("samples") or 0,
        {},
        [],
        from_db=True,
    )
    for m in MODELS:
        mine = [r for r in rows if r["model"] == m]
        if mine:
            result.phases[m] = PhaseCount(
                ran=len(mine), failed=sum(r["status"] != "ok" for r in mine)
            )
    _analyse(result, rows)
    result.ok_points = len({r["point_key"] for r in rows if r["status"] == "ok"})
    return result


def describe(result: ExploreResult) -> str:
    """What ``explore`` and ``explore --show`` print: counts, agreement, the front."""
    lines = [
        f"explore {result.network} batch {result.batch}: {result.points} points"
        + (f" ({result.requested} requested)" if result.requested != result.points else "")
    ]
    for m, c in result.phases.items():
        done = (
            f"{c.ran} in the database"
            if result.from_db
            else f"{c.ran} evaluated now, {c.skipped} found in the database"
        )
        lines.append(f"  {m}: {done}, {c.failed} failed")
    if result.model == "both":
        tau = (
            "n/a (fewer than 2 points)"
            if result.tau is None or math.isnan(result.tau)
            else f"{result.tau:.3f}"
        )
        lines.append(
            f"  rank agreement on {len(result.refereed)} refereed points (analytical front "
            f"and fastest): Kendall tau {tau} between analytical and cycle-level seconds"
        )
    lines.append(
        f"Pareto front ({', '.join(result.objectives)}; "
        f"{'cycle level' if result.model != 'analytical' else 'analytical'}): "
        f"{len(result.front)} points"
    )
    if result.front:
        lines.append(front_table(result, limit=None))
    return "\n".join(lines)
