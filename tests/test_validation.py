"""`wavecore-sim validate`: per-row comparison, exact error decomposition, outputs, bad input.

The decomposition (report/validation.py): the machine's occupancy of a layer's busiest unit
is that unit's own work plus measured waits; the model's value is the same work plus its own
overlap charge. The error is therefore the exact sum of per-mechanism contributions.
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import TINYNET

from wavecore_sim.report.validation import MECHANISMS, attribute, error_stats


def parts(work=0, hbm_same=0, hbm_other=0, port=0, weight=0) -> dict[str, int]:
    occupancy = work + hbm_same + hbm_other + port + weight
    return {
        "occupancy": occupancy,
        "work": work,
        "hbm_same": hbm_same,
        "hbm_other": hbm_other,
        "port": port,
        "weight": weight,
    }


def test_dma_row_splits_into_own_sharing_and_other_layers_contention():
    # queue work 100, waited 20 behind its own layer and 30 behind other layers: 150 simulated.
    # The model charges 40 of sharing for the same queue: 140. Error -10 = +20 - 30.
    p = parts(work=100, hbm_same=20, hbm_other=30)
    c = attribute(140 - 150, 0, "memory", "dma", 40, p)
    assert c["hbm_same_layer"] == 40 - 20
    assert c["hbm_other_layers"] == -30
    assert sum(c.values()) == -10


def test_dma_row_charges_sharing_with_neighbouring_steps_against_other_layers():
    # as above, but 25 of the model's 40 is sharing with the neighbouring steps: other layers
    # contribute 25 - 30 = -5 and the layer's own sharing 15 - 20 = -5
    p = parts(work=100, hbm_same=20, hbm_other=30)
    c = attribute(140 - 150, 0, "memory", "dma", 40, p, neighbour_charge=25)
    assert (c["hbm_other_layers"], c["hbm_same_layer"]) == (-5, -5)
    assert sum(c.values()) == -10


def test_dma_row_bounded_by_another_queue_in_the_model():
    # the model's busiest queue is 500 cycles; for the machine's busiest queue it says 120
    p = parts(work=100, hbm_other=50)
    c = attribute(500 - 150, 500 - 120, "memory", "dma", 120 - 100, p)
    assert c["bottleneck"] == 380 and c["hbm_same_layer"] == 20 and c["hbm_other_layers"] == -50
    assert sum(c.values()) == 350


def test_core_row_charges_first_weight_loads():
    # one first weight tile charged (128), two exposed in the machine (256), 64 port cycles
    p = parts(work=1000, weight=256, port=64)
    c = attribute(1128 - 1320, 0, "compute", "core", 128, p)
    assert c["weight_loads"] == -128 and c["buffer_ports"] == -64
    assert sum(c.values()) == 1128 - 1320


def test_vector_row_compares_the_models_port_time():
    p = parts(work=300, port=100)
    c = attribute(350 - 400, 0, "buffer", "vec", 50, p)
    assert c["buffer_ports"] == -50 and sum(c.values()) == -50


def test_different_bounding_resource_is_a_bottleneck_mismatch():
    c = attribute(-700, 0, "memory", "core", 0, parts(work=1000))
    assert c == {**dict.fromkeys(MECHANISMS, 0), "bottleneck": -700}


def test_error_stats_counts_rows_over_five_percent_by_mechanism():
    rows = [
        {"error_pct": e, "simulated_cycles": 100, "mechanism": m}
        for e, m in (
            (1.0, ""),
            (-2.0, ""),
            (-30.0, "hbm_other_layers"),
            (6.0, "hbm_same_layer"),
            (-8.0, "hbm_other_layers"),
        )
    ]
    stats = error_stats(rows)
    assert stats["median_abs_error_pct"] == 6.0
    assert stats["max_abs_error_pct"] == 30.0
    assert stats["over_5pct"] == 3 and stats["over_10pct"] == 1
    assert stats["over_5pct_by_mechanism"] == {"hbm_other_layers": 2, "hbm_same_layer": 1}


@pytest.mark.parametrize("schedule", ["baseline", "mbs2"])
def test_validate_cli_writes_a_decomposed_table(run_cli, tmp_path, schedule):
    out_dir = tmp_path / "v"
    res = run_cli(
        "validate",
        "--network",
        str(TINYNET),
        "--batch",
        "8",
        "--schedule",
        schedule,
        "--out",
        str(out_dir),
    )
    assert res.code == 0, res.err
    assert "DRAM bytes identical" in res.out
    with open(out_dir / "validation.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for r in rows:
        error = int(r["analytical_cycles"]) - int(r["simulated_cycles"])
        assert sum(int(r[f"contribution_{k}"]) for k in MECHANISMS) == error, r
        assert r["analytical_dram_read_bytes"] == r["simulated_dram_read_bytes"]
        assert r["analytical_dram_write_bytes"] == r["simulated_dram_write_bytes"]
        over = abs(float(r["error_pct"])) > 5
        assert (r["mechanism"] in MECHANISMS) if over else r["mechanism"] == "", r
        # the machine's occupancy is the unit's work plus what it waited for
        waits = sum(int(r[k]) for k in r if k.startswith("simulated_wait_"))
        assert int(r["simulated_work"]) + waits == int(r["simulated_cycles"])
    stats = json.loads((out_dir / "validation.json").read_text())
    assert stats["dram_bytes_match"] is True and stats["layers"] == len(rows)
    assert sum(stats["over_5pct_by_mechanism"].values()) == stats["over_5pct"]
    assert (out_dir / "validation.png").stat().st_size > 0


def test_validate_cli_unknown_network_is_one_line(run_cli, tmp_path):
    res = run_cli("validate", "--network", "resnet5", "--out", str(tmp_path / "v"))
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1 and "resnet5" in res.err
    assert not (tmp_path / "v").exists()


def _rebuilt(program, instrs):
    """``program`` built again from instruction views (``instrs``), as a hand-built one is."""
    from wavecore_sim.ir import program_from_instrs

    return program_from_instrs(
        program.units,
        program.gbuf_bytes,
        program.allocs,
        instrs,
        [program.region(r) for r in range(program.n_regions)],
    )


def test_columns_the_compiler_emits_equal_columns_rebuilt_from_the_instructions():
    import numpy as np

    from wavecore_sim import api
    from wavecore_sim.analytical import analyze

    compiled = api.compile_network(str(TINYNET), 8, "mbs2")
    program, cfg = compiled.program, compiled.cfg
    rebuilt = _rebuilt(program, program.instrs)
    assert (rebuilt.units, rebuilt.steps) == (program.units, program.steps)
    for name, column in program.cols.items():
        if name in ("label", "alloc_label", "region_label"):  # indices of interned texts
            assert [rebuilt.strings[i] for i in rebuilt.cols[name]] == [
                program.strings[i] for i in column
            ], name
        else:
            assert np.array_equal(rebuilt.cols[name], column), name
    assert analyze(rebuilt, cfg).steps == analyze(program, cfg).steps


def test_the_model_reads_a_replaced_instruction():
    import dataclasses

    from wavecore_sim import api
    from wavecore_sim.analytical import analyze
    from wavecore_sim.ir import Op

    compiled = api.compile_network(str(TINYNET), 8, "baseline")
    program, cfg = compiled.program, compiled.cfg
    instrs = list(program.instrs)
    gemm = next(i for i in instrs if i.op == Op.GEMM)
    g = gemm.payload
    instrs[gemm.id] = dataclasses.replace(gemm, payload=dataclasses.replace(g, m=g.m + 1))
    changed = _rebuilt(program, instrs)
    assert changed.cols["m"][gemm.id] == g.m + 1
    before, after = analyze(program, cfg).steps, analyze(changed, cfg).steps
    step = next(i for i, s in enumerate(before) if s.first <= gemm.id <= s.last)
    assert after[step].macs == before[step].macs + g.k * g.n


def test_steps_opened_and_left_empty_change_no_estimate():
    # a model step is a run of consecutive instructions with the same (group, layer, phase):
    # an empty step between two halves of one run must not split it
    from wavecore_sim import api
    from wavecore_sim.analytical import analyze
    from wavecore_sim.ir import ProgramBuilder

    compiled = api.compile_network(str(TINYNET), 8, "mbs2")
    program, cfg = compiled.program, compiled.cfg
    b = ProgramBuilder(program.units, program.gbuf_bytes)
    for a in program.allocs:
        b.alloc(a.offset, a.size, a.label)
    for r in range(program.n_regions):
        region = program.region(r)
        b.region(region.addr, region.size, region.label, region.persistent)
    for ins in program.instrs:
        b.set_step(-1, "nothing", "empty")
        b.set_step(ins.group, ins.layer, ins.phase)
        b.emit(ins.unit, ins.op, ins.payload, ins.reads, ins.writes, ins.deps, ins.label)
    padded = b.finish()
    assert len(padded.steps) > 2 * len(program.steps)
    expected, got = analyze(program, cfg), analyze(padded, cfg)
    assert got.steps == expected.steps and got.cycles == expected.cycles


@pytest.mark.parametrize("machine", [False, True], ids=["no units", "machine units"])
def test_analytical_model_of_an_empty_program_is_zero(machine):
    from wavecore_sim import api
    from wavecore_sim.analytical import analyze
    from wavecore_sim.ir import ProgramBuilder, machine_units

    cfg = api.make_config()
    program = ProgramBuilder(machine_units(cfg.cores) if machine else (), cfg.gbuf_bytes).finish()
    result = analyze(program, cfg)
    assert (result.cycles, result.dram_read_bytes, result.steps) == (0, 0, [])
    assert result.by_bound == {"compute": 0, "vector": 0, "memory": 0, "buffer": 0}


def test_queue_occupancy_shares_service_time_inside_and_across_step_boundaries():
    import numpy as np

    from wavecore_sim.analytical import _queue_occupancy
    from wavecore_sim.ir import Unit, UnitKind

    queues = [Unit(UnitKind.DMA_LD, 0), Unit(UnitKind.DMA_ST, 0), Unit(UnitKind.DMA_LD, 1)]
    work = np.array([[1000, 600, 0], [400, 800, 200]])
    service = np.array([[800, 500, 0], [300, 600, 100]])  # work less 100 latency/transfer
    got, neighbours = _queue_occupancy(work, service, queues, np.array([4, 2]))
    # step 0 (B=4), dma0.ld: opposite min(800, 500) = 500, 3/4 inside = 375 -> 1375; no
    #   previous step. dma0.st: 375 inside -> 975, plus the unpartnered 125 against the next
    #   step's loads per block, (300 + 100) // 2 = 200 -> +125 = 1100. dma1.ld idle: 0.
    # step 1 (B=2), dma0.ld: same direction min(300, 100) = 100, opposite min(300, 600) =
    #   300 -> 150 inside -> 650, plus min(150, previous stores per block 500 // 4 = 125)
    #   = 775. dma0.st: opposite 300 + 100 = 400 -> 200 inside -> 1000; no next step.
    #   dma1.ld: same 100, opposite min(100, 600) = 100 -> 50 inside -> 350, +min(50, 125).
    assert got.tolist() == [[1375, 1100, 0], [775, 1000, 400]]
    assert neighbours.tolist() == [[0, 125, 0], [125, 0, 50]]


def _stream_arrays(**cols):
    import numpy as np

    return {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}


def test_unit_streams_expose_a_first_weight_tile_behind_a_short_fold():
    # one core, one step: GEMMs of M = 196, 25, 196, 25 rows (a depthwise convolution's two
    # GEMM shapes alternating). The first pays the whole tile (R = 128); each later one the
    # part of its tile not hidden behind the previous GEMM's last fold: 128 - 196 < 0 -> 0,
    # 128 - 25 = 103, 0. A second step on the same core starts with a whole tile again.
    import numpy as np

    from wavecore_sim import api
    from wavecore_sim.analytical import _unit_streams

    cfg = api.make_config()
    a = _stream_arrays(m=[196, 25, 196, 25, 196], step=[0, 0, 0, 0, 1], unit=[0] * 5)
    own = np.array([196, 409, 196, 409, 196])
    gemm = np.ones(5, dtype=bool)
    tile, offset, position = _unit_streams(own, a["m"], gemm, a["step"], a["unit"], 1, cfg)
    assert tile.tolist() == [128, 0, 103, 0, 128]
    assert offset.tolist() == [324, 733, 1032, 1441, 324]  # own + tile, summed per step
    assert position.tolist() == [1, 2, 3, 4, 1]


def _chain(op, deps, own, offset, position, tile):
    """The inner-step dependency columns of a hand-built step, for _waits_on_own_transfers."""
    import numpy as np

    waiting = np.array([w for w, _ in deps], dtype=np.int64)
    d = np.array([x for _, x in deps], dtype=np.int64)
    op = np.array(op, dtype=np.int64)
    pa = {
        "op": op,
        "inner_waiting": waiting,
        "inner_d": d,
        "inner_op_waiting": op[waiting],
        "inner_op_d": op[d],
    }
    arrays = (np.array(x, dtype=np.int64) for x in (own, offset, position, tile))
    return pa, *arrays, op == 0


def test_chain_through_a_store_of_the_step_is_a_wait_and_an_exposed_tile():
    # vgg16 classifier.0 BWD (weight gradients): GEMM a, GEMM b accumulate into one tile;
    # its 2 MB store (5,374 cycles) must leave before GEMM c reuses the slot. GEMMs stream
    # 2,048 rows; the drain is 254. c's unit is free at 4,096; the store is done at
    # 4,096 + 254 + 5,374 = 9,724: c waits 5,628, then loads its first tile (128, none of
    # it charged, the previous fold being 2,048 rows). The machine measured 5,756 = 5,628
    # + 128 between b's stream end and c's (docs/validation.md).
    from wavecore_sim import api
    from wavecore_sim.analytical import _waits_on_own_transfers
    from wavecore_sim.ir import Op

    cfg = api.make_config()
    pa, own, offset, position, tile, gemm = _chain(
        op=[Op.GEMM, Op.GEMM, Op.STORE, Op.GEMM],
        deps=[(2, 1), (3, 2)],
        own=[2048, 2048, 5374, 2048],
        offset=[2048 + 254, 4096 + 254, 5374, 6144 + 254],
        position=[1, 2, 1, 3],
        tile=[128, 0, 0, 0],
    )
    exposed, waited, _, _ = _waits_on_own_transfers(pa, own, offset, position, tile, gemm, 254, cfg)
    assert waited.tolist() == [0, 0, 0, 5628]
    assert exposed.tolist() == [0, 0, 0, 128]


def test_chain_over_two_slots_is_shared_by_two_instructions():
    # resnet50 mbs2 layer3.0.downsample.0 BWD: a load refills the slot of the GEMM two back
    # (256-row GEMMs, 144-cycle load). GEMM a is done at 256 + 254 = 510, the load at 654;
    # GEMM e's core is free at 512 (after a and b): 142 late, plus its tile (128, none
    # charged). The chain a -> load -> e repeats every two GEMMs (two slots in turn), so e
    # carries half: 71 and 64. (The machine: 776 cycles per two GEMMs against 512 of
    # streaming, 132 a GEMM.)
    from wavecore_sim import api
    from wavecore_sim.analytical import _waits_on_own_transfers
    from wavecore_sim.ir import Op

    cfg = api.make_config()
    pa, own, offset, position, tile, gemm = _chain(
        op=[Op.GEMM, Op.GEMM, Op.LOAD, Op.GEMM],
        deps=[(2, 0), (3, 2)],
        own=[256, 256, 144, 256],
        offset=[256 + 254, 512 + 254, 144, 768 + 254],
        position=[1, 2, 1, 3],
        tile=[0, 0, 0, 0],
    )
    exposed, waited, _, _ = _waits_on_own_transfers(pa, own, offset, position, tile, gemm, 254, cfg)
    assert waited.tolist() == [0, 0, 0, 71]
    assert exposed.tolist() == [0, 0, 0, 64]


def test_prologue_counts_only_the_loads_the_first_compute_waits_for():
    # a step: load w (100 cycles), load x (300), GEMM (waits for w only), load y (50). The
    # model's load pipe runs the step's loads in program order, so the GEMM can start once
    # w is in: 100 cycles; x and y overlap the compute. Before, every load issued before the
    # first compute instruction (w and x: 400) was charged.
    import numpy as np

    from wavecore_sim.analytical import _prologue
    from wavecore_sim.ir import Op

    op = np.array([Op.LOAD, Op.LOAD, Op.GEMM, Op.LOAD])
    pa = {
        "step": np.zeros(4, dtype=np.int64),
        "inner_waiting": np.array([2]),
        "inner_d": np.array([0]),
        "inner_op_d": op[[0]],
    }
    load_time = np.array([100, 300, 0, 50])
    opens = np.array([False, False, True, False])
    assert _prologue(pa, load_time, opens, np.array([0]), 1).tolist() == [100]
    pa["inner_d"], pa["inner_op_d"] = np.array([1]), op[[1]]  # waits for x: w and x
    assert _prologue(pa, load_time, opens, np.array([0]), 1).tolist() == [400]


def test_store_queue_paces_a_step_whose_compute_waits_for_its_stores():
    # densenet121 baseline denseblock2.denselayer10.concat BWD, cut to three blocks on one
    # vector unit (unit 0) and one store queue (unit 1): each block's vector op (669 cycles)
    # feeds its stores, and the third block's vector op reuses the first block's slot, so it
    # waits for that block's first store. The queue's first store can start when the first
    # vector op is done (669); from then on the queue is busy its occupancy: in the whole
    # step, its stores alone (58,696) plus the loads' channel time it shares inside the step
    # (46,032) and across its end (4,048) = 108,776 (_queue_occupancy). So the step runs
    # 669 + 108,776 = 109,445 cycles from its compute start, the model's value for it (the
    # machine: 126,322 from its first load, of which the first load and vector op take
    # 11,096). A second step whose compute waits for no store of its own is not paced: 0.
    import numpy as np

    from wavecore_sim import api
    from wavecore_sim.analytical import _paced_by_store_queue, _waits_on_own_transfers
    from wavecore_sim.ir import Op

    cfg = api.make_config()
    vec, store = Op.VEC, Op.STORE
    pa, own, offset, position, tile, gemm = _chain(
        op=[vec, store, store, vec, store, vec, vec, store],
        deps=[(1, 0), (2, 0), (4, 3), (5, 1), (7, 6)],
        own=[669, 7337, 7337, 669, 7337, 669, 669, 7337],
        offset=[669, 7337, 14674, 1338, 22011, 2007, 669, 7337],
        position=[1, 1, 2, 2, 3, 3, 1, 1],
        tile=[0] * 8,
    )
    _, _, ready, awaited = _waits_on_own_transfers(pa, own, offset, position, tile, gemm, 0, cfg)
    assert ready.tolist() == [-1, 669, 669, -1, 1338, -1, -1, 669]  # the producers' offsets
    assert np.flatnonzero(awaited).tolist() == [1]  # the store the third vector op waits for
    step = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    unit = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    occupancy = np.array([[108_776], [7_337]])  # steps x DMA queues (the store queue only)
    paced = _paced_by_store_queue(pa["op"], ready, awaited, step * 2 + unit, occupancy, [1], 2, 2)
    assert paced.tolist() == [109_445, 0]


def test_ranges_of_whole_turns_add_the_same_to_every_target():
    # 4 targets of 64 bytes (a turn: 256 bytes). Step 0: [0, 256) puts 64 on each target,
    # [32, 96) 32 on targets 0 and 1: 96, 96, 64, 64 -> 96. Step 1: [100, 612), two turns
    # from an unaligned start, 128 on each -> 128. Step 2: [0, 100): 64 and 36 -> 64. And
    # random ranges agree with timing.split_interleaved, range by range.
    import numpy as np

    from wavecore_sim.analytical import _busiest_per_step
    from wavecore_sim.timing import split_interleaved

    def busiest(step, addr, size, nsteps):
        a = (np.array(x, dtype=np.int64) for x in (step, addr, size))
        return _busiest_per_step(*a, nsteps, 4, 64).tolist()

    assert busiest([0, 0, 1, 2], [0, 32, 100, 0], [256, 64, 512, 100], 3) == [96, 128, 64]
    rng = np.random.default_rng(12)
    step = np.sort(rng.integers(0, 20, 300))
    addr = rng.integers(0, 10_000, 300)
    size = np.where(rng.random(300) < 0.5, 256 * rng.integers(1, 5, 300), rng.integers(0, 900, 300))
    expected = np.zeros((20, 4), dtype=np.int64)
    for s, a, n in zip(step.tolist(), addr.tolist(), size.tolist(), strict=True):
        expected[s] += split_interleaved(a, n, 4, 64)
    assert busiest(step, addr, size, 20) == expected.max(axis=1).tolist()
