"""Training stage: GEMM lowering, op and tensor expansion of one training iteration."""

from __future__ import annotations

import pytest
from conftest import TINYNET, head, spec
from hypothesis import given, settings
from hypothesis import strategies as st

from wavecore_sim.config import load_config
from wavecore_sim.errors import WavecoreError
from wavecore_sim.training import (
    DGRAD,
    FWD,
    PHASES,
    WGRAD,
    GemmShape,
    TrainingGraph,
    VectorWork,
    expand_training,
    gemm_shape,
)
from wavecore_sim.workload import build_network, list_networks, load_network

CFG = load_config()


def expand(network, batch=2, cfg=CFG) -> TrainingGraph:
    return expand_training(network, batch, cfg)


def op(graph: TrainingGraph, name: str):
    (found,) = [o for o in graph.ops if o.name == name]
    return found


def strided_conv_net():
    """norm (parameters upstream, so the conv's input needs a gradient: DGRAD) -> conv -> head."""
    return build_network(
        spec(
            [
                {"name": "n", "kind": "norm"},
                {
                    "name": "c",
                    "kind": "conv",
                    "out_channels": 128,
                    "kernel": 3,
                    "stride": 2,
                    "padding": 1,
                },
                *head(),
            ],
            64,
            56,
            56,
        )
    )


# ----------------------------------------------------------------------------- GEMM shapes


def test_strided_3x3_conv_gemm_shapes_match_hand_count():
    layer = strided_conv_net().layer("c")
    # Ho = floor((56 + 2 - 2 - 1)/2) + 1 = floor(55/2) + 1 = 28; batch 4:
    # M = 4*28*28 = 3136 output pixels; K = 64*3*3 = 576 taps; N = 128 filters
    assert gemm_shape(layer, FWD, 4) == GemmShape(FWD, 3136, 576, 128)
    assert gemm_shape(layer, DGRAD, 4) == GemmShape(DGRAD, 3136, 128, 576)
    assert gemm_shape(layer, WGRAD, 4) == GemmShape(WGRAD, 576, 3136, 128)
    # each pass: 3136 * 576 * 128 = 1,806,336 * 128 = 231,211,008 = 4 * 28*28*128*576
    for role in (FWD, DGRAD, WGRAD):
        assert gemm_shape(layer, role, 4).macs == 231_211_008 == 4 * layer.macs_per_sample


def test_strided_3x3_conv_backward_op_has_dgrad_and_wgrad_at_batch_size():
    graph = expand(strided_conv_net(), batch=4)
    assert op(graph, "fwd:c").roles == (FWD,)
    assert op(graph, "bwd:c").roles == (DGRAD, WGRAD)
    # gemms() scales to the mini-batch (4) by default and to 1 sample on request: M = 28*28
    assert graph.gemms(op(graph, "bwd:c")) == [
        GemmShape(DGRAD, 3136, 128, 576),
        GemmShape(WGRAD, 576, 3136, 128),
    ]
    assert graph.gemms(op(graph, "fwd:c"), 1) == [GemmShape(FWD, 784, 576, 128)]


def test_fc_2048_to_1000_gemm_shapes_at_batch_32():
    network = build_network(
        spec(
            [
                {"name": "norm", "kind": "norm"},  # parameters upstream: the fc needs DGRAD
                {"name": "gap", "kind": "gap"},
                {"name": "fc", "kind": "fc", "out_features": 1000},
                {"name": "loss", "kind": "loss"},
            ],
            2048,
            7,
            7,
        )
    )
    layer = network.layer("fc")
    # FC is the 1x1 case: M = batch = 32, K = 2048 features, N = 1000 classes
    assert gemm_shape(layer, FWD, 32) == GemmShape(FWD, 32, 2048, 1000)
    assert gemm_shape(layer, DGRAD, 32) == GemmShape(DGRAD, 32, 1000, 2048)
    assert gemm_shape(layer, WGRAD, 32) == GemmShape(WGRAD, 2048, 32, 1000)
    # 32 * 2048 * 1000 = 65,536,000 MACs per pass
    assert gemm_shape(layer, WGRAD, 32).macs == 65_536_000
    assert op(expand(network, 32), "bwd:fc").roles == (DGRAD, WGRAD)


def test_fc_on_a_spatial_tensor_reduces_over_flattened_features():
    layer = build_network(
        spec(
            [
                {"name": "fc", "kind": "fc", "out_features": 10},
                {"name": "loss", "kind": "loss"},
            ],
            8,
            2,
            2,
        )
    ).layer("fc")
    # K = 8 * 2 * 2 = 32 flattened features
    assert gemm_shape(layer, FWD, 3) == GemmShape(FWD, 3, 32, 10)


def test_grouped_conv_is_one_gemm_per_group():
    layer = build_network(
        spec(
            [
                {
                    "name": "g",
                    "kind": "conv",
                    "out_channels": 128,
                    "kernel": 3,
                    "padding": 1,
                    "groups": 4,
                },
                *head(),
            ],
            64,
            28,
            28,
        )
    ).layer("g")
    # per group: M = 2*28*28 = 1568, K = 64/4 * 9 = 144, N = 128/4 = 32; 4 groups
    shape = gemm_shape(layer, FWD, 2)
    assert shape == GemmShape(FWD, 1568, 144, 32, groups=4)
    # 4 * 1568 * 144 * 32 = 28,901,376 = 2 samples * 14,450,688 (28*28 * 128*16*9)
    assert shape.macs == 28_901_376 == 2 * layer.macs_per_sample
    assert gemm_shape(layer, WGRAD, 2) == GemmShape(WGRAD, 144, 1568, 32, groups=4)


def test_unknown_gemm_role_is_a_programming_error():
    with pytest.raises(ValueError):
        gemm_shape(strided_conv_net().layer("c"), "BOGUS", 1)


# ----------------------------------------------------------------------------- MAC totals


def test_tinynet_training_macs_are_fwd_plus_dgrad_plus_wgrad():
    totals = expand(load_network(str(TINYNET))).macs_per_sample()
    # fwd 6,340,928 (see test_workload); DGRAD skips stem.conv, which reads the image:
    # 6,340,928 - 32*32*432 = 6,340,928 - 442,368 = 5,898,560; WGRAD = fwd
    assert totals == {FWD: 6_340_928, DGRAD: 5_898_560, WGRAD: 6_340_928}


@pytest.mark.parametrize(
    "name, first, first_macs",
    [
        # conv1 7x7/2 on 3x224x224: 112*112 * 64 * 3*49 = 12544 * 9408 = 118,013,952
        ("resnet50", "conv1", 118_013_952),
        # features.0 3x3 pad 1 on 3x224x224: 224*224 * 64 * 3*9 = 50176 * 1728 = 86,704,128
        ("vgg16", "features.0", 86_704_128),
    ],
)
def test_training_macs_are_three_times_forward_minus_the_first_conv(name, first, first_macs):
    network = load_network(name)
    assert network.layer(first).macs_per_sample == first_macs
    graph = expand(network, 1)
    totals = graph.macs_per_sample()
    assert totals[FWD] == totals[WGRAD] == network.fwd_macs_per_sample
    assert totals[DGRAD] == network.fwd_macs_per_sample - first_macs
    assert sum(totals.values()) == 3 * network.fwd_macs_per_sample - first_macs
    assert op(graph, f"bwd:{first}").roles == (WGRAD,)
    assert op(graph, f"bwd:{first}").writes == ()  # nobody needs the image's gradient


# ----------------------------------------------------------------------------- ops and tensors


@pytest.fixture(scope="module")
def tiny() -> TrainingGraph:
    return expand(load_network(str(TINYNET)), 8)


def test_tinynet_saves_exactly_the_tensors_backward_reads(tiny):
    saved = {name for name, t in tiny.tensors.items() if t.saved}
    assert saved == {
        # conv / fc inputs (WGRAD reads them)
        "A:input",
        "A:stem.relu",
        "A:block.relu1",
        "A:pool",
        "A:gap",
        # norm inputs
        "A:stem.conv",
        "A:block.conv1",
        "A:block.conv2",
        "A:conv3",
        # relu outputs (stem.relu and block.relu1 are also conv inputs)
        "A:block.relu2",
        "A:relu3",
        # maxpool input (block.relu2) and output (pool, also a conv input)
    }
    # not saved: norm outputs (relu recomputes from its output), the add, the fc scores
    for name in ("A:stem.norm", "A:block.norm2", "A:block.add", "A:fc"):
        assert not tiny.tensors[name].saved
    # elements: input 3*32*32 = 3072; six 16x32x32 tensors = 6 * 16384 = 98,304;
    # pool 16*16*16 = 4096; conv3 and relu3 32*16*16 = 8192 each; gap 32
    # total 3072 + 98304 + 4096 + 16384 + 32 = 121,888 elements * 2 bytes (bf16) = 243,776
    assert tiny.saved_bytes_per_sample() == 243_776


def test_residual_block_input_gets_one_gradsum_before_its_backward(tiny):
    names = [o.name for o in tiny.ops]
    assert [o.name for o in tiny.ops if o.phase == "GRADSUM"] == ["gradsum:stem.relu"]
    gradsum = op(tiny, "gradsum:stem.relu")
    # consumers of stem.relu, in file order: block.conv1 (its own share) and the add (whose
    # gradient passes through unchanged, so its share is the add's output gradient)
    assert gradsum.reads == ("G:stem.relu@block.conv1", "G:block.add")
    assert gradsum.writes == ("G:stem.relu",)
    # one add per element of the 16x32x32 tensor
    assert gradsum.vector == VectorWork(16 * 32 * 32, 1, 1)
    assert (
        names.index("bwd:block.conv1")
        < names.index("gradsum:stem.relu")
        < names.index("bwd:stem.relu")
    )
    assert op(tiny, "bwd:stem.relu").reads[0] == "G:stem.relu"


def test_add_has_no_backward_op_and_passes_its_gradient_through(tiny):
    assert [o.name for o in tiny.ops if o.layer == "block.add"] == ["fwd:block.add"]
    assert op(tiny, "bwd:block.relu2").writes == ("G:block.add",)
    assert op(tiny, "bwd:block.norm2").reads[0] == "G:block.add"


def test_ops_come_in_phase_order_with_one_update_per_parameterised_layer(tiny):
    phases = [o.phase for o in tiny.ops]
    assert set(phases) <= set(PHASES)
    rank = {"FWD": 0, "LOSS": 1, "BWD": 2, "GRADSUM": 2, "UPDATE": 3}
    assert phases == sorted(phases, key=rank.__getitem__)
    # 4 convs + 4 norms + 1 fc carry parameters
    assert phases.count("UPDATE") == 9
    assert phases.count("FWD") == 16  # 17 layers minus the loss
    loss = op(tiny, "loss:loss")
    # softmax cross-entropy over 10 classes: 3 passes of 2 ops
    assert (loss.reads, loss.writes, loss.vector) == (("A:fc",), ("G:fc",), VectorWork(10, 3, 2))


def test_batch_norm_ops_span_the_batch_and_group_norm_ops_do_not():
    bn = expand(load_network(str(TINYNET), norm="bn"))
    gn = expand(load_network(str(TINYNET), norm="gn"))
    assert op(bn, "fwd:stem.norm").spans_batch and op(bn, "bwd:stem.norm").spans_batch
    assert not op(gn, "fwd:stem.norm").spans_batch and not op(gn, "bwd:stem.norm").spans_batch


def _check_dataflow(graph: TrainingGraph) -> None:
    """Every tensor an op reads was written by an earlier op (or is a model input), and
    every gradient written is read by a later op."""
    written: set[str] = set()
    for o in graph.ops:
        for name in o.reads:
            assert (
                name in written or name == "A:input" or name.split(":")[0] in ("W", "W32", "M")
            ), f"{o.name} reads {name} before anything writes it"
        written.update(o.writes)
        if o.weight_grad:
            written.add(o.weight_grad)
    read_later = {n for o in graph.ops for n in o.reads}
    dead = sorted(n for n in written if n.startswith("G:") and n not in read_later)
    assert not dead, f"gradients written but never read: {dead}"
    assert set(graph.consumers) == set(graph.tensors)


@pytest.mark.parametrize("name", [*list_networks(), str(TINYNET)])
def test_every_read_is_written_first_in_zoo_networks(name):
    _check_dataflow(expand(load_network(name), 1))


def test_add_output_that_fans_out_gets_a_gradsum():
    # pre-activation style: the add's output a1 feeds both c3 and the next add.
    # (This used to crash with KeyError: 'G:a1' because nothing wrote a1's gradient.)
    network = build_network(
        spec(
            [
                {"name": "c1", "kind": "conv", "out_channels": 4, "kernel": 3, "padding": 1},
                {"name": "c2", "kind": "conv", "out_channels": 4, "kernel": 3, "padding": 1},
                {"name": "a1", "kind": "add", "inputs": ["c1", "c2"]},
                {"name": "c3", "kind": "conv", "out_channels": 4, "kernel": 3, "padding": 1},
                {"name": "a2", "kind": "add", "inputs": ["a1", "c3"]},
                *head(),
            ],
            4,
            8,
            8,
        )
    )
    graph = expand(network)
    _check_dataflow(graph)
    gradsum = op(graph, "gradsum:a1")
    # a1's readers: c3 (its share) and a2 (passes G:a2 through)
    assert gradsum.reads == ("G:a1@c3", "G:a2") and gradsum.writes == ("G:a1",)
    assert op(graph, "bwd:c2").reads[0] == "G:a1"
    names = [o.name for o in graph.ops]
    assert names.index("bwd:c3") < names.index("gradsum:a1") < names.index("bwd:c2")
    assert [o.name for o in graph.ops if o.layer in ("a1", "a2") and o.phase == "BWD"] == []


def test_norm_reading_the_image_still_trains_its_affine_parameters():
    # The norm needs no input gradient, but its gamma/beta need dW and an update.
    # (This used to drop the norm's backward and update ops entirely.)
    graph = expand(build_network(spec([{"name": "n0", "kind": "norm"}, *head()], 4, 8, 8)))
    _check_dataflow(graph)
    bwd = op(graph, "bwd:n0")
    assert bwd.writes == () and bwd.weight_grad == "dW:n0"
    # only the reduction pass (sum dy, sum dy*xhat): 4*8*8 = 256 elements, 1 pass, 3 ops
    assert bwd.vector == VectorWork(256, 1, 3)
    # 2 * 4 channels = 8 parameters, 4 ops each
    assert op(graph, "update:n0").vector == VectorWork(8, 1, 4)


def test_parameter_free_layers_on_the_image_need_no_gradient():
    # pool and relu applied to the image depend on no parameter: nobody needs their gradient,
    # so they get no backward op, the conv after them no DGRAD, and nothing is saved for them.
    # (The conv used to compute a DGRAD into G:r that no op ever read.)
    graph = expand(
        build_network(
            spec(
                [
                    {"name": "p", "kind": "maxpool", "kernel": 2},
                    {"name": "r", "kind": "relu"},
                    {"name": "c", "kind": "conv", "out_channels": 8, "kernel": 3, "padding": 1},
                    *head(),
                ],
                4,
                16,
                16,
            )
        )
    )
    _check_dataflow(graph)
    assert [o.name for o in graph.ops if o.layer in ("p", "r")] == ["fwd:p", "fwd:r"]
    assert op(graph, "bwd:c").roles == (WGRAD,) and op(graph, "bwd:c").writes == ()
    saved = {name for name, t in graph.tensors.items() if t.saved}
    assert "A:input" not in saved and "A:p" not in saved
    assert "A:r" in saved  # the conv's input, for WGRAD
    # the conv at 8x8 after the 2x2 pool: 8*8 * 8 * 4*9 = 18,432; head fc 8 -> 10 = 80.
    # DGRAD only for the fc (the conv's output depends on its weights): 80
    assert graph.macs_per_sample() == {FWD: 18_512, DGRAD: 80, WGRAD: 18_512}


# ----------------------------------------------------------------------------- tensor bytes


def test_tensor_bytes_scale_with_batch_and_element_sizes():
    cfg = load_config(
        overrides={
            "act_bytes": "4",
            "grad_bytes": "1",
            "weight_bytes": "1",
            "weight_grad_bytes": "2",
            "master_weight_bytes": "8",
            "optimizer_state_bytes": "8",
        }
    )
    network = load_network(str(TINYNET))
    graph = expand(network, 8, cfg)
    t = graph.tensors
    # A:stem.conv is 16*32*32 = 16,384 elements: 4 bytes each per sample, x8 for the batch
    assert t["A:stem.conv"].bytes_per_sample == 65_536
    assert t["A:stem.conv"].bytes_for(8) == 524_288
    # its gradient at grad_bytes = 1
    assert t["G:stem.conv"].bytes_per_sample == 16_384
    # stem.conv's 432 weights: bf16 copy 1 B, gradient 2 B, master 8 B, momentum 8 B
    assert [t[f"{p}:stem.conv"].fixed_bytes for p in ("W", "dW", "W32", "M")] == [
        432,
        864,
        3456,
        3456,
    ]
    # weights do not scale with the batch
    assert t["W32:stem.conv"].bytes_for(1) == t["W32:stem.conv"].bytes_for(64) == 3456
    assert {t["W:fc"].kind, t["M:fc"].kind} == {"weight", "optimizer"}
    # saved activations: 121,888 elements (see above) * 4 bytes = 487,552
    assert graph.saved_bytes_per_sample() == 487_552
    # per-sample sizes do not depend on the batch the graph was expanded for
    assert expand(network, 1, cfg).tensors["A:stem.conv"].bytes_per_sample == 65_536


def test_default_element_sizes_are_bf16_data_and_fp32_state():
    t = expand(load_network(str(TINYNET))).tensors
    # 16*32*32 * 2 B; 432 weights * 2 B (bf16) and * 4 B (fp32 grad, master, momentum)
    assert t["A:stem.conv"].bytes_per_sample == 32_768
    assert [t[f"{p}:stem.conv"].fixed_bytes for p in ("W", "dW", "W32", "M")] == [
        864,
        1728,
        1728,
        1728,
    ]


@pytest.mark.parametrize("batch", [0, -1, True, 2.0, "4"])
def test_non_positive_or_non_integer_batch_is_refused(batch):
    with pytest.raises(WavecoreError, match="--batch must be a positive integer"):
        expand_training(load_network(str(TINYNET)), batch, CFG)


# ----------------------------------------------------------------------------- properties


def torch_conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    """Count the window starts 0, s, 2s, ... whose dilated window (span d*(k-1)+1) ends
    inside the padded input: PyTorch's Conv2d output size, computed by enumeration."""
    return len(range(0, size + 2 * p - d * (k - 1), s))


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    groups = draw(st.integers(1, 4))
    return {
        "h": draw(st.integers(8, 64)),
        "w": draw(st.integers(8, 64)),
        "cin": groups * draw(st.integers(1, 8)),
        "cout": groups * draw(st.integers(1, 8)),
        "groups": groups,
        "kernel": [kh, kw],
        "stride": [draw(st.integers(1, 3)), draw(st.integers(1, 3))],
        "padding": [draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))],
        "dilation": [draw(st.integers(1, 2)), draw(st.integers(1, 2))],
        "bias": draw(st.booleans()),
        "batch": draw(st.integers(1, 8)),
    }


@settings(max_examples=80, deadline=None)
@given(conv_cases())
def test_random_conv_matches_pytorch_shape_and_gemm_macs_agree(case):
    ho, wo = (
        torch_conv_out(
            case[a], case["kernel"][i], case["stride"][i], case["padding"][i], case["dilation"][i]
        )
        for i, a in ((0, "h"), (1, "w"))
    )
    layers = [
        {"name": "n", "kind": "norm"},  # parameters upstream: the conv needs DGRAD
        {
            "name": "c",
            "kind": "conv",
            "out_channels": case["cout"],
            **{f: case[f] for f in ("kernel", "stride", "padding", "dilation", "groups", "bias")},
        },
        *head(),
    ]
    built = spec(layers, case["cin"], case["h"], case["w"])
    if ho < 1 or wo < 1:
        with pytest.raises(WavecoreError, match="does not fit"):
            build_network(built)
        return
    network = build_network(built)
    layer = network.layer("c")
    assert layer.out_shape == (case["cout"], ho, wo)
    kh, kw = case["kernel"]
    weights = case["cout"] * case["cin"] // case["groups"] * kh * kw
    assert layer.params == weights + (case["cout"] if case["bias"] else 0) > 0
    assert layer.macs_per_sample == ho * wo * weights > 0
    graph = expand(network, case["batch"])
    gemms = graph.gemms(op(graph, "fwd:c")) + graph.gemms(op(graph, "bwd:c"))
    assert [g.role for g in gemms] == [FWD, DGRAD, WGRAD]
    assert {g.macs for g in gemms} == {layer.macs_per_sample * case["batch"]}


def torch_pool_out(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """Enumerate PyTorch's pooling windows: window i starts at i*s in the padded input. Floor
    mode keeps windows that end inside the padded input; ceil mode also keeps one that
    overhangs the padded end by less than a stride, provided it starts inside the input or
    the left padding (so a window never covers only right padding)."""
    padded = size + 2 * p
    overhang = s - 1 if ceil_mode else 0
    count, start = 0, 0
    while start + k - padded <= overhang and (not ceil_mode or start < size + p):
        count, start = count + 1, start + s
    return count


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 7), st.integers(1, 3), st.integers(1, 40), st.booleans(), st.data())
def test_random_pooling_matches_pytorch_window_count(k, s, size, ceil_mode, data):
    p = data.draw(st.integers(0, k // 2))
    built = spec(
        [
            {
                "name": "p",
                "kind": "maxpool",
                "kernel": k,
                "stride": s,
                "padding": p,
                "ceil_mode": ceil_mode,
            },
            *head(),
        ],
        2,
        size,
        size,
    )
    expected = torch_pool_out(size, k, s, p, ceil_mode)
    if expected < 1:  # PyTorch: "Output size is too small"
        with pytest.raises(WavecoreError, match="does not fit"):
            build_network(built)
        return
    assert build_network(built).layer("p").out_shape == (2, expected, expected)


def test_ceil_mode_pool_may_overhang_a_small_input_like_pytorch():
    # 2x2/2 on 1x1, ceil mode: ceil((1 - 2)/2) + 1 = 0 + 1 = 1 window (PyTorch gives 1x1);
    # 4x4/1 on 1x1: ceil((1 - 4)/1) + 1 = -2: refused, as PyTorch refuses it
    ok = build_network(
        spec([{"name": "p", "kind": "maxpool", "kernel": 2, "ceil_mode": True}, *head()], 2, 1, 1)
    )
    assert ok.layer("p").out_shape == (2, 1, 1)
    with pytest.raises(WavecoreError, match="does not fit"):
        build_network(
            spec(
                [
                    {"name": "p", "kind": "maxpool", "kernel": 4, "stride": 1, "ceil_mode": True},
                    *head(),
                ],
                2,
                1,
                1,
            )
        )


def _modern_block():
    """conv -> layernorm -> gelu -> SE (gap, 1x1 convs, sigmoid, mul) -> layer scale -> add."""
    from wavecore_sim.workload import build_network

    return build_network(
        {
            "format": "wavecore-network/1",
            "name": "modern",
            "input": {"channels": 8, "height": 4, "width": 4},
            "layers": [
                {
                    "name": "dw",
                    "kind": "conv",
                    "out_channels": 8,
                    "kernel": 3,
                    "padding": 1,
                    "groups": 8,
                },
                {"name": "ln", "kind": "layernorm"},
                {"name": "gelu", "kind": "act", "function": "gelu"},
                {"name": "gap", "kind": "gap"},
                {"name": "fc1", "kind": "conv", "out_channels": 2, "kernel": 1, "bias": True},
                {"name": "sig", "kind": "act", "function": "sigmoid"},
                {"name": "fc2", "kind": "conv", "out_channels": 8, "kernel": 1, "bias": True},
                {"name": "mul", "kind": "mul", "inputs": ["gelu", "fc2"]},
                {"name": "ls", "kind": "scale"},
                {"name": "add", "kind": "add", "inputs": ["ls", "dw"]},
                {"name": "head", "kind": "gap"},
                {"name": "fc", "kind": "fc", "out_features": 3},
                {"name": "loss", "kind": "loss"},
            ],
        }
    )


def test_new_vector_kinds_cost_and_save_what_their_backward_reads():
    from wavecore_sim.training import ACTIVATION_COSTS

    net = _modern_block()
    graph = expand_training(net, 4, load_config("wavecore"))
    ops = {op.name: op for op in graph.ops}
    elems = 8 * 4 * 4  # per-sample elements of the block's (8, 4, 4) tensors
    # layernorm: statistics + apply passes, per sample (never spans the batch)
    assert ops["fwd:ln"].vector == VectorWork(elems, 2, 2) and not ops["fwd:ln"].spans_batch
    assert ops["fwd:gelu"].vector == VectorWork(elems, 1, ACTIVATION_COSTS["gelu"].fwd_ops)
    # gelu's backward reads its input (the layernorm output); sigmoid's reads its output
    assert ops["bwd:gelu"].reads == ("G:gelu", "A:ln")
    assert ops["bwd:sig"].reads == ("G:sig", "A:sig")
    # SE mul: dx = dy*s and ds = sum_hw(dy*x): 3 ops per element, reads both inputs, writes
    # both input gradients (the (8, 1, 1) one per channel)
    assert ops["bwd:mul"].vector == VectorWork(elems, 1, 3)
    assert ops["bwd:mul"].reads == ("G:mul", "A:gelu", "A:fc2")
    assert graph.tensors["G:fc2"].shape == (8, 1, 1)
    # layer scale: 8 parameters, trained by its backward op
    assert net.layer("ls").params == 8 and ops["bwd:ls"].weight_grad == "dW:ls"
    assert all(graph.tensors[t].saved for t in ("A:ln", "A:sig", "A:gelu", "A:fc2", "A:mul"))


def test_modern_block_compiles_under_every_paper_schedule():
    from wavecore_sim import api

    for schedule in ("baseline", "mbs1", "mbs2", "mbs-fs"):
        result = api.compile_network(_modern_block(), batch=4, schedule=schedule)
        assert len(result.program) > 0


def test_broadcast_add_sums_the_gradient_of_its_per_channel_input():
    from wavecore_sim.workload import build_network

    net = build_network(
        {
            "format": "wavecore-network/1",
            "name": "bias",
            "input": {"channels": 4, "height": 8, "width": 8},
            "layers": [
                {"name": "c", "kind": "conv", "out_channels": 8, "kernel": 3, "padding": 1},
                {"name": "g", "kind": "gap"},
                {"name": "p", "kind": "conv", "out_channels": 8, "kernel": 1},
                {"name": "add", "kind": "add", "inputs": ["c", "p"]},
                {"name": "head", "kind": "gap"},
                {"name": "fc", "kind": "fc", "out_features": 3},
                {"name": "loss", "kind": "loss"},
            ],
        }
    )
    graph = expand_training(net, 2, load_config("wavecore"))
    ops = {op.name: op for op in graph.ops}
    bwd = ops["bwd:add"]
    # the full-shape input c takes the add's gradient unchanged; p's (8, 1, 1) gradient is
    # dy summed over the 8x8 positions: one op per output element
    assert bwd.reads == ("G:add",) and bwd.writes == ("G:p",)
    assert bwd.vector == VectorWork(8 * 8 * 8, 1, 1)
    assert graph.tensors["G:p"].shape == (8, 1, 1)
    assert "G:add" in ops["gradsum:c"].reads  # c also feeds the gap g
    from wavecore_sim import api

    for schedule in ("baseline", "mbs2"):
        assert len(api.compile_network(net, batch=2, schedule=schedule).program) > 0
