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
    reads = (
        m * k * nf * cfg.act_bytes
        + k * n * cfg.weight_bytes
        + partial
        + accumulate * m * n * cfg.accum_bytes
    )
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


def interleaved_totals(
    groups: list[int], addrs: list[int], sizes: list[int], ngroups: int, ways: int, granule: int
) -> np.ndarray:
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
    diff = np.bincount(
        np.concatenate(keys), weights=np.concatenate(weights), minlength=ngroups * (ways + 1)
    )
    totals = np.cumsum(diff).reshape(ngroups, ways + 1)[:, :ways] + whole[:, None]
    return totals.astype(np.int64)


def busiest_interleaved_totals(
    groups, addrs, sizes, ngroups: int, ways: int, granule: int, groups_per_pass: int = 4096
) -> np.ndarray:
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
        out[lo : lo + rows] = interleaved_totals(
            g[part] - lo, a[part], n[part], rows, ways, granule
        ).max(axis=1, initial=0)
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


# --- the calibrated HBM model's timings (``hbm_model = "calibrated"``) ---------------------
#
# A transfer moves its bytes over the channels its addresses interleave to, each at
# ``hbm_gbps / hbm_channels`` with fractional cycles carried (no per-transfer round-up), and
# its data is complete a DRAM-core latency after its last channel is done: one tCK (the
# command issues) plus ``tCL`` for a read, ``tCWL + tWR`` for a write (written to the
# array), plus the on-chip latency. Before
# its first access the bank it starts on may need its row opened: nothing on a row hit,
# ``tRCD`` on a closed bank, ``tRP + tRCD`` when another row is open. Refresh blocks every
# bank of every channel for ``tRP + tRFC + tRCD`` (close the rows, refresh, reopen) every
# ``tREFI``, so a stream gets ``1 - blackout / tREFI`` of the channels' time. A change of
# direction on a busy channel costs the write-to-read or read-to-write turnaround.


@dataclass(frozen=True)
class HbmTimes:
    """The calibrated HBM model's timings in core cycles (floats: exact)."""

    rate: float  # bytes per cycle per channel
    trcd: float
    trp: float
    read_latency: float  # read command to data
    write_latency: float  # write command to data written to the array
    trc: float  # activate to activate on one bank (tRAS + tRP)
    refresh_interval: float
    refresh_blackout: float
    write_to_read: float
    read_to_write: float
    onchip: float


def hbm_times(cfg: HardwareConfig) -> HbmTimes:
    """:class:`HbmTimes` of ``cfg``: its nanosecond fields converted to core cycles."""
    per_ns = cfg.clock_mhz / 1000.0
    return HbmTimes(
        rate=cfg.hbm_channel_bytes_per_cycle,
        trcd=cfg.hbm_trcd_ns * per_ns,
        trp=cfg.hbm_trp_ns * per_ns,
        read_latency=(cfg.hbm_tck_ns + cfg.hbm_tcl_ns) * per_ns,
        write_latency=(cfg.hbm_tck_ns + cfg.hbm_tcwl_ns + cfg.hbm_twr_ns) * per_ns,
        trc=(cfg.hbm_tras_ns + cfg.hbm_trp_ns) * per_ns,
        refresh_interval=cfg.hbm_trefi_ns * per_ns,
        refresh_blackout=(cfg.hbm_trp_ns + cfg.hbm_trfc_ns + cfg.hbm_trcd_ns) * per_ns,
        write_to_read=cfg.hbm_write_to_read_ns * per_ns,
        read_to_write=cfg.hbm_read_to_write_ns * per_ns,
        onchip=float(cfg.hbm_onchip_latency_cycles),
    )


def hbm_refresh_stretch(cfg: HardwareConfig) -> float:
    """How much longer a stream takes with refresh than without: ``tREFI / (tREFI -
    blackout)`` (the channels serve nothing during a blackout)."""
    t = hbm_times(cfg)
    return t.refresh_interval / (t.refresh_interval - t.refresh_blackout)


def hbm_conflict_share(streams: int, cfg: HardwareConfig) -> float:
    """Share of a channel's peak rate left when ``streams`` concurrent transfers walk the
    same bank on different rows (and nothing else is queued for the channel): the bank opens
    a row every tRC, and each opening serves ``hbm_conflict_window_requests / streams``
    requests (the controller's reordering window shared by the streams). At most 1."""
    t = hbm_times(cfg)
    per_opening = cfg.hbm_conflict_window_requests / streams * cfg.hbm_request_bytes
    return min(1.0, per_opening / t.trc / t.rate)


def dma_min_cycles_many(addrs, sizes, writes, cfg: HardwareConfig) -> np.ndarray:
    """Calibrated model: the fewest cycles each transfer can take (its row already open, no
    refresh, no turnaround, no other traffic): on-chip latency + DRAM-core latency of its
    direction + the busiest channel's bytes at the channel rate, rounded up once."""
    t = hbm_times(cfg)
    busiest = interleaved_busiest(addrs, sizes, cfg.hbm_channels, cfg.hbm_interleave_bytes)
    latency = np.where(np.asarray(writes, dtype=bool), t.write_latency, t.read_latency)
    return np.ceil(t.onchip + latency + busiest / t.rate).astype(np.int64)


def dma_latency_cycles(writes, cfg: HardwareConfig):
    """The part of each transfer's uncontended time (:func:`dma_cycles_many`) that holds no
    channel: ideal, ``hbm_latency_cycles``; calibrated, on-chip latency, a row opening after
    another row (tRP + tRCD) and the DRAM-core latency of its direction (fractional)."""
    if cfg.hbm_model == "ideal":
        return cfg.hbm_latency_cycles + 0 * np.asarray(writes, dtype=np.int64)
    t = hbm_times(cfg)
    latency = np.where(np.asarray(writes, dtype=bool), t.write_latency, t.read_latency)
    return t.onchip + t.trp + t.trcd + latency


def hbm_channel_cycles(nbytes_on_channel, cfg: HardwareConfig):
    """Cycles a channel takes to serve ``nbytes_on_channel`` over a long run: ideal,
    :func:`hbm_service_cycles`; calibrated, at the channel rate stretched by refresh."""
    if cfg.hbm_model == "ideal":
        return hbm_service_cycles(nbytes_on_channel, cfg)
    return _ceil_ratio(
        nbytes_on_channel, cfg.hbm_channel_bytes_per_cycle / hbm_refresh_stretch(cfg)
    )


def hbm_turnaround_cycles(loads, stores, cfg: HardwareConfig):
    """Channel time lost to direction turnarounds by ``loads`` and ``stores`` transfers
    sharing the channels (counts, ints or arrays): at most two switches per store that
    runs between loads, ``2 * min(loads, stores)``, each the mean of the write-to-read and
    read-to-write turnaround. 0 for the ideal model."""
    if cfg.hbm_model == "ideal":
        return 0 * np.minimum(loads, stores)
    t = hbm_times(cfg)
    return np.minimum(loads, stores) * (t.write_to_read + t.read_to_write)


def dma_cycles_many(addrs, sizes, writes, cfg: HardwareConfig) -> np.ndarray:
    """Uncontended transfer times for the analytical model, of the configured HBM model:
    ideal, :func:`dma_ideal_cycles_many`; calibrated, the minimum plus a row opening after
    another row (tRP + tRCD: a queue's next transfer usually starts on a bank another stream
    left on another row) and the busiest channel's service stretched by refresh."""
    if cfg.hbm_model == "ideal":
        return dma_ideal_cycles_many(addrs, sizes, cfg)
    t = hbm_times(cfg)
    busiest = interleaved_busiest(addrs, sizes, cfg.hbm_channels, cfg.hbm_interleave_bytes)
    service = busiest / t.rate * hbm_refresh_stretch(cfg)
    return np.ceil(dma_latency_cycles(writes, cfg) + service).astype(np.int64)
