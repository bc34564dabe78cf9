"""Export graph-only ONNX files of torchvision models as test fixtures (needs torch).

Run from the repository root in an environment with torch, torchvision and onnx (not the
project's; CI does not run this)::

    python workloads/export_onnx_fixtures.py [name ...]

Each model is exported with ``export_params=False`` (the weights become graph inputs that
keep their shapes, so a file is kilobytes), a 1x3x224x224 example input and a dynamic batch
dimension, opset 20 (``LayerNormalization`` and ``Gelu`` are single nodes), by the
TorchScript-based exporter (``dynamo=False``) in training mode, so batch normalization stays
a ``BatchNormalization`` node instead of being folded into the convolution, with stochastic
depth switched off. ``tests/test_onnx_import.py`` checks that each imported fixture equals
the zoo network of the same name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torchvision import models
from torchvision.ops import StochasticDepth

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"
DEFAULT = ("resnet50", "mobilenet_v2", "efficientnet_b0", "resnext50_32x4d", "convnext_tiny")
OPSET = 20


def export(name: str) -> Path:
    model = getattr(models, name)().train()
    for module in model.modules():  # stochastic depth is random in training: make it a no-op
        if isinstance(module, StochasticDepth):
            module.p = 0.0
    out = OUT_DIR / f"{name}.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 224, 224),),
        str(out),
        export_params=False,
        input_names=["image"],
        output_names=["logits"],
        opset_version=OPSET,
        dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        dynamo=False,
        training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False,
    )
    return out


def main(names: list[str]) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in names or DEFAULT:
        path = export(name)
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
