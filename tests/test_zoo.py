"""The built-in network zoo matches its reference implementations.

Parameter counts are exact; forward MACs per sample must be within 0.5% of the numbers
verified by instantiating the reference PyTorch models (see workloads/REFERENCE.md for how).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from wavecore_sim.workload import list_networks, load_network

WORKLOADS = Path(__file__).resolve().parents[1] / "workloads"

# name: (exact trainable parameters, reference forward MACs per sample)
REFERENCE = {
    # torchvision resnet50 (weights=None): sum(p.numel()); MACs = torchvision's 4.09 GFLOPS
    "resnet50": (25_557_032, 4_089_184_256),
    # torchvision resnet101: 44,549,160 params, 7.80 GFLOPS (MACs)
    "resnet101": (44_549_160, 7_801_405_440),
    # torchvision resnet152: 60,192,808 params, 11.51 GFLOPS (MACs)
    "resnet152": (60_192_808, 11_513_626_624),
    # torchvision inception_v3 with aux_logits=True: 27,161,264 params; MACs include AuxLogits
    # (5,683,200 MACs; without it 5,713,216,096, torchvision's published 5.71 GFLOPS)
    "inception_v3": (27_161_264, 5_718_899_296),
    # timm 1.0.31 inception_v4 (== Cadene pretrainedmodels inceptionv4): 42,679,816 params
    "inception_v4": (42_679_816, 12_253_974_624),
    # torchvision densenet121: 7,978,856 params, 2.83 GFLOPS (MACs)
    "densenet121": (7_978_856, 2_834_161_664),
    # torchvision vgg16 (no BN): 138,357,544 params, 15.47 GFLOPS (MACs)
    "vgg16": (138_357_544, 15_470_264_320),
    # torchvision 0.28 mobilenet_v2: sum(p.numel()) = 3,504,872; Conv2d/Linear forward hooks
    # 300,774,272 MACs (published _ops 0.301 GFLOPS)
    "mobilenet_v2": (3_504_872, 300_774_272),
    # torchvision efficientnet_b0: 5,288,548 params; hooks 385,814,752 (published 0.386)
    "efficientnet_b0": (5_288_548, 385_814_752),
    # torchvision resnext50_32x4d: 25,028,904 params; hooks 4,230,479,872 (published 4.23)
    "resnext50_32x4d": (25_028_904, 4_230_479_872),
    # torchvision convnext_tiny: 28,589,128 params; hooks 4,455,531,264 (published 4.456)
    "convnext_tiny": (28_589_128, 4_455_531_264),
}


def test_zoo_lists_every_network() -> None:
    assert sorted(list_networks()) == sorted(REFERENCE)


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_parameter_count_is_exact(name: str, norm: str) -> None:
    # batch norm and group norm have the same 2*C affine parameters
    assert load_network(name, norm=norm).params == REFERENCE[name][0]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_forward_macs_match_reference(name: str) -> None:
    net = load_network(name, norm="bn")
    ref = REFERENCE[name][1]
    assert abs(net.fwd_macs_per_sample - ref) <= 0.005 * ref
    assert net.fwd_macs_per_sample == sum(layer.macs_per_sample for layer in net.layers)


@pytest.mark.parametrize(
    ("name", "layer", "kind", "shape"),
    [
        ("resnet50", "maxpool", "maxpool", (64, 56, 56)),
        ("resnet50", "layer1.0.downsample.0", "conv", (256, 56, 56)),
        ("resnet50", "layer2.0.conv2", "conv", (128, 28, 28)),  # v1.5: stride on the 3x3
        ("resnet50", "layer4.2.add", "add", (2048, 7, 7)),
        ("resnet101", "layer3.22.relu3", "relu", (1024, 14, 14)),
        ("resnet152", "layer2.7.relu3", "relu", (512, 28, 28)),
        ("inception_v3", "maxpool2", "maxpool", (192, 35, 35)),
        ("inception_v3", "Mixed_5d.concat", "concat", (288, 35, 35)),
        ("inception_v3", "Mixed_6e.concat", "concat", (768, 17, 17)),
        ("inception_v3", "AuxLogits.avg_pool", "avgpool", (768, 5, 5)),
        ("inception_v3", "AuxLogits.conv1.conv", "conv", (768, 1, 1)),
        ("inception_v3", "Mixed_7c.concat", "concat", (2048, 8, 8)),
        ("inception_v4", "features.5.concat", "concat", (384, 35, 35)),
        ("inception_v4", "features.10.concat", "concat", (1024, 17, 17)),
        ("inception_v4", "features.21.concat", "concat", (1536, 8, 8)),
        ("densenet121", "features.denseblock1.denselayer6.concat", "concat", (224, 56, 56)),
        ("densenet121", "features.transition3.pool", "avgpool", (512, 7, 7)),
        ("densenet121", "features.denseblock4.concat", "concat", (1024, 7, 7)),
        ("vgg16", "features.30", "maxpool", (512, 7, 7)),
        ("vgg16", "classifier.6", "fc", (1000, 1, 1)),
        ("mobilenet_v2", "features.17.conv.1.0", "conv", (960, 7, 7)),  # 3x3 depthwise
        ("mobilenet_v2", "features.18.0", "conv", (1280, 7, 7)),
        ("efficientnet_b0", "features.6.3.block.2.mul", "mul", (1152, 7, 7)),  # SE scale
        ("efficientnet_b0", "features.6.3.block.2.fc1", "conv", (48, 1, 1)),  # 192 // 4
        ("resnext50_32x4d", "layer1.0.conv2", "conv", (128, 56, 56)),  # 32 groups of 4
        ("convnext_tiny", "features.5.8.block.3", "conv", (1536, 14, 14)),  # Linear 384->1536
        ("convnext_tiny", "features.7.2.add", "add", (768, 7, 7)),
    ],
)
def test_reference_layer_shapes(name: str, layer: str, kind: str, shape: tuple) -> None:
    layers = {lay.name: lay for lay in load_network(name).layers}
    assert layers[layer].kind == kind
    assert layers[layer].out_shape == shape


@pytest.mark.parametrize(
    ("name", "losses"),
    [(name, ["aux_loss", "loss"] if name == "inception_v3" else ["loss"]) for name in REFERENCE],
)
def test_loss_layers_read_1000_class_scores(name: str, losses: list[str]) -> None:
    net = load_network(name)
    layers = {lay.name: lay for lay in net.layers}
    found = sorted(lay.name for lay in net.layers if lay.kind == "loss")
    assert found == losses
    for loss in found:
        (src,) = layers[loss].inputs
        assert layers[src].kind == "fc"
        assert layers[src].out_shape == (1000, 1, 1)


def test_example_tinynet_loads_from_path() -> None:
    net = load_network(str(WORKLOADS / "example_tinynet.json"), norm="gn")
    # convs 432 + 2304 + 2304 + 4608, norms 2*(16+16+16+32), fc 32*10 + 10
    assert net.params == 10_138
    assert net.layers[-1].kind == "loss"
    assert any(lay.kind == "add" for lay in net.layers)


def test_generated_files_are_up_to_date() -> None:
    """``python workloads/make_zoo.py`` reproduces the committed JSON files byte for byte."""
    spec = importlib.util.spec_from_file_location("make_zoo", WORKLOADS / "make_zoo.py")
    assert spec is not None and spec.loader is not None
    make_zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_zoo)
    for name, build in make_zoo.ZOO.items():
        assert (WORKLOADS / f"{name}.json").read_text() == build().to_json(), name
