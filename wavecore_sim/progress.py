"""Progress of long steps on stderr: a redrawn bar on a terminal, timestamped lines otherwise.

Three modes (``--progress`` on the command line; ``--quiet`` is ``quiet``):

* ``bar``: one line per step redrawn in place (at most ten times a second), ending with the
  step's time; steps without a count show their elapsed time.
* ``plain``: one timestamped line when a step ends (if it took ``min_seconds`` or more, so
  that a log lists the long steps and a one-line error stays one line), and one at least
  every ``interval`` seconds while it runs (a heartbeat thread writes it even when the step
  reports nothing, e.g. while a process pool runs), with done/total and an ETA when the step
  has a count.
  This is what a log file gets: ``wavecore-sim ... >log 2>&1``.
* ``quiet``: nothing.

``auto`` (the default) is ``bar`` when stderr is a terminal and ``plain`` when it is not.

Why not ``tqdm`` or ``rich``: both draw terminal bars well, but off a terminal ``tqdm``
writes carriage-return redraws into the log and neither writes a heartbeat while a step is
silent; the plain, timestamped lines a log needs are most of this module, so it stays
dependency-free (about 150 lines).

Use::

    progress = Progress("auto")
    with progress.step("compile: schedule"):
        ...
    with progress.step("simulate", total=n, unit="instructions") as task:
        simulate(..., on_progress=task.update)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

_IMPORTED = time.perf_counter()
MODES = ("auto", "bar", "plain", "quiet")
#: Seconds between plain lines of a running step (the log shows one at least this often).
PLAIN_INTERVAL_S = 5.0
#: Plain mode leaves out the end line of steps shorter than this (seconds).
PLAIN_MIN_S = 1.0
#: Seconds between redraws of a terminal bar.
BAR_INTERVAL_S = 0.1
MIN_TICK_S = 0.05  # the heartbeat checks at most 20 times a second


def process_seconds() -> float:
    """Wall seconds since this process started: interpreter start-up and imports included
    (Linux ``/proc``; elsewhere, since this module was imported)."""
    try:
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        # field 22 of stat, ``starttime``, in clock ticks after boot (``man 5 proc``)
        return max(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def _duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class Task:
    """One running step. ``update(done, total)`` (or calling the task) reports its count."""

    def __init__(self, owner: Progress, label: str, total: int | None, unit: str) -> None:
        self.owner, self.label, self.total, self.unit = owner, label, total, unit
        self.done = 0
        self.fraction: float | None = None  # of the work done, when counts are unequal
        self.expected: float | None = None  # seconds the whole step is expected to take
        self.started = time.perf_counter()
        self.last_write = 0.0
        self.written = 0  # lines written for this step

    def update(self, done: int, total: int | None = None, fraction: float | None = None) -> None:
        """``done`` of ``total``; ``fraction``: the share of the work done, when the items
        differ in cost (the ETA uses it instead of ``done / total``)."""
        self.done = done
        if total is not None:
            self.total = total
        self.fraction = fraction
        self.owner._report(self, final=False)

    __call__ = update

    def expect(self, seconds: float) -> None:
        """A prior estimate of the whole step's duration: the ETA until the first item is
        done (after that, the measured rate)."""
        self.expected = seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def text(self, final: bool) -> str:
        elapsed = self.elapsed()
        if final:
            count = f"{self.total:,} {self.unit}, " if self.total else ""
            return f"{self.label}: done, {count}{_duration(elapsed)}"
        if not self.total:
            return f"{self.label}: {_duration(elapsed)}"
        frac = min(self.done / self.total, 1.0)
        work = frac if self.fraction is None else min(self.fraction, 1.0)
        if work > 0:
            eta = _duration(elapsed / work * (1.0 - work))
        elif self.expected is not None:  # nothing done yet: the prior, labelled as such
            eta = f"~{_duration(max(self.expected - elapsed, 0.0))} (estimated)"
        else:
            eta = "after the first finishes"
        return (
            f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({frac:.0%}), "
            f"{_duration(elapsed)} elapsed, ETA {eta}"
        )


class Progress:
    """Reports steps on ``stream`` (stderr) in one of :data:`MODES`."""

    def __init__(
        self,
        mode: str = "auto",
        stream: TextIO | None = None,
        interval: float = PLAIN_INTERVAL_S,
        min_seconds: float = PLAIN_MIN_S,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: choose one of {', '.join(MODES)}")
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "plain"
        self.mode, self.interval, self.min_seconds = mode, interval, min_seconds
        self.lock = threading.Lock()
        self.current: Task | None = None
        self.stop = threading.Event()
        self.heartbeat: threading.Thread | None = None
        self.drawn = False  # a bar line is on screen without its newline

    @property
    def enabled(self) -> bool:
        return self.mode != "quiet"

    @contextmanager
    def step(self, label: str, total: int | None = None, unit: str = "done") -> Iterator[Task]:
        """Report a step from its start to its end (nested steps replace the outer one's
        line until they end)."""
        task, outer = Task(self, label, total, unit), self.current
        self.current = task
        if self.enabled:
            self._start_heartbeat()
        self._report(task, final=False, force=True)
        try:
            yield task
        except BaseException:
            self._end_line()
            raise
        finally:
            self.current = outer
        if task.total is not None:
            task.done = task.total  # the machine reports every 2048 instructions: end at 100%
        self._report(task, final=True, force=True)
        if outer is not None:
            outer.last_write = 0.0

    def note(self, text: str) -> None:
        """One line that is not a step (plain and bar modes)."""
        if self.enabled:
            self._end_line()
            self._write(text)

    def close(self) -> None:
        self.stop.set()
        self._end_line()

    # ------------------------------------------------------------------ drawing

    def _report(self, task: Task, final: bool, force: bool = False) -> None:
        """Write ``task``'s line if it is the current step and its interval has passed
        (``force``: now; plain mode writes a step's start line itself)."""
        if not self.enabled or (task is not self.current and not final):
            return
        now = time.perf_counter()
        if self.mode == "plain" and force and not final:
            task.last_write = now  # the first line comes after an interval, or at the end
            return
        wait = BAR_INTERVAL_S if self.mode == "bar" else self.interval
        if not force and now - task.last_write < wait:
            return
        if (
            self.mode == "plain"
            and final
            and task.written == 0
            and task.elapsed() < self.min_seconds
        ):
            return  # a short step: not worth a line in a log
        task.last_write = now
        task.written += 1
        text = task.text(final)
        if self.mode == "plain":
            self._write(text)
            return
        with self.lock:
            self.stream.write(f"\r\x1b[2K{text}" + ("\n" if final else ""))
            self.stream.flush()
            self.drawn = not final

    def _write(self, text: str) -> None:
        with self.lock:
            self.stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
            self.stream.flush()

    def _end_line(self) -> None:
        if self.mode == "bar" and self.drawn:
            with self.lock:
                self.stream.write("\n")
                self.stream.flush()
                self.drawn = False

    def _start_heartbeat(self) -> None:
        if self.heartbeat is not None:
            return

        def beat() -> None:
            # bar: redraw the elapsed time twice a second; plain: check 5 times an interval,
            # but not more than 20 times a second (interval 0 must not spin: a thread that
            # never sleeps takes the GIL from the work it reports on)
            tick = 0.5 if self.mode == "bar" else max(self.interval / 5, MIN_TICK_S)
            while not self.stop.wait(tick):
                task = self.current
                if task is not None:
                    self._report(task, final=False)

        self.heartbeat = threading.Thread(target=beat, name="wavecore-progress", daemon=True)
        self.heartbeat.start()


QUIET = Progress("quiet")
