"""The calibrated HBM2 model, at transfer granularity: one call per transfer, no per-request
simulation. The machine runs it for every DMA transfer (``hbm_model = "calibrated"``) and
``wavecore-sim dram`` runs it on pattern files (:mod:`.dram_patterns`), so both run this code.

What a transfer pays (timings: :func:`wavecore_sim.timing.hbm_times`; calibration against
DRAMsim3: docs/validation.md):

* **Channels.** Its bytes split over the channels by address (``hbm_interleave_bytes``);
  each channel serves its share at ``hbm_gbps / hbm_channels``, with fractional cycles
  carried (a float reservation table, :class:`.reservations.InterleavedTable` with
  ``exact``), after the transfers already queued on it.
* **Refresh.** Every ``tREFI`` (the first at ``tREFI``, counted from time 0) every bank of
  every channel is blocked for ``tRP + tRFC + tRCD``. Because a blackout stops all channels
  at once, the channels are kept on an *available-time* axis with the blackouts cut out
  (:class:`RefreshClock`): a service that meets a blackout resumes after it.
* **Banks and rows.** Bank ``(addr // hbm_bank_interleave_bytes) % hbm_banks_per_channel``,
  row ``addr // (hbm_bank_interleave_bytes * hbm_banks_per_channel)``. The open row of each
  bank is the row the last transfer touching it left there (a refresh closes every row).
  A transfer's first access pays nothing on a row hit, ``tRCD`` on a closed bank and
  ``tRP + tRCD`` on another open row, before its channels can start; later row switches of
  a sequential transfer overlap with its data on other banks (the reference measured under
  1.2% for them).
* **Turnaround.** A transfer in the other direction than the last one, while the channels
  are still busy with it (or were less than a turnaround ago), adds the write-to-read or
  read-to-write turnaround to its channel time.
* **Sharing and bank conflicts.** Concurrent transfers on a channel are interleaved by its
  controller: the channel's time is shared, so its backlog grows by each new transfer's
  service and the last of them ends when the backlog does, as in a FIFO. When every
  transfer in flight is on the new transfer's first bank, on other rows, the bank bounds the
  channel (:func:`wavecore_sim.timing.hbm_conflict_share`): the whole backlog is repriced
  at that share of the peak rate (the reference's pattern c).
* **Latency.** Data is complete a DRAM-core latency (``tCL`` read, ``tCWL + tWR`` write)
  after the last channel is done, plus ``hbm_onchip_latency_cycles``.

Times are cycles of the core clock, as floats; the machine rounds each completion up to a
whole cycle.
"""

from __future__ import annotations

import math
from collections import deque

from ..config import HardwareConfig
from ..timing import HbmTimes, hbm_conflict_share, hbm_times
from .reservations import InterleavedTable, Plan

HISTORY = 32  # recent transfers kept to find a bank's open row (each covers up to every bank)


class RefreshClock:
    """Blackouts ``[k T, k T + B)`` for ``k >= 1`` (``T`` the refresh interval, ``B`` the
    blackout): :meth:`available` maps a real time to the time the memory was available
    until then, :meth:`real` maps back (the earliest real time with that much available)."""

    __slots__ = ("blackout", "interval", "usable")

    def __init__(self, interval: float, blackout: float) -> None:
        self.interval, self.blackout = interval, blackout
        self.usable = interval - blackout

    def available(self, t: float) -> float:
        if t < self.interval:
            return t
        q, r = divmod(t, self.interval)
        return t - self.blackout * (q - 1) - (r if r < self.blackout else self.blackout)

    def real(self, a: float) -> float:
        if a <= self.interval:
            return a
        k, rem = divmod(a - self.interval, self.usable)
        if rem == 0:  # ends exactly as blackout k + 1 begins
            return self.interval * (k + 1)
        return self.interval * (k + 1) + self.blackout + rem

    def last_blackout(self, t: float) -> float:
        """Start of the last blackout that began at or before ``t`` (-inf if none)."""
        return -math.inf if t < self.interval else (t // self.interval) * self.interval


class HbmModel:
    """The calibrated HBM of one machine (see the module docstring). :meth:`reserve` is the
    one public method: it queues a transfer at ``now`` and returns when its data is done."""

    exact = True  # its plans carry fractional cycles

    def __init__(self, cfg: HardwareConfig, onchip_latency: bool = True) -> None:
        t: HbmTimes = hbm_times(cfg)
        self.times, self.cfg = t, cfg
        self.channels = InterleavedTable(
            cfg.hbm_channels, cfg.hbm_interleave_bytes, cfg.hbm_channel_bytes_per_cycle, exact=True
        )
        self.clock = RefreshClock(t.refresh_interval, t.refresh_blackout)
        self.onchip = t.onchip if onchip_latency else 0.0
        self.bank_bytes = cfg.hbm_bank_interleave_bytes
        self.banks = cfg.hbm_banks_per_channel
        self.shares = [1.0] + [hbm_conflict_share(k, cfg) for k in range(2, 65)]
        # recent transfers, newest last: (first bank block, last bank block, real end)
        self.history: deque[tuple[int, int, float]] = deque(maxlen=HISTORY)
        # transfers whose channels may still be busy: (start, end, addr, nbytes, write),
        # times in available time
        self.inflight: list[tuple[float, float, int, int, bool]] = []
        self.share = 1.0  # share of the peak rate the backlog was priced at
        self.last_write: bool | None = None
        self.interval, self.blackout = t.refresh_interval, t.refresh_blackout
        self.trcd, self.trp_trcd = t.trcd, t.trp + t.trcd
        self.write_to_read, self.read_to_write = t.write_to_read, t.read_to_write
        self.read_done = t.read_latency + self.onchip  # after the channels are done
        self.write_done = t.write_latency + self.onchip

    def _row_cost(self, block: int, now: float) -> float:
        """Cycles to open the row of bank block ``block`` (its first access) at ``now``."""
        t, banks = self.times, self.banks
        bank = block % banks
        refreshed = self.clock.last_blackout(now)
        for first, last, end in reversed(self.history):
            touched = last - (last - bank) % banks  # its last block on this bank
            if touched >= first:
                if end <= refreshed:
                    return t.trcd  # refreshed since: every bank closed
                return 0.0 if touched // banks == block // banks else t.trp + t.trcd
        if len(self.history) == HISTORY and self.history[0][2] > refreshed:
            return t.trp + t.trcd  # touched before the history: another row, most likely
        return t.trcd  # never opened, or refreshed since

    def _conflict_streams(self, now: float, addr: int, write: bool) -> int:
        """Streams on the bank of ``addr``'s first access, counting it, if every transfer in
        flight is in the same direction and on that bank on another row; else 1. (Writes
        wait in the controller's write buffer and drain in batches, so reads and writes do
        not contend for a bank stream by stream: the reference's pattern d.)"""
        inflight = self.inflight = [x for x in self.inflight if x[1] > now]
        if not inflight:
            return 1
        if inflight[0][4] is not write:  # (cheap, common: another direction in flight)
            return 1
        bb, banks = self.bank_bytes, self.banks
        block = addr // bb
        for start, end, a, n, w in inflight:
            if w != write:
                return 1
            done = n * (now - start) / (end - start) if end > start and now > start else 0
            at = (a + int(done)) // bb
            if at % banks != block % banks or at // banks == block // banks:
                return 1
        return len(inflight) + 1

    def reserve(self, now: float, addr: int, nbytes: int, write: bool, plan: Plan) -> float:
        """Queue a transfer of ``nbytes`` at ``addr`` (a write or a read; ``plan``: its
        channels' exact cycles, :func:`.reservations.plans` with ``exact``) at ``now``;
        return when its data is complete. (Written flat: it runs once per transfer.)"""
        if plan is None:
            return now
        table, interval, blackout = self.channels, self.interval, self.blackout
        if now < interval:  # available time (RefreshClock.available, inlined)
            a0 = now
        else:
            q, r = divmod(now, interval)
            a0 = now - blackout * (q - 1) - (r if r < blackout else blackout)
        vmax, floor = table.vmax, table.floor
        backlog = (vmax if vmax > floor else floor) + table.shift
        bb, banks = self.bank_bytes, self.banks
        block = addr // bb
        history = self.history
        if history:  # the newest transfer covers every bank when it spans 16 blocks or more
            first, last, end = history[-1]
            touched = last - (last - block) % banks
            if touched >= first:
                if end <= (now // interval) * interval:
                    start = a0 + self.trcd  # refreshed since: every bank closed
                elif touched // banks == block // banks:
                    start = a0
                else:
                    start = a0 + self.trp_trcd
            else:
                start = a0 + self._row_cost(block, now)
        else:
            start = a0 + self.trcd
        extra = 0.0
        last_write = self.last_write
        if last_write is not write and last_write is not None:
            turn = self.write_to_read if last_write else self.read_to_write
            idle = a0 - backlog
            if idle < turn:
                extra = turn - (idle if idle > 0 else 0.0)
        self.last_write = write
        if backlog <= a0:
            self.share = 1.0
            self.inflight = []
        elif self.inflight:
            inflight = self.inflight = [x for x in self.inflight if x[1] > a0]
            streams = self._conflict_streams(a0, addr, write) if inflight else 1
            if streams > 1:
                shares = self.shares
                share = shares[streams - 1] if streams <= len(shares) else shares[-1]
                if share < self.share:  # reprice the backlog, then this transfer
                    extra += (backlog - a0) * (self.share / share - 1.0)
                    extra += self._service(plan) * (1.0 / share - 1.0)
                    self.share = share
        if extra:
            plan = _with_base(plan, extra)
        end_avail = table.reserve(start, plan)
        self.inflight.append((a0, end_avail, addr, nbytes, write))
        if end_avail <= interval:  # back to real time (RefreshClock.real, inlined)
            end = end_avail
        else:
            k, rem = divmod(end_avail - interval, interval - blackout)
            end = interval * (k + 1) + (blackout + rem if rem else 0.0)
        history.append((block, (addr + nbytes - 1) // bb, end))
        return end + (self.write_done if write else self.read_done)

    @staticmethod
    def _service(plan: Plan) -> float:
        """The busiest channel's service cycles of a plan."""
        if type(plan) is tuple:
            base, extra, _, run = plan
            return base + (extra if run else 0)
        if type(plan) is list:
            return plan[0] + float(plan[1].max())
        return float(plan.max())


def _with_base(plan: Plan, cycles: float) -> Plan:
    """``plan`` with ``cycles`` more on every channel it touches."""
    if type(plan) is tuple:
        base, extra, first, run = plan
        return (base + cycles, extra, first, run)
    if type(plan) is list:
        return [plan[0] + cycles, plan[1]]
    return plan + cycles * (plan > 0)


class IdealHbm:
    """The ideal HBM (``hbm_model = "ideal"``) behind :class:`HbmModel`'s interface, for
    pattern runs: per-channel FIFO at whole cycles per transfer, then a fixed
    ``hbm_latency_cycles`` (what :meth:`Machine._transfer` does). Times are whole cycles."""

    exact = False

    def __init__(self, cfg: HardwareConfig) -> None:
        self.channels = InterleavedTable(
            cfg.hbm_channels, cfg.hbm_interleave_bytes, cfg.hbm_channel_bytes_per_cycle
        )
        self.latency = cfg.hbm_latency_cycles

    def reserve(self, now: float, addr: int, nbytes: int, write: bool, plan: Plan) -> float:
        return self.channels.reserve(math.ceil(now), plan) + self.latency
