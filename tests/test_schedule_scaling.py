"""The grouping's shared work gives the same answers as computing each group afresh.

The greedy grouping evaluates a group grown one layer at a time. The builder shares the work
between those candidates (schedule._GroupBuilder.residency: steps memoised by which ops
touching their tensors are in the group, and extended from the previous candidate;
schedule.LayoutReplayer: first-fit moves memoised per allocator state, walks reused across
candidates). These tests grow groups over branchy zoo networks and compare every candidate
with the plain functions, plan_residency and a fresh replay. Speed is measured by
benchmarks/bench_depth.py, not here.
"""

from __future__ import annotations

import random

import pytest

from wavecore_sim import api
from wavecore_sim.schedule import _GroupBuilder, plan_residency, replay_layout

CFG = api.make_config()


def grown_groups(layers: int, seed: int) -> list[tuple[int, int]]:
    """Groups [lo, hi) in the order the greedy asks for them: grown by one layer at a time,
    with the single next layer asked for in between, and a jump now and then."""
    rng = random.Random(seed)
    out = []
    for _ in range(4):
        lo = rng.randrange(layers)
        for hi in range(lo + 1, min(layers, lo + 30) + 1):
            out.append((lo, hi))
            if hi < layers:
                out.append((hi, hi + 1))
            if rng.random() < 0.1:
                out.append((lo, rng.randrange(lo + 1, layers + 1)))
    return out


@pytest.mark.parametrize("network", ["inception_v3", "densenet121", "mobilenet_v2"])
@pytest.mark.parametrize("rule", ["branch", "chain", "none"])
def test_shared_residency_equals_plan_residency(network, rule):
    graph = api.expand(network, 4, "gn", CFG)
    builder = _GroupBuilder(graph, CFG, rule)
    for lo, hi in grown_groups(len(builder.layer_order), seed=len(network)):
        fwd_ops, bwd_ops = builder.passes(lo, hi)
        fwd, bwd = builder.residency(lo, hi, rule)
        assert fwd == plan_residency(graph, fwd_ops, rule), (lo, hi)
        assert bwd == plan_residency(graph, bwd_ops, rule), (lo, hi)


@pytest.mark.parametrize("network", ["resnet50", "inception_v3"])
def test_shared_layout_replays_equal_fresh_replays(network):
    graph = api.expand(network, 8, "gn", CFG)
    builder = _GroupBuilder(graph, CFG, "branch")
    for lo, hi in grown_groups(len(builder.layer_order), seed=7):
        for steps in builder.residency(lo, hi, "branch"):
            for samples in (8, 1):
                shared = builder.replayer(samples).replay(steps)
                assert shared == replay_layout(graph, steps, samples, CFG.gbuf_bytes, CFG)
