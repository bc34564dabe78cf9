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
