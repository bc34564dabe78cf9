"""Evaluating design points, in a worker: one compile per program, then one model per point.

A :class:`Job` is a set of points that compile to the same program (same network, batch,
schedule, normalization and :func:`~wavecore_sim.config.program_key`): the compile cache of
``explore``. Its worker compiles once and runs the chosen model on every point under that
point's own config (execution-only fields such as HBM timings or energy constants differ
between them). What comes back is one plain record per point; nothing here touches the
results database, so any executor (local processes, Dask) can run jobs.

The models:

* ``analytical``: :func:`wavecore_sim.analytical.analyze` on the compiled program, which is
  *not* verified (the verifier is a quarter of the compile; a screened point never
  runs on the machine). Energy uses the same per-event constants as the simulator
  (:func:`wavecore_sim.energy.energy`), with the program's static event counts
  (:func:`program_counts`) and the analytical cycles.
* ``cycle``: the SimPy machine (:func:`wavecore_sim.api.simulate_program`) on the verified
  program: the summary of ``wavecore-sim run``.

Area proxy (a named assumption, stated here once): a design's silicon cost is represented by
two numbers, minimised alongside time and energy when asked (``--objectives``): the global
buffer's bytes (``area_buffer_bytes``) and the processing elements of all arrays,
``cores x array_rows x array_cols`` (``area_pes``). Nothing converts them to mm^2: the
relative cost of a byte of SRAM and a bf16 MAC depends on the process and the design.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import HardwareConfig
from ..energy import energy
from ..errors import WavecoreError
from ..ir import Op, Program
from ..timing import gemm_buffer_bytes

MODELS = ("analytical", "cycle")


@dataclass(frozen=True)
class PointSpec:
    """One design point to evaluate. Picklable, for worker processes and Dask."""

    index: int  # position in the exploration (grid order or sample number)
    key: str  # hash of what defines the point (see explore.point_key)
    cfg: HardwareConfig


@dataclass(frozen=True)
class Job:
    """Points that share one compiled program, and the model to run on each."""

    network: str  # zoo name or path, as the user gave it
    batch: int
    schedule: str
    norm: str | None
    model: str
    points: tuple[PointSpec, ...]
    cost: float = 1.0  # relative work, for ordering and the ETA


@dataclass(frozen=True)
class ProgramCounts:
    """Static event counts of a program (the same whatever the timing), for energy."""

    macs: int
    vector_ops: int
    gbuf_read_bytes: int
    gbuf_write_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int


@dataclass(frozen=True)
class EnergyEvents:
    """What :func:`wavecore_sim.energy.energy` reads of a run: counts and cycles."""

    macs: int
    vector_ops: int
    gbuf_read_bytes: int
    gbuf_write_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    cycles: int


def program_counts(program: Program, cfg: HardwareConfig) -> ProgramCounts:
    """MACs, vector ops and global-buffer and DRAM bytes of ``program``: per instruction, a
    GEMM's buffer bytes are :func:`~wavecore_sim.timing.gemm_buffer_bytes`, a vector op
    reads its inputs once per pass and writes its outputs once, a transfer moves its size
    through the buffer. These are the counts the machine reports; tests/test_explore.py
    checks they equal a simulated run's."""
    c = program.cols
    op = c["op"]
    gemm, vec = op == Op.GEMM, op == Op.VEC
    load, store = op == Op.LOAD, op == Op.STORE
    m, k, n = (c[x][gemm].astype(np.int64) for x in ("m", "k", "n"))
    g_rd, g_wr = gemm_buffer_bytes(
        m,
        k,
        n,
        c["accumulate"][gemm].astype(np.int64),
        c["out_bytes"][gemm].astype(np.int64),
        cfg,
    )
    access = program.access_summary()
    nbytes = c["nbytes"].astype(np.int64)
    passes = c["passes"].astype(np.int64)
    read_dram, write_dram = int(nbytes[load].sum()), int(nbytes[store].sum())
    return ProgramCounts(
        macs=int((m * k * n).sum()),
        vector_ops=int(c["ops"][vec].astype(np.int64).sum()),
        gbuf_read_bytes=int(g_rd.sum())
        + int((access["read_bytes"] * passes)[vec].sum())
        + write_dram,
        gbuf_write_bytes=int(g_wr.sum()) + int(access["write_bytes"][vec].sum()) + read_dram,
        dram_read_bytes=read_dram,
        dram_write_bytes=write_dram,
    )


def area_proxy(cfg: HardwareConfig) -> dict[str, int]:
    """The named area assumption (module docstring): buffer bytes and processing elements."""
    return {
        "area_buffer_bytes": cfg.gbuf_bytes,
        "area_pes": cfg.cores * cfg.array_rows * cfg.array_cols,
    }


def analytical_summary(program: Program, cfg: HardwareConfig, counts: ProgramCounts) -> dict:
    """The analytical model's view of one run, with the keys of ``summary.json`` it can
    fill (no per-unit busy time, stalls or buffer occupancy: those need the machine)."""
    from ..analytical import analyze

    a = analyze(program, cfg)
    events = EnergyEvents(
        counts.macs,
        counts.vector_ops,
        counts.gbuf_read_bytes,
        counts.gbuf_write_bytes,
        a.dram_read_bytes,
        a.dram_write_bytes,
        a.cycles,
    )
    joules = energy(events, cfg)
    seconds = cfg.cycles_to_seconds(a.cycles)
    return {
        **_program_fields(program),
        "cycles": a.cycles,
        "seconds": seconds,
        "macs": counts.macs,
        "dram_read_bytes": a.dram_read_bytes,
        "dram_write_bytes": a.dram_write_bytes,
        "dram_bytes": a.dram_read_bytes + a.dram_write_bytes,
        "throughput_tflops": round(2 * counts.macs / max(seconds, 1e-30) / 1e12, 3),
        "utilization": {
            "overall": round(counts.macs / max(cfg.peak_macs_per_cycle * a.cycles, 1), 6)
        },
        "energy_joules": joules["total"],
        "energy_breakdown": {k: v for k, v in joules.items() if k != "total"},
    }


def _program_fields(program: Program) -> dict[str, Any]:
    """What a summary says of the program itself, whichever model ran it."""
    footprint = program.dram_footprint
    return {
        "network": program.meta.get("network"),
        "batch": program.meta.get("batch"),
        "schedule": program.meta.get("schedule"),
        "norm": program.meta.get("norm"),
        "instructions": len(program),
        "dram_by_kind": program.traffic_by_kind(),
        "dram_peak_bytes": footprint.peak_bytes if footprint else None,
        "groups": [{"index": g.index, "sub_batch": g.sub_batch} for g in program.groups],
    }


def cycle_summary(program: Program, cfg: HardwareConfig) -> dict:
    """The simulator's summary of one run (``summary.json`` less per-unit detail)."""
    from ..api import simulate_program

    _, summary = simulate_program(program, cfg)
    return {k: v for k, v in summary.items() if k not in ("units", "config", "wall_seconds")}


@functools.cache
def code_version() -> str:
    """The package version and a digest of its source files, read once per process: each
    row records the code of the process that computed it (a worker's, not the parent's)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


def run_job(job: Job) -> list[dict[str, Any]]:
    """Compile ``job``'s program once and evaluate every point; one record per point, in
    ``job.points`` order. Never raises for a point that fails: a compile the compiler
    refuses fails all of the job's points with its one-line reason, a model that fails on
    one point fails that point."""
    from .. import api  # workers pay for the import once, at their first job

    api.use_fast_gc()
    if job.model not in MODELS:
        raise ValueError(f"unknown model {job.model!r}")
    started = time.perf_counter()
    try:
        compiled = api.compile_network(
            job.network,
            job.batch,
            job.schedule,
            job.norm,
            job.points[0].cfg,
            verify=job.model == "cycle",
        )
    except Exception as exc:  # WavecoreError: a point that cannot be built; else a bug
        reason = _reason(exc)
        share = round((time.perf_counter() - started) / len(job.points), 3)
        return [_record(p, job.model, "failed", reason, None, share) for p in job.points]
    compile_share = (time.perf_counter() - started) / len(job.points)
    program = compiled.program
    counts = program_counts(program, compiled.cfg) if job.model == "analytical" else None
    records = []
    for p in job.points:
        t0 = time.perf_counter()
        try:
            if counts is not None:
                summary = analytical_summary(program, p.cfg, counts)
            else:
                summary = cycle_summary(program, p.cfg)
            status, error = "ok", ""
        except Exception as exc:  # a bug elsewhere: keep the other points, report it
            summary, status, error = None, "failed", _reason(exc)
        wall = round(compile_share + time.perf_counter() - t0, 3)
        records.append(_record(p, job.model, status, error, summary, wall))
    return records


def _record(
    p: PointSpec, model: str, status: str, error: str, summary: dict | None, wall: float
) -> dict[str, Any]:
    return {
        "index": p.index,
        "key": p.key,
        "model": model,
        "code_version": code_version(),
        "status": status,
        "error": error,
        "summary": summary,
        "wall_seconds": wall,
    }


def _reason(exc: BaseException) -> str:
    """One line: the error's own text for bad input, the type too for a bug elsewhere."""
    text = (
        str(exc)
        if isinstance(exc, WavecoreError)
        else f"internal error: {type(exc).__name__}: {exc}"
    )
    return " ".join(text.split())
