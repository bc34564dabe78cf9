"""A dependency-free progress bar on stderr (drawn only when stderr is a terminal)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """``bar(done, total)`` redraws at most ten times a second; ``close()`` ends the line."""

    def __init__(self, label: str, enabled: bool | None = None, width: int = 30) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.width = width
        self.last = 0.0
        self.started = time.perf_counter()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        frac = done / total if total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {frac:6.1%} {done:,}/{total:,} "
                         f"{now - self.started:5.1f}s")
        sys.stderr.flush()
        self.drawn = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.enabled and self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
