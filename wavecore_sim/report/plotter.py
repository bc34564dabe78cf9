"""timeline.png drawn in a child process, so matplotlib's import and drawing overlap the
compile, the simulation and the other outputs instead of adding to a run's wall time."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..config import HardwareConfig
from ..ir import Program
from ..sim import SimResult


def _plot_worker(conn: Any, other_end: Any) -> None:
    """The plotter process: import matplotlib now, draw when the data arrives."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and tells us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (cli.Terminated)
    other_end.close()
    try:
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401

        from .timeline import draw_timeline

        data, path = conn.recv()
    except (EOFError, OSError):
        return  # the parent finished without a figure to draw
    try:
        draw_timeline(data, path)
        outcome = None
    except BaseException as exc:  # reported by the parent, as one line
        outcome = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(OSError):  # else the parent gave up on the drawing
        conn.send(outcome)


class TimelinePlotter:
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
        from .timeline import draw_timeline, timeline_data

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

    def close(self, wait: float = 10) -> None:
        """Stop the drawing process, after ``wait`` seconds at most (0: at once)."""
        if self.conn is not None:
            self.conn.close()
            self.proc.join(wait)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join()
            self.conn = self.proc = None
