"""DRAM as a managed address space: lifetimes, reuse, footprint, refusal before lowering;
and the lowering's replay of repeated sub-batch blocks (identical to lowering each one)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINYNET, head, spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavecore_sim import api
from wavecore_sim.compiler.dram import dram_alignment, pass_tensors, plan_dram
from wavecore_sim.compiler.lower import Lowering
from wavecore_sim.errors import WavecoreError
from wavecore_sim.schedule import DEFAULT_NORM, SCHEDULES, build_schedule
from wavecore_sim.training import expand_training
from wavecore_sim.workload import build_network, list_networks, load_network

CFG = api.make_config()
PAGE = 4096  # dram_alignment of the default preset: 8 channels x 256 B = 2 KiB -> one 4 KiB page

FC_NET = spec(
    [
        {"name": "fc", "kind": "fc", "out_features": 10, "bias": False},
        {"name": "loss", "kind": "loss"},
    ],
    c=64,
    h=1,
    w=1,
)


def plan_for(net, batch: int, schedule: str, cfg=CFG):
    graph = expand_training(net, batch, cfg)
    return graph, build_schedule(graph, schedule, cfg)


def test_alignment_is_a_page_rounded_up_to_whole_interleave_periods():
    assert dram_alignment(CFG) == PAGE
    # 16 channels x 512 B = 8 KiB per period: a region must start on a period boundary so
    # its split over channels does not depend on where it is placed.
    wide = api.make_config(set_options={"hbm_channels": 16, "hbm_interleave_bytes": 512})
    assert dram_alignment(wide) == 8192


def test_fc_network_footprint_and_reuse_match_hand_count():
    graph, plan = plan_for(build_network(FC_NET), 4, "baseline")
    # Passes: forward fc, loss, backward fc, update (each tensor below is <= one page).
    assert pass_tensors(graph, plan) == [
        {"A:input", "A:fc", "W:fc"},
        {"A:fc", "G:fc"},
        {"A:input", "G:fc", "W:fc", "dW:fc"},
        {"W:fc", "W32:fc", "M:fc", "dW:fc"},
    ]
    placed = plan_dram(graph, plan, CFG)
    # Persistent tensors (the input nobody writes, weights, master weights, momentum) sit at
    # the bottom, by first use then name: A:input, W:fc (pass 0), M:fc, W32:fc (pass 3).
    assert placed.persistent == {"A:input", "W:fc", "M:fc", "W32:fc"}
    assert [placed.addr[t] for t in ("A:input", "W:fc", "M:fc", "W32:fc")] == [
        0,
        PAGE,
        2 * PAGE,
        3 * PAGE,
    ]
    # A:fc is born in pass 0 and dies after the loss (pass 1); G:fc is born in pass 1; dW:fc,
    # born in pass 2, reuses A:fc's page.
    assert placed.addr["A:fc"] == placed.addr["dW:fc"] == 4 * PAGE
    assert placed.addr["G:fc"] == 5 * PAGE
    # Peak: 6 pages live during the loss pass; dW:fc is not live then.
    assert placed.footprint.peak_bytes == 6 * PAGE
    assert placed.footprint.by_kind == {
        "weights": PAGE,
        "activations": PAGE,
        "saved_activations": PAGE,  # A:input is saved
        "gradients": PAGE,
        "weight_gradients": 0,
        "optimizer_state": 2 * PAGE,
    }


def _lifetimes(graph, plan):
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, touched in enumerate(pass_tensors(graph, plan)):
        for t in touched:
            first.setdefault(t, i)
            last[t] = i
    return first, last


@pytest.mark.parametrize(
    "network, schedule",
    [
        (network, schedule)
        if (network, schedule) != ("densenet121", "mbs-fs")
        else pytest.param(network, schedule, marks=pytest.mark.slow)  # 12 s: 121 layers x 32
        for network in ("resnet50", "inception_v3", "densenet121")
        for schedule in ("baseline", "mbs2", "mbs-fs")
    ],
)
def test_tensors_sharing_dram_addresses_are_never_live_in_the_same_pass(network, schedule):
    graph, plan = plan_for(load_network(network, norm=DEFAULT_NORM[schedule]), 8, schedule)
    placed = plan_dram(graph, plan, CFG)
    first, last = _lifetimes(graph, plan)
    end = len(pass_tensors(graph, plan))
    spans = {t: (0, end) if t in placed.persistent else (first[t], last[t]) for t in first}
    tensors = sorted(first, key=placed.addr.__getitem__)
    reused = 0
    for i, a in enumerate(tensors):
        for b in tensors[i + 1 :]:
            if placed.addr[b] >= placed.addr[a] + placed.size[a]:
                break
            reused += 1
            (a0, a1), (b0, b1) = spans[a], spans[b]
            assert a1 < b0 or b1 < a0, (a, b)
    if schedule != "mbs-fs":  # one group: every tensor is live through its one pass
        assert reused > 0
    assert max(placed.addr[t] + placed.size[t] for t in first) == placed.footprint.peak_bytes
    assert all(placed.addr[t] % PAGE == 0 for t in first)


def test_over_capacity_plan_is_refused_before_lowering(monkeypatch):
    def never(*_args, **_kwargs):
        raise AssertionError("lowering started")

    monkeypatch.setattr(Lowering, "run", never)
    cfg = api.make_config(set_options={"hbm_bytes": "64MiB"})
    with pytest.raises(WavecoreError) as err:
        api.compile_network("resnet50", batch=8, schedule="mbs2", cfg=cfg)
    text = str(err.value)
    assert "\n" not in text
    assert "DRAM footprint is" in text and "hbm_bytes = 0.06 GiB" in text
    assert "saved_activations" in text and "raise hbm_bytes" in text


def test_resnet50_at_batch_256_fits_the_default_preset():
    """Batch 256 (the published MBS comparisons' mini-batch) needed 47 GiB of never-reused
    DRAM before; with lifetimes it is about 10.5 GiB (dominated by saved activations)."""
    graph, plan = plan_for(load_network("resnet50", norm="gn"), 256, "mbs2")
    footprint = plan_dram(graph, plan, CFG).footprint
    assert footprint.peak_bytes <= CFG.hbm_bytes
    assert footprint.by_kind["saved_activations"] > footprint.peak_bytes // 2


# ---------------------------------------------------------------------------- replay


def lowered(net, batch: int, schedule: str, replay: bool, cfg=CFG):
    graph, plan = plan_for(net, batch, schedule, cfg)
    return Lowering(graph, plan, cfg, plan_dram(graph, plan, cfg), replay=replay).run()


def assert_identical(a, b) -> None:
    for name in a.cols:
        assert np.array_equal(a.cols[name], b.cols[name]), name
    assert (a.steps, a.strings, a.planned, a.groups) == (b.steps, b.strings, b.planned, b.groups)


@pytest.mark.parametrize(
    "network, batch, schedule",
    [
        ("resnet50", 12, "mbs2"),
        ("inception_v3", 9, "mbs2-time"),
        ("densenet121", 3, "mbs-fs"),  # one sample per run: a first run and two replays
        ("resnet50", 10, "mbs1"),
    ],
)
def test_replayed_sub_batches_equal_lowering_each_one(network, batch, schedule):
    net = load_network(network, norm=DEFAULT_NORM[schedule])
    assert_identical(lowered(net, batch, schedule, True), lowered(net, batch, schedule, False))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 11),
    schedule=st.sampled_from(SCHEDULES),
    channels=st.integers(4, 48),
    size=st.integers(8, 40),
)
def test_replay_is_identical_on_random_residual_networks(batch, schedule, channels, size):
    layers = [
        {"name": "c1", "kind": "conv", "out_channels": channels, "kernel": 3, "padding": 1},
        {"name": "n1", "kind": "norm"},
        {"name": "r1", "kind": "relu"},
        {"name": "c2", "kind": "conv", "out_channels": channels, "kernel": 3, "padding": 1},
        {"name": "add", "kind": "add", "inputs": ["c2", "r1"]},
        {"name": "r2", "kind": "relu"},
    ]
    net = build_network(
        spec(layers + head(), c=channels, h=size, w=size), norm=DEFAULT_NORM[schedule]
    )
    cfg = api.make_config("tiny")
    assert_identical(
        lowered(net, batch, schedule, True, cfg), lowered(net, batch, schedule, False, cfg)
    )


def test_tinynet_compiles_with_its_dram_footprint_in_the_program():
    program = api.compile_network(
        str(TINYNET), batch=4, schedule="mbs2", cfg=api.make_config("tiny")
    ).program
    assert program.dram_footprint is not None
    regions = program.cols["region_addr"] + program.cols["region_size"]
    assert program.dram_footprint.peak_bytes == int(regions.max())


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["baseline", "mbs2"])
@pytest.mark.parametrize("network", list_networks())
def test_every_zoo_network_compiles_at_batch_256_on_the_default_preset(network, schedule):
    """Compiled and verified (the verifier checks DRAM reuse) at the published mini-batch."""
    program = api.compile_network(network, batch=256, schedule=schedule, cfg=CFG).program
    assert 0 < program.dram_footprint.peak_bytes <= CFG.hbm_bytes
