"""Generate the built-in network zoo (``wavecore-network/1`` JSON files).

Run from the repository root::

    python workloads/make_zoo.py

Standard library only. Each architecture family has one builder function that mirrors the
reference implementation module by module, so layer names are the reference module names
(``layer1.0.conv1``, ``Mixed_5b.branch1x1.conv``, ...). Functional ops that have no module of
their own in the reference (residual adds, concatenations, ``F.relu``, ``F.avg_pool2d``) get
descriptive names. Parameter counts and forward MACs of every generated file were checked
against the reference models: see ``workloads/REFERENCE.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "wavecore-network/1"
OUT_DIR = Path(__file__).resolve().parent

Size = int | tuple[int, int]


def _size(value: Size) -> int | list[int]:
    """An int, or an ``[h, w]`` pair collapsed to an int when square."""
    if isinstance(value, int):
        return value
    h, w = value
    return h if h == w else [h, w]


class Builder:
    """Appends layer dicts in file order and returns each layer's name.

    Every ``add_*`` method takes the name (or names) of its input and returns the new layer's
    name, so builders read like the reference ``forward``. ``inputs`` is written to the file
    only when it is not simply the previous layer in the file (the format's default).
    """

    def __init__(self, name: str, description: str, channels: int, height: int, width: int):
        self.name = name
        self.description = description
        self.input = {"channels": channels, "height": height, "width": width}
        self.layers: list[dict[str, Any]] = []

    # -- generic
    def add(self, name: str, kind: str, x: str | list[str], **fields: Any) -> str:
        srcs = [x] if isinstance(x, str) else list(x)
        previous = self.layers[-1]["name"] if self.layers else "input"
        layer: dict[str, Any] = {"name": name, "kind": kind}
        if srcs != [previous] or kind in ("add", "concat"):
            layer["inputs"] = srcs
        layer.update(fields)
        if any(existing["name"] == name for existing in self.layers):
            raise ValueError(f"{self.name}: duplicate layer name {name!r}")
        self.layers.append(layer)
        return name

    # -- layer kinds (defaults of the format are left out of the file)
    def conv(
        self,
        name: str,
        x: str,
        out_channels: int,
        kernel: Size,
        stride: Size = 1,
        padding: Size = 0,
        groups: int = 1,
        bias: bool = False,
    ) -> str:
        fields: dict[str, Any] = {"out_channels": out_channels, "kernel": _size(kernel)}
        if stride != 1:
            fields["stride"] = _size(stride)
        if padding != 0:
            fields["padding"] = _size(padding)
        if groups != 1:
            fields["groups"] = groups
        if bias:
            fields["bias"] = True
        return self.add(name, "conv", x, **fields)

    def fc(self, name: str, x: str, out_features: int) -> str:
        return self.add(name, "fc", x, out_features=out_features)

    def norm(self, name: str, x: str) -> str:
        return self.add(name, "norm", x)

    def relu(self, name: str, x: str) -> str:
        return self.add(name, "relu", x)

    def act(self, name: str, x: str, function: str) -> str:
        """An element-wise activation: relu6, sigmoid, hardsigmoid, hardswish, silu, gelu."""
        return self.add(name, "act", x, function=function)

    def layernorm(self, name: str, x: str, eps: float = 1e-5) -> str:
        return self.add(name, "layernorm", x, **({} if eps == 1e-5 else {"eps": eps}))

    def mul(self, name: str, xs: list[str]) -> str:
        """Element-wise product; the second input may be a (C, 1, 1) per-channel scale."""
        return self.add(name, "mul", xs)

    def scale(self, name: str, x: str) -> str:
        """A learned per-channel multiplier (ConvNeXt's layer scale)."""
        return self.add(name, "scale", x)

    def pool(
        self,
        kind: str,
        name: str,
        x: str,
        kernel: Size,
        stride: Size,
        padding: Size = 0,
        ceil_mode: bool = False,
    ) -> str:
        fields: dict[str, Any] = {"kernel": _size(kernel), "stride": _size(stride)}
        if padding != 0:
            fields["padding"] = _size(padding)
        if ceil_mode:
            fields["ceil_mode"] = True
        return self.add(name, kind, x, **fields)

    def maxpool(self, name: str, x: str, kernel: Size, stride: Size, padding: Size = 0) -> str:
        return self.pool("maxpool", name, x, kernel, stride, padding)

    def avgpool(self, name: str, x: str, kernel: Size, stride: Size, padding: Size = 0) -> str:
        return self.pool("avgpool", name, x, kernel, stride, padding)

    def gap(self, name: str, x: str) -> str:
        return self.add(name, "gap", x)

    def eltwise_add(self, name: str, xs: list[str]) -> str:
        return self.add(name, "add", xs)

    def concat(self, name: str, xs: list[str]) -> str:
        return self.add(name, "concat", xs)

    def loss(self, name: str, x: str) -> str:
        return self.add(name, "loss", x)

    # -- composite helpers shared by several families
    def conv_bn_relu(
        self,
        prefix: str,
        x: str,
        out_channels: int,
        kernel: Size,
        stride: Size = 1,
        padding: Size = 0,
    ) -> str:
        """``BasicConv2d`` of the Inception models: conv (no bias), BN, ReLU.

        Names are ``prefix.conv``, ``prefix.bn`` and ``prefix.relu``.
        """
        x = self.conv(f"{prefix}.conv", x, out_channels, kernel, stride, padding)
        x = self.norm(f"{prefix}.bn", x)
        return self.relu(f"{prefix}.relu", x)

    def classifier(self, x: str, fc_name: str, classes: int, loss_name: str = "loss") -> str:
        """Final fully connected layer feeding a softmax cross-entropy loss."""
        return self.loss(loss_name, self.fc(fc_name, x, classes))

    # -- output
    def to_json(self) -> str:
        """The network as JSON text, one layer per line."""
        head = {
            "format": FORMAT,
            "name": self.name,
            "description": self.description,
            "input": self.input,
        }
        lines = ["{"]
        for key, value in head.items():
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
        lines.append('  "layers": [')
        body = [f"    {json.dumps(layer)}" for layer in self.layers]
        lines.append(",\n".join(body))
        lines.append("  ]")
        lines.append("}")
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- ResNet

RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def resnet(depth: int, groups: int = 1, width_per_group: int = 64) -> Builder:
    """torchvision ResNet-50/101/152 (and ResNeXt with ``groups``) at 224x224, 1000 classes.

    Reference: torchvision/models/resnet.py (``ResNet`` with ``Bottleneck``, expansion 4, the
    stride on the 3x3 ``conv2``, i.e. "ResNet v1.5"); He et al., "Deep Residual Learning for
    Image Recognition", CVPR 2016. Each bottleneck is conv1-bn1-relu1-conv2-bn2-relu2-conv3-bn3,
    an ``add`` with the identity or the ``downsample`` (1x1 conv + BN) branch, then ``relu3``
    (torchvision reuses one ``relu`` module for all three).
    """
    if groups == 1:
        net = Builder(
            f"resnet{depth}",
            f"ResNet-{depth} (torchvision resnet{depth}: Bottleneck blocks with the "
            "stride on the 3x3 conv, i.e. v1.5), 224x224 input, 1000 classes. "
            "Source: torchvision/models/resnet.py; He et al., CVPR 2016.",
            3,
            224,
            224,
        )
    else:
        net = Builder(
            f"resnext{depth}_{groups}x{width_per_group}d",
            f"ResNeXt-{depth} {groups}x{width_per_group}d (torchvision "
            f"resnext{depth}_{groups}x{width_per_group}d: ResNet v1.5 Bottleneck "
            f"with a grouped 3x3 conv2, {groups} groups of {width_per_group} "
            "channels in the first stage), 224x224 input, 1000 classes. Source: "
            "torchvision/models/resnet.py; Xie et al., CVPR 2017.",
            3,
            224,
            224,
        )
    x = net.conv("conv1", "input", 64, 7, stride=2, padding=3)
    x = net.norm("bn1", x)
    x = net.relu("relu", x)
    x = net.maxpool("maxpool", x, 3, 2, padding=1)
    in_ch = 64
    for stage, blocks in enumerate(RESNET_BLOCKS[depth], start=1):
        planes = 64 * 2 ** (stage - 1)
        width = int(planes * (width_per_group / 64.0)) * groups  # torchvision Bottleneck
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            stride = 2 if (b == 0 and stage > 1) else 1
            identity = x
            y = net.conv(f"{p}.conv1", x, width, 1)
            y = net.relu(f"{p}.relu1", net.norm(f"{p}.bn1", y))
            y = net.conv(f"{p}.conv2", y, width, 3, stride=stride, padding=1, groups=groups)
            y = net.relu(f"{p}.relu2", net.norm(f"{p}.bn2", y))
            y = net.conv(f"{p}.conv3", y, planes * 4, 1)
            y = net.norm(f"{p}.bn3", y)
            if b == 0:  # stride != 1 or in_ch != width * 4 (true for every first block)
                identity = net.conv(f"{p}.downsample.0", x, planes * 4, 1, stride=stride)
                identity = net.norm(f"{p}.downsample.1", identity)
            x = net.relu(f"{p}.relu3", net.eltwise_add(f"{p}.add", [y, identity]))
            in_ch = planes * 4
    assert in_ch == 2048
    x = net.gap("avgpool", x)
    net.classifier(x, "fc", 1000)
    return net


# ------------------------------------------------------------------------------ Inception-v3


def _v3_inception_a(net: Builder, p: str, x: str, pool_features: int) -> str:
    """torchvision ``InceptionA`` (35x35 grid)."""
    b1 = net.conv_bn_relu(f"{p}.branch1x1", x, 64, 1)
    b5 = net.conv_bn_relu(f"{p}.branch5x5_1", x, 48, 1)
    b5 = net.conv_bn_relu(f"{p}.branch5x5_2", b5, 64, 5, padding=2)
    b3 = net.conv_bn_relu(f"{p}.branch3x3dbl_1", x, 64, 1)
    b3 = net.conv_bn_relu(f"{p}.branch3x3dbl_2", b3, 96, 3, padding=1)
    b3 = net.conv_bn_relu(f"{p}.branch3x3dbl_3", b3, 96, 3, padding=1)
    bp = net.avgpool(f"{p}.avg_pool", x, 3, 1, padding=1)
    bp = net.conv_bn_relu(f"{p}.branch_pool", bp, pool_features, 1)
    return net.concat(f"{p}.concat", [b1, b5, b3, bp])


def _v3_inception_b(net: Builder, p: str, x: str) -> str:
    """torchvision ``InceptionB`` (grid reduction 35 -> 17)."""
    b3 = net.conv_bn_relu(f"{p}.branch3x3", x, 384, 3, stride=2)
    bd = net.conv_bn_relu(f"{p}.branch3x3dbl_1", x, 64, 1)
    bd = net.conv_bn_relu(f"{p}.branch3x3dbl_2", bd, 96, 3, padding=1)
    bd = net.conv_bn_relu(f"{p}.branch3x3dbl_3", bd, 96, 3, stride=2)
    bp = net.maxpool(f"{p}.max_pool", x, 3, 2)
    return net.concat(f"{p}.concat", [b3, bd, bp])


def _v3_inception_c(net: Builder, p: str, x: str, c7: int) -> str:
    """torchvision ``InceptionC`` (17x17 grid, factorized 7x7 convolutions)."""
    b1 = net.conv_bn_relu(f"{p}.branch1x1", x, 192, 1)
    b7 = net.conv_bn_relu(f"{p}.branch7x7_1", x, c7, 1)
    b7 = net.conv_bn_relu(f"{p}.branch7x7_2", b7, c7, (1, 7), padding=(0, 3))
    b7 = net.conv_bn_relu(f"{p}.branch7x7_3", b7, 192, (7, 1), padding=(3, 0))
    bd = net.conv_bn_relu(f"{p}.branch7x7dbl_1", x, c7, 1)
    bd = net.conv_bn_relu(f"{p}.branch7x7dbl_2", bd, c7, (7, 1), padding=(3, 0))
    bd = net.conv_bn_relu(f"{p}.branch7x7dbl_3", bd, c7, (1, 7), padding=(0, 3))
    bd = net.conv_bn_relu(f"{p}.branch7x7dbl_4", bd, c7, (7, 1), padding=(3, 0))
    bd = net.conv_bn_relu(f"{p}.branch7x7dbl_5", bd, 192, (1, 7), padding=(0, 3))
    bp = net.avgpool(f"{p}.avg_pool", x, 3, 1, padding=1)
    bp = net.conv_bn_relu(f"{p}.branch_pool", bp, 192, 1)
    return net.concat(f"{p}.concat", [b1, b7, bd, bp])


def _v3_inception_d(net: Builder, p: str, x: str) -> str:
    """torchvision ``InceptionD`` (grid reduction 17 -> 8)."""
    b3 = net.conv_bn_relu(f"{p}.branch3x3_1", x, 192, 1)
    b3 = net.conv_bn_relu(f"{p}.branch3x3_2", b3, 320, 3, stride=2)
    b7 = net.conv_bn_relu(f"{p}.branch7x7x3_1", x, 192, 1)
    b7 = net.conv_bn_relu(f"{p}.branch7x7x3_2", b7, 192, (1, 7), padding=(0, 3))
    b7 = net.conv_bn_relu(f"{p}.branch7x7x3_3", b7, 192, (7, 1), padding=(3, 0))
    b7 = net.conv_bn_relu(f"{p}.branch7x7x3_4", b7, 192, 3, stride=2)
    bp = net.maxpool(f"{p}.max_pool", x, 3, 2)
    return net.concat(f"{p}.concat", [b3, b7, bp])


def _v3_inception_e(net: Builder, p: str, x: str) -> str:
    """torchvision ``InceptionE`` (8x8 grid, expanded filter bank)."""
    b1 = net.conv_bn_relu(f"{p}.branch1x1", x, 320, 1)
    b3 = net.conv_bn_relu(f"{p}.branch3x3_1", x, 384, 1)
    b3a = net.conv_bn_relu(f"{p}.branch3x3_2a", b3, 384, (1, 3), padding=(0, 1))
    b3b = net.conv_bn_relu(f"{p}.branch3x3_2b", b3, 384, (3, 1), padding=(1, 0))
    b3 = net.concat(f"{p}.branch3x3.concat", [b3a, b3b])
    bd = net.conv_bn_relu(f"{p}.branch3x3dbl_1", x, 448, 1)
    bd = net.conv_bn_relu(f"{p}.branch3x3dbl_2", bd, 384, 3, padding=1)
    bda = net.conv_bn_relu(f"{p}.branch3x3dbl_3a", bd, 384, (1, 3), padding=(0, 1))
    bdb = net.conv_bn_relu(f"{p}.branch3x3dbl_3b", bd, 384, (3, 1), padding=(1, 0))
    bd = net.concat(f"{p}.branch3x3dbl.concat", [bda, bdb])
    bp = net.avgpool(f"{p}.avg_pool", x, 3, 1, padding=1)
    bp = net.conv_bn_relu(f"{p}.branch_pool", bp, 192, 1)
    return net.concat(f"{p}.concat", [b1, b3, bd, bp])


def _v3_aux(net: Builder, x: str) -> str:
    """torchvision ``InceptionAux`` on the 17x17x768 Mixed_6e output, with its own loss."""
    y = net.avgpool("AuxLogits.avg_pool", x, 5, 3)
    y = net.conv_bn_relu("AuxLogits.conv0", y, 128, 1)
    y = net.conv_bn_relu("AuxLogits.conv1", y, 768, 5)
    y = net.gap("AuxLogits.gap", y)
    return net.classifier(y, "AuxLogits.fc", 1000, loss_name="aux_loss")


def inception_v3() -> Builder:
    """torchvision Inception3 (``inception_v3``) at 299x299 with the auxiliary classifier.

    Reference: torchvision/models/inception.py (``aux_logits=True``, the default);
    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016.
    ``BasicConv2d`` is conv (bias=False) + BN + ReLU. The pools inside the blocks are the
    functional ``F.avg_pool2d(k=3, s=1, p=1)`` / ``F.max_pool2d(k=3, s=2)`` (floor mode, no
    padding for the max pools); ``AuxLogits`` ends in a second loss layer ``aux_loss``.
    """
    net = Builder(
        "inception_v3",
        "Inception-v3 (torchvision inception_v3, aux_logits=True), 299x299 input, "
        "1000 classes, with the auxiliary classifier (AuxLogits) on Mixed_6e feeding "
        "its own loss 'aux_loss'. BasicConv2d = conv(bias=False) + BN + ReLU. "
        "Source: torchvision/models/inception.py; Szegedy et al., CVPR 2016.",
        3,
        299,
        299,
    )
    x = net.conv_bn_relu("Conv2d_1a_3x3", "input", 32, 3, stride=2)
    x = net.conv_bn_relu("Conv2d_2a_3x3", x, 32, 3)
    x = net.conv_bn_relu("Conv2d_2b_3x3", x, 64, 3, padding=1)
    x = net.maxpool("maxpool1", x, 3, 2)
    x = net.conv_bn_relu("Conv2d_3b_1x1", x, 80, 1)
    x = net.conv_bn_relu("Conv2d_4a_3x3", x, 192, 3)
    x = net.maxpool("maxpool2", x, 3, 2)
    x = _v3_inception_a(net, "Mixed_5b", x, 32)
    x = _v3_inception_a(net, "Mixed_5c", x, 64)
    x = _v3_inception_a(net, "Mixed_5d", x, 64)
    x = _v3_inception_b(net, "Mixed_6a", x)
    x = _v3_inception_c(net, "Mixed_6b", x, 128)
    x = _v3_inception_c(net, "Mixed_6c", x, 160)
    x = _v3_inception_c(net, "Mixed_6d", x, 160)
    x = _v3_inception_c(net, "Mixed_6e", x, 192)
    _v3_aux(net, x)
    x = _v3_inception_d(net, "Mixed_7a", x)
    x = _v3_inception_e(net, "Mixed_7b", x)
    x = _v3_inception_e(net, "Mixed_7c", x)
    x = net.gap("avgpool", x)
    net.classifier(x, "fc", 1000)
    return net


# ------------------------------------------------------------------------------ Inception-v4


def _v4_chain(net: Builder, p: str, x: str, convs: list[tuple[Any, ...]]) -> str:
    """A ``nn.Sequential`` of BasicConv2d: each entry is (out, kernel[, stride[, padding]])."""
    for i, spec in enumerate(convs):
        x = net.conv_bn_relu(f"{p}.{i}", x, *spec)
    return x


def _v4_inception_a(net: Builder, p: str, x: str) -> str:
    """``Inception_A`` (35x35x384 -> 35x35x384)."""
    b0 = net.conv_bn_relu(f"{p}.branch0", x, 96, 1)
    b1 = _v4_chain(net, f"{p}.branch1", x, [(64, 1), (96, 3, 1, 1)])
    b2 = _v4_chain(net, f"{p}.branch2", x, [(64, 1), (96, 3, 1, 1), (96, 3, 1, 1)])
    b3 = net.avgpool(f"{p}.branch3.0", x, 3, 1, padding=1)
    b3 = net.conv_bn_relu(f"{p}.branch3.1", b3, 96, 1)
    return net.concat(f"{p}.concat", [b0, b1, b2, b3])


def _v4_reduction_a(net: Builder, p: str, x: str) -> str:
    """``Reduction_A`` (35x35x384 -> 17x17x1024), k=192, l=224, m=256, n=384."""
    b0 = net.conv_bn_relu(f"{p}.branch0", x, 384, 3, 2)
    b1 = _v4_chain(net, f"{p}.branch1", x, [(192, 1), (224, 3, 1, 1), (256, 3, 2)])
    b2 = net.maxpool(f"{p}.branch2", x, 3, 2)
    return net.concat(f"{p}.concat", [b0, b1, b2])


def _v4_inception_b(net: Builder, p: str, x: str) -> str:
    """``Inception_B`` (17x17x1024 -> 17x17x1024)."""
    b0 = net.conv_bn_relu(f"{p}.branch0", x, 384, 1)
    b1 = _v4_chain(
        net, f"{p}.branch1", x, [(192, 1), (224, (1, 7), 1, (0, 3)), (256, (7, 1), 1, (3, 0))]
    )
    b2 = _v4_chain(
        net,
        f"{p}.branch2",
        x,
        [
            (192, 1),
            (192, (7, 1), 1, (3, 0)),
            (224, (1, 7), 1, (0, 3)),
            (224, (7, 1), 1, (3, 0)),
            (256, (1, 7), 1, (0, 3)),
        ],
    )
    b3 = net.avgpool(f"{p}.branch3.0", x, 3, 1, padding=1)
    b3 = net.conv_bn_relu(f"{p}.branch3.1", b3, 128, 1)
    return net.concat(f"{p}.concat", [b0, b1, b2, b3])


def _v4_reduction_b(net: Builder, p: str, x: str) -> str:
    """``Reduction_B`` (17x17x1024 -> 8x8x1536)."""
    b0 = _v4_chain(net, f"{p}.branch0", x, [(192, 1), (192, 3, 2)])
    b1 = _v4_chain(
        net,
        f"{p}.branch1",
        x,
        [(256, 1), (256, (1, 7), 1, (0, 3)), (320, (7, 1), 1, (3, 0)), (320, 3, 2)],
    )
    b2 = net.maxpool(f"{p}.branch2", x, 3, 2)
    return net.concat(f"{p}.concat", [b0, b1, b2])


def _v4_inception_c(net: Builder, p: str, x: str) -> str:
    """``Inception_C`` (8x8x1536 -> 8x8x1536)."""
    b0 = net.conv_bn_relu(f"{p}.branch0", x, 256, 1)
    b1 = net.conv_bn_relu(f"{p}.branch1_0", x, 384, 1)
    b1a = net.conv_bn_relu(f"{p}.branch1_1a", b1, 256, (1, 3), padding=(0, 1))
    b1b = net.conv_bn_relu(f"{p}.branch1_1b", b1, 256, (3, 1), padding=(1, 0))
    b1 = net.concat(f"{p}.branch1.concat", [b1a, b1b])
    b2 = net.conv_bn_relu(f"{p}.branch2_0", x, 384, 1)
    b2 = net.conv_bn_relu(f"{p}.branch2_1", b2, 448, (3, 1), padding=(1, 0))
    b2 = net.conv_bn_relu(f"{p}.branch2_2", b2, 512, (1, 3), padding=(0, 1))
    b2a = net.conv_bn_relu(f"{p}.branch2_3a", b2, 256, (1, 3), padding=(0, 1))
    b2b = net.conv_bn_relu(f"{p}.branch2_3b", b2, 256, (3, 1), padding=(1, 0))
    b2 = net.concat(f"{p}.branch2.concat", [b2a, b2b])
    b3 = net.avgpool(f"{p}.branch3.0", x, 3, 1, padding=1)
    b3 = net.conv_bn_relu(f"{p}.branch3.1", b3, 256, 1)
    return net.concat(f"{p}.concat", [b0, b1, b2, b3])


def inception_v4() -> Builder:
    """Inception-v4 at 299x299, as implemented by timm ``inception_v4`` / Cadene's
    pretrainedmodels ``inceptionv4``.

    Reference: timm/models/inception_v4.py; Szegedy et al., "Inception-v4, Inception-ResNet
    and the Impact of Residual Connections on Learning", AAAI 2017. Names follow timm's
    ``features.N`` Sequential (stem 0-5, 4x Inception-A 6-9, Reduction-A 10, 7x Inception-B
    11-17, Reduction-B 18, 3x Inception-C 19-21) and ``last_linear``. The stem's max pools and
    all reduction max pools are 3x3 stride 2 without padding; the Inception-A/B/C pool branches
    are ``AvgPool2d(3, 1, padding=1, count_include_pad=False)``.
    """
    net = Builder(
        "inception_v4",
        "Inception-v4 (timm inception_v4 / Cadene pretrainedmodels inceptionv4), "
        "299x299 input, 1000 classes. BasicConv2d = conv(bias=False) + BN + ReLU. "
        "Source: timm/models/inception_v4.py; Szegedy et al., AAAI 2017.",
        3,
        299,
        299,
    )
    x = net.conv_bn_relu("features.0", "input", 32, 3, stride=2)
    x = net.conv_bn_relu("features.1", x, 32, 3)
    x = net.conv_bn_relu("features.2", x, 64, 3, padding=1)
    # Mixed_3a
    a = net.maxpool("features.3.maxpool", x, 3, 2)
    b = net.conv_bn_relu("features.3.conv", x, 96, 3, stride=2)
    x = net.concat("features.3.concat", [a, b])
    # Mixed_4a
    a = _v4_chain(net, "features.4.branch0", x, [(64, 1), (96, 3)])
    b = _v4_chain(
        net,
        "features.4.branch1",
        x,
        [(64, 1), (64, (1, 7), 1, (0, 3)), (64, (7, 1), 1, (3, 0)), (96, 3)],
    )
    x = net.concat("features.4.concat", [a, b])
    # Mixed_5a
    a = net.conv_bn_relu("features.5.conv", x, 192, 3, stride=2)
    b = net.maxpool("features.5.maxpool", x, 3, 2)
    x = net.concat("features.5.concat", [a, b])
    idx = 6
    for stage, count in (
        (_v4_inception_a, 4),
        (_v4_reduction_a, 1),
        (_v4_inception_b, 7),
        (_v4_reduction_b, 1),
        (_v4_inception_c, 3),
    ):
        for _ in range(count):
            x = stage(net, f"features.{idx}", x)
            idx += 1
    x = net.gap("global_pool", x)
    net.classifier(x, "last_linear", 1000)
    return net


# --------------------------------------------------------------------------------- DenseNet


def densenet121() -> Builder:
    """torchvision DenseNet-121 (growth 32, blocks 6-12-24-16, bn_size 4) at 224x224.

    Reference: torchvision/models/densenet.py; Huang et al., "Densely Connected Convolutional
    Networks", CVPR 2017. A dense layer is norm1-relu1-conv1(1x1, 128)-norm2-relu2-conv2(3x3,
    32); its input is one ``concat`` layer over the block input and every earlier new-feature
    output of the block (``torch.cat(prev_features, 1)``, a single input for the first layer).
    The block output is ``features.denseblockN.concat`` over all of them. Transitions are
    norm-relu-conv(1x1, C/2)-avgpool(2, 2).
    """
    net = Builder(
        "densenet121",
        "DenseNet-121 (torchvision densenet121: growth 32, blocks 6-12-24-16, "
        "bn_size 4, compression 0.5), 224x224 input, 1000 classes. Each dense "
        "layer's input is one concat layer over the block input and all earlier "
        "new-feature outputs of the block (as torch.cat(prev_features) in "
        "torchvision; one input for the first layer); each block ends in a concat of "
        "all of them. Source: torchvision/models/densenet.py; Huang et al., CVPR 2017.",
        3,
        224,
        224,
    )
    growth, bn_size = 32, 4
    x = net.conv("features.conv0", "input", 64, 7, stride=2, padding=3)
    x = net.relu("features.relu0", net.norm("features.norm0", x))
    x = net.maxpool("features.pool0", x, 3, 2, padding=1)
    channels = 64
    blocks = (6, 12, 24, 16)
    for bi, layers in enumerate(blocks, start=1):
        features = [x]
        for li in range(1, layers + 1):
            p = f"features.denseblock{bi}.denselayer{li}"
            y = net.concat(f"{p}.concat", features)
            y = net.relu(f"{p}.relu1", net.norm(f"{p}.norm1", y))
            y = net.conv(f"{p}.conv1", y, bn_size * growth, 1)
            y = net.relu(f"{p}.relu2", net.norm(f"{p}.norm2", y))
            features.append(net.conv(f"{p}.conv2", y, growth, 3, padding=1))
        x = net.concat(f"features.denseblock{bi}.concat", features)
        channels += layers * growth
        if bi < len(blocks):
            p = f"features.transition{bi}"
            x = net.relu(f"{p}.relu", net.norm(f"{p}.norm", x))
            channels //= 2
            x = net.conv(f"{p}.conv", x, channels, 1)
            x = net.avgpool(f"{p}.pool", x, 2, 2)
    assert channels == 1024
    x = net.norm("features.norm5", x)
    x = net.relu("relu", x)
    x = net.gap("avgpool", x)
    net.classifier(x, "classifier", 1000)
    return net


# -------------------------------------------------------------------------------------- VGG

VGG16_CFG: list[int | str] = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
]


def vgg16() -> Builder:
    """torchvision VGG-16 without batch norm (configuration "D") at 224x224.

    Reference: torchvision/models/vgg.py (``vgg16``); Simonyan & Zisserman, "Very Deep
    Convolutional Networks for Large-Scale Image Recognition", ICLR 2015. Convolutions have
    biases. The ``AdaptiveAvgPool2d((7, 7))`` is an identity at 224x224 and is left out;
    dropout is not represented, so ``classifier.2`` and ``classifier.5`` are absent.
    """
    net = Builder(
        "vgg16",
        "VGG-16 (torchvision vgg16, configuration D, no batch norm), 224x224 input, "
        "1000 classes. Convs have bias. The 7x7 adaptive avgpool is an identity at "
        "224 and is omitted; dropout is not represented. Source: "
        "torchvision/models/vgg.py; Simonyan & Zisserman, ICLR 2015.",
        3,
        224,
        224,
    )
    x, idx = "input", 0
    for v in VGG16_CFG:
        if v == "M":
            x = net.maxpool(f"features.{idx}", x, 2, 2)
            idx += 1
        else:
            x = net.conv(f"features.{idx}", x, int(v), 3, padding=1, bias=True)
            x = net.relu(f"features.{idx + 1}", x)
            idx += 2
    x = net.relu("classifier.1", net.fc("classifier.0", x, 4096))
    x = net.relu("classifier.4", net.fc("classifier.3", x, 4096))
    net.classifier(x, "classifier.6", 1000)
    return net


# ------------------------------------------------------------- MobileNet-v2 / EfficientNet


def _conv_norm_act(
    net: Builder,
    p: str,
    x: str,
    out: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: str | None = "relu6",
) -> str:
    """torchvision ``Conv2dNormActivation``: conv (no bias, padding (k-1)//2), BN[, act].

    Names are ``p.0`` (conv), ``p.1`` (BN) and ``p.2`` (activation)."""
    x = net.conv(f"{p}.0", x, out, kernel, stride, (kernel - 1) // 2, groups=groups)
    x = net.norm(f"{p}.1", x)
    return net.act(f"{p}.2", x, act) if act else x


MOBILENET_V2_SETTINGS = [  # t (expansion), c (out channels), n (repeats), s (first stride)
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def mobilenet_v2() -> Builder:
    """torchvision MobileNetV2 (width 1.0) at 224x224, 1000 classes.

    Reference: torchvision/models/mobilenetv2.py; Sandler et al., "MobileNetV2: Inverted
    Residuals and Linear Bottlenecks", CVPR 2018. ``InvertedResidual``: 1x1 expansion
    (ConvBNReLU6, absent when t = 1), 3x3 depthwise ConvBNReLU6 with the stride, 1x1 linear
    projection (conv + BN, no activation), and the residual add when stride 1 and the channels
    are unchanged. Module names follow ``features.i.conv.j``; the adds are ``features.i.add``.
    Dropout before the classifier is not represented.
    """
    net = Builder(
        "mobilenet_v2",
        "MobileNetV2 (torchvision mobilenet_v2, width 1.0): inverted residual blocks "
        "of 1x1 expansion, 3x3 depthwise conv and 1x1 linear projection, ReLU6, "
        "batch norm; 224x224 input, 1000 classes. Source: "
        "torchvision/models/mobilenetv2.py; Sandler et al., CVPR 2018.",
        3,
        224,
        224,
    )
    x = _conv_norm_act(net, "features.0", "input", 32, 3, 2)
    in_ch, idx = 32, 1
    for t, c, n, s in MOBILENET_V2_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            p, hidden, j = f"features.{idx}.conv", in_ch * t, 0
            y = x
            if t != 1:
                y = _conv_norm_act(net, f"{p}.0", y, hidden, 1)
                j = 1
            y = _conv_norm_act(net, f"{p}.{j}", y, hidden, 3, stride, groups=hidden)
            y = net.conv(f"{p}.{j + 1}", y, c, 1)
            y = net.norm(f"{p}.{j + 2}", y)
            if stride == 1 and in_ch == c:
                y = net.eltwise_add(f"features.{idx}.add", [y, x])
            x, in_ch, idx = y, c, idx + 1
    x = _conv_norm_act(net, f"features.{idx}", x, 1280, 1)
    x = net.gap("avgpool", x)
    net.classifier(x, "classifier.1", 1000)
    return net


EFFICIENTNET_B0_STAGES = [  # expand ratio, kernel, stride, in, out, layers
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]


def efficientnet_b0() -> Builder:
    """torchvision EfficientNet-B0 at 224x224, 1000 classes.

    Reference: torchvision/models/efficientnet.py (``MBConv``, width and depth multipliers
    1.0); Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
    Networks", ICML 2019. ``MBConv``: 1x1 expansion ConvBNSiLU (absent when the ratio is 1),
    kxk depthwise ConvBNSiLU with the stride, squeeze-and-excitation (global average pool,
    1x1 conv ``fc1`` with bias to ``max(1, in/4)`` channels, SiLU, 1x1 conv ``fc2`` with bias,
    sigmoid, channel-wise multiply), 1x1 projection conv + BN, and the residual add when
    stride 1 and in == out. Stochastic depth and dropout are not represented (no parameters,
    no MACs; stochastic depth is the identity at inference and costs one mask multiply in
    training).
    """
    net = Builder(
        "efficientnet_b0",
        "EfficientNet-B0 (torchvision efficientnet_b0): MBConv blocks with depthwise "
        "convs, squeeze-and-excitation and SiLU, batch norm; 224x224 input, 1000 "
        "classes. Stochastic depth and dropout are not represented. Source: "
        "torchvision/models/efficientnet.py; Tan & Le, ICML 2019.",
        3,
        224,
        224,
    )
    x = _conv_norm_act(net, "features.0", "input", 32, 3, 2, act="silu")
    for stage, (ratio, k, s, cin, cout, layers) in enumerate(EFFICIENTNET_B0_STAGES, start=1):
        for i in range(layers):
            inp, stride = (cin, s) if i == 0 else (cout, 1)
            p, hidden, j = f"features.{stage}.{i}.block", inp * ratio, 0
            y = x
            if ratio != 1:
                y = _conv_norm_act(net, f"{p}.0", y, hidden, 1, act="silu")
                j = 1
            y = _conv_norm_act(net, f"{p}.{j}", y, hidden, k, stride, groups=hidden, act="silu")
            se = f"{p}.{j + 1}"
            z = net.gap(f"{se}.avgpool", y)
            z = net.conv(f"{se}.fc1", z, max(1, inp // 4), 1, bias=True)
            z = net.act(f"{se}.activation", z, "silu")
            z = net.conv(f"{se}.fc2", z, hidden, 1, bias=True)
            z = net.act(f"{se}.scale_activation", z, "sigmoid")
            y = net.mul(f"{se}.mul", [y, z])
            y = net.conv(f"{p}.{j + 2}.0", y, cout, 1)
            y = net.norm(f"{p}.{j + 2}.1", y)
            if stride == 1 and inp == cout:
                y = net.eltwise_add(f"features.{stage}.{i}.add", [y, x])
            x = y
    x = _conv_norm_act(net, "features.8", x, 1280, 1, act="silu")
    x = net.gap("avgpool", x)
    net.classifier(x, "classifier.1", 1000)
    return net


# ---------------------------------------------------------------------------------- ConvNeXt

CONVNEXT_TINY = ((96, 3), (192, 3), (384, 9), (768, 3))  # (channels, blocks) per stage
CONVNEXT_EPS = 1e-6  # torchvision ConvNeXt's LayerNorm eps


def convnext_tiny() -> Builder:
    """torchvision ConvNeXt-Tiny at 224x224, 1000 classes.

    Reference: torchvision/models/convnext.py; Liu et al., "A ConvNet for the 2020s", CVPR
    2022. Stem: 4x4 stride-4 conv (bias) + LayerNorm2d. ``CNBlock``: 7x7 depthwise conv (bias),
    LayerNorm over the channels at every position (``block.2``, after a permute to channels
    last), Linear C -> 4C (``block.3``, a 1x1 conv with bias here), GELU, Linear 4C -> C
    (``block.5``), the learned per-channel ``layer_scale``, stochastic depth (not represented)
    and the residual add. Downsampling between stages: LayerNorm2d + 2x2 stride-2 conv (bias).
    Head: global average pool, LayerNorm2d (``classifier.0``), Linear (``classifier.2``).
    """
    net = Builder(
        "convnext_tiny",
        "ConvNeXt-Tiny (torchvision convnext_tiny): 7x7 depthwise convs, LayerNorm "
        "over channels, GELU inverted bottlenecks, layer scale; 224x224 input, 1000 "
        "classes. Stochastic depth is not represented. Source: "
        "torchvision/models/convnext.py; Liu et al., CVPR 2022.",
        3,
        224,
        224,
    )
    x = net.conv("features.0.0", "input", 96, 4, stride=4, bias=True)
    x = net.layernorm("features.0.1", x, CONVNEXT_EPS)
    idx = 1
    for stage, (dim, blocks) in enumerate(CONVNEXT_TINY):
        if stage:
            x = net.layernorm(f"features.{idx}.0", x, CONVNEXT_EPS)
            x = net.conv(f"features.{idx}.1", x, dim, 2, stride=2, bias=True)
            idx += 1
        for b in range(blocks):
            p = f"features.{idx}.{b}"
            y = net.conv(f"{p}.block.0", x, dim, 7, padding=3, groups=dim, bias=True)
            y = net.layernorm(f"{p}.block.2", y, CONVNEXT_EPS)
            y = net.conv(f"{p}.block.3", y, 4 * dim, 1, bias=True)
            y = net.act(f"{p}.block.4", y, "gelu")
            y = net.conv(f"{p}.block.5", y, dim, 1, bias=True)
            y = net.scale(f"{p}.layer_scale", y)
            x = net.eltwise_add(f"{p}.add", [y, x])
        idx += 1
    x = net.gap("avgpool", x)
    x = net.layernorm("classifier.0", x, CONVNEXT_EPS)
    net.classifier(x, "classifier.2", 1000)
    return net


# ----------------------------------------------------------------------------------- driver

ZOO = {
    "resnet50": lambda: resnet(50),
    "resnet101": lambda: resnet(101),
    "resnet152": lambda: resnet(152),
    "inception_v3": inception_v3,
    "inception_v4": inception_v4,
    "densenet121": densenet121,
    "vgg16": vgg16,
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_b0": efficientnet_b0,
    "resnext50_32x4d": lambda: resnet(50, groups=32, width_per_group=4),
    "convnext_tiny": convnext_tiny,
}


def main() -> None:
    """Write every zoo network to ``workloads/<name>.json``."""
    for name, build in ZOO.items():
        net = build()
        assert net.name == name
        path = OUT_DIR / f"{name}.json"
        path.write_text(net.to_json())
        print(f"wrote {path.name}: {len(net.layers)} layers")


if __name__ == "__main__":
    main()
