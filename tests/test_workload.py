"""Workload stage: shape inference, parameter and MAC counts, validation of network specs.

Every expected number is worked out by hand in the comment beside it, with the formulas of
docs/network-format.md (PyTorch's): Ho = floor((H + 2p - d(k-1) - 1) / s) + 1.
"""

from __future__ import annotations

import pytest
from conftest import TINYNET, head, spec

from wavecore_sim.errors import WavecoreError
from wavecore_sim.workload import build_network, list_networks, load_network


def net(layers, c=3, h=32, w=32, norm="bn"):
    """Build ``layers`` followed by gap -> fc(10) -> loss on a (c, h, w) input."""
    return build_network(spec(layers + head(), c, h, w), norm=norm, source="test")


def refused(layers, c=3, h=32, w=32, norm="bn") -> str:
    with pytest.raises(WavecoreError) as info:
        net(layers, c, h, w, norm)
    return str(info.value)


# ----------------------------------------------------------------------------- conv


def test_strided_7x7_stem_conv_shape_params_and_macs_match_hand_count():
    layer = net(
        [{"name": "c", "kind": "conv", "out_channels": 64, "kernel": 7, "stride": 2, "padding": 3}],
        3,
        224,
        224,
    ).layer("c")
    # Ho = floor((224 + 2*3 - 1*(7-1) - 1) / 2) + 1 = floor(223/2) + 1 = 112
    assert layer.out_shape == (64, 112, 112)
    # params = out * in/groups * kh * kw = 64 * 3 * 7 * 7 = 9408 (no bias by default)
    assert layer.params == 9408
    # MACs = Ho * Wo * params = 112 * 112 * 9408 = 12544 * 9408 = 118,013,952
    assert layer.macs_per_sample == 118_013_952


def test_conv_bias_adds_one_parameter_per_output_channel():
    layer = net(
        [{"name": "c", "kind": "conv", "out_channels": 16, "kernel": 3, "bias": True}]
    ).layer("c")
    # 16 * 3 * 3 * 3 = 432 weights + 16 biases = 448
    assert layer.params == 448
    # no padding: Ho = 32 - 3 + 1 = 30; MACs exclude the bias: 30 * 30 * 432 = 388,800
    assert layer.out_shape == (16, 30, 30)
    assert layer.macs_per_sample == 388_800


def test_valid_stride2_conv_on_odd_input_floors_like_pytorch():
    layer = net(
        [{"name": "c", "kind": "conv", "out_channels": 8, "kernel": 3, "stride": 2}], 3, 35, 35
    ).layer("c")
    # floor((35 - 2 - 1) / 2) + 1 = 16 + 1 = 17 (Inception's 35x35 -> 17x17 reduction)
    assert layer.out_shape == (8, 17, 17)


def test_dilated_conv_output_shape_matches_hand_count():
    network = net(
        [
            {
                "name": "d2",
                "kind": "conv",
                "out_channels": 8,
                "kernel": 3,
                "dilation": 2,
                "padding": 2,
            },
            {"name": "d3", "kind": "conv", "out_channels": 8, "kernel": 3, "dilation": 3},
        ],
        16,
        32,
        32,
    )
    # d2: floor((32 + 2*2 - 2*(3-1) - 1) / 1) + 1 = 31 + 1 = 32 (a "same" dilated conv)
    assert network.layer("d2").out_shape == (8, 32, 32)
    # dilation spreads the taps but does not add any: 32*32 * 8 * 16 * 3*3 = 1,179,648
    assert network.layer("d2").macs_per_sample == 1_179_648
    # d3 on 32x32, no padding: effective kernel 3*(3-1)+1 = 7 -> 32 - 7 + 1 = 26
    assert network.layer("d3").out_shape == (8, 26, 26)


def test_grouped_conv_divides_params_and_macs_by_groups():
    layer = net(
        [
            {
                "name": "g",
                "kind": "conv",
                "out_channels": 128,
                "kernel": 3,
                "padding": 1,
                "groups": 4,
            }
        ],
        64,
        28,
        28,
    ).layer("g")
    # params = 128 * (64/4) * 3 * 3 = 128 * 144 = 18,432
    assert layer.params == 18_432
    assert layer.groups == 4
    # "same" padding keeps 28x28; MACs = 28*28 * 18432 = 784 * 18432 = 14,450,688
    assert layer.out_shape == (128, 28, 28)
    assert layer.macs_per_sample == 14_450_688


def test_depthwise_conv_with_bias_counts_one_filter_per_channel():
    layer = net(
        [
            {
                "name": "dw",
                "kind": "conv",
                "out_channels": 32,
                "kernel": 3,
                "padding": 1,
                "groups": 32,
                "bias": True,
            }
        ],
        32,
        14,
        14,
    ).layer("dw")
    # 32 filters of 1 x 3 x 3 = 288 weights + 32 biases = 320
    assert layer.params == 320
    # 14*14 * 32 * 1 * 9 = 196 * 288 = 56,448
    assert layer.macs_per_sample == 56_448


def test_groups_that_do_not_divide_the_channels_are_refused():
    message = refused(
        [{"name": "g", "kind": "conv", "out_channels": 8, "kernel": 1, "groups": 4}], 6, 8, 8
    )
    assert "groups=4" in message and "'g'" in message


def test_asymmetric_1x7_and_7x1_kernels_keep_17x17_and_count_kh_times_kw():
    network = net(
        [
            {
                "name": "c17",
                "kind": "conv",
                "out_channels": 128,
                "kernel": [1, 7],
                "padding": [0, 3],
            },
            {
                "name": "c71",
                "kind": "conv",
                "out_channels": 192,
                "kernel": [7, 1],
                "padding": [3, 0],
            },
        ],
        128,
        17,
        17,
    )
    c17, c71 = network.layer("c17"), network.layer("c71")
    # Ho = floor((17 + 0 - 0 - 1)/1) + 1 = 17; Wo = floor((17 + 6 - 6 - 1)/1) + 1 = 17
    assert c17.out_shape == (128, 17, 17) and c17.kernel == (1, 7) and c17.padding == (0, 3)
    assert c71.out_shape == (192, 17, 17) and c71.kernel == (7, 1)
    # params: 128 * 128 * 1 * 7 = 114,688 and 192 * 128 * 7 * 1 = 172,032
    assert (c17.params, c71.params) == (114_688, 172_032)
    # MACs: 17*17 = 289 positions: 289 * 114688 = 33,144,832; 289 * 172032 = 49,717,248
    assert (c17.macs_per_sample, c71.macs_per_sample) == (33_144_832, 49_717_248)


def test_asymmetric_stride_and_padding_pairs_apply_per_axis():
    layer = net(
        [
            {
                "name": "c",
                "kind": "conv",
                "out_channels": 4,
                "kernel": 3,
                "stride": [2, 1],
                "padding": [1, 0],
            }
        ],
        8,
        16,
        16,
    ).layer("c")
    # Ho = floor((16 + 2 - 2 - 1)/2) + 1 = floor(15/2) + 1 = 8; Wo = floor((16 - 2 - 1)/1) + 1 = 14
    assert layer.out_shape == (4, 8, 14)


def test_kernel_bigger_than_input_is_refused():
    message = refused([{"name": "big", "kind": "conv", "out_channels": 4, "kernel": 11}], 3, 8, 8)
    # floor((8 - 10 - 1)/1) + 1 = -2: nothing fits
    assert "'big'" in message and "does not fit" in message and "8x8" in message


# ----------------------------------------------------------------------------- pooling


def test_resnet_stem_maxpool_halves_112_to_56():
    layer = net(
        [{"name": "p", "kind": "maxpool", "kernel": 3, "stride": 2, "padding": 1}], 64, 112, 112
    ).layer("p")
    # floor((112 + 2 - 2 - 1)/2) + 1 = floor(111/2) + 1 = 56; pooling has no parameters
    assert layer.out_shape == (64, 56, 56)
    assert (layer.params, layer.macs_per_sample) == (0, 0)


def test_maxpool_ceil_mode_adds_the_partial_window_like_pytorch():
    network = build_network(
        spec(
            [
                {"name": "floor", "kind": "maxpool", "kernel": 3, "stride": 2, "inputs": ["input"]},
                {
                    "name": "ceil",
                    "kind": "maxpool",
                    "kernel": 3,
                    "stride": 2,
                    "ceil_mode": True,
                    "inputs": ["input"],
                },
                {"name": "g1", "kind": "gap", "inputs": ["floor"]},
                {"name": "g2", "kind": "gap", "inputs": ["ceil"]},
                {"name": "cat", "kind": "concat", "inputs": ["g1", "g2"]},
                {"name": "fc", "kind": "fc", "out_features": 2},
                {"name": "loss", "kind": "loss"},
            ],
            4,
            8,
            8,
        )
    )
    # floor mode: floor((8 - 2 - 1)/2) + 1 = floor(5/2) + 1 = 3
    assert network.layer("floor").out_shape == (4, 3, 3)
    # ceil mode: ceil(5/2) + 1 = 4; the 4th window starts at 3*2 = 6 < 8, so it is kept
    # (torch.nn.MaxPool2d(3, 2, ceil_mode=True) maps 8x8 to 4x4)
    assert network.layer("ceil").out_shape == (4, 4, 4)


def test_ceil_mode_drops_a_window_that_would_start_in_the_right_padding():
    layer = net(
        [
            {
                "name": "p",
                "kind": "maxpool",
                "kernel": 2,
                "stride": 2,
                "padding": 1,
                "ceil_mode": True,
            }
        ],
        4,
        5,
        5,
    ).layer("p")
    # ceil((5 + 2 - 1 - 1)/2) + 1 = ceil(5/2) + 1 = 4, but window 4 would start at 3*2 = 6
    # >= H + pad = 6, i.e. entirely in the right padding; PyTorch drops it -> 3
    assert layer.out_shape == (4, 3, 3)


def test_avgpool_stride_defaults_to_the_kernel_per_axis():
    layer = net([{"name": "p", "kind": "avgpool", "kernel": [2, 4]}], 16, 8, 8).layer("p")
    # stride = kernel = (2, 4): Ho = floor((8-1-1)/2)+1 = 4, Wo = floor((8-3-1)/4)+1 = 2
    assert layer.stride == (2, 4)
    assert layer.out_shape == (16, 4, 2)


def test_stride1_padded_avgpool_keeps_the_size():
    layer = net(
        [
            {
                "name": "p",
                "kind": "avgpool",
                "kernel": 3,
                "stride": 1,
                "padding": 1,
                "count_include_pad": False,
            }
        ],
        16,
        8,
        8,
    ).layer("p")
    # floor((8 + 2 - 2 - 1)/1) + 1 = 8 (Inception's pooling branch)
    assert layer.out_shape == (16, 8, 8)


def test_pool_padding_over_half_the_kernel_is_refused():
    # PyTorch requires pad <= kernel/2; 2 > 2/2
    message = refused([{"name": "p", "kind": "maxpool", "kernel": 2, "padding": 2}], 4, 8, 8)
    assert "'p'" in message and "padding" in message


def test_pool_window_bigger_than_input_is_refused():
    # floor((4 - 4 - 1)/5) + 1 = -1 + 1 = 0 windows
    message = refused([{"name": "p", "kind": "maxpool", "kernel": 5}], 4, 4, 4)
    assert "'p'" in message and "does not fit" in message


# ----------------------------------------------------------------------------- fc, norm, misc


def test_fc_flattens_chw_and_counts_bias_by_default():
    network = build_network(
        spec(
            [
                {"name": "fc6", "kind": "fc", "out_features": 4096},
                {"name": "fc7", "kind": "fc", "out_features": 1000, "bias": False},
                {"name": "loss", "kind": "loss"},
            ],
            512,
            7,
            7,
        )
    )
    fc6, fc7 = network.layer("fc6"), network.layer("fc7")
    # VGG's fc6: in = 512*7*7 = 25,088 features; weights 4096 * 25088 = 102,760,448
    # (25088*4000 = 100,352,000 + 25088*96 = 2,408,448), + 4096 biases = 102,764,544
    assert fc6.out_shape == (4096, 1, 1)
    assert fc6.params == 102_764_544
    assert fc6.macs_per_sample == 102_760_448
    # fc7 without bias: 1000 * 4096 = 4,096,000 params and MACs
    assert (fc7.params, fc7.macs_per_sample) == (4_096_000, 4_096_000)
    assert network.params == 102_764_544 + 4_096_000


def test_concat_sums_channels_of_branches():
    layer = net(
        [
            {"name": "b1", "kind": "conv", "out_channels": 64, "kernel": 1},
            {
                "name": "b2",
                "kind": "conv",
                "out_channels": 96,
                "kernel": 3,
                "padding": 1,
                "inputs": ["input"],
            },
            {
                "name": "b3",
                "kind": "maxpool",
                "kernel": 3,
                "stride": 1,
                "padding": 1,
                "inputs": ["input"],
            },
            {"name": "cat", "kind": "concat", "inputs": ["b1", "b2", "b3"]},
        ],
        16,
        28,
        28,
    ).layer("cat")
    # 64 + 96 + 16 (the pooled input keeps its 16 channels) = 176 channels at 28x28
    assert layer.out_shape == (176, 28, 28)
    assert layer.in_shapes == ((64, 28, 28), (96, 28, 28), (16, 28, 28))


def test_concat_with_different_height_and_width_is_refused():
    message = refused(
        [
            {"name": "b1", "kind": "conv", "out_channels": 8, "kernel": 1},
            {"name": "b2", "kind": "maxpool", "kernel": 2, "inputs": ["input"]},  # 28 -> 14
            {"name": "cat", "kind": "concat", "inputs": ["b1", "b2"]},
        ],
        16,
        28,
        28,
    )
    assert "'cat'" in message and "height and width" in message


def test_add_of_equal_shapes_keeps_the_shape():
    layer = net(
        [
            {"name": "a", "kind": "conv", "out_channels": 8, "kernel": 3, "padding": 1},
            {"name": "b", "kind": "conv", "out_channels": 8, "kernel": 1, "inputs": ["input"]},
            {"name": "sum", "kind": "add", "inputs": ["a", "b"]},
        ],
        4,
        16,
        16,
    ).layer("sum")
    assert layer.out_shape == (8, 16, 16) and layer.params == 0


@pytest.mark.parametrize(
    "inputs",
    [
        ["a", "b"],  # (8,16,16) + (8,14,14): the unpadded 3x3 conv shrinks 16 -> 14
        ["a"],  # a single input
    ],
)
def test_add_needs_two_inputs_of_equal_shape(inputs):
    message = refused(
        [
            {"name": "a", "kind": "conv", "out_channels": 8, "kernel": 1},
            {"name": "b", "kind": "conv", "out_channels": 8, "kernel": 3, "inputs": ["input"]},
            {"name": "sum", "kind": "add", "inputs": inputs},
        ],
        4,
        16,
        16,
    )
    assert "'sum'" in message and "two or more inputs of equal shape" in message


def test_norm_has_two_affine_parameters_per_channel():
    network = net(
        [
            {"name": "n", "kind": "norm"},
            {"name": "n_plain", "kind": "norm", "affine": False},
        ],
        64,
        8,
        8,
    )
    # gamma and beta per channel: 2 * 64 = 128; affine=false: none; no MACs
    assert network.layer("n").params == 128
    assert network.layer("n_plain").params == 0
    assert network.layer("n").macs_per_sample == 0
    assert network.layer("n").out_shape == (64, 8, 8)


def test_group_norm_groups_fall_back_to_the_gcd():
    layers = [
        {"name": "n48", "kind": "norm"},
        {"name": "c", "kind": "conv", "out_channels": 64, "kernel": 1},
        {"name": "n64", "kind": "norm"},
        {"name": "n64g8", "kind": "norm", "groups": 8},
    ]
    gn = net(layers, 48, 8, 8, norm="gn")
    # 32 does not divide 48 -> gcd(48, 32) = 16; 32 divides 64 -> 32; 8 divides 64 -> 8
    assert (gn.layer("n48").groups, gn.layer("n64").groups, gn.layer("n64g8").groups) == (16, 32, 8)
    assert gn.layer("n48").norm == "gn" and gn.norm == "gn"
    bn = net(layers, 48, 8, 8, norm="bn")
    assert bn.layer("n64").norm == "bn" and bn.layer("n64").groups == 1


def test_relu_keeps_and_gap_collapses_the_shape():
    network = net([{"name": "r", "kind": "relu"}], 5, 7, 9)
    assert network.layer("r").out_shape == (5, 7, 9)
    assert network.layer("head.gap").out_shape == (5, 1, 1)
    # head classifier: 10 * 5 weights + 10 biases = 60
    assert network.layer("head.fc").params == 60
    assert network.layer("head.loss").out_shape == (1, 1, 1)


def test_loss_after_a_spatial_tensor_is_refused():
    with pytest.raises(WavecoreError, match="loss reads class scores"):
        build_network(
            spec(
                [
                    {"name": "c", "kind": "conv", "out_channels": 10, "kernel": 1},
                    {"name": "loss", "kind": "loss"},
                ],
                3,
                4,
                4,
            )
        )


# ----------------------------------------------------------------------------- graph


def test_tinynet_totals_match_hand_count():
    network = load_network(str(TINYNET))
    # params: stem.conv 16*3*9 = 432; block.conv1, block.conv2 16*16*9 = 2304 each;
    # conv3 32*16*9 = 4608; norms 2*16 three times = 96, norm3 2*32 = 64; fc 32*10 + 10 = 330
    # 432 + 2*2304 + 4608 + 96 + 64 + 330 = 10,138
    assert network.params == 10_138
    # MACs: stem 32*32*432 = 442,368; block convs 32*32*2304 = 2,359,296 each;
    # conv3 after the 2x2 pool at 16x16: 256*4608 = 1,179,648; fc 320
    # 442368 + 2*2359296 + 1179648 + 320 = 6,340,928
    assert network.fwd_macs_per_sample == 6_340_928
    assert network.layer("pool").out_shape == (16, 16, 16)
    assert network.layer("fc").in_shape == (32, 1, 1)
    assert len(network.layers) == 17


def test_omitted_inputs_read_the_previous_line_and_order_is_topological():
    network = build_network(
        spec(
            [
                {"name": "loss", "kind": "loss", "inputs": ["fc"]},
                {"name": "fc", "kind": "fc", "out_features": 2, "inputs": ["gap"]},
                {"name": "c", "kind": "conv", "out_channels": 4, "kernel": 1, "inputs": ["input"]},
                {"name": "gap", "kind": "gap"},  # no "inputs": reads the previous line, "c"
            ],
            3,
            4,
            4,
        )
    )
    assert [layer.name for layer in network.layers] == ["c", "gap", "fc", "loss"]
    assert network.layer("gap").inputs == ("c",)
    assert network.consumers() == {
        "input": ["c"],
        "c": ["gap"],
        "gap": ["fc"],
        "fc": ["loss"],
        "loss": [],
    }


def test_tinynet_residual_input_has_two_consumers():
    consumers = load_network(str(TINYNET)).consumers()
    assert consumers["stem.relu"] == ["block.conv1", "block.add"]
    assert consumers["block.add"] == ["block.relu2"]


def test_cycle_error_names_only_the_layers_on_the_cycle():
    with pytest.raises(WavecoreError) as info:
        build_network(
            spec(
                [
                    {"name": "a", "kind": "relu", "inputs": ["b"]},
                    {"name": "b", "kind": "relu", "inputs": ["a"]},
                    *head(),
                ]
            )
        )
    message = str(info.value)
    # a <-> b is the cycle; head.gap etc. are merely stuck behind it
    assert "cycle through a, b;" in message and "head.gap" not in message


def test_a_layer_reading_itself_is_a_cycle():
    with pytest.raises(WavecoreError, match="cycle through selfish;"):
        net([{"name": "selfish", "kind": "relu", "inputs": ["selfish"]}])


@pytest.mark.parametrize(
    "layers, expected",
    [
        ([{"name": "c", "kind": "conv", "kernel": 3}], "field 'out_channels' is missing"),
        (
            [{"name": "c", "kind": "conv", "out_channels": 4, "kernel": 3, "strides": 2}],
            "field 'strides' is not known",
        ),
        ([{"name": "c", "kind": "conv", "out_channels": 4, "kernel": 2.5}], "field 'kernel' must"),
        ([{"name": "c", "kind": "conv", "out_channels": 4, "kernel": [1, 2, 3]}], "field 'kernel'"),
        ([{"name": "c", "kind": "conv", "out_channels": 0, "kernel": 1}], "field 'out_channels'"),
        (
            [{"name": "c", "kind": "conv", "out_channels": 4, "kernel": 1, "bias": 1}],
            "field 'bias'",
        ),
        ([{"name": "c", "kind": "convolution"}], "kind 'convolution' is not known"),
        ([{"kind": "relu"}], "field 'name' is missing"),
        ([{"name": "r", "kind": "relu"}, {"name": "r", "kind": "relu"}], "'r' is used twice"),
        ([{"name": "input", "kind": "relu"}], "reserved name 'input'"),
        ([{"name": "r", "kind": "relu", "inputs": ["ghost"]}], "input 'ghost' is not a layer"),
        ([{"name": "r", "kind": "relu", "inputs": []}], "field 'inputs' must be a non-empty list"),
        ([{"name": "r", "kind": "relu", "inputs": ["input", "input"]}], "reads exactly one input"),
        ([{"name": "n", "kind": "norm", "eps": "small"}], "field 'eps' must be a positive number"),
        ([{"name": "n", "kind": "norm", "eps": 0}], "field 'eps'"),
        (["relu"], "expected a JSON object"),
    ],
)
def test_bad_layer_fields_are_refused_naming_the_field(layers, expected):
    assert expected in refused(layers)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"format": "wavecore-network/2"}, "field 'format'"),
        ({"name": ""}, "field 'name'"),
        ({"layers": []}, "field 'layers' must be a non-empty list"),
        ({"input": {"channels": 3, "height": 32}}, "field 'width' is missing"),
        (
            {"input": {"channels": 3, "height": 32, "width": 32, "depth": 1}},
            "field 'depth' is not known",
        ),
        ({"input": {"channels": 3, "height": -1, "width": 32}}, "field 'height'"),
        ({"description": 42}, "field 'description' must be a string"),
        ({"version": 1}, "field 'version' is not known"),
    ],
)
def test_bad_top_level_fields_are_refused_naming_the_field(change, expected):
    with pytest.raises(WavecoreError, match=expected):
        build_network(spec([{"name": "r", "kind": "relu"}, *head()]) | change)


def test_missing_input_field_is_named():
    bad = spec(head())
    del bad["input"]
    with pytest.raises(WavecoreError, match="field 'input' is missing"):
        build_network(bad)


def test_non_object_spec_is_refused():
    with pytest.raises(WavecoreError, match="expected a JSON object"):
        build_network([1, 2, 3])


@pytest.mark.parametrize(
    "layers, expected",
    [
        (
            [{"name": "gap", "kind": "gap"}, {"name": "fc", "kind": "fc", "out_features": 2}],
            "no 'loss' layer",
        ),
        (
            [
                {"name": "dead", "kind": "relu"},
                {"name": "r", "kind": "relu", "inputs": ["input"]},
                {"name": "gap", "kind": "gap"},
                {"name": "fc", "kind": "fc", "out_features": 2},
                {"name": "loss", "kind": "loss"},
            ],
            "layer 'dead' is read by no layer",
        ),
        (
            [
                {"name": "gap", "kind": "gap"},
                {"name": "loss", "kind": "loss"},
                {"name": "after", "kind": "relu"},
                {"name": "loss2", "kind": "loss"},
            ],
            "loss layer 'loss' is read by 'after'",
        ),
    ],
)
def test_every_layer_must_lead_to_a_loss_sink(layers, expected):
    with pytest.raises(WavecoreError, match=expected):
        build_network(spec(layers, 3, 4, 4))


def test_unknown_norm_choice_is_refused_by_build_network_too():
    with pytest.raises(WavecoreError, match="--norm 'ln'"):
        build_network(spec(head()), norm="ln")


# ----------------------------------------------------------------------------- loading


def test_load_network_reports_malformed_json_with_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format": "wavecore-network/1",\n "name": }')
    with pytest.raises(WavecoreError, match=r"not valid JSON \(.* at line 2\)"):
        load_network(str(path))


def test_load_network_refuses_a_binary_file(tmp_path):
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(WavecoreError, match="not UTF-8 text"):
        load_network(str(path))


def test_unknown_zoo_name_lists_the_zoo():
    with pytest.raises(WavecoreError, match=r"unknown network 'resnet51'.*resnet50"):
        load_network("resnet51")


def test_missing_network_file_is_reported(tmp_path):
    with pytest.raises(WavecoreError, match="not found"):
        load_network(str(tmp_path / "nope.json"))


def test_zoo_lists_eleven_networks_without_the_example():
    assert list_networks() == [
        "convnext_tiny",
        "densenet121",
        "efficientnet_b0",
        "inception_v3",
        "inception_v4",
        "mobilenet_v2",
        "resnet101",
        "resnet152",
        "resnet50",
        "resnext50_32x4d",
        "vgg16",
    ]


# Reference totals: sum(p.numel() for p in model.parameters()) of the torchvision models
# (inception_v3 with aux_logits=True; inception_v4 as in timm), as listed in their docs.
@pytest.mark.parametrize(
    "name, params",
    [
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("vgg16", 138_357_544),
        ("densenet121", 7_978_856),
        ("inception_v3", 27_161_264),
        ("inception_v4", 42_679_816),
    ],
)
def test_zoo_parameter_counts_match_torchvision(name, params):
    assert load_network(name).params == params


def test_resnet50_stem_matches_hand_count():
    network = load_network("resnet50")
    # conv1 7x7/2 pad 3 on 224: 112x112, 64 * 3 * 49 = 9408 params, 112*112*9408 MACs
    assert network.layer("conv1").out_shape == (64, 112, 112)
    assert network.layer("conv1").macs_per_sample == 118_013_952
    # maxpool 3x3/2 pad 1: floor((112 + 2 - 3)/2) + 1 = 56
    assert network.layer("maxpool").out_shape == (64, 56, 56)
