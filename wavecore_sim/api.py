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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compiler import compile_program
from .compiler.tracefile import read_trace, write_trace
from .compiler.verify import verify_program
from .config import HardwareConfig, load_config, parse_set_options
from .errors import WavecoreError
from .ir import Program
from .progress import QUIET, Progress
from .report.summary import build_summary, group_rows, layer_rows, write_csv
from .report.workload_table import network_summary
from .schedule import DEFAULT_NORM, SCHEDULES, SchedulePlan, build_schedule
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
) -> CompileResult:
    """Workload -> training -> schedule -> compiler, verified (``progress``: each stage)."""
    cfg = cfg or make_config()
    norm = norm or default_norm(schedule)
    with progress.step("compile: network and training graph"):
        graph = expand(network, batch, norm, cfg)
    with progress.step(f"compile: schedule {schedule}"):
        plan = build_schedule(graph, schedule, cfg)
    return CompileResult(graph, plan, compile_program(graph, plan, cfg, progress), cfg)


def plan_json(compiled: CompileResult) -> dict[str, Any]:
    """``plan.json``: groups, planned DRAM traffic, instruction counts."""
    program, cfg = compiled.program, compiled.cfg
    rd, wr = program.dram_bytes()
    fp = program.dram_footprint
    return {
        **program.meta,
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


def check_out_dir(out_dir: str | Path) -> Path:
    """Refuse an output directory that cannot be written, in one line, before any work.

    ``''`` is refused (it would mean the current directory); so is a path that is a file, or
    lies under one, and a place where no directory can be made (``/proc``, read-only,
    no permission), found by making and removing an empty probe directory there: nothing is
    left behind whether the check passes or not."""
    text = str(out_dir)
    if not text.strip():
        raise WavecoreError("--out '' is empty; give a directory name (--out . for this one)")
    if "\0" in text:
        raise WavecoreError(f"--out {text!r} contains a NUL character; give a directory name")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise WavecoreError(f"--out {text!r} is a file; give a directory")
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


class OutputDir:
    """Write a run's files into a hidden staging folder, then move them in on success, so a
    failed run leaves no half-written output behind."""

    def __init__(self, out_dir: str | Path) -> None:
        self.final = check_out_dir(out_dir)
        if self.final.exists() and not self.final.is_dir():
            raise WavecoreError(f"--out {str(self.final)!r} is a file; give a directory")
        self.final.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=".wavecore-", dir=self.final))

    def path(self, name: str) -> Path:
        return self.tmp / name

    def commit(self) -> None:
        for item in self.tmp.iterdir():
            item.replace(self.final / item.name)
        self.tmp.rmdir()

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def compile_to(out_dir: str | Path, **kwargs: Any) -> CompileResult:
    """Compile and write ``plan.json`` and the instruction trace to ``out_dir``."""
    check_out_dir(out_dir)  # before any work
    compiled = compile_network(**kwargs)
    out = OutputDir(out_dir)
    try:
        (out.path("plan.json")).write_text(json.dumps(plan_json(compiled), indent=1))
        write_trace(compiled.program, out.tmp)
        out.commit()
    except BaseException:
        out.abort()
        raise
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


def _plot_worker(conn: Any, other_end: Any) -> None:
    """The plotter process: import matplotlib now, draw when the data arrives."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us
    other_end.close()
    try:
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401

        from .report.timeline import draw_timeline

        data, path = conn.recv()
    except (EOFError, OSError):
        return  # the parent finished without a figure to draw
    try:
        draw_timeline(data, path)
        conn.send(None)
    except BaseException as exc:  # reported by the parent, as one line
        conn.send(f"{type(exc).__name__}: {exc}")


class _Plotter:
    """Draws timeline.png in a child process forked before the work starts, so importing
    matplotlib (~0.45 s) and drawing (~0.5 s) overlap the compile, the simulation and the
    writing of trace.json on another core instead of adding to the wall time. The child gets
    only the binned data (:class:`~.report.timeline.TimelineData`, a few hundred KB). Where
    ``fork`` is unavailable, or with ``background=False``, it draws in this process."""

    def __init__(self, background: bool = True) -> None:
        self.conn: Any = None
        self.proc: Any = None
        self.sent = False
        if not background:
            return
        import multiprocessing
        import sys

        if "fork" not in multiprocessing.get_all_start_methods():
            return
        ctx = multiprocessing.get_context("fork")
        sys.stdout.flush()  # nothing buffered may be written twice
        sys.stderr.flush()
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_plot_worker, args=(child, parent), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def draw(self, program: Program, cfg: HardwareConfig, result: SimResult, path: Path) -> None:
        from .report.timeline import draw_timeline, timeline_data

        data = timeline_data(program, cfg, result)
        if self.conn is None:
            draw_timeline(data, path)  # imports matplotlib here
        else:
            self.conn.send((data, str(path)))
            self.sent = True

    def wait(self) -> None:
        """Wait for the drawing; raise if it failed."""
        error = None
        if self.sent:
            try:
                error = self.conn.recv()
            except (EOFError, OSError):
                error = "the drawing process exited unexpectedly"
            self.sent = False
        self.close()
        if error:
            raise RuntimeError(f"drawing timeline.png failed: {error}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join()
            self.conn = self.proc = None


def write_run_outputs(
    out_dir: str | Path,
    program: Program,
    cfg: HardwareConfig,
    result: SimResult,
    summary: dict[str, Any],
    plots: bool = True,
    trace_json: bool = True,
    plotter: _Plotter | None = None,
    progress: Progress = QUIET,
) -> None:
    """summary.json, layers.csv, groups.csv, timeline.png (``plots``) and trace.json
    (``trace_json``), atomically: all of them or none. ``plotter``: draws the PNG (by default
    in this process). summary.json is written last, so its ``stage_seconds.outputs`` covers
    the other files."""
    started = time.perf_counter()
    out = OutputDir(out_dir)
    plotter = plotter or _Plotter(background=False)
    try:
        if plots:
            with progress.step("output: timeline.png data"):
                plotter.draw(program, cfg, result, out.path("timeline.png"))
        with progress.step("output: layers.csv, groups.csv"):
            write_csv(out.path("layers.csv"), layer_rows(program, cfg, result))
            write_csv(out.path("groups.csv"), group_rows(program, cfg, result))
        if trace_json:
            from .report.perfetto import write_perfetto

            with progress.step("output: trace.json"):
                write_perfetto(program, cfg, result, out.path("trace.json"))
        if plots:
            with progress.step("output: timeline.png"):
                plotter.wait()
        summary.setdefault("stage_seconds", {})["outputs"] = round(time.perf_counter() - started, 3)
        out.path("summary.json").write_text(json.dumps(summary, indent=1))
        out.commit()
    except BaseException:
        plotter.close()
        out.abort()
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
) -> RunResult:
    """Compile and simulate one training iteration; write the outputs if ``out_dir``
    (``plots=False``: no timeline.png; ``trace_json=False``: no trace.json).

    ``summary["stage_seconds"]`` splits this call's wall time into ``compile``,
    ``simulate`` (with the summary) and ``outputs``; ``wall_seconds`` is compile and simulate
    (the command line's digest reports the whole process: ``progress.process_seconds``)."""
    started = time.perf_counter()
    if out_dir is not None:
        check_out_dir(out_dir)  # before any work
    plotter = _Plotter(background=out_dir is not None and plots)
    try:
        compiled = compile_network(network, batch, schedule, norm, cfg, progress)
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
) -> ValidationResult:
    """Run the analytical model and the simulator on the same program and compare them."""
    from .analytical import analyze
    from .report.validation import error_stats, plot_validation, validation_rows

    if out_dir is not None:
        check_out_dir(out_dir)  # before any work
    compiled = compile_network(network, batch, schedule, norm, cfg, progress)
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
        out = OutputDir(out_dir)
        try:
            write_csv(out.path("validation.csv"), rows)
            out.path("validation.json").write_text(json.dumps(stats, indent=1))
            title = f"{program.meta['network']} batch {batch} {schedule}"
            with progress.step("output: validation.png"):
                plot_validation(rows, stats, title, out.path("validation.png"))
            out.commit()
        except BaseException:
            out.abort()
            raise
    return ValidationResult(rows, stats, analytical.cycles, result.cycles, bytes_match)


def simulate_trace(
    trace: str | Path,
    cfg: HardwareConfig | None = None,
    out_dir: str | Path | None = None,
    progress: Progress = QUIET,
    plots: bool = True,
    trace_json: bool = True,
) -> RunResult:
    """Simulate a trace written by ``compile``, with its own config unless one is given;
    write the outputs if ``out_dir`` (``plots``, ``trace_json``: as for :func:`run`)."""
    if out_dir is not None:
        check_out_dir(out_dir)  # before any work
    plotter = _Plotter(background=out_dir is not None and plots)
    try:
        return _simulate_trace(trace, cfg, out_dir, progress, plots, trace_json, plotter)
    finally:
        plotter.close()


def _simulate_trace(
    trace: str | Path,
    cfg: HardwareConfig | None,
    out_dir: str | Path | None,
    progress: Progress,
    plots: bool,
    trace_json: bool,
    plotter: _Plotter,
) -> RunResult:
    with progress.step("read trace"):
        program = read_trace(trace)
    if cfg is None:
        stored = program.meta.get("config")
        cfg = make_config(set_options=stored) if stored else make_config()
    if program.gbuf_bytes != cfg.gbuf_bytes:
        raise WavecoreError(
            f"the trace was compiled for gbuf_bytes={program.gbuf_bytes}, the "
            f"config has {cfg.gbuf_bytes}; recompile or use the same config"
        )
    with progress.step("verify"):
        verify_program(program, cfg)
    result, summary = simulate_program(program, cfg, progress)
    if out_dir is not None:
        write_run_outputs(
            out_dir, program, cfg, result, summary, plots, trace_json, plotter, progress
        )
    return RunResult(summary, program, result, cfg, Path(out_dir) if out_dir else None)
