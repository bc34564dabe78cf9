"""The SimPy machine: single GEMMs against the closed forms, contention on HBM channels and
buffer ports, stall attribution, invariants and determinism.

Hand-built programs use round machines so every number can be worked out by hand:

* ``SLOW_HBM``: 64 GB/s at 1000 MHz = 64 B/cycle over 8 channels = 8 B/cycle per channel,
  256 B interleave, 100-cycle latency. A 256 B transfer on one channel: 100 + 256/8 = 132.
* R = C = 128 arrays; a 128 x 128 x 128 GEMM is one fold: load 128, stream 128, drain
  127 + 127 = 254 (done 510 cycles after it begins when nothing else is in the way).
* Global buffer defaults: 64 banks x 64 B interleave, 64 B/cycle per port.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from conftest import TINYNET
from hypothesis import given, settings
from hypothesis import strategies as st

from wavecore_sim import api
from wavecore_sim.api import make_config
from wavecore_sim.compiler.microbench import gemm_program
from wavecore_sim.compiler.verify import verify_program
from wavecore_sim.errors import InvariantError
from wavecore_sim.ir import (
    Access,
    Alloc,
    DramRegion,
    Gemm,
    Instr,
    Op,
    Program,
    Step,
    Traffic,
    Transfer,
    Unit,
    Vector,
    machine_units,
    program_from_instrs,
)
from wavecore_sim.sim import ChannelLog, SimResult, simulate
from wavecore_sim.sim.invariants import check_invariants
from wavecore_sim.sim.machine import Machine

CFG = make_config()
SINGLE = dataclasses.replace(CFG, weight_double_buffer=False)
# the ideal HBM model (per-channel FIFO + fixed latency): the hand counts below use it
SLOW_HBM = dataclasses.replace(
    CFG, clock_mhz=1000.0, hbm_gbps=64.0, hbm_latency_cycles=100, hbm_model="ideal"
)
R = C = 128
DRAM = [DramRegion(0, 0, 1 << 20, "dram", True)]  # every hand-built transfer lies in it


def unbuffered_cycles(m: int, k: int, n: int) -> int:
    """SCALE-Sim weight-stationary: ceil(K/R) * ceil(N/C) * (2R + C + M - 2)."""
    return math.ceil(k / R) * math.ceil(n / C) * (2 * R + C + m - 2)


def buffered_cycles(m: int, k: int, n: int) -> int:
    """R + F*M + (F-1)*max(0, R-M) + R-1 + C-1."""
    f = math.ceil(k / R) * math.ceil(n / C)
    return R + f * m + (f - 1) * max(0, R - m) + (R - 1) + (C - 1)


def assert_accounting_adds_up(prog: Program, result: SimResult) -> None:
    """Each unit's accounting checked against its own instruction spans, not against itself.

    The machine charges every gap before one of a unit's instructions to a stall (waiting
    for that instruction's dependencies), so the unit is idle only after its last
    instruction completes: idle = elapsed - that completion (all of it with no instructions).
    For the in-order units (vector, DMA) the gaps between consecutive spans [start, end)
    are summed from the spans and must equal the dependency waits: the dependency stall
    plus the DRAM stall less the HBM waits inside spans (``wait_hbm``).
    """
    unit = np.asarray(prog.cols["unit"])
    for u, name in enumerate(prog.unit_names):
        s = result.units[name]
        parts = [s.busy, s.idle, *s.stalls.values()]
        assert min(parts) >= 0, (name, s)
        ids = np.flatnonzero(unit == u)
        last_done = int(result.done[ids].max()) if len(ids) else 0
        assert s.idle == result.cycles - last_done, (name, s, last_done)
        assert s.busy + sum(s.stalls.values()) == last_done, (name, s, last_done)
        if len(ids) and not name.startswith("core"):
            ids = ids[np.argsort(result.start[ids], kind="stable")]
            previous_end = np.concatenate([[0], result.end[ids][:-1]])
            gaps = int((result.start[ids] - previous_end).sum())
            waits = s.stalls["dependency"] + s.stalls["dram"] - int(result.wait_hbm[ids].sum())
            assert gaps == waits, (name, s, gaps)


def program(cfg, allocs, instrs, planned=None) -> Program:
    return program_from_instrs(
        machine_units(cfg.cores), cfg.gbuf_bytes, allocs, instrs, DRAM, planned=planned or {}
    )


def step(layer: str = "") -> Step:
    return Step(0, layer, "FWD")


def load(iid, unit, alloc, nbytes, dram_addr, deps=(), layer="") -> Instr:
    return Instr(
        iid,
        Unit.parse(unit),
        Op.LOAD,
        tuple(deps),
        (),
        (Access(alloc, 0, nbytes),),
        Transfer(dram_addr, nbytes, Traffic.WEIGHTS, 0),
        step(layer),
        "w",
    )


def store(iid, unit, alloc, nbytes, dram_addr, deps=()) -> Instr:
    return Instr(
        iid,
        Unit.parse(unit),
        Op.STORE,
        tuple(deps),
        (Access(alloc, 0, nbytes),),
        (),
        Transfer(dram_addr, nbytes, Traffic.ACTIVATIONS, 0),
        step(),
        "a",
    )


def gemm(iid, unit, src, dst, m=128, k=128, n=128, deps=(), acc=False) -> Instr:
    """A FWD GEMM reading rows and its k x n weights from ``src``, writing m x n to ``dst``
    (the access sizes the verifier checks against the shape)."""
    return Instr(
        iid,
        Unit.parse(unit),
        Op.GEMM,
        tuple(deps),
        (Access(src, 0, 256), Access(src, 0, k * n * CFG.weight_bytes)),
        (Access(dst, 0, m * n * CFG.act_bytes, acc),),
        Gemm(m, k, n, False, CFG.act_bytes),
        step(),
        "FWD",
    )


def vec(iid, unit, src, dst, ops, nbytes=4096, deps=()) -> Instr:
    return Instr(
        iid,
        Unit.parse(unit),
        Op.VEC,
        tuple(deps),
        (Access(src, 0, nbytes),),
        (Access(dst, 0, nbytes),),
        Vector(ops, 1, ops),
        step(),
        "relu",
    )


def allocs_every_64k(count: int) -> list[Alloc]:
    return [Alloc(i, i * 65536, 65536, f"a{i}") for i in range(count)]


def channel_rows(result: SimResult, channel: int) -> list[tuple[int, int, int]]:
    """(start, end, bytes) of each reservation of ``channel``, in order."""
    log = result.channel_log
    on = log.channel == channel
    return list(
        zip(log.start[on].tolist(), log.end[on].tolist(), log.nbytes[on].tolist(), strict=True)
    )


# ----------------------------------------------------------------------------- single GEMM


@pytest.mark.parametrize(
    ("m", "k", "n", "expected"),
    [
        (256, 300, 200, 3828),  # F = 3*2 = 6: 6 * (256 + 128 + 256 - 2) = 6 * 638
        (50, 147, 128, 864),  # M < R, ragged K: F = 2: 2 * (256 + 128 + 50 - 2) = 2 * 432
        (1, 1, 1, 383),  # F = 1: 256 + 128 + 1 - 2
        (128, 128, 128, 510),  # F = 1: 256 + 128 + 128 - 2
        (300, 1000, 129, 10912),  # F = 8 * 2 = 16: 16 * (256 + 128 + 300 - 2) = 16 * 682
    ],
)
def test_single_gemm_without_double_buffering_matches_scale_sim_formula(run_cli, m, k, n, expected):
    out = run_cli(
        "gemm",
        "--m",
        str(m),
        "--k",
        str(k),
        "--n",
        str(n),
        "--ideal-memory",
        "--set",
        "weight_double_buffer=false",
        "--json",
    )
    assert out.code == 0, out.err
    report = json.loads(out.out)
    assert report["cycles"] == expected == unbuffered_cycles(m, k, n)
    assert report["cores"] == 1 and report["weight_double_buffer"] is False
    assert report["macs"] == m * k * n
    # every weight load is exposed: F * R; nothing waits for memory
    f = math.ceil(k / R) * math.ceil(n / C)
    assert report["core_stalls"] == {
        "dram": 0,
        "buffer_port": 0,
        "dependency": 0,
        "weight_load": f * R,
    }


@pytest.mark.parametrize(
    ("m", "k", "n", "expected"),
    [
        (256, 300, 200, 1918),  # F = 6: 128 + 6*256 + 0 + 254
        (50, 147, 128, 560),  # F = 2, M < R: 128 + 2*50 + 1*78 + 254
        (10, 1000, 1000, 8456),  # F = 8*8 = 64: 128 + 640 + 63*118 (= 7434) + 254
        (128, 256, 256, 894),  # F = 4, M = R: 128 + 512 + 0 + 254
    ],
)
def test_single_gemm_with_double_buffering_exposes_first_load_and_short_streams(
    run_cli, m, k, n, expected
):
    out = run_cli("gemm", "--m", str(m), "--k", str(k), "--n", str(n), "--ideal-memory", "--json")
    assert out.code == 0, out.err
    report = json.loads(out.out)
    assert report["cycles"] == expected == buffered_cycles(m, k, n)
    # weight_load = first load R + (F-1)*max(0, R-M); e.g. 50x147x128: 128 + 78 = 206
    f = math.ceil(k / R) * math.ceil(n / C)
    assert report["core_stalls"]["weight_load"] == R + (f - 1) * max(0, R - m)


def test_gemm_on_two_cores_runs_ceil_m_over_two_rows_on_the_busier_core(run_cli):
    # M = 257 -> rows 128 and 129; 129 rows, F = 6: 128 + 6*129 + 0 + 254 = 1156
    out = run_cli(
        "gemm", "--m", "257", "--k", "300", "--n", "200", "--cores", "2", "--ideal-memory", "--json"
    )
    report = json.loads(out.out)
    assert (report["cores"], report["cycles"]) == (2, 1156)
    assert report["macs"] == 257 * 300 * 200
    # unbuffered, M = 101 -> 51 rows: F = 2: 2 * (256 + 128 + 51 - 2) = 866
    out = run_cli(
        "gemm",
        "--m",
        "101",
        "--k",
        "147",
        "--n",
        "128",
        "--cores",
        "2",
        "--ideal-memory",
        "--set",
        "weight_double_buffer=false",
        "--json",
    )
    assert json.loads(out.out)["cycles"] == 866


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("double", [True, False])
@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 400), k=st.integers(1, 400), n=st.integers(1, 400))
def test_ideal_memory_simulator_equals_closed_form_for_any_small_gemm(cores, double, m, k, n):
    cfg = dataclasses.replace(CFG, cores=cores, weight_double_buffer=double)
    prog = gemm_program(m, k, n, cfg, ideal_memory=True)
    result = simulate(prog, cfg, ideal_memory=True)
    rows = math.ceil(m / cores)
    assert result.cycles == (buffered_cycles if double else unbuffered_cycles)(rows, k, n)
    assert result.macs == m * k * n
    assert_accounting_adds_up(prog, result)


def test_gemm_with_real_memory_is_no_faster_than_ideal_and_moves_every_operand_once():
    m, k, n = 256, 300, 200
    prog = gemm_program(m, k, n, CFG)
    result = simulate(prog, CFG)
    assert result.cycles > buffered_cycles(m, k, n)  # 1918 plus loading B and the first A
    # B 300*200*2 = 120000 + A 256*300*2 = 153600 read; C 256*200*2 = 102400 written
    assert (result.dram_read_bytes, result.dram_write_bytes) == (273_600, 102_400)
    assert_accounting_adds_up(prog, result)


def test_back_to_back_gemms_hide_the_second_weight_load_under_the_first_stream():
    prog = program(CFG, allocs_every_64k(2), [gemm(0, "core0", 0, 1), gemm(1, "core0", 0, 1)])
    result = simulate(prog, CFG)
    # first: load [0,128), stream [128,256), drain to 510; the second's weights load during
    # the first's (only) fold [128,256), so it streams [256,384) and drains to 384+254 = 638
    assert (result.start.tolist(), result.end.tolist(), result.done.tolist()) == (
        [0, 256],
        [256, 384],
        [510, 638],
    )
    core = result.units["core0"]
    assert core.stalls["weight_load"] == 128
    assert core.busy == 128 + 128 + 254  # two streams and the one exposed drain
    assert result.cycles == 638
    assert_accounting_adds_up(prog, result)


# ----------------------------------------------------------------------------- HBM contention


def two_loads(addr_a: int, addr_b: int) -> Program:
    return program(
        SLOW_HBM,
        allocs_every_64k(2),
        [load(0, "dma0.ld", 0, 256, addr_a), load(1, "dma1.ld", 1, 256, addr_b)],
    )


def test_two_loads_on_one_hbm_channel_queue_behind_each_other():
    # 0 // 256 % 8 = 0 and 2048 // 256 % 8 = 0: both on channel 0, 256/8 = 32 cycles each.
    # The first finishes at 100 + 32 = 132, the second at 100 + 32 + 32 = 164.
    prog = two_loads(0, 256 * SLOW_HBM.hbm_channels)
    result = simulate(prog, SLOW_HBM)
    assert sorted(result.done.tolist()) == [132, 164]
    assert result.cycles == 164
    assert channel_rows(result, 0) == [(0, 32, 256), (32, 64, 256)]
    assert len(result.channel_log) == 2  # nothing on the other channels
    later = "dma0.ld" if result.done[0] == 164 else "dma1.ld"
    assert result.units[later].stalls["dram"] == 32  # queued behind the other transfer
    assert result.units[later].busy == 132  # its uncontended time
    assert_accounting_adds_up(prog, result)


# the calibrated HBM with round timings at 1 GHz (1 cycle = 1 ns): tRCD 5, CL 10, nothing else
CALIBRATED = dataclasses.replace(
    SLOW_HBM,
    hbm_model="calibrated",
    hbm_onchip_latency_cycles=0,
    hbm_tck_ns=0.0,
    hbm_trcd_ns=5.0,
    hbm_trp_ns=4.0,
    hbm_tcl_ns=10.0,
)


def test_calibrated_hbm_opens_the_row_then_shares_the_channel():
    # the same two 256 B loads on channel 0, bank 0, row 0 (tests/test_hbm.py counts the
    # model's other cases). The first opens the row (tRCD 5), holds the channel over
    # [5, 37), data CL 10 later: 47. The second finds the row open and queues behind it on
    # the channel: [37, 69), data at 79.
    prog = two_loads(0, 256 * SLOW_HBM.hbm_channels)
    result = simulate(prog, CALIBRATED)
    assert sorted(result.done.tolist()) == [47, 79]
    first = "dma0.ld" if result.done[0] == 47 else "dma1.ld"
    later = "dma1.ld" if first == "dma0.ld" else "dma0.ld"
    # busy: the fewest cycles a load can take, CL + 32 = 42; the rest is waiting on DRAM
    assert result.units[first].busy == result.units[later].busy == 42
    assert result.units[first].stalls["dram"] == 5  # the row opening
    assert result.units[later].stalls["dram"] == 79 - 42  # behind the other load
    assert_accounting_adds_up(prog, result)


@pytest.mark.parametrize(("layers", "other_layer_wait"), [(("a", "a"), 0), (("a", "b"), 32)])
def test_channel_wait_is_split_by_the_layer_holding_the_channel(layers, other_layer_wait):
    # the later of two loads on channel 0 waits 32 cycles; the validation needs to know whether
    # it waited for its own layer's transfer (a per-layer model can see that) or another's
    instrs = [
        load(i, u, i, 256, 256 * SLOW_HBM.hbm_channels * i, layer=layer)
        for i, (u, layer) in enumerate(zip(("dma0.ld", "dma1.ld"), layers, strict=True))
    ]
    result = simulate(program(SLOW_HBM, allocs_every_64k(2), instrs), SLOW_HBM)
    later = 0 if result.done[0] == 164 else 1
    assert result.wait_hbm[later] == 32 and result.wait_hbm[1 - later] == 0
    assert result.wait_hbm_other[later] == other_layer_wait
    assert result.wait_port.tolist() == [0, 0] and result.wait_weight.tolist() == [0, 0]


def test_two_loads_on_different_hbm_channels_overlap():
    # channels 0 and 1: both 100 + 32 = 132
    prog = two_loads(0, 256)
    result = simulate(prog, SLOW_HBM)
    assert result.done.tolist() == [132, 132]
    assert result.cycles == 132
    assert channel_rows(result, 0) == [(0, 32, 256)] and channel_rows(result, 1) == [(0, 32, 256)]
    assert sum(result.units[u].stalls["dram"] for u in ("dma0.ld", "dma1.ld")) == 0
    assert_accounting_adds_up(prog, result)


def test_ideal_memory_ignores_hbm_channel_contention():
    result = simulate(two_loads(0, 256 * SLOW_HBM.hbm_channels), SLOW_HBM, ideal_memory=True)
    assert result.done.tolist() == [132, 132]
    assert len(result.channel_log) == 0  # no channel is reserved with ideal memory


def test_load_and_store_share_the_channels():
    # a STORE of 256 B from dma1.st to DRAM address 2048 (channel 0) queues behind a LOAD
    prog = program(
        SLOW_HBM,
        allocs_every_64k(2),
        [load(0, "dma0.ld", 0, 256, 0), store(1, "dma1.st", 1, 256, 2048)],
    )
    result = simulate(prog, SLOW_HBM)
    assert sorted(result.done.tolist()) == [132, 164]
    assert (result.dram_read_bytes, result.dram_write_bytes) == (256, 256)


# ----------------------------------------------------------------------------- buffer ports

# 4 banks of 4096 B granules, 64 B/cycle per port: 4096 B on one bank takes 64 cycles.
# Vector ops with no start-up and 65536 ops at 1024 ops/cycle also take 64 cycles.
PORTS = dataclasses.replace(CFG, gbuf_banks=4, gbuf_interleave_bytes=4096, vector_startup_cycles=0)
BANK_ALLOCS = [Alloc(i, i * 4096, 4096, f"bank{i}") for i in range(4)]  # alloc i on bank i


def two_vector_ops(src_a: int, src_b: int) -> Program:
    # each writes its own bank (2 and 3), so only the reads can collide
    return program(
        PORTS, BANK_ALLOCS, [vec(0, "vec0", src_a, 2, 65536), vec(1, "vec1", src_b, 3, 65536)]
    )


def test_vector_ops_reading_the_same_bank_are_stretched_by_the_read_port():
    prog = two_vector_ops(0, 0)
    result = simulate(prog, PORTS)
    # bank 0's read port: [0, 64) for the first op, [64, 128) for the second
    assert sorted(result.end.tolist()) == [64, 128]
    stalls = [result.units[u].stalls["buffer_port"] for u in ("vec0", "vec1")]
    assert sorted(stalls) == [0, 64]
    assert [result.units[u].busy for u in ("vec0", "vec1")] == [64, 64]
    assert result.cycles == 128
    assert_accounting_adds_up(prog, result)


def test_vector_ops_reading_different_banks_are_not_stretched():
    result = simulate(two_vector_ops(0, 1), PORTS)
    assert result.end.tolist() == [64, 64]
    assert all(result.units[u].stalls["buffer_port"] == 0 for u in ("vec0", "vec1"))
    assert result.cycles == 64


def test_ideal_memory_ignores_buffer_port_contention():
    assert simulate(two_vector_ops(0, 0), PORTS, ideal_memory=True).cycles == 64


# ----------------------------------------------------------------------------- stall causes


def test_gemm_waiting_for_a_load_is_a_dram_stall():
    prog = program(
        SLOW_HBM,
        allocs_every_64k(2),
        [load(0, "dma0.ld", 0, 256, 0), gemm(1, "core0", 0, 1, deps=[0])],
    )
    result = simulate(prog, SLOW_HBM)
    # LOAD done at 132; GEMM: weights [132, 260), stream [260, 388), drain to 642
    assert result.done.tolist() == [132, 642]
    core = result.units["core0"]
    assert core.stalls == {"dram": 132, "buffer_port": 0, "dependency": 0, "weight_load": 128}
    assert (core.busy, core.idle) == (128 + 254, 0)
    # the GEMM's occupancy [132, 388) = its first weight tile (a wait) + the stream (its work)
    assert (result.start[1], result.end[1], result.wait_weight[1]) == (132, 388, 128)
    assert_accounting_adds_up(prog, result)


def test_gemm_waiting_for_a_vector_unit_is_a_dependency_stall():
    # VEC: 32 start-up + 102400 / 1024 = 100 -> done at 132
    prog = program(
        SLOW_HBM,
        allocs_every_64k(3),
        [vec(0, "vec0", 0, 1, 102_400), gemm(1, "core1", 1, 2, deps=[0])],
    )
    result = simulate(prog, SLOW_HBM)
    assert result.done.tolist() == [132, 642]
    assert result.units["core1"].stalls == {
        "dram": 0,
        "buffer_port": 0,
        "dependency": 132,
        "weight_load": 128,
    }
    assert result.units["core0"].idle == 642
    assert_accounting_adds_up(prog, result)


def test_gemm_waiting_for_another_core_is_a_dependency_stall():
    prog = program(
        CFG, allocs_every_64k(3), [gemm(0, "core0", 0, 1), gemm(1, "core1", 1, 2, deps=[0])]
    )
    result = simulate(prog, CFG)
    # core0 done at 510; core1 waits 510, loads [510, 638), streams to 766, drains to 1020
    assert result.done.tolist() == [510, 1020]
    assert result.units["core1"].stalls["dependency"] == 510
    assert result.units["core1"].stalls["weight_load"] == 128
    assert result.units["core0"].idle == 1020 - 510
    assert_accounting_adds_up(prog, result)


@pytest.mark.parametrize(
    ("vec_ops", "cause", "wait"),
    [
        (172_032, "dependency", 200),  # VEC 32 + 172032/1024 = 200 > LOAD 132: blamed on the VEC
        (51_200, "dram", 132),  # VEC 32 + 50 = 82 < LOAD 132: blamed on the LOAD
    ],
)
def test_wait_is_attributed_to_the_dependency_that_finished_last(vec_ops, cause, wait):
    prog = program(
        SLOW_HBM,
        allocs_every_64k(3),
        [
            load(0, "dma0.ld", 0, 256, 0),
            vec(1, "vec0", 1, 2, vec_ops),
            gemm(2, "core0", 0, 2, deps=[0, 1]),
        ],
    )
    result = simulate(prog, SLOW_HBM)
    stalls = result.units["core0"].stalls
    assert stalls[cause] == wait
    assert sum(stalls.values()) == wait + 128  # plus the first weight load


def test_exposed_weight_load_is_a_weight_load_stall():
    # 50 x 147 x 128 double-buffered: F = 2, first load 128 + (2-1)*(128-50) = 206 exposed;
    # busy = stream 100 + drain 254 = 354; 206 + 354 = 560
    one_core = dataclasses.replace(CFG, cores=1)  # all 50 rows on core0
    prog = gemm_program(50, 147, 128, one_core, ideal_memory=True)
    result = simulate(prog, one_core)
    core = result.units["core0"]
    assert core.stalls == {"dram": 0, "buffer_port": 0, "dependency": 0, "weight_load": 206}
    assert (core.busy, result.cycles) == (354, 560)
    assert_accounting_adds_up(prog, result)
    # unbuffered: every fold's 128-cycle load exposed, 2*128 = 256; busy 100 + 2*254 = 608
    one_core = dataclasses.replace(SINGLE, cores=1)
    prog = gemm_program(50, 147, 128, one_core, ideal_memory=True)
    result = simulate(prog, one_core)
    core = result.units["core0"]
    assert (core.stalls["weight_load"], core.busy, result.cycles) == (256, 608, 864)
    assert_accounting_adds_up(prog, result)


# ----------------------------------------------------------------------------- invariants


def test_dependency_cycle_raises_deadlock_instead_of_hanging():
    # 0 waits for 1 and 1 waits for 0 (deps pointing forward, which verify would refuse)
    prog = program(
        CFG,
        allocs_every_64k(2),
        [gemm(0, "core0", 0, 1, deps=[1]), gemm(1, "core1", 1, 0, deps=[0])],
    )
    with pytest.raises(InvariantError, match="deadlock"):
        Machine(prog, CFG).run()
    with pytest.raises(InvariantError, match="does not come before it"):
        verify_program(prog, CFG)


def test_dependency_on_a_later_instruction_of_the_same_unit_raises_deadlock():
    prog = program(
        CFG, allocs_every_64k(2), [vec(0, "vec0", 0, 1, 1024, deps=[1]), vec(1, "vec0", 1, 0, 1024)]
    )
    with pytest.raises(InvariantError, match="deadlock: 2 instructions never ran"):
        Machine(prog, CFG).run()


def test_planned_bytes_that_disagree_with_the_transfers_raise():
    planned = {"read": {"weights": 512}, "write": {}}  # the one LOAD moves 256 B
    prog = program(SLOW_HBM, allocs_every_64k(1), [load(0, "dma0.ld", 0, 256, 0)], planned)
    with pytest.raises(
        InvariantError,
        match=r"read 256, write 0\) differ from the plan "
        r"\(read 512, write 0\)",
    ):
        simulate(prog, SLOW_HBM)


def test_overlapping_allocations_live_at_once_raise_naming_the_instruction():
    allocs = [
        Alloc(0, 0, 4096, "old"),
        Alloc(1, 2048, 4096, "overlaps old"),
        Alloc(2, 8192, 64, "other"),
    ]
    prog = program(
        SLOW_HBM,
        allocs,
        [
            load(0, "dma0.ld", 0, 256, 0),  # alloc 0 live [0, 132)
            load(1, "dma1.ld", 2, 8, 256),  # channel 1: 100 + 1 = 101
            load(2, "dma1.ld", 1, 256, 512),  # starts at 101 while alloc 0 is still live
        ],
    )
    with pytest.raises(
        InvariantError,
        match=r"buffer overlap at cycle 101: instruction 2 "
        r"\(dma1.ld LOAD",
    ):
        simulate(prog, SLOW_HBM)
    # the static verifier refuses it too: nothing orders instruction 2 after dma0.ld
    with pytest.raises(InvariantError, match="reuses bytes of allocation 0"):
        verify_program(prog, SLOW_HBM)


def test_program_accepted_by_the_verifier_simulates_without_invariant_error():
    # GEMM 0 writes alloc 0; GEMM 1 on the same core writes alloc 1 at the same bytes.
    # verify: alloc 1's user is on core0 after alloc 0's last user on core0 -> in order, OK.
    # machine (double-buffered): GEMM 1 begins at 256 (GEMM 0's stream end) while GEMM 0 still
    # drains into alloc 0 until 510; the array writes in order, so the machine hands the bytes
    # over (Machine._handoff) instead of reporting an overlap.
    allocs = [
        Alloc(0, 0, 32768, "first"),
        Alloc(1, 0, 32768, "reuses first"),
        Alloc(2, 65536, 32768, "input"),
    ]
    prog = program(CFG, allocs, [gemm(0, "core0", 2, 0), gemm(1, "core0", 2, 1)])
    verify_program(prog, CFG)
    simulate(prog, CFG)


def test_scoreboard_dependencies_for_reused_space_are_enough_for_the_machine():
    from wavecore_sim.compiler.scoreboard import Scoreboard

    board = Scoreboard(CFG.gbuf_bytes)
    board.on_alloc(2, 65536, 32768)  # the input
    board.on_alloc(0, 0, 32768)  # GEMM 0's output (accumulated, like lower.py's outputs)
    instrs = [gemm(0, "core0", 2, 0, acc=True)]
    core0 = machine_units(CFG.cores).index(Unit.parse("core0"))
    reads, writes = (Access(2, 0, 256),), (Access(0, 0, 256, True),)
    assert board.deps_for(0, core0, reads, writes, in_order=False) == ()
    board.on_free(0)
    board.on_alloc(1, 0, 32768)  # the same bytes, for GEMM 1 on the same core
    deps = board.deps_for(1, core0, reads, (Access(1, 0, 256, True),), in_order=False)
    # the guard {core0: 0} went into the 'own' (accumulation) deps and was popped: deps = ()
    instrs.append(dataclasses.replace(gemm(1, "core0", 2, 1, acc=True), deps=deps))
    allocs = [
        Alloc(0, 0, 32768, "first"),
        Alloc(1, 0, 32768, "reuses first"),
        Alloc(2, 65536, 32768, "input"),
    ]
    prog = program(CFG, allocs, instrs)
    verify_program(prog, CFG)
    simulate(prog, CFG)  # buffer overlap at cycle 256


def test_check_invariants_names_a_unit_whose_cycles_do_not_add_up():
    prog = program(SLOW_HBM, allocs_every_64k(1), [load(0, "dma0.ld", 0, 256, 0)])
    result = Machine(prog, SLOW_HBM).run()
    check_invariants(prog, SLOW_HBM, result)
    result.units["vec1"].idle += 1
    with pytest.raises(InvariantError, match="unit vec1"):
        check_invariants(prog, SLOW_HBM, result)


def test_check_invariants_refuses_an_instruction_started_before_its_dependency():
    prog = program(
        SLOW_HBM,
        allocs_every_64k(2),
        [load(0, "dma0.ld", 0, 256, 0), gemm(1, "core0", 0, 1, deps=[0])],
    )
    result = Machine(prog, SLOW_HBM).run()
    result.start[1] = 131  # one cycle before the LOAD completed at 132
    with pytest.raises(InvariantError, match=r"instruction 1 .* before its dependency 0"):
        check_invariants(prog, SLOW_HBM, result)


def test_check_invariants_names_an_instruction_with_inconsistent_times():
    prog = program(
        SLOW_HBM,
        allocs_every_64k(2),
        [load(0, "dma0.ld", 0, 256, 0), gemm(1, "core0", 0, 1, deps=[0])],
    )
    result = Machine(prog, SLOW_HBM).run()
    result.end[1] = result.start[1] - 1  # ends before it starts
    with pytest.raises(
        InvariantError, match=r"instruction 1 \(core0 GEMM, layer ''\) has inconsistent times"
    ):
        check_invariants(prog, SLOW_HBM, result)


def test_check_invariants_refuses_waits_longer_than_the_occupancy():
    prog = program(SLOW_HBM, allocs_every_64k(1), [load(0, "dma0.ld", 0, 256, 0)])
    result = Machine(prog, SLOW_HBM).run()
    # the LOAD occupies its queue [0, 132): a 133-cycle port wait cannot fit in it
    result.wait_port[0] = 133
    with pytest.raises(
        InvariantError,
        match=r"instruction 0 \(dma0.ld LOAD, layer ''\): waits \(0, 0, 133, 0\) do not fit "
        r"its occupancy 132",
    ):
        check_invariants(prog, SLOW_HBM, result)


# ----------------------------------------------------------------------------- compiled programs


@pytest.fixture(scope="module")
def tiny_program():
    cfg = make_config("tiny")
    return api.compile_network(str(TINYNET), 8, "mbs2", cfg=cfg)


def test_simulating_the_same_program_twice_is_identical(tiny_program):
    program, cfg = tiny_program.program, tiny_program.cfg
    first, summary1 = api.simulate_program(program, cfg)
    second, summary2 = api.simulate_program(program, cfg)
    for name in (
        "start",
        "end",
        "done",
        "moved",
        "wait_hbm",
        "wait_hbm_other",
        "wait_port",
        "wait_weight",
        "occupancy_cycle",
        "occupancy_bytes",
    ):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    for name in ("instr", "channel", "start", "end", "nbytes"):
        assert np.array_equal(
            getattr(first.channel_log, name), getattr(second.channel_log, name)
        ), name
    summary1.pop("wall_seconds")
    summary2.pop("wall_seconds")
    assert summary1 == summary2


def test_compiled_program_accounting_and_dram_bytes_match_the_plan(tiny_program):
    program, cfg = tiny_program.program, tiny_program.cfg
    result = simulate(program, cfg)
    assert_accounting_adds_up(program, result)
    planned = (sum(program.planned["read"].values()), sum(program.planned["write"].values()))
    assert (result.dram_read_bytes, result.dram_write_bytes) == planned
    assert result.macs == sum(i.macs for i in program.instrs)
    assert 0 < result.peak_buffer_bytes <= cfg.gbuf_bytes
    # every instruction starts after its dependencies complete, and ends before it is done
    for ins in program.instrs:
        assert all(result.done[d] <= result.start[ins.id] for d in ins.deps)
        assert result.start[ins.id] <= result.end[ins.id] <= result.done[ins.id]


@pytest.mark.parametrize("hbm_model", ["ideal", "calibrated"])
def test_result_arrays_and_channel_log_have_the_documented_shape(tiny_program, hbm_model):
    program = tiny_program.program
    cfg = dataclasses.replace(tiny_program.cfg, hbm_model=hbm_model)
    result = simulate(program, cfg)
    n = len(program)
    for name in (
        "start",
        "end",
        "done",
        "moved",
        "wait_hbm",
        "wait_hbm_other",
        "wait_port",
        "wait_weight",
    ):
        array = getattr(result, name)
        assert array.dtype == np.int64 and array.shape == (n,), name
    log = result.channel_log
    assert isinstance(log, ChannelLog)
    # one row per channel reservation: together they move every transfer's bytes once
    assert int(log.nbytes.sum()) == result.channel_bytes == int(result.moved.sum())
    assert np.array_equal(
        np.bincount(log.instr, weights=log.nbytes, minlength=n).astype(np.int64), result.moved
    )
    for ch in range(cfg.hbm_channels):
        on = log.channel == ch
        if hbm_model == "ideal":  # a FIFO queue: reservations never overlap, in order
            assert (log.start[on][1:] >= log.end[on][:-1]).all()
            assert (log.end[on] > log.start[on]).all()
        else:  # transfers interleaved on a channel overlap; they end in reservation order
            assert (log.end[on][1:] >= log.end[on][:-1]).all()
            assert (log.end[on] >= log.start[on]).all()
    # a transfer's channels are reserved when it starts, and it ends after the last of them
    latency = cfg.hbm_latency_cycles if hbm_model == "ideal" else cfg.hbm_onchip_latency_cycles
    assert (log.start >= result.start[log.instr]).all()
    assert (log.end + latency <= result.end[log.instr]).all()
    # occupancy: starts and ends empty, never above the peak
    assert result.occupancy_bytes[0] == 0 and result.occupancy_bytes[-1] == 0
    assert result.occupancy_cycle[-1] == result.cycles
    assert int(result.occupancy_bytes.max()) == result.peak_buffer_bytes
    assert len(result.occupancy_cycle) == len(result.occupancy_bytes)


def test_ideal_memory_never_slows_a_compiled_program(tiny_program):
    program, cfg = tiny_program.program, tiny_program.cfg
    real = simulate(program, cfg)
    ideal = simulate(program, cfg, ideal_memory=True)
    assert ideal.cycles <= real.cycles
    assert sum(s.stalls["buffer_port"] for s in ideal.units.values()) == 0
