"""Reservation tables for the machine's shared resources: global-buffer bank ports and HBM
channels.

A reservation table keeps, per server (a bank's port, an HBM channel), the cycle at which it
is next free. A request that needs ``c`` cycles of server ``s`` at time ``now`` is served
from ``max(free_at[s], now)`` and moves ``free_at[s]`` to the end of that service. Requests
are served in the order they reserve (first come, first served), which gives exactly the
waiting times of a FIFO queue per server at the cost of one call per request instead of one
event per server.

Both resources are address-interleaved: byte ``x`` belongs to server ``(x // granule) %
ways``, and a request moves one contiguous byte range, so its per-server cycles have a
regular shape (:func:`plans`, computed for many requests at once with numpy) that the table
exploits: a request costs O(1) Python operations whatever the number of servers, plus at most
a few numpy operations on a slice of them.
"""

from __future__ import annotations

import math

import numpy as np

from ..timing import interleaved_totals


def interleaved_shares(addrs: np.ndarray, sizes: np.ndarray, ways: int, granule: int) -> np.ndarray:
    """Row ``i``: the bytes of ``[addrs[i], addrs[i] + sizes[i])`` on each of ``ways``
    interleaved servers (``timing.split_interleaved`` of every range at once)."""
    n = len(addrs)
    return interleaved_totals(np.arange(n), addrs, sizes, n, ways, granule)


def service_cycles(nbytes, rate: int | float, exact: bool = False):
    """``ceil(nbytes / rate)``, of an int or elementwise of an array: integer arithmetic for
    an integer rate (buffer ports), float division for a fractional one (HBM channels), as
    :func:`timing.port_cycles` and :func:`timing.hbm_service_cycles` compute them. With
    ``exact``, ``nbytes / rate`` unrounded (the calibrated HBM model carries fractional
    cycles)."""
    if exact:
        return nbytes / rate
    if isinstance(rate, (int, np.integer)):
        return -(-nbytes // rate)
    if isinstance(nbytes, np.ndarray):
        return np.ceil(nbytes / rate).astype(np.int64)
    return math.ceil(nbytes / rate)


Plan = tuple | list | np.ndarray | None  # see plans


def plans(
    addrs: np.ndarray,
    sizes: np.ndarray,
    ways: int,
    granule: int,
    rate: int | float,
    exact: bool = False,
) -> list[Plan]:
    """The per-server cycles of each request ``[addr, addr + size)``, in the form
    :meth:`InterleavedTable.reserve` takes:

    * ``(base, extra, first, run)``: ``base`` cycles on every server plus ``extra`` more on
      the ``run`` servers from server ``first`` on (cyclically). This is the usual shape: a
      range covers ``rounds`` whole rounds of the servers plus a run of ``rem`` granules
      starting at its first granule's server, so with ``rounds >= 1`` every server is
      touched and the run servers get one granule more;
    * ``[base, deltas]`` (a list): every server touched, server ``s`` for ``base + deltas[s]``
      cycles (``deltas >= 0``): the partial first and last granules round to fewer cycles
      than the shape above;
    * an array of per-server cycles, 0 where the range has no byte: a range shorter than
      one round;
    * ``None``: an empty range.

    With ``exact`` the cycles are fractional (:func:`service_cycles`).
    """
    a = np.asarray(addrs, dtype=np.int64)
    n = np.asarray(sizes, dtype=np.int64)
    g, w = granule, ways
    first = a // g
    last = (a + np.maximum(n, 1) - 1) // g
    rounds, rem = np.divmod(last - first + 1, w)
    f, lw = first % w, last % w
    head, tail = a - first * g, (last + 1) * g - (a + n)
    off = service_cycles(rounds * g, rate, exact)
    on = service_cycles((rounds + 1) * g, rate, exact)
    expect = np.where(rem > 0, on, off)  # the last granule's server is in the run iff rem > 0
    share_first = rounds * g + g * (rem > 0) - head - np.where(lw == f, tail, 0)
    share_last = rounds * g + g * (rem > 0) - tail
    regular = (
        (rounds >= 1)
        & (n > 0)
        & (service_cycles(share_first, rate, exact) == expect)
        & ((lw == f) | (service_cycles(share_last, rate, exact) == expect))
    )
    out: list[Plan] = list(
        zip(off.tolist(), (on - off).tolist(), f.tolist(), (rem * (on > off)).tolist(), strict=True)
    )
    odd = np.flatnonzero(~regular)
    if len(odd):
        cycles = service_cycles(interleaved_shares(a[odd], n[odd], w, g), rate, exact)
        low = cycles.min(axis=1)
        for i, row, lo, size, whole in zip(
            odd.tolist(),
            cycles,
            low.tolist(),
            n[odd].tolist(),
            (rounds[odd] >= 1).tolist(),
            strict=True,
        ):
            out[i] = None if size <= 0 else [lo, row - lo] if whole else row
    return out


class InterleavedTable:
    """A reservation table of ``ways`` address-interleaved servers: the read (or the write)
    ports of the global buffer's banks, or the HBM channels.

    ``reserve`` queues one request on every server its bytes touch and returns when the last
    of those servers is done. A request touching every server adds at least ``base`` cycles
    to each (:func:`plans`), so the table is kept lazily as
    ``free_at[s] = max(v[s], floor) + shift``: the ``base`` part only moves the two scalars
    (``floor`` up to ``now - shift``, ``shift`` by ``base``) and the rest, usually one extra
    granule on a run of servers, updates a slice of ``v``; ``vmax = max(v)`` gives the
    answer. While the servers stay busy, ``floor`` does not move and stays below every
    ``v`` (``vlow`` bounds them), so a request is one numpy addition on its run. A request
    touching only some servers (rare: shorter than one round) materialises the table and
    updates those servers.

    With ``exact`` the table holds fractional cycles (float64; plans from
    :func:`plans` with ``exact``), for the calibrated HBM model.
    """

    __slots__ = ("floor", "granule", "rate", "scalar", "shift", "v", "vlow", "vmax", "ways")

    def __init__(self, ways: int, granule: int, rate: int | float, exact: bool = False) -> None:
        self.ways, self.granule, self.rate = ways, granule, rate
        self.v = np.zeros(ways, dtype=np.float64 if exact else np.int64)
        self.scalar = float if exact else int  # numpy scalar -> Python number
        self.floor = 0
        self.shift = 0
        self.vmax = 0
        self.vlow = 0  # a lower bound of min(v)

    @property
    def free_at(self) -> list[int]:
        """When each server is next free."""
        return (np.maximum(self.v, self.floor) + self.shift).tolist()

    def busy_until(self) -> int | float:
        """When the last server is next free."""
        return max(self.vmax, self.floor) + self.shift

    def reserve(self, now: int, plan: Plan) -> int:
        """Queue a request (its :func:`plans` entry) at cycle ``now``; return when the last
        server it touches is done (``now`` if it touches none)."""
        if type(plan) is tuple:
            base, extra, first, run = plan
            floor = now - self.shift
            if floor < self.floor:
                floor = self.floor
            else:
                self.floor = floor
            shift = self.shift = self.shift + base
            if run:
                v, end = self.v, first + run
                if floor >= self.vmax:  # every server idle: the run is floor + extra
                    v[first:end] = floor + extra
                    if end > self.ways:
                        v[: end - self.ways] = floor + extra
                    self.vmax = floor + extra
                else:
                    if floor > self.vlow:  # (while saturated, floor stays put: no-op)
                        np.maximum(v, floor, out=v)
                        self.vlow = floor
                    seg = v[first:end]
                    seg += extra
                    top = self.scalar(seg[seg.argmax()])
                    if end > self.ways:
                        seg = v[: end - self.ways]
                        seg += extra
                        top = max(top, self.scalar(seg[seg.argmax()]))
                    if top > self.vmax:
                        self.vmax = top
            vmax = self.vmax
            return (vmax if vmax > floor else floor) + shift
        if type(plan) is list:
            return self._reserve_deltas(now, *plan)
        if plan is None:
            return now
        return self._reserve_some(now, plan)

    def _reserve_deltas(self, now: int, base: int, deltas: np.ndarray) -> int:
        """A request touching every server, ``base + deltas[s]`` cycles on server ``s``."""
        floor = now - self.shift
        if floor < self.floor:
            floor = self.floor
        else:
            self.floor = floor
        self.shift += base
        v = self.v
        if floor > self.vlow:
            np.maximum(v, floor, out=v)
            self.vlow = floor
        v += deltas
        vmax = self.vmax = self.scalar(v[v.argmax()])
        return (vmax if vmax > floor else floor) + self.shift

    def _reserve_some(self, now: int, cycles: np.ndarray) -> int:
        """A request touching only some servers: materialise the table and serve those."""
        v = self.v
        np.maximum(v, self.floor, out=v)
        v += self.shift
        self.vmax = max(self.vmax, self.floor) + self.shift
        self.vlow = max(self.vlow, self.floor) + self.shift
        self.floor = self.shift = 0
        touched = np.flatnonzero(cycles)
        ends = np.maximum(v[touched], now) + cycles[touched]
        v[touched] = ends
        end = self.scalar(ends.max())
        if end > self.vmax:
            self.vmax = end
        return end if end > now else now


def fifo_starts(begin: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Start of each request on one FIFO server that is free at cycle 0: request ``j``
    arrives at ``begin[j]`` (in queue order) and holds the server ``cycles[j]`` cycles, so
    ``start[j] = max(begin[j], start[j-1] + cycles[j-1])``. Closed form: with ``C`` the
    running sum of ``cycles``, ``end[j] = C[j] + max(begin[k] - C[k-1] for k <= j)``."""
    total = np.cumsum(cycles)
    before = total - cycles
    return np.maximum.accumulate(begin - before) + before
