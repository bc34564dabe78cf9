"""Timing formulas, derived once and shared by the simulator and the analytical model.

GEMM on a weight-stationary R x C array (one instruction = every fold of one M x K x N GEMM:
``F = ceil(K/R) * ceil(N/C)`` weight tiles, each streaming the same M rows):

* every fold loads a weight tile in R cycles (shifted down the R rows), streams M rows in M
  cycles, and its last result leaves the array R-1 + C-1 cycles after its last row entered
  (fill and drain skew across rows and columns);
* without weight double-buffering nothing overlaps (SCALE-Sim's weight-stationary model)::

      cycles = F * (R + M + (R - 1) + (C - 1)) = F * (2R + C + M - 2)

* with double-buffering (default) fold f+1's weights load while fold f streams, and folds
  pipeline back to back, so only the first load, any part of later loads longer than the
  stream, and one final drain are exposed::

      cycles = R + F*M + (F - 1) * max(0, R - M) + (R - 1) + (C - 1)

Vector op: ``passes * startup + ceil(ops / (lanes * ops_per_lane))``.

DMA transfer of n bytes at address a over HBM: bytes are interleaved over channels every
``hbm_interleave_bytes``; channel c serves its share ``n_c`` in ``ceil(n_c / bw_c)`` cycles,
and data arrives ``hbm_latency_cycles`` later. Uncontended:
``latency + max_c ceil(n_c / bw_c)``. The global buffer's banks split accesses the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import HardwareConfig


@dataclass(frozen=True)
class GemmTiming:
    """Cycle components of one GEMM instruction run alone on one core."""

    folds: int
    first_load: int  # weight load before the first fold can stream
    stream: int  # rows streamed, all folds
    exposed_loads: int  # later weight loads not hidden by the stream
    drain: int  # fill/drain skew paid once at the end (per fold without double-buffering)

    @property
    def total(self) -> int:
        return self.first_load + self.stream + self.exposed_loads + self.drain


# The GEMM and vector formulas below take plain ints (the simulator, one instruction at a
# time) or numpy integer arrays (the analytical model, a whole program at once): they use
# only integer arithmetic that means the same for both.


def _positive_part(x):
    return x * (x > 0)


def gemm_folds(k, n, cfg: HardwareConfig):
    """(K folds, N folds): ``ceil(K/R)``, ``ceil(N/C)``."""
    return -(-k // cfg.array_rows), -(-n // cfg.array_cols)


def gemm_timing(m, k, n, cfg: HardwareConfig) -> GemmTiming:
    """Cycles of an M x K x N GEMM on one core with ideal memory (see module docstring)."""
    r, c = cfg.array_rows, cfg.array_cols
    kf, nf = gemm_folds(k, n, cfg)
    folds = kf * nf
    skew = (r - 1) + (c - 1)
    if not cfg.weight_double_buffer:
        return GemmTiming(folds, folds * r, folds * m, 0, folds * skew)
    return GemmTiming(folds, r, folds * m, (folds - 1) * _positive_part(r - m), skew)


def gemm_buffer_bytes(m, k, n, accumulate, out_bytes, cfg: HardwareConfig):
    """(read, write) global-buffer bytes of a GEMM instruction.

    Reads: the M x K input once per column fold, the K x N weights, partial sums of every
    k-fold after the first (and the old accumulator when ``accumulate``). Writes: partial sums
    of every k-fold but the last, then the M x N result at ``out_bytes`` per element.
    """
    kf, nf = gemm_folds(k, n, cfg)
    partial = (kf - 1) * m * n * cfg.accum_bytes
    reads = m * k * nf * cfg.act_bytes + k * n * cfg.weight_bytes + partial + \
        accumulate * m * n * cfg.accum_bytes
    return reads, partial + m * n * out_bytes


def vector_cycles(ops, passes, cfg: HardwareConfig):
    """Cycles of a vector op: one start-up per pass plus the lane-parallel work."""
    rate = cfg.vector_lanes * cfg.vector_ops_per_lane_per_cycle
    return passes * cfg.vector_startup_cycles + -(-ops // rate)


def split_interleaved(addr: int, nbytes: int, ways: int, granule: int) -> list[int]:
    """Bytes of ``[addr, addr + nbytes)`` that fall on each of ``ways`` interleaved targets.

    Target of byte ``x`` is ``(x // granule) % ways``. Exact, in O(ways)."""
    if nbytes <= 0:
        return [0] * ways
    first, last = addr // granule, (addr + nbytes - 1) // granule
    chunks = last - first + 1
    rounds, rem = divmod(chunks, ways)
    share = [rounds * granule] * ways
    start_way = (first + rounds * ways) % ways
    for i in range(rem):
        share[(start_way + i) % ways] += granule
    share[first % ways] -= addr - first * granule
    share[last % ways] -= (last + 1) * granule - (addr + nbytes)
    return share


def interleaved_totals(groups: list[int], addrs: list[int], sizes: list[int], ngroups: int,
                       ways: int, granule: int) -> np.ndarray:
    """Sum of :func:`split_interleaved` over many ranges, per group, vectorised: row ``g``
    holds the bytes each of ``ways`` targets receives from the ranges
    ``[addr, addr + size)`` of group ``g``. Empty ranges add nothing."""
    g = np.asarray(groups, dtype=np.int64)
    a = np.asarray(addrs, dtype=np.int64)
    n = np.asarray(sizes, dtype=np.int64)
    keep = n > 0
    g, a, n = g[keep], a[keep], n[keep]
    if a.size == 0:
        return np.zeros((ngroups, ways), dtype=np.int64)
    # Bytes of [0, x) on target w: G * (x // (ways * G)) + clamp(x % (ways * G) - w * G, 0, G)
    # (G the granule); a range adds this at its end and subtracts it at its start. The first
    # term is one number per group; the second, as differences over the targets (+ a sink
    # column), is two entries per endpoint, then a running sum. (The +G both endpoints would
    # put on target 0 cancel.) Every range's entries sum to zero, so one running sum over all
    # rows at once restarts at zero on each row. Sums of integers this small are exact in
    # float64.
    cycle = ways * granule
    whole = np.bincount(g, weights=(a + n) // cycle - a // cycle, minlength=ngroups) * granule
    row = g * (ways + 1)
    keys, weights = [], []
    for x, sign in ((a, 1), (a + n, -1)):
        target, into = divmod(x % cycle, granule)
        keys += [row + target, row + target + 1]
        weights += [sign * (granule - into), sign * into]
    diff = np.bincount(np.concatenate(keys), weights=np.concatenate(weights),
                       minlength=ngroups * (ways + 1))
    totals = np.cumsum(diff).reshape(ngroups, ways + 1)[:, :ways] + whole[:, None]
    return totals.astype(np.int64)


def busiest_interleaved_totals(groups, addrs, sizes, ngroups: int, ways: int, granule: int,
                               groups_per_pass: int = 4096) -> np.ndarray:
    """Per group, the largest entry of its :func:`interleaved_totals` row (the busiest
    target). ``groups`` must be in ascending order; they are taken ``groups_per_pass`` at a
    time, so the work arrays stay small (a whole program's rows at once cost more in fresh
    memory than in arithmetic)."""
    g = np.asarray(groups, dtype=np.int64)
    a = np.asarray(addrs, dtype=np.int64)
    n = np.asarray(sizes, dtype=np.int64)
    out = np.zeros(ngroups, dtype=np.int64)
    cuts = np.searchsorted(g, np.arange(0, ngroups + groups_per_pass, groups_per_pass))
    for i, lo in enumerate(range(0, ngroups, groups_per_pass)):
        part = slice(cuts[i], cuts[i + 1])
        rows = min(groups_per_pass, ngroups - lo)
        out[lo:lo + rows] = interleaved_totals(g[part] - lo, a[part], n[part], rows, ways,
                                               granule).max(axis=1, initial=0)
    return out


def interleaved_busiest(addrs, sizes, ways: int, granule: int) -> np.ndarray:
    """``max(split_interleaved(addr, size, ways, granule))`` of each range, vectorised and
    in closed form. A range covers ``rounds`` whole cycles of targets plus a run of ``rem``
    chunks from target ``first % ways``; only the first chunk (less its uncovered head) and
    the last (less its tail) are partial. So the busiest target is one of: the first
    chunk's, the last chunk's, another target of the run (``rounds + 1`` whole chunks) or a
    target off the run (``rounds`` whole chunks), where those exist."""
    a = np.asarray(addrs, dtype=np.int64)
    n = np.asarray(sizes, dtype=np.int64)
    first, last = a // granule, np.maximum(a, a + n - 1) // granule
    rounds, rem = np.divmod(last - first + 1, ways)
    head, tail = a - first * granule, (last + 1) * granule - (a + n)
    same = (first % ways) == (last % ways)  # the first and last chunks share a target
    ends = (rounds + (rem > 0)) * granule - np.minimum(head + same * tail, tail + same * head)
    targets_at_ends = 2 - same
    run_rest = (rem > targets_at_ends) * (rounds + 1) * granule
    off_run = np.where(rem > 0, rem < ways, ways > targets_at_ends) * rounds * granule
    return np.where(n > 0, np.maximum(ends, np.maximum(run_rest, off_run)), 0)


def _ceil_ratio(x, rate: float):
    """``ceil(x / rate)`` of an int, or elementwise of an integer array (same arithmetic)."""
    if isinstance(x, np.ndarray):
        return np.ceil(x / rate).astype(np.int64)
    return math.ceil(x / rate)


def hbm_service_cycles(nbytes_on_channel, cfg: HardwareConfig):
    return _ceil_ratio(nbytes_on_channel, cfg.hbm_channel_bytes_per_cycle)


def dma_ideal_cycles(addr: int, nbytes: int, cfg: HardwareConfig) -> int:
    """Uncontended transfer: latency plus the busiest channel's service time."""
    shares = split_interleaved(addr, nbytes, cfg.hbm_channels, cfg.hbm_interleave_bytes)
    return cfg.hbm_latency_cycles + max(hbm_service_cycles(b, cfg) for b in shares)


def dma_ideal_cycles_many(addrs, sizes, cfg: HardwareConfig) -> np.ndarray:
    """:func:`dma_ideal_cycles` of many transfers at once."""
    busiest = interleaved_busiest(addrs, sizes, cfg.hbm_channels, cfg.hbm_interleave_bytes)
    return cfg.hbm_latency_cycles + hbm_service_cycles(busiest, cfg)


def port_cycles(nbytes_on_bank, cfg: HardwareConfig):
    return _ceil_ratio(nbytes_on_bank, cfg.gbuf_port_bytes_per_cycle)
