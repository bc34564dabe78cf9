"""Buffer accounting: the planners' working set of a step holds what the lowering allocates.

Regression: a normalization's backward step allocates its scale and shift (``W:<norm>``) and
its weight-gradient accumulators (``dW:<norm>#acc``) whole beside its staged blocks; the fit
rule and the tiling counted only the blocks, so when those filled the space to within the
4096-byte alignment slack the lowering failed with "internal: global buffer exhausted"
(ResNet-50 batch 32, ``bwd:layer4.2.bn3`` with a 4,839,559-byte buffer).

Smallest example, worked by hand: input 1 x 1 x 1, conv 1x1 to 512 channels, batch norm,
fc, loss; batch 4 under ``baseline`` (everything through DRAM) on an 8 x 8 array, 1 core.
A sample of ``A:conv`` (and of ``G:norm``, ``G:conv``) is 512 x 2 B = 1024 B; four samples
are streamed as four one-sample blocks (``MIN_PIPELINE_BLOCKS``). ``bwd:norm`` reads
``G:norm`` and ``A:conv`` and writes ``G:conv``, each double-buffered: 3 x 2 x 1024 = 6144 B;
its scale and shift are 2 x 512 x 2 B = 2048 B and their gradients 2 x 512 x 4 B = 4096 B:
12,288 B allocated. The planner keeps ``ALIGN_SLACK`` (4096 B) free, so it needs 16,384 B;
it counted 6144 + 4096 = 10,240 B, and every buffer in [10240, 12288) failed in the lowering.
"""

from __future__ import annotations

import dataclasses

import pytest
from conftest import spec

from wavecore_sim import api
from wavecore_sim.config import load_config
from wavecore_sim.errors import WavecoreError
from wavecore_sim.tiling import ALIGN_SLACK, min_step_bytes, plan_step
from wavecore_sim.workload import build_network

CFG = dataclasses.replace(load_config(), array_rows=8, array_cols=8, cores=1)
LAYERS = [
    {"name": "conv", "kind": "conv", "out_channels": 512, "kernel": 1},
    {"name": "norm", "kind": "norm"},
    {"name": "fc", "kind": "fc", "out_features": 2},
    {"name": "loss", "kind": "loss"},
]
BLOCKS = 3 * 2 * 1024  # G:norm, A:conv in; G:conv out; double-buffered one-sample blocks
SCALE_SHIFT = 2 * 512 * 2  # W:norm, bf16
SCALE_SHIFT_GRAD = 2 * 512 * 4  # dW:norm, fp32
NEED = BLOCKS + SCALE_SHIFT + SCALE_SHIFT_GRAD + ALIGN_SLACK  # 16_384


def _net():
    return build_network(spec(LAYERS, c=1, h=1, w=1), norm="bn")


def test_norm_backward_working_set_counts_its_scale_shift_and_their_gradients():
    graph = api.expand(_net(), 4, "bn", CFG)
    op = next(op for op in graph.ops if op.name == "bwd:norm")
    staged = {"G:norm", "A:conv"}, {"G:conv"}
    assert min_step_bytes(graph, op, 4, *staged, CFG) == 6144 + 2048 + 4096
    # the scale and shift kept on chip across sub-batches: only the gradients are added
    assert min_step_bytes(graph, op, 4, *staged, CFG, weights_resident=True) == 6144 + 4096
    tiling = plan_step(graph, op, 4, *staged, NEED - ALIGN_SLACK, CFG)
    assert len(tiling.blocks) == 4 and tiling.working_set == 12_288
    with pytest.raises(WavecoreError, match="cannot run in the global buffer"):
        plan_step(graph, op, 4, *staged, 12_287, CFG)


@pytest.mark.parametrize("schedule", ["baseline", "mbs2"])
def test_odd_buffer_sizes_compile_or_are_refused_but_never_exhaust_the_buffer(schedule):
    # every 61st size (odd, unaligned) across the band that failed, and its edges
    net = _net()
    for gbuf in [*range(10_240 - 61, NEED + 61, 61), NEED - 1, NEED]:
        cfg = dataclasses.replace(CFG, gbuf_bytes=gbuf)
        try:
            api.compile_network(net, 4, schedule, "bn", cfg=cfg, verify=False)
        except WavecoreError as err:
            assert not str(err).startswith("internal"), f"gbuf_bytes={gbuf}: {err}"
            assert "raise gbuf_bytes" in str(err)
            assert gbuf < NEED, f"gbuf_bytes={gbuf}: {err}"


def test_smallest_buffer_is_the_hand_count():
    # baseline: 16,384 B compiles (and verifies), one byte less is refused naming the norm
    net = _net()
    api.compile_network(net, 4, "baseline", cfg=dataclasses.replace(CFG, gbuf_bytes=NEED))
    with pytest.raises(WavecoreError, match="layer 'norm' does not fit"):
        api.compile_network(net, 4, "baseline", cfg=dataclasses.replace(CFG, gbuf_bytes=NEED - 1))
