"""Run a DMA pattern file through the machine's HBM model (:class:`.hbm.HbmModel`, the code
the simulator runs), to compare it with DRAM measurements such as the DRAMsim3 reference.

A pattern file is CSV with the columns ``queue,op,addr,bytes,ready_ns`` (``op`` is ``read``
or ``write``), the reference's format. The on-chip latency is left out: the figures compare
with DRAM alone. With ``hbm_model = "ideal"`` the ideal model runs instead (its fixed
``hbm_latency_cycles`` included: it has no other latency), as the machine ran before the
calibrated model.

* ``pipelined``: each transfer is issued at its ``ready_ns``; a queue may have many in flight.
* ``blocking``: a queue's next transfer is issued when its previous one has completed, and
  not before its ``ready_ns``.

``start_ns``: the pattern starts that long after the memory was idle from time 0 (refresh
is scheduled from time 0).
"""

from __future__ import annotations

import csv
import heapq
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import HardwareConfig
from ..errors import WavecoreError
from .hbm import HbmModel, IdealHbm
from .reservations import plans

COLUMNS = ("queue", "op", "addr", "bytes", "ready_ns")
MODES = ("pipelined", "blocking")


@dataclass(frozen=True)
class Pattern:
    """A pattern's transfers, in file order, as columns."""

    queue: list[int]
    write: list[bool]
    addr: list[int]
    nbytes: list[int]
    ready_ns: list[float]

    def __len__(self) -> int:
        return len(self.queue)


@dataclass(frozen=True)
class PatternResult:
    gbps: float  # total bytes / ns from the start to the last completion
    elapsed_ns: float
    latency_ns_mean: float  # mean over transfers of completion - ready
    transfers: int
    bytes: int
    mode: str
    start_ns: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def load_pattern(path: str | Path) -> Pattern:
    """Read a pattern file; a bad one raises :class:`WavecoreError` with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise WavecoreError(f"pattern file {str(path)!r} not found")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise WavecoreError(f"pattern file {path}: cannot be read ({exc})") from None
    if not rows or [c.strip() for c in rows[0]] != list(COLUMNS):
        raise WavecoreError(
            f"pattern file {path}: the first line must be the header {','.join(COLUMNS)}"
        )
    cols: tuple[list, ...] = ([], [], [], [], [])
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(COLUMNS):
            raise WavecoreError(
                f"pattern file {path}, line {line}: {len(row)} fields, "
                f"expected {len(COLUMNS)} ({','.join(COLUMNS)})"
            )
        queue, op, addr, size, ready = (c.strip() for c in row)
        try:
            values = (int(queue), int(addr), int(size), float(ready))
        except ValueError:
            raise WavecoreError(
                f"pattern file {path}, line {line}: queue, addr and bytes must "
                "be integers and ready_ns a number"
            ) from None
        if op not in ("read", "write"):
            raise WavecoreError(
                f"pattern file {path}, line {line}: op {op!r} must be read or write"
            )
        q, a, n, r = values
        if q < 0 or a < 0 or n < 1 or not (r >= 0 and np.isfinite(r)):
            raise WavecoreError(
                f"pattern file {path}, line {line}: queue and addr must be "
                ">= 0, bytes >= 1 and ready_ns a finite number >= 0"
            )
        for col, value in zip(cols, (q, op == "write", a, n, r), strict=True):
            col.append(value)
    if not cols[0]:
        raise WavecoreError(f"pattern file {path}: no transfers")
    return Pattern(*cols)


def run_pattern(
    pattern: Pattern, cfg: HardwareConfig, mode: str, start_ns: float = 0.0
) -> PatternResult:
    """Run ``pattern`` through a fresh HBM model of ``cfg`` (:class:`HbmModel` without
    on-chip latency, or :class:`IdealHbm`)."""
    if mode not in MODES:
        raise WavecoreError(f"mode {mode!r}: choose pipelined or blocking")
    if not (start_ns >= 0 and np.isfinite(start_ns)):
        raise WavecoreError(f"--start-ns {start_ns}: must be a finite number >= 0")
    per_ns = cfg.clock_mhz / 1000.0  # cycles per ns
    model = HbmModel(cfg, onchip_latency=False) if cfg.hbm_model == "calibrated" else IdealHbm(cfg)
    addr = np.asarray(pattern.addr, dtype=np.int64)
    size = np.asarray(pattern.nbytes, dtype=np.int64)
    plan = plans(
        addr,
        size,
        cfg.hbm_channels,
        cfg.hbm_interleave_bytes,
        cfg.hbm_channel_bytes_per_cycle,
        exact=model.exact,
    )
    ready = [(start_ns + r) * per_ns for r in pattern.ready_ns]
    done = [0.0] * len(pattern)

    def issue(i: int, now: float) -> float:
        done[i] = model.reserve(now, pattern.addr[i], pattern.nbytes[i], pattern.write[i], plan[i])
        return done[i]

    if mode == "pipelined":
        for i in sorted(range(len(pattern)), key=lambda i: ready[i]):  # stable: file order
            issue(i, ready[i])
    else:
        queues: dict[int, list[int]] = {}
        for i, q in enumerate(pattern.queue):
            queues.setdefault(q, []).append(i)
        # (issue time, transfer, position in its queue): the earliest issue goes first
        heap = [(ready[ids[0]], ids[0], q, 0) for q, ids in queues.items()]
        heapq.heapify(heap)
        while heap:
            now, i, q, pos = heapq.heappop(heap)
            finish = issue(i, now)
            if pos + 1 < len(queues[q]):
                j = queues[q][pos + 1]
                heapq.heappush(heap, (max(finish, ready[j]), j, q, pos + 1))
    start = start_ns * per_ns
    elapsed_ns = (max(done) - start) / per_ns
    total = int(size.sum())
    latency = float(np.mean(np.asarray(done) - np.asarray(ready))) / per_ns
    return PatternResult(
        total / elapsed_ns, elapsed_ns, latency, len(pattern), total, mode, start_ns
    )
