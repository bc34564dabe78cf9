"""Timing formulas (wavecore_sim.timing), every expected number worked out by hand.

Default machine: R = C = 128 (array rows/cols), act/weight 2 B, accumulators 4 B, vector unit
128 lanes x 8 ops = 1024 ops/cycle with a 32-cycle start-up per pass, HBM 8 channels of
300 GB/s / 700 MHz / 8 = 53.57 B/cycle each, 256 B interleave, 100 cycles latency.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavecore_sim.api import make_config
from wavecore_sim.timing import (
    GemmTiming,
    busiest_interleaved_totals,
    dma_ideal_cycles,
    gemm_buffer_bytes,
    gemm_folds,
    gemm_timing,
    hbm_service_cycles,
    interleaved_busiest,
    interleaved_totals,
    split_interleaved,
    vector_cycles,
)

CFG = make_config()  # double-buffered (the default)
SINGLE = dataclasses.replace(CFG, weight_double_buffer=False)
# round HBM numbers: 512 GB/s at 1000 MHz = 512 B/cycle, 8 channels -> 64 B/cycle each
ROUND_HBM = dataclasses.replace(CFG, clock_mhz=1000.0, hbm_gbps=512.0, hbm_latency_cycles=100)


# ----------------------------------------------------------------------------- GEMM cycles


def test_gemm_folds_count_ragged_tiles():
    # K=147 -> ceil(147/128) = 2 row folds; N=200 -> ceil(200/128) = 2 column folds
    assert gemm_folds(147, 200, CFG) == (2, 2)
    # exact multiples: K=256 -> 2, N=128 -> 1
    assert gemm_folds(256, 128, CFG) == (2, 1)


def test_gemm_without_double_buffering_is_scale_sim_formula_ragged_k_and_n():
    t = gemm_timing(256, 300, 200, SINGLE)
    # F = ceil(300/128) * ceil(200/128) = 3 * 2 = 6
    # loads 6 * 128 = 768; stream 6 * 256 = 1536; skew 6 * (127 + 127) = 1524
    assert t == GemmTiming(folds=6, first_load=768, stream=1536, exposed_loads=0, drain=1524)
    # F * (2R + C + M - 2) = 6 * (256 + 128 + 256 - 2) = 6 * 638 = 3828
    assert t.total == 3828


def test_gemm_without_double_buffering_with_m_less_than_r_and_k_147():
    t = gemm_timing(50, 147, 128, SINGLE)
    # F = 2 * 1 = 2; 2 * (256 + 128 + 50 - 2) = 2 * 432 = 864
    assert (t.folds, t.first_load, t.stream, t.exposed_loads, t.drain) == (2, 256, 100, 0, 508)
    assert t.total == 864


def test_double_buffered_gemm_with_m_less_than_r_exposes_r_minus_m_per_later_fold():
    t = gemm_timing(50, 147, 128, CFG)
    # F = 2; first load 128; stream 2 * 50 = 100; exposed (F-1)*(R-M) = 1 * 78 = 78;
    # drain once (127 + 127) = 254; total 128 + 100 + 78 + 254 = 560
    assert t == GemmTiming(folds=2, first_load=128, stream=100, exposed_loads=78, drain=254)
    assert t.total == 560


def test_double_buffered_gemm_with_m_at_least_r_hides_every_later_load():
    t = gemm_timing(256, 300, 200, CFG)
    # F = 6; 128 + 6 * 256 + 5 * max(0, 128 - 256) + 254 = 128 + 1536 + 0 + 254 = 1918
    assert t == GemmTiming(folds=6, first_load=128, stream=1536, exposed_loads=0, drain=254)
    assert t.total == 1918
    # M == R exactly: K=256, N=256 -> F = 4; 128 + 4*128 + 3*0 + 254 = 894
    assert gemm_timing(128, 256, 256, CFG).total == 894


def test_double_buffered_gemm_with_a_single_fold_equals_the_unbuffered_one():
    # F = 1 -> nothing to overlap: 128 + 10 + 0 + 254 = 392 = 2R + C + M - 2 = 256+128+10-2
    assert gemm_timing(10, 100, 100, CFG).total == gemm_timing(10, 100, 100, SINGLE).total == 392


def test_double_buffered_gemm_on_tiny_preset_32x32():
    tiny = make_config("tiny")
    # R = C = 32; M=5, K=70, N=40: F = ceil(70/32) * ceil(40/32) = 3 * 2 = 6
    # 32 + 6*5 + 5*(32-5) + (31 + 31) = 32 + 30 + 135 + 62 = 259
    assert gemm_timing(5, 70, 40, tiny).total == 259


@settings(max_examples=200, deadline=None)
@given(m=st.integers(1, 600), k=st.integers(1, 600), n=st.integers(1, 600))
def test_gemm_timing_closed_forms_hold_for_any_shape(m, k, n):
    r, c = CFG.array_rows, CFG.array_cols
    f = -(-k // r) * -(-n // c)
    assert gemm_timing(m, k, n, SINGLE).total == f * (2 * r + c + m - 2)
    assert gemm_timing(m, k, n, CFG).total == (
        r + f * m + (f - 1) * max(0, r - m) + (r - 1) + (c - 1)
    )
    # double-buffering never hurts
    assert gemm_timing(m, k, n, CFG).total <= gemm_timing(m, k, n, SINGLE).total


# ----------------------------------------------------------------------------- buffer bytes


def test_gemm_buffer_bytes_with_three_k_folds_and_two_n_folds():
    # M=100, K=300, N=200: kf = 3, nf = 2
    # partial sums (kf-1) * M * N * 4 = 2 * 20000 * 4 = 160000
    # reads: A once per column fold 100*300*2*2 = 120000 + B 300*200*2 = 120000 + 160000
    #        = 400000; writes 160000 + C 100*200*2 = 40000 -> 200000
    assert gemm_buffer_bytes(100, 300, 200, False, 2, CFG) == (400_000, 200_000)
    # accumulate: also read the old accumulator, 100*200*4 = 80000 -> 480000
    assert gemm_buffer_bytes(100, 300, 200, True, 2, CFG) == (480_000, 200_000)


def test_gemm_buffer_bytes_single_fold_has_no_partial_sums():
    # M=10, K=100, N=100: kf = nf = 1; reads 10*100*2 + 100*100*2 = 2000 + 20000 = 22000
    assert gemm_buffer_bytes(10, 100, 100, False, 2, CFG) == (22_000, 2_000)
    # fp32 output (weight gradients): 10*100*4 = 4000
    assert gemm_buffer_bytes(10, 100, 100, False, 4, CFG) == (22_000, 4_000)


# ----------------------------------------------------------------------------- vector ops


@pytest.mark.parametrize(
    ("ops", "passes", "expected"),
    [
        (1024, 1, 33),  # 32 + ceil(1024/1024) = 32 + 1
        (1025, 1, 34),  # 32 + ceil(1025/1024) = 32 + 2
        (10_000, 2, 74),  # 2*32 + ceil(10000/1024 = 9.77) = 64 + 10
        (1, 3, 97),  # 3*32 + 1
    ],
)
def test_vector_cycles_are_startup_per_pass_plus_lane_parallel_work(ops, passes, expected):
    assert vector_cycles(ops, passes, CFG) == expected


def test_vector_cycles_on_tiny_preset():
    # tiny: 32 lanes x 8 = 256 ops/cycle; 3 passes * 32 + ceil(1000/256 = 3.9) = 96 + 4 = 100
    assert vector_cycles(1000, 3, make_config("tiny")) == 100


# ----------------------------------------------------------------------------- interleaving


def test_split_interleaved_aligned_range_is_even():
    # [0, 1024) = granules 0..3, one per way
    assert split_interleaved(0, 1024, 4, 256) == [256, 256, 256, 256]


def test_split_interleaved_unaligned_addr_100_nbytes_1000():
    # [100, 1100): granule 0 [0,256) gives 156 B (way 0), granules 1..3 give 256 B each
    # (ways 1..3), granule 4 [1024, 1100) gives 76 B (way 0): way 0 = 156 + 76 = 232
    shares = split_interleaved(100, 1000, 4, 256)
    assert shares == [232, 256, 256, 256]
    assert sum(shares) == 1000


@pytest.mark.parametrize(
    ("addr", "nbytes", "expected"),
    [
        (300, 10, [0, 10, 0, 0]),  # inside granule 1 (300 // 256 = 1)
        (250, 10, [6, 4, 0, 0]),  # [250, 256) on way 0, [256, 260) on way 1
        (0, 1, [1, 0, 0, 0]),
        (1023, 1, [0, 0, 0, 1]),  # granule 3
        # [968, 1568): granule 3 -> 56 B (way 3), 4 -> 256 (way 0), 5 -> 256 (way 1),
        # granule 6 [1536, 1568) -> 32 (way 2)
        (968, 600, [256, 256, 32, 56]),
    ],
)
def test_split_interleaved_short_ranges(addr, nbytes, expected):
    assert split_interleaved(addr, nbytes, 4, 256) == expected
    assert sum(expected) == nbytes


def test_split_interleaved_long_ranges_wrap_around_the_ways():
    # [0, 2560) = 10 granules: ways 0,1 get 3 (768 B), ways 2,3 get 2 (512 B)
    assert split_interleaved(0, 2560, 4, 256) == [768, 768, 512, 512]
    # [100, 3100): granules 0..12 (3099 // 256 = 12). way 0 has granules 0,4,8,12:
    # 156 + 256 + 256 + 28 ([3072, 3100)) = 696; ways 1..3 have three full granules: 768
    assert split_interleaved(100, 3000, 4, 256) == [696, 768, 768, 768]
    assert 696 + 3 * 768 == 3000


def test_split_interleaved_of_nothing_is_all_zero():
    assert split_interleaved(12345, 0, 4, 256) == [0, 0, 0, 0]


@settings(max_examples=300, deadline=None)
@given(
    addr=st.integers(0, 5000),
    nbytes=st.integers(0, 5000),
    ways=st.integers(1, 9),
    granule=st.sampled_from([1, 3, 64, 256]),
)
def test_split_interleaved_matches_byte_by_byte_count(addr, nbytes, ways, granule):
    expected = [0] * ways
    for x in range(addr, addr + nbytes):
        expected[(x // granule) % ways] += 1
    assert split_interleaved(addr, nbytes, ways, granule) == expected


@settings(max_examples=200, deadline=None)
@given(
    ranges=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 100_000), st.integers(0, 20_000)), max_size=12
    ),
    ways=st.integers(1, 64),
    granule=st.sampled_from([1, 64, 256]),
)
def test_interleaved_totals_sum_split_interleaved_per_group(ranges, ways, granule):
    # the analytical model spreads all of a program's ranges at once; it must equal adding up
    # split_interleaved range by range, group by group
    expected = [[0] * ways for _ in range(4)]
    for group, addr, nbytes in ranges:
        for w, share in enumerate(split_interleaved(addr, nbytes, ways, granule)):
            expected[group][w] += share
    got = interleaved_totals(
        [g for g, _, _ in ranges],
        [a for _, a, _ in ranges],
        [n for _, _, n in ranges],
        4,
        ways,
        granule,
    )
    assert got.tolist() == expected


@given(
    ranges=st.lists(
        st.tuples(st.integers(0, 9), st.integers(0, 100_000), st.integers(0, 20_000)), max_size=20
    ),
    ways=st.integers(1, 16),
    per_pass=st.integers(1, 12),
)
def test_busiest_interleaved_totals_in_slices_equals_the_whole_table(ranges, ways, per_pass):
    ranges = sorted(ranges)  # groups ascending, as the function requires
    args = (
        [g for g, _, _ in ranges],
        [a for _, a, _ in ranges],
        [n for _, _, n in ranges],
        10,
        ways,
        64,
    )
    whole = interleaved_totals(*args).max(axis=1)
    assert busiest_interleaved_totals(*args, groups_per_pass=per_pass).tolist() == whole.tolist()


@given(
    ranges=st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 20_000)), max_size=12),
    ways=st.integers(1, 64),
    granule=st.sampled_from([1, 64, 256]),
)
def test_interleaved_busiest_is_the_largest_split_interleaved_share(ranges, ways, granule):
    # the closed form picks among the first chunk's, the last chunk's and a whole-chunk target
    expected = [max(split_interleaved(a, n, ways, granule)) for a, n in ranges]
    got = interleaved_busiest([a for a, _ in ranges], [n for _, n in ranges], ways, granule)
    assert got.tolist() == expected


def test_interleaved_busiest_hand_computed():
    # [100, 1100) over 4 ways of 256 B: chunks 0..4, shares [156, 256, 256, 256] + chunk 4
    # (76 B) on target 0 -> 232; busiest 256
    assert interleaved_busiest([100], [1000], 4, 256).tolist() == [256]
    # [100, 356) within 2 chunks on 2 ways: 156 on target 0, 100 on target 1
    assert interleaved_busiest([100, 0], [256, 0], 2, 256).tolist() == [156, 0]


# ----------------------------------------------------------------------------- DMA


def test_hbm_service_cycles_round_up():
    # 64 B/cycle per channel: 256 B -> 4 cycles, 257 B -> 5 cycles
    assert hbm_service_cycles(256, ROUND_HBM) == 4
    assert hbm_service_cycles(257, ROUND_HBM) == 5


def test_dma_ideal_cycles_with_round_bandwidth():
    # one granule on one channel: 100 + 256/64 = 104
    assert dma_ideal_cycles(0, 256, ROUND_HBM) == 104
    # [0, 2304) = 9 granules over 8 channels: channel 0 gets 2 (512 B): 100 + 512/64 = 108
    assert dma_ideal_cycles(0, 2304, ROUND_HBM) == 108
    # [100, 1100): busiest channel has 256 B (channels 1..3), 100 + 4 = 104
    assert dma_ideal_cycles(100, 1000, ROUND_HBM) == 104


def test_dma_ideal_cycles_on_default_machine():
    # per channel 300e9 / 700e6 / 8 = 53.571 B/cycle
    # 256 B on one channel: ceil(4.78) = 5 -> 105
    assert dma_ideal_cycles(0, 256, CFG) == 105
    # 4096 B = 16 granules, 2 per channel = 512 B: ceil(9.56) = 10 -> 110
    assert dma_ideal_cycles(0, 4096, CFG) == 110
    # latency alone for an empty-ish transfer of one byte: 100 + ceil(1/53.6) = 101
    assert dma_ideal_cycles(7, 1, CFG) == 101


def test_calibrated_hbm_terms_in_closed_form():
    # JEDEC HBM2 timings of the default preset (config.py): blackout tRP + tRFC + tRCD =
    # 14.507 + 260.267 + 14.507 = 289.281 ns every tREFI 3900 ns
    from wavecore_sim.timing import dma_cycles_many, dma_min_cycles_many, hbm_refresh_stretch

    # 3900 / 3610.719 = 1.0801 (worked out by hand, not with the module's formula)
    assert hbm_refresh_stretch(CFG) == pytest.approx(1.080117, rel=1e-6)
    # Every number below is worked out by hand from the preset (config.py), so a change in
    # the module's formulas shows up here instead of being copied into the expectation.
    # A 2 KiB read at 0: 2048 / 256 = 8 granules, one per channel: 256 B per channel.
    # Channel rate 300 GB/s / 8 = 37.5 GB/s at 700 MHz = 53.571 B/cycle: 256 B = 4.779 cycles.
    # Read latency: 40 on-chip cycles + (tCK 0.853 + CL 14.507) ns x 0.7 cycles/ns = 10.752.
    # Least: 40 + 10.752 + 4.779 = 55.531 -> rounded up once: 56.
    assert dma_min_cycles_many([0], [2048], [False], CFG).tolist() == [56]
    # The analytical model adds a row opening after another row, (tRP 14.507 + tRCD 14.507)
    # ns x 0.7 = 20.310 cycles, and refresh's stretch of the service, 4.779 x 0.0801 = 0.383:
    # 55.531 + 20.310 + 0.383 = 76.223 -> 77.
    assert dma_cycles_many([0], [2048], [False], CFG).tolist() == [77]
    ideal = dataclasses.replace(CFG, hbm_model="ideal")
    assert dma_cycles_many([0], [2048], [False], ideal).tolist() == [100 + 5]  # ceil(4.779)
