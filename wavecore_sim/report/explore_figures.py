"""Figures of ``explore`` (matplotlib object API on Agg, PNG), from plain rows.

* ``pareto.png``: time per iteration against energy for every point evaluated, coloured by
  schedule; the Pareto front's points ringed in black; when points were refereed at cycle
  level, their simulated values as black crosses joined to their analytical estimates.
* ``param_<name>.png``: time per iteration against one swept parameter for every point
  (the others vary, so each x holds a cloud), coloured by schedule, front points ringed.

Rows are dicts with ``schedule``, ``seconds``, ``energy_total_j``, the parameter values under
their names and ``point_key``; this module does not import the experiments.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .figures import DPI, SCHEDULE_COLORS


def _figure(size: tuple[float, float]) -> tuple[Figure, Any]:
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)  # no pyplot: nothing global keeps the figure alive
    return fig, fig.subplots()


def _plain_ticks(axis: Any) -> None:
    """Log-axis labels as plain numbers (20, 30, 60), not powers of ten (6 x 10^1)."""
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def _by_schedule(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["schedule"], []).append(r)
    return out


def _scatter(ax: Any, rows: Sequence[dict[str, Any]], x: Any, front: set[str]) -> None:
    for i, (sched, group) in enumerate(sorted(_by_schedule(rows).items())):
        color = SCHEDULE_COLORS.get(sched, f"C{i}")
        ax.scatter(
            [x(r) for r in group],
            [r["seconds"] * 1e3 for r in group],
            s=12,
            color=color,
            alpha=0.6,
            label=sched,
            linewidths=0,
        )
    on_front = [r for r in rows if r["point_key"] in front]
    ax.scatter(
        [x(r) for r in on_front],
        [r["seconds"] * 1e3 for r in on_front],
        s=46,
        facecolors="none",
        edgecolors="black",
        linewidths=1.0,
        label=f"Pareto front ({len(on_front)})",
    )


def pareto_figure(
    rows: Sequence[dict[str, Any]],
    front: set[str],
    refereed: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    title: str,
    path: Path,
) -> str:
    """``pareto.png`` (see the module docstring); ``refereed``: (estimate, simulated) pairs."""
    fig, ax = _figure((8.5, 6.0))
    _scatter(ax, rows, lambda r: r["energy_total_j"], front)
    if refereed:
        for est, sim in refereed:
            ax.plot(
                [est["energy_total_j"], sim["energy_total_j"]],
                [est["seconds"] * 1e3, sim["seconds"] * 1e3],
                color="black",
                linewidth=0.5,
                alpha=0.5,
            )
        ax.scatter(
            [s["energy_total_j"] for _, s in refereed],
            [s["seconds"] * 1e3 for _, s in refereed],
            marker="x",
            s=22,
            color="black",
            label=f"cycle level ({len(refereed)} refereed)",
        )
    for axis, key in (("x", "energy_total_j"), ("y", "seconds")):
        values = [r[key] for r in rows]
        if values and min(values) > 0 and max(values) / min(values) >= 8:
            getattr(ax, f"set_{axis}scale")("log")  # a wide space spans decades
            _plain_ticks(getattr(ax, f"{axis}axis"))
    ax.set_xlabel("energy per iteration (J)")
    ax.set_ylabel("time per iteration (ms)")
    return _finish(fig, ax, title, path)


def _finish(fig, ax, title: str, path: Path) -> str:
    """Title, grid and legend of a scatter figure; write it to ``path``; its file name."""
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path.name


def parameter_figure(
    rows: Sequence[dict[str, Any]],
    name: str,
    front: set[str],
    log_x: bool,
    title: str,
    path: Path,
) -> str:
    """``param_<name>.png``: time per iteration against the parameter ``name``."""
    fig, ax = _figure((7.5, 5.0))
    numeric = all(isinstance(r[name], int | float) for r in rows)
    label = name
    if numeric:
        scale = 2**20 if name.endswith("_bytes") else 1  # sizes in MiB
        label = f"{name} (MiB)" if scale > 1 else name
        _scatter(ax, rows, lambda r: r[name] / scale, front)
        if log_x and all(r[name] > 0 for r in rows):
            ax.set_xscale("log")
            _plain_ticks(ax.xaxis)
    else:  # names (e.g. a schedule list): one column each, in first-seen order
        labels = list(dict.fromkeys(str(r[name]) for r in rows))
        _scatter(ax, rows, lambda r: labels.index(str(r[name])), front)
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(label)
    ax.set_ylabel("time per iteration (ms)")
    ax.set_yscale("log")
    _plain_ticks(ax.yaxis)
    return _finish(fig, ax, title, path)
