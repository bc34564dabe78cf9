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
  so the file does not depend on ``jobs``) and one figure per parameter. It is the special
  case of :func:`explore` for a grid at cycle level.
* :func:`explore` screens a search space (a grid or a Latin-hypercube sample) with the
  analytical model and/or the simulator, with a compile cache, local or Dask workers and a
  resumable SQLite results database; it writes the Pareto front and its figures.

The package, one module per job: :mod:`.runner` (points in worker processes),
:mod:`.executors` (local processes or Dask), :mod:`.tables` (flat CSV rows),
:mod:`.reproduce`, :mod:`.sweep`, and for ``explore``: :mod:`.space` (the space file and
sampling), :mod:`.evaluate` (a job in a worker), :mod:`.results_db`, :mod:`.pareto` (front,
Kendall's tau), :mod:`.explore`; the paper's numbers are in :mod:`wavecore_sim.paper`.

Every point runs in a worker process (``concurrent.futures.ProcessPoolExecutor`` with the
``spawn`` context, so workers start clean whatever the parent has imported); ``jobs=1`` runs
them in this process. A point that fails (typically a buffer too small for some layer)
becomes a ``failed`` row carrying the one-line reason; the other points still run. Input
errors (unknown network, schedule or field, bad value, impossible config) are found before
any run starts and before anything is written.
"""

from __future__ import annotations

from ..paper import PAPER_HEADLINE, PAPER_SCHEDULE, REFERENCE_SCHEDULE
from .explore import ExploreResult, explore, show
from .reproduce import (
    DEFAULT_NETWORKS,
    QUICK_NETWORKS,
    Comparison,
    ReproduceResult,
    average,
    compare,
    reproduce,
    reproduce_markdown,
)
from .runner import DEFAULT_BATCH, Point, run_point, run_points
from .sweep import SweepParam, SweepResult, fixed_values, parse_param, sweep
from .tables import csv_text, flat_row

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_NETWORKS",
    "PAPER_HEADLINE",
    "PAPER_SCHEDULE",
    "QUICK_NETWORKS",
    "REFERENCE_SCHEDULE",
    "Comparison",
    "ExploreResult",
    "Point",
    "ReproduceResult",
    "SweepParam",
    "SweepResult",
    "average",
    "compare",
    "csv_text",
    "explore",
    "fixed_values",
    "flat_row",
    "parse_param",
    "reproduce",
    "reproduce_markdown",
    "run_point",
    "run_points",
    "show",
    "sweep",
]
