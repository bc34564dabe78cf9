"""Energy model: components from the run's counters and the config's per-event energies."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import TINYNET

from wavecore_sim import api
from wavecore_sim.energy import COMPONENTS, energy


@pytest.fixture(scope="module")
def tiny_run():
    cfg = api.make_config("tiny")
    return api.run(str(TINYNET), batch=4, schedule="mbs2", cfg=cfg, plots=False)


def test_a_run_has_every_component_and_each_is_positive(tiny_run):
    e = energy(tiny_run.result, tiny_run.cfg)
    assert set(e) == {*COMPONENTS, "total"}
    assert all(e[c] > 0 for c in COMPONENTS)


def test_dram_energy_is_bits_moved_times_published_3_9_pj(tiny_run):
    r = tiny_run.result
    # 3.9 pJ/bit: the paper's HBM2 access energy, the config default dram_pj_per_bit
    assert tiny_run.cfg.dram_pj_per_bit == 3.9
    expected = (r.dram_read_bytes + r.dram_write_bytes) * 8 * 3.9e-12
    assert energy(r, tiny_run.cfg)["dram"] == pytest.approx(expected, rel=1e-12)


def test_static_energy_is_static_watts_times_seconds(tiny_run):
    cfg, r = tiny_run.cfg, tiny_run.result
    seconds = r.cycles / (cfg.clock_mhz * 1e6)
    assert energy(r, cfg)["static"] == pytest.approx(cfg.static_watts * seconds, rel=1e-12)


@dataclass
class _Counts:
    macs: int = 0
    gbuf_read_bytes: int = 0
    gbuf_write_bytes: int = 0
    vector_ops: int = 0
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    cycles: int = 0


def test_each_component_charges_its_own_counter_at_the_config_rate():
    # hand-computed: one unit of each counter at distinct per-event energies (pJ)
    cfg = api.make_config(
        set_options={
            "mac_pj": "2",
            "gbuf_read_pj_per_byte": "3",
            "gbuf_write_pj_per_byte": "5",
            "vector_op_pj": "7",
            "dram_pj_per_bit": "11",
            "static_watts": "13",
            "clock_mhz": "1000",
        }
    )
    e = energy(
        _Counts(
            macs=1,
            gbuf_read_bytes=1,
            gbuf_write_bytes=1,
            vector_ops=1,
            dram_read_bytes=1,
            dram_write_bytes=1,
            cycles=1000,
        ),
        cfg,
    )
    assert e["mac"] == pytest.approx(2e-12)
    assert e["gbuf"] == pytest.approx(8e-12)
    assert e["vector"] == pytest.approx(7e-12)
    assert e["dram"] == pytest.approx(2 * 8 * 11e-12)
    assert e["static"] == pytest.approx(13 * 1e-6)  # 1000 cycles at 1 GHz = 1 us
    # the total, added up by hand from the five values above (not from e's components):
    # 2 + 8 + 7 + 176 pJ + 13 uJ
    assert e["total"] == pytest.approx(193e-12 + 13e-6, rel=1e-12)


def test_run_summary_carries_energy(tiny_run):
    s = tiny_run.summary
    e = energy(tiny_run.result, tiny_run.cfg)
    assert s["energy_joules"] == pytest.approx(e["total"])
    assert s["energy_breakdown"] == pytest.approx({c: e[c] for c in COMPONENTS})


def test_zero_energy_constants_give_zero_energy(tiny_run):
    cfg = api.make_config(
        "tiny",
        set_options={
            "mac_pj": "0",
            "gbuf_read_pj_per_byte": "0",
            "gbuf_write_pj_per_byte": "0",
            "vector_op_pj": "0",
            "dram_pj_per_bit": "0",
            "static_watts": "0",
        },
    )
    assert energy(tiny_run.result, cfg)["total"] == 0
