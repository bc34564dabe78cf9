"""The Python API. The CLI calls exactly these functions; so can users and notebooks.

Typical use::

    from wavecore_sim import api
    out = api.run("resnet50", batch=32, schedule="mbs2", out_dir="runs/r50")
    print(out.summary["cycles"], out.summary["dram_bytes"])
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compiler import compile_program
from .compiler.dram import plan_dram
from .compiler.tracefile import FILENAME, read_trace, write_trace
from .compiler.verify import verify_program
from .config import (
    EXECUTION_ONLY_FIELDS,
    HardwareConfig,
    apply_overrides,
    load_config,
    parse_set_options,
    program_changes,
)
from .errors import WavecoreError
from .ir import Program
from .progress import QUIET, Progress
from .referee import RefereeResult
from .referee import referee as referee_plans
from .report.plan_table import plan_choices
from .report.plotter import TimelinePlotter
from .report.summary import build_summary, group_rows, layer_rows, write_csv
from .report.workload_table import network_summary
from .schedule import DEFAULT_NORM, SCHEDULES, SchedulePlan, build_schedule, check_recompute
from .schedule_opt import Footprint
from .sim import SimResult, simulate
from .training import TrainingGraph, expand_training
from .workload import Network, list_networks, load_network

__all__ = [
    "CompileResult",
    "OutputDir",
    "RunResult",
    "check_out_dir",
    "compile_network",
    "describe_network",
    "expand",
    "import_onnx",
    "list_networks",
    "load_network",
    "make_config",
    "parse_set_options",
    "plan_schedule",
    "run",
    "simulate_program",
    "simulate_trace",
]


def use_fast_gc() -> None:
    """Collect garbage less often. A compiled program is about a million long-lived objects
    (instructions, accesses, plans); with Python's default thresholds the collector rescans
    them again and again while they are built: ResNet-50 ``mbs2`` compiled in 7.5 s with the
    defaults and 5.5 s with these (same machine, same run). The CLI, the benchmarks and the
    experiment workers call this; the library alone leaves the interpreter's settings."""
    gc.set_threshold(100_000, 50, 100)


def make_config(
    preset: str = "wavecore",
    config_file: str | None = None,
    set_options: list[str] | dict[str, Any] | None = None,
) -> HardwareConfig:
    """A validated hardware config from a preset, a TOML file and FIELD=VALUE overrides."""
    overrides = set_options if isinstance(set_options, dict) else parse_set_options(set_options)
    return load_config(preset, config_file, overrides)


def expand(
    network: str | Network, batch: int, norm: str = "bn", cfg: HardwareConfig | None = None
) -> TrainingGraph:
    """Load (if given a name) and expand a network into one training iteration."""
    net = network if isinstance(network, Network) else load_network(network, norm=norm)
    return expand_training(net, batch, cfg or make_config())


def import_onnx(
    model: str | Path, out: str | Path | None = None, name: str | None = None
) -> dict[str, Any]:
    """Convert an ONNX model to a ``wavecore-network/1`` spec; write it to ``out`` if given.

    Needs the ``onnx`` extra; the file is written only when the whole model converted."""
    from .onnx_import import write_spec
    from .workload import load_onnx

    _, spec = load_onnx(model, name=name)  # builds and checks the network before writing
    if out is not None:
        write_spec(spec, out)
    return spec


def describe_network(name: str, batch: int = 32, norm: str = "bn") -> dict[str, Any]:
    """The ``workloads show`` summary of a network as plain data."""
    return network_summary(expand(name, batch, norm))


@dataclass
class CompileResult:
    graph: TrainingGraph
    plan: SchedulePlan
    program: Program
    cfg: HardwareConfig


def default_norm(schedule: str) -> str:
    if schedule not in SCHEDULES:
        raise WavecoreError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    return DEFAULT_NORM[schedule]


def compile_network(
    network: str | Network = "resnet50",
    batch: int = 32,
    schedule: str = "mbs2",
    norm: str | None = None,
    cfg: HardwareConfig | None = None,
    progress: Progress = QUIET,
    *,
    verify: bool = True,
    recompute: str = "none",
    objective: str = "time",
    referee: int = 0,
) -> CompileResult:
    """Workload -> training -> schedule -> compiler, verified (``progress``: each stage;
    ``verify=False``: unverified, for analytical screening only, see ``compile_program``;
    ``recompute``: none, all or auto on the MBS schedules; ``objective``: what ``mbs-opt``
    minimises, time, traffic or energy; ``referee``: ``mbs-opt`` simulates that many of its best
    plans and the alternatives of :mod:`referee` and keeps the best as simulated)."""
    cfg = cfg or make_config()
    norm = norm or default_norm(schedule)
    check_recompute(schedule, recompute)  # before any work
    check_referee(schedule, referee)
    with progress.step("compile: network and training graph"):
        graph = expand(network, batch, norm, cfg)
    if referee:
        refereed = run_referee(graph, cfg, recompute, objective, referee, progress, verify)
        plan, program = refereed.plan, refereed.program
        program.meta["referee"] = [c.row() for c in refereed.candidates]
        program.meta["refereed"] = refereed.chosen
    else:
        with progress.step(f"compile: schedule {schedule}"):
            plan = plan_schedule(graph, schedule, cfg, recompute, objective)
        program = compile_program(graph, plan, cfg, progress, verify=verify)
    program.meta["recompute"] = recompute
    if schedule == "mbs-opt":
        program.meta["objective"] = objective
    return CompileResult(graph, plan, program, cfg)


def plan_schedule(
    graph: TrainingGraph,
    schedule: str,
    cfg: HardwareConfig,
    recompute: str = "none",
    objective: str = "time",
) -> SchedulePlan:
    """The schedule of ``graph``; a plan's DRAM footprint (which ``mbs-opt`` keeps within
    ``hbm_bytes``) is measured by the compiler's own DRAM plan."""
    return build_schedule(
        graph,
        schedule,
        cfg,
        recompute,
        objective,
        footprint=_footprint(graph, cfg),
    )


def _footprint(graph: TrainingGraph, cfg: HardwareConfig) -> Footprint:
    """A plan's DRAM footprint as the compiler's DRAM plan measures it."""
    return lambda p: plan_dram(graph, p, cfg, refuse=False).footprint.peak_bytes


def check_referee(schedule: str, referee: int) -> None:
    """Refuse ``--referee`` on a schedule without a search, or a count below 0."""
    if referee < 0:
        raise WavecoreError(f"--referee {referee}: give the number of plans to simulate (>= 1)")
    if referee and schedule != "mbs-opt":
        raise WavecoreError(
            f"--referee simulates the plans of mbs-opt's search; {schedule} has one plan "
            "(use --schedule mbs-opt)"
        )


def run_referee(
    graph: TrainingGraph,
    cfg: HardwareConfig,
    recompute: str,
    objective: str,
    count: int,
    progress: Progress = QUIET,
    verify: bool = True,
) -> RefereeResult:
    """``mbs-opt``'s short list compiled and simulated (:mod:`referee`), each plan's DRAM
    footprint measured by the compiler's DRAM plan as in :func:`plan_schedule`."""
    return referee_plans(
        graph, cfg, recompute, objective, count, _footprint(graph, cfg), progress, verify
    )


def plan_json(compiled: CompileResult) -> dict[str, Any]:
    """``plan.json``: groups, planned DRAM traffic, instruction counts."""
    program, cfg = compiled.program, compiled.cfg
    rd, wr = program.dram_bytes()
    fp = program.dram_footprint
    return {
        **program.meta,
        # --recompute (MBS schedules) and --objective (mbs-opt), None where they do not apply
        **plan_choices(program.meta, [g.recompute for g in program.groups]),
        "gbuf_bytes": cfg.gbuf_bytes,
        "groups": [
            {
                "index": g.index,
                "layers": g.layers,
                "sub_batch": g.sub_batch,
                "sub_batches": g.sub_batches,
                "footprint_bytes": g.footprint_bytes,
                "weights_resident": g.weights_resident,
                "wgrad_resident": g.wgrad_resident,
                "recompute": g.recompute,
            }
            for g in program.groups
        ],
        "dram_read_bytes": rd,
        "dram_write_bytes": wr,
        "dram_by_kind": program.planned,
        "dram_peak_bytes": fp.peak_bytes if fp else None,
        "dram_footprint_by_kind": dict(fp.by_kind) if fp else {},
        "instructions": len(program),
        "instructions_by_op": program.counts_by_op(),
        "units": program.unit_names,
        "config": cfg.to_dict(),
    }


def check_out_dir(out_dir: str | Path, names: Sequence[str] = ()) -> Path:
    """Refuse an output directory that cannot be written, in one line, before any work.

    ``''`` is refused (it would mean the current directory); so is a path that is a file, or
    lies under one, a place where no directory can be made (``/proc``, read-only,
    no permission), found by making and removing an empty probe directory there (nothing is
    left behind whether the check passes or not), and a directory already holding a
    directory under one of the file ``names`` the run will write (it could not be replaced)."""
    text = str(out_dir)
    if not text.strip():
        raise WavecoreError("--out '' is empty; give a directory name (--out . for this one)")
    if "\0" in text:
        raise WavecoreError(f"--out {text!r} contains a NUL character; give a directory name")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise WavecoreError(f"--out {text!r} is a file; give a directory")
    for name in names:
        if (path / name).is_dir():
            raise WavecoreError(
                f"--out {text!r} holds a directory named {name}, a file this run writes; "
                "remove it or give another --out"
            )
    base = path
    while not base.exists() and base != base.parent:
        base = base.parent  # the nearest existing ancestor, where the directory would be made
    if not base.is_dir():
        raise WavecoreError(
            f"--out {text!r}: {str(base)!r} is a file, not a directory; give a path under a "
            "directory"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".wavecore-probe-", dir=base))
    except OSError as exc:
        raise WavecoreError(
            f"--out {text!r}: cannot create a directory in {str(base)!r} "
            f"({exc.strerror or exc}); give a writable directory"
        ) from None
    return path


#: Test hook (tests/test_hostile_traces.py): seconds to pause after each output file is
#: staged, so a test can send a signal while outputs are being written. Never set otherwise.
SLOW_OUTPUT_ENV = "WAVECORE_SIM_TEST_SLOW_OUTPUT"


class OutputDir:
    """Stage a run's files in a hidden folder and move them into place only when all are
    written, so a failure (an error, a full disk, SIGINT, SIGTERM: the CLI turns both
    signals into exceptions) leaves neither partial files nor the staging folder behind.

    A directory that does not exist yet is staged beside it and renamed into place in one
    step; into an existing one (other files kept) the files are moved with SIGINT and SIGTERM
    held off until the last is in. Directories made on the way (``--out a/b/c``) are removed
    again on failure. Use as a context manager: commit on success, abort on any exception."""

    def __init__(self, out_dir: str | Path, names: Sequence[str] = ()) -> None:
        self.final = check_out_dir(out_dir, names)
        self.fresh = not self.final.exists()
        home = self.final.parent if self.fresh else self.final
        self.made: list[Path] = []  # ancestors this run creates, deepest last
        for parent in reversed([home, *home.parents]):
            if not parent.exists():
                parent.mkdir()
                self.made.append(parent)
        self.tmp = home / f".wavecore-{os.getpid()}-{os.urandom(4).hex()}"
        self.tmp.mkdir()

    def path(self, name: str) -> Path:
        """Where to write output file ``name`` (in the staging folder)."""
        return self.tmp / name

    def staged(self, name: str) -> None:
        """Note that ``name`` is written (the test hook :data:`SLOW_OUTPUT_ENV` pauses here)."""
        delay = os.environ.get(SLOW_OUTPUT_ENV)
        if delay:
            time.sleep(float(delay))

    def commit(self) -> None:
        """Move the staged files into place, as one step where the directory is new."""
        import signal

        held = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            if self.fresh and not self.final.exists():
                self.tmp.rename(self.final)
            else:
                self.final.mkdir(exist_ok=True)
                for item in sorted(self.tmp.iterdir()):
                    item.replace(self.final / item.name)
                self.tmp.rmdir()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def abort(self) -> None:
        """Remove the staging folder and the directories this run made (if still empty)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        for parent in reversed(self.made):
            try:
                parent.rmdir()
            except OSError:
                break  # something else was put there meanwhile: keep it

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.commit()
            return
        self.abort()
        if isinstance(exc, OSError) and (
            exc.filename is None or self.tmp in Path(exc.filename).parents
        ):
            # name the file where the user will look for it, not in the staging folder
            staged = Path(exc.filename) if exc.filename else self.tmp
            exc.filename = str(self.final / staged.relative_to(self.tmp))


#: The files each command writes into its output directory.
COMPILE_FILES = ("plan.json", FILENAME)
VALIDATE_FILES = ("validation.csv", "validation.json", "validation.png")


def run_files(plots: bool = True, trace_json: bool = True) -> tuple[str, ...]:
    """The files ``run`` and ``simulate`` write (``plots``: timeline.png; ``trace_json``)."""
    return (
        "summary.json",
        "layers.csv",
        "groups.csv",
        *(["timeline.png"] if plots else []),
        *(["trace.json"] if trace_json else []),
    )


def compile_to(out_dir: str | Path, **kwargs: Any) -> CompileResult:
    """Compile and write ``plan.json`` and the instruction trace to ``out_dir``."""
    check_out_dir(out_dir, COMPILE_FILES)  # before any work
    compiled = compile_network(**kwargs)
    with OutputDir(out_dir, COMPILE_FILES) as out:
        out.path("plan.json").write_text(json.dumps(plan_json(compiled), indent=1))
        out.staged("plan.json")
        write_trace(compiled.program, out.tmp)
        out.staged(FILENAME)
    return compiled


@dataclass
class RunResult:
    summary: dict[str, Any]
    program: Program
    result: SimResult
    cfg: HardwareConfig
    out_dir: Path | None


def simulate_program(
    program: Program, cfg: HardwareConfig, progress: Progress = QUIET, ideal_memory: bool = False
) -> tuple[SimResult, dict[str, Any]]:
    """Simulate a compiled program; return the raw result and the summary."""
    started = time.perf_counter()
    with progress.step("simulate", total=len(program), unit="instructions") as task:
        result = simulate(program, cfg, ideal_memory=ideal_memory, on_progress=task.update)
    return result, build_summary(program, cfg, result, time.perf_counter() - started)


def write_run_outputs(
    out_dir: str | Path,
    program: Program,
    cfg: HardwareConfig,
    result: SimResult,
    summary: dict[str, Any],
    plots: bool = True,
    trace_json: bool = True,
    plotter: TimelinePlotter | None = None,
    progress: Progress = QUIET,
) -> None:
    """summary.json, layers.csv, groups.csv, timeline.png (``plots``) and trace.json
    (``trace_json``), atomically: all of them or none. ``plotter``: draws the PNG (by default
    in this process). summary.json is written last, so its ``stage_seconds.outputs`` covers
    the other files."""
    started = time.perf_counter()
    plotter = plotter or TimelinePlotter(background=False)
    try:
        with OutputDir(out_dir, run_files(plots, trace_json)) as out:
            if plots:
                with progress.step("output: timeline.png data"):
                    plotter.draw(program, cfg, result, out.path("timeline.png"))
            with progress.step("output: layers.csv, groups.csv"):
                write_csv(out.path("layers.csv"), layer_rows(program, cfg, result))
                out.staged("layers.csv")
                write_csv(out.path("groups.csv"), group_rows(program, cfg, result))
                out.staged("groups.csv")
            if trace_json:
                from .report.perfetto import write_perfetto

                with progress.step("output: trace.json"):
                    write_perfetto(program, cfg, result, out.path("trace.json"))
                    out.staged("trace.json")
            if plots:
                with progress.step("output: timeline.png"):
                    plotter.wait()
            stage = summary.setdefault("stage_seconds", {})
            stage["outputs"] = round(time.perf_counter() - started, 3)
            out.path("summary.json").write_text(json.dumps(summary, indent=1))
    except BaseException:
        plotter.close(wait=0)  # its figure is not wanted any more
        raise


def run(
    network: str | Network = "resnet50",
    batch: int = 32,
    schedule: str = "mbs2",
    norm: str | None = None,
    cfg: HardwareConfig | None = None,
    out_dir: str | Path | None = None,
    progress: Progress = QUIET,
    plots: bool = True,
    trace_json: bool = True,
    recompute: str = "none",
    objective: str = "time",
    referee: int = 0,
) -> RunResult:
    """Compile and simulate one training iteration; write the outputs if ``out_dir``
    (``plots=False``: no timeline.png; ``trace_json=False``: no trace.json; ``recompute``,
    ``objective`` and ``referee`` as in :func:`compile_network`).

    ``summary["stage_seconds"]`` splits this call's wall time into ``compile``,
    ``simulate`` (with the summary) and ``outputs``; ``wall_seconds`` is compile and simulate
    (the command line's digest reports the whole process: ``progress.process_seconds``)."""
    started = time.perf_counter()
    if out_dir is not None:
        check_out_dir(out_dir, run_files(plots, trace_json))  # before any work
    plotter = TimelinePlotter(background=out_dir is not None and plots)
    try:
        compiled = compile_network(
            network,
            batch,
            schedule,
            norm,
            cfg,
            progress,
            recompute=recompute,
            objective=objective,
            referee=referee,
        )
        compiled_at = time.perf_counter()
        result, summary = simulate_program(compiled.program, compiled.cfg, progress)
        summary["stage_seconds"] = {
            "compile": round(compiled_at - started, 3),
            "simulate": round(time.perf_counter() - compiled_at, 3),
        }
        summary["wall_seconds"] = round(time.perf_counter() - started, 3)
        if out_dir is not None:
            write_run_outputs(
                out_dir,
                compiled.program,
                compiled.cfg,
                result,
                summary,
                plots,
                trace_json,
                plotter,
                progress,
            )
    finally:
        plotter.close()
    return RunResult(
        summary, compiled.program, result, compiled.cfg, Path(out_dir) if out_dir else None
    )


@dataclass
class ValidationResult:
    rows: list[dict[str, Any]]
    stats: dict[str, Any]
    analytical_cycles: int
    simulated_cycles: int
    bytes_match: bool


def validate(
    network: str | Network = "resnet50",
    batch: int = 32,
    schedule: str = "mbs2",
    norm: str | None = None,
    cfg: HardwareConfig | None = None,
    out_dir: str | Path | None = None,
    progress: Progress = QUIET,
    recompute: str = "none",
    objective: str = "time",
    referee: int = 0,
) -> ValidationResult:
    """Run the analytical model and the simulator on the same program and compare them."""
    from .analytical import analyze
    from .report.validation import error_stats, plot_validation, validation_rows

    if out_dir is not None:
        check_out_dir(out_dir, VALIDATE_FILES)  # before any work
    compiled = compile_network(
        network,
        batch,
        schedule,
        norm,
        cfg,
        progress,
        recompute=recompute,
        objective=objective,
        referee=referee,
    )
    program, cfg = compiled.program, compiled.cfg
    with progress.step("analytical model"):
        analytical = analyze(program, cfg)
    with progress.step("simulate", total=len(program), unit="instructions") as task:
        result = simulate(program, cfg, on_progress=task.update)
    rows = validation_rows(program, analytical, result)
    stats = error_stats(rows)
    bytes_match = all(
        r["analytical_dram_read_bytes"] == r["simulated_dram_read_bytes"]
        and r["analytical_dram_write_bytes"] == r["simulated_dram_write_bytes"]
        for r in rows
    ) and (analytical.dram_read_bytes, analytical.dram_write_bytes) == (
        result.dram_read_bytes,
        result.dram_write_bytes,
    )
    stats.update(
        {
            "analytical_cycles": analytical.cycles,
            "simulated_cycles": result.cycles,
            "total_error_pct": round(
                100.0 * (analytical.cycles - result.cycles) / max(result.cycles, 1), 3
            ),
            "dram_bytes_match": bytes_match,
            "analytical_by_bound": analytical.by_bound,
        }
    )
    if out_dir is not None:
        with OutputDir(out_dir, VALIDATE_FILES) as out:
            write_csv(out.path("validation.csv"), rows)
            out.path("validation.json").write_text(json.dumps(stats, indent=1))
            title = f"{program.meta['network']} batch {batch} {schedule}"
            with progress.step("output: validation.png"):
                plot_validation(rows, stats, title, out.path("validation.png"))
    return ValidationResult(rows, stats, analytical.cycles, result.cycles, bytes_match)


def simulate_trace(
    trace: str | Path,
    cfg: HardwareConfig | None = None,
    out_dir: str | Path | None = None,
    progress: Progress = QUIET,
    plots: bool = True,
    trace_json: bool = True,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    set_options: list[str] | dict[str, Any] | None = None,
) -> RunResult:
    """Simulate a trace written by ``compile`` on the config it was compiled for; write the
    outputs if ``out_dir`` (``plots``, ``trace_json``: as for :func:`run`).

    ``set_options`` may change only :data:`~.config.EXECUTION_ONLY_FIELDS` of that config;
    ``cfg``, or ``preset``/``config_file`` (with ``set_options`` on top), name a whole machine,
    which must agree with the trace's in every field the program depends on
    (:func:`trace_config`)."""
    if out_dir is not None:
        check_out_dir(out_dir, run_files(plots, trace_json))  # before any work
    plotter = TimelinePlotter(background=out_dir is not None and plots)
    try:
        with progress.step("read trace"):
            program = read_trace(trace)
        cfg = trace_config(program, str(trace), cfg, preset, config_file, set_options)
        with progress.step("verify"):
            verify_program(program, cfg)
        result, summary = simulate_program(program, cfg, progress)
        if out_dir is not None:
            write_run_outputs(
                out_dir, program, cfg, result, summary, plots, trace_json, plotter, progress
            )
    finally:
        plotter.close()
    return RunResult(summary, program, result, cfg, Path(out_dir) if out_dir else None)


def compiled_config(program: Program, where: str) -> HardwareConfig | None:
    """The config a program was compiled for (``meta["config"]``, every field), validated;
    None for a program that does not record one (built by hand)."""
    stored = program.meta.get("config")
    if stored is None:
        return None
    fix = "recompile it with `wavecore-sim compile`"
    if not isinstance(stored, dict):
        raise WavecoreError(f"trace {where}: its config is not a table of fields; {fix}")
    names = set(HardwareConfig().to_dict())
    # an execution-only field added after the trace was written takes its default
    missing = sorted(names - set(stored) - EXECUTION_ONLY_FIELDS)
    unknown = sorted(set(stored) - names)
    if missing or unknown:
        what = f"lacks {', '.join(missing[:3])}" if missing else f"has unknown {unknown[0]!r}"
        raise WavecoreError(f"trace {where}: its config {what}; {fix}")
    try:
        return apply_overrides(HardwareConfig(), stored, "its config")
    except WavecoreError as exc:
        raise WavecoreError(f"trace {where}: {exc}; {fix}") from None


def trace_config(
    program: Program,
    where: str,
    cfg: HardwareConfig | None = None,
    preset: str | None = None,
    config_file: str | Path | None = None,
    set_options: list[str] | dict[str, Any] | None = None,
) -> HardwareConfig:
    """The machine to simulate a compiled program on: its own config with ``set_options``
    applied, or ``cfg``, or ``preset``/``config_file`` with ``set_options``. Whatever is asked
    must leave unchanged every field the compiled program depends on
    (:func:`~.config.program_changes`); otherwise one line names the fields and the fix."""
    compiled = compiled_config(program, where)
    overrides = set_options if isinstance(set_options, dict) else parse_set_options(set_options)
    source = "--set"
    if cfg is None and (preset is not None or config_file is not None or compiled is None):
        cfg = load_config(preset or "wavecore", config_file, overrides)
        source = " ".join(
            ([f"--preset {preset}"] if preset else [])
            + ([f"--config {Path(config_file).name}"] if config_file else [])
            + [f"--set {k}={v}" for k, v in overrides.items()]
        )
    elif cfg is None:
        cfg = apply_overrides(compiled, overrides, "--set")
    else:
        source = "with the config given"
    if compiled is None:
        if program.gbuf_bytes != cfg.gbuf_bytes:
            raise WavecoreError(
                f"trace {where} was compiled for gbuf_bytes={program.gbuf_bytes}, the config "
                f"has {cfg.gbuf_bytes}; recompile it or use the same config"
            )
        return cfg
    changed = program_changes(compiled, cfg)
    if not changed:
        return cfg
    diff = "; ".join(f"{k} {getattr(compiled, k)}, not {getattr(cfg, k)}" for k in changed[:2])
    more = f"; {len(changed) - 2} more" if len(changed) > 2 else ""
    if source == "--set":
        sets = " ".join(f"--set {k}={getattr(cfg, k)}" for k in changed)
        fix = f"`wavecore-sim compile {sets}` (simulate --set takes execution-only fields only)"
    else:
        fix = "those options, or leave them out to run on the trace's own config"
    raise WavecoreError(
        f"trace {where} was compiled for {diff}{more}: {source} would change the program; "
        f"recompile with {fix}"
    )
