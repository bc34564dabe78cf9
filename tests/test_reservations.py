"""The reservation tables behind the machine's shared resources (buffer bank ports, HBM
channels): hand-computed cases of each request shape, then random request sequences against
a plain per-server FIFO reference (the machine's former implementation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavecore_sim.sim.reservations import (
    InterleavedTable,
    fifo_starts,
    interleaved_shares,
    plans,
    service_cycles,
)
from wavecore_sim.timing import split_interleaved


class Reference:
    """Per-server FIFO queues, one Python loop over every server per request."""

    def __init__(self, ways: int, granule: int, rate: int | float) -> None:
        self.ways, self.granule, self.rate = ways, granule, rate
        self.free_at = [0] * ways

    def reserve(self, now: int, addr: int, nbytes: int) -> int:
        end = now
        for s, share in enumerate(split_interleaved(addr, nbytes, self.ways, self.granule)):
            if share:
                cycles = (
                    -(-share // self.rate)
                    if isinstance(self.rate, int)
                    else math.ceil(share / self.rate)
                )
                self.free_at[s] = max(self.free_at[s], now) + cycles
                end = max(end, self.free_at[s])
        return end


def reserve(table: InterleavedTable, now: int, addr: int, nbytes: int) -> int:
    """Queue ``nbytes`` at ``addr`` on ``table`` at ``now`` (planned as the machine does)."""
    [plan] = plans(np.array([addr]), np.array([nbytes]), table.ways, table.granule, table.rate)
    return table.reserve(now, plan)


# ----------------------------------------------------------------------------- plan shapes


def test_a_range_of_whole_rounds_is_the_same_cycles_on_every_server():
    # 4 banks of 64 B granules at 64 B/cycle: 512 B from 0 is two rounds, 128 B = 2 cycles
    # on each bank; no run (rem 0). extra = ceil(3*64/64) - ceil(2*64/64) = 1 is unused.
    assert plans(np.array([0]), np.array([512]), 4, 64, 64) == [(2, 1, 0, 0)]


def test_a_range_with_a_partial_round_adds_one_granule_on_a_run_from_its_first_server():
    # 320 B from 64: granules 1..5 -> banks 1, 2, 3, 0, 1: one round plus a run of 1
    # granule starting at bank 1. Bank 1: 2 granules = 2 cycles, the others 1 cycle.
    assert plans(np.array([64]), np.array([320]), 4, 64, 64) == [(1, 1, 1, 1)]
    # 5 granules from bank 3 with 4 banks: the run wraps, banks 3 and 0 of a 6-granule range
    assert plans(np.array([3 * 64]), np.array([6 * 64]), 4, 64, 64) == [(1, 1, 3, 2)]


def test_ragged_ends_that_round_differently_give_per_server_deltas():
    # 4 banks, 64 B granules, 32 B/cycle; 256 B from 16: granules 0..4 (head 16, tail 48),
    # so bank 0 holds 48 + 16 = 64 B, banks 1-3 64 B each: 2 cycles everywhere, although
    # the regular shape would give bank 0 (the run) ceil(128 / 32) = 4.
    [[base, deltas]] = plans(np.array([16]), np.array([256]), 4, 64, 32)
    assert base == 2 and deltas.tolist() == [0, 0, 0, 0]


def test_a_range_shorter_than_a_round_lists_the_servers_it_touches():
    # 4096 B from 4096 on 4 banks of 4096 B granules: bank 1 only, 4096 / 64 = 64 cycles
    [cycles] = plans(np.array([4096]), np.array([4096]), 4, 4096, 64)
    assert cycles.tolist() == [0, 64, 0, 0]
    assert plans(np.array([4096]), np.array([0]), 4, 4096, 64) == [None]


@pytest.mark.parametrize(
    ("ways", "granule", "rate"),
    [(64, 64, 64), (4, 4096, 64), (8, 256, 300 / 8 / 0.7), (8, 256, 8.0), (4, 64, 32), (1, 64, 64)],
)
def test_every_plan_describes_the_per_server_cycles_exactly(ways, granule, rate):
    rng = np.random.default_rng(ways * granule)
    addrs = rng.integers(0, 1 << 20, 3000)
    sizes = np.concatenate(
        [
            rng.integers(0, 3 * ways * granule, 2000),
            rng.integers(1, 40, 500) * granule,
            rng.integers(0, 8, 500),
        ]
    )
    expected = service_cycles(interleaved_shares(addrs, sizes, ways, granule), rate)
    for plan, row in zip(plans(addrs, sizes, ways, granule, rate), expected, strict=True):
        if plan is None:
            got = np.zeros(ways, dtype=np.int64)
        elif isinstance(plan, np.ndarray):
            got = plan
        elif isinstance(plan, list):
            got = plan[0] + plan[1]
        else:
            base, extra, first, run = plan
            got = np.full(ways, base)
            got[(np.arange(ways) - first) % ways < run] += extra
        assert got.tolist() == row.tolist()


# ----------------------------------------------------------------------------- the table


def test_two_requests_on_one_bank_queue_and_other_banks_are_free():
    # 4 banks of 4096 B granules, 64 B/cycle: 4096 B on bank 0 takes 64 cycles
    ports = InterleavedTable(4, 4096, 64)
    assert reserve(ports, 0, 0, 4096) == 64
    assert reserve(ports, 0, 0, 4096) == 128  # behind the first: [64, 128)
    assert reserve(ports, 0, 4096, 4096) == 64  # bank 1 is free
    assert ports.free_at == [128, 64, 0, 0]
    assert reserve(ports, 0, 100, 0) == 0  # an empty request touches nothing


def test_whole_round_requests_move_every_bank_together():
    ports = InterleavedTable(4, 64, 64)
    assert reserve(ports, 10, 0, 512) == 12  # 2 cycles on each bank from 10
    assert reserve(ports, 11, 0, 512) == 14  # every bank busy until 12, then 2 more
    assert reserve(ports, 20, 0, 512) == 22  # idle again by 20
    assert ports.free_at == [22, 22, 22, 22]


def test_a_run_makes_its_banks_finish_later():
    ports = InterleavedTable(4, 64, 64)
    # 320 B from 64: bank 1 two cycles, the others one (see the plan test above)
    assert reserve(ports, 0, 64, 320) == 2
    assert ports.free_at == [1, 2, 1, 1]
    assert reserve(ports, 0, 64, 320) == 4  # queued: bank 1 2 + 2, the others 1 + 1
    assert ports.free_at == [2, 4, 2, 2]
    # a run from bank 3 wrapping to bank 0 (plan (1, 1, 3, 2)), at cycle 1: banks 3 and 0
    # take 2 cycles from max(free, 1) = 2 -> 4; bank 1 one from 4 -> 5; bank 2 2 + 1 = 3
    assert reserve(ports, 1, 3 * 64, 6 * 64) == 5
    assert ports.free_at == [4, 5, 3, 4]


def test_a_request_earlier_than_the_last_one_still_queues_exactly():
    # cores reserve at their stream start, which can be ahead of other units' requests
    ports = InterleavedTable(4, 4096, 64)
    assert reserve(ports, 100, 0, 4096) == 164  # bank 0 busy [100, 164)
    assert reserve(ports, 50, 4096, 4096) == 114  # bank 1 free: [50, 114)
    assert reserve(ports, 50, 0, 4096) == 228  # bank 0: behind the first, [164, 228)


def test_hbm_channels_with_a_fractional_rate_round_each_share_up():
    # 8 channels of 256 B granules at 300 GB/s / 8 / 0.7 GHz = 53.57 B/cycle: 2048 B from 0
    # is 256 B on each channel, ceil(256 / 53.57) = 5 cycles
    channels = InterleavedTable(8, 256, 300 / 8 / 0.7)
    assert reserve(channels, 0, 0, 2048) == 5
    # 512 B from 256: channels 1 and 2, 5 cycles each after the first request's 5
    assert reserve(channels, 0, 256, 512) == 10
    assert channels.free_at == [5, 10, 10, 5, 5, 5, 5, 5]


@pytest.mark.parametrize(
    ("ways", "granule", "rate"), [(64, 64, 64), (4, 4096, 64), (8, 256, 300 / 8 / 0.7), (4, 64, 32)]
)
def test_random_request_sequences_match_the_per_server_reference(ways, granule, rate):
    rng = np.random.default_rng(7 + ways)
    table, ref = InterleavedTable(ways, granule, rate), Reference(ways, granule, rate)
    now = 0
    for _ in range(3000):
        # time mostly moves on, sometimes back a little (a core's look-ahead), and requests
        # come in every shape: several rounds, partial rounds, ragged ends, tiny, empty
        now = max(0, now + int(rng.integers(-20, 60)))
        addr = int(rng.integers(0, 1 << 16))
        nbytes = int(
            rng.choice(
                [
                    rng.integers(0, 64),
                    rng.integers(1, 4 * ways * granule),
                    rng.integers(1, 5) * ways * granule,
                ]
            )
        )
        assert reserve(table, now, addr, nbytes) == ref.reserve(now, addr, nbytes)
    assert table.free_at == ref.free_at


def test_fifo_starts_follow_the_queue():
    # arrivals 0, 0, 50 holding 10, 20, 5: the second waits for the first until 10, the
    # third finds the server free at 30 and starts on arrival
    assert fifo_starts(np.array([0, 0, 50]), np.array([10, 20, 5])).tolist() == [0, 10, 50]
    # queue order, not arrival order, decides: 5 then 0 then 0 -> 5, 15, 25
    assert fifo_starts(np.array([5, 0, 0]), np.array([10, 10, 10])).tolist() == [5, 15, 25]
