"""Workload stage, ONNX front end: an ONNX model becomes a ``wavecore-network/1`` spec.

Only the graph is read: layer kinds, attributes and the shapes of the weight initializers
(an export without weights, ``export_params=False``, works as long as the weights are still
declared as graph inputs or initializers with shapes). The batch dimension is dropped: shapes
are per sample and the mini-batch is the ``--batch`` of the command. Shapes come from the
graph; ONNX shape inference is run with the batch fixed to 1 so that every tensor has one,
and each imported layer's (C, H, W) is checked against it.

The ``onnx`` package is an optional extra, imported only here and only when an ``.onnx``
file is read. Supported operators are listed in ``docs/network-format.md``; anything else is
refused with one line naming the node, its op type and what to do.

Layouts: tensors are NCHW. A ``Transpose`` to NHWC (as PyTorch's ``permute(0, 2, 3, 1)`` in
ConvNeXt) marks the tensor channel-last; ``LayerNormalization`` over the last axis of such a
tensor is a per-position ``layernorm`` over the channels, and a ``MatMul``/``Gemm`` over its
last axis is a 1x1 convolution. A ``Transpose`` back to NCHW returns to the default layout.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WavecoreError

FORMAT = "wavecore-network/1"
INSTALL_HINT = "pip install -e '.[onnx]'"

# Operators that pass the data through unchanged (shape bookkeeping only).
_ALIASES = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Dropout", "Identity")
# Operators that only compute shapes or constants; skipped when all their inputs are static.
_STATIC_OPS = (
    "Shape",
    "Gather",
    "Concat",
    "Unsqueeze",
    "Squeeze",
    "Cast",
    "Slice",
    "Constant",
    "ConstantOfShape",
    "Mul",
    "Add",
    "Div",
    "Sub",
    "Reshape",
    "Range",
    "Transpose",
    "Identity",
)
_SIMPLE_ACTS = {
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hardsigmoid",
    "HardSwish": "hardswish",
    "Silu": "silu",
    "Swish": "silu",
    "Gelu": "gelu",
}
NCHW_TO_NHWC, NHWC_TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise WavecoreError(
            "reading an .onnx network needs the onnx package; install the "
            f"extra with {INSTALL_HINT}"
        ) from None
    return onnx


@dataclass
class _Value:
    """A graph tensor as the importer sees it: which layer made it and in which layout."""

    layer: str  # producing layer name, or "input"
    layout: str = "nchw"  # "nchw", "nhwc", or "flat" (N, F)


@dataclass
class _Importer:
    onnx: Any
    source: str
    model: Any
    layers: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, _Value] = field(default_factory=dict)
    static: dict[str, Any] = field(default_factory=dict)  # name -> numpy array or None
    weight_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # inferred, batch 1
    readers: dict[str, list[Any]] = field(default_factory=dict)
    producers: dict[str, Any] = field(default_factory=dict)
    checked: dict[str, str] = field(default_factory=dict)  # layer -> onnx tensor to check
    names: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------------ helpers
    def fail(self, node: Any, what: str) -> WavecoreError:
        label = node.name or (node.output[0] if node.output else "?")
        return WavecoreError(f"ONNX model {self.source}: node {label!r} ({node.op_type}) {what}")

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        for a in node.attribute:
            if a.name == name:
                return self.onnx.helper.get_attribute_value(a)
        return default

    def value(self, node: Any, name: str) -> _Value:
        if name not in self.values:
            raise self.fail(
                node,
                f"reads {name!r}, which is neither the network input nor "
                "the output of a supported layer; export the model with "
                "torch.onnx.export(..., do_constant_folding=True)",
            )
        return self.values[name]

    def unique(self, node: Any) -> str:
        return self.unique_name(node.name or node.output[0] or node.op_type)

    def unique_name(self, base: str) -> str:
        base = base.lstrip("/").replace("/", ".") or "layer"
        name, i = base, 1
        while name in self.names or name == "input":
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def emit(
        self, node: Any, kind: str, inputs: list[str], layout: str = "nchw", **fields: Any
    ) -> str:
        name = self.unique(node)
        self.layers.append({"name": name, "kind": kind, "inputs": inputs, **fields})
        self.values[node.output[0]] = _Value(name, layout)
        self.checked[name] = node.output[0]
        return name

    def alias(self, node: Any, src: _Value, layout: str | None = None) -> None:
        self.values[node.output[0]] = _Value(src.layer, layout or src.layout)

    def weight_shape(self, node: Any, name: str) -> tuple[int, ...]:
        if name in self.weight_shapes:
            return self.weight_shapes[name]
        if name in self.static and self.static[name] is not None:
            return tuple(self.static[name].shape)
        if name in self.static and name in self.shapes:  # e.g. a transposed weight
            return self.shapes[name]
        raise self.fail(
            node,
            f"has weight {name!r} without a known shape; export the weights "
            "as initializers (the default of torch.onnx.export)",
        )

    def const(self, name: str) -> Any:
        return self.static.get(name)

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def layer_dict(self, name: str) -> dict[str, Any] | None:
        for layer in reversed(self.layers):
            if layer["name"] == name:
                return layer
        return None

    def is_static(self, name: str) -> bool:
        return name == "" or name in self.static


def _pair(
    values: list[int] | None, default: int, node: Any, what: str, imp: _Importer
) -> int | list[int]:
    if not values:
        return default
    if len(values) != 2:
        raise imp.fail(
            node, f"has a {len(values)}-D {what}; only 2-D (H, W) operators are supported"
        )
    return values[0] if values[0] == values[1] else list(values)


def _pads(node: Any, imp: _Importer) -> int | list[int]:
    auto_pad = imp.attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "VALID"):
        raise imp.fail(
            node,
            f"uses auto_pad={auto_pad}; re-export with explicit pads "
            "(PyTorch does this by default)",
        )
    pads = imp.attr(node, "pads")
    if not pads:
        return 0
    half = len(pads) // 2
    if list(pads[:half]) != list(pads[half:]):
        raise imp.fail(
            node,
            f"has asymmetric pads {list(pads)}; only symmetric padding is "
            "supported: pad with a symmetric amount in the model",
        )
    return _pair(list(pads[:half]), 0, node, "padding", imp)


# ---------------------------------------------------------------------------- operators


def _conv(imp: _Importer, node: Any) -> None:
    x = imp.value(node, node.input[0])
    if x.layout != "nchw":
        raise imp.fail(node, "reads a channel-last tensor; only NCHW convolutions are supported")
    w = imp.weight_shape(node, node.input[1])
    if len(w) != 4:
        raise imp.fail(node, f"has a {len(w) - 2}-D kernel; only 2-D convolutions are supported")
    fields: dict[str, Any] = {
        "out_channels": w[0],
        "kernel": _pair(list(w[2:]), 1, node, "kernel", imp),
    }
    stride = _pair(imp.attr(node, "strides"), 1, node, "stride", imp)
    pad = _pads(node, imp)
    dil = _pair(imp.attr(node, "dilations"), 1, node, "dilation", imp)
    groups = imp.attr(node, "group", 1)
    for key, val, default in (
        ("stride", stride, 1),
        ("padding", pad, 0),
        ("dilation", dil, 1),
        ("groups", groups, 1),
    ):
        if val != default:
            fields[key] = val
    if len(node.input) > 2 and node.input[2]:
        fields["bias"] = True
    imp.emit(node, "conv", [x.layer], **fields)


def _linear(imp: _Importer, node: Any) -> None:
    """Gemm or MatMul with a constant right-hand side: fc, or a 1x1 conv on NHWC tensors."""
    a_name, b_name = node.input[0], node.input[1]
    if imp.is_static(a_name) or not imp.is_static(b_name):
        raise imp.fail(
            node,
            "multiplies two activations (or a constant by an activation); "
            "only activation x weight (a fully connected layer) is supported",
        )
    x = imp.value(node, a_name)
    b = imp.weight_shape(node, b_name)
    if len(b) != 2:
        raise imp.fail(node, f"has a {len(b)}-D weight; a fully connected layer needs a 2-D one")
    trans_a = imp.attr(node, "transA", 0) if node.op_type == "Gemm" else 0
    trans_b = imp.attr(node, "transB", 0) if node.op_type == "Gemm" else 0
    if trans_a:
        raise imp.fail(node, "has transA=1; export the layer as x @ W^T (nn.Linear does)")
    out_f = b[0] if trans_b else b[1]
    bias = node.op_type == "Gemm" and len(node.input) > 2 and bool(node.input[2])
    if x.layout == "nhwc":  # a Linear over the channels of a channel-last tensor
        fields: dict[str, Any] = {"out_channels": out_f, "kernel": 1}
        if bias:
            fields["bias"] = True
        imp.emit(node, "conv", [x.layer], layout="nhwc", **fields)
        return
    imp.emit(node, "fc", [x.layer], layout="flat", out_features=out_f, bias=bias)


def _fold_bias(imp: _Importer, node: Any, x: _Value, const: str) -> bool:
    """``Add(linear, constant bias)`` becomes the bias of the conv/fc that made ``x``."""
    layer = imp.layer_dict(x.layer)
    if layer is None or layer["kind"] not in ("conv", "fc") or layer.get("bias"):
        return False
    arr = imp.const(const)
    size = math.prod(arr.shape) if arr is not None else math.prod(imp.weight_shape(node, const))
    out = layer.get("out_channels", layer.get("out_features"))
    if size != out:
        return False
    layer["bias"] = True
    imp.alias(node, x)
    return True


def _binary(imp: _Importer, node: Any) -> None:
    """Add and Mul of activations (equal shapes or a per-channel broadcast), a bias Add, a
    per-channel learned Mul (layer scale), and Mul(x, Sigmoid(x)) fused into SiLU."""
    op = node.op_type
    a, b = node.input[0], node.input[1]
    if imp.is_static(a) and imp.is_static(b):
        imp.static[node.output[0]] = None
        return
    if imp.is_static(a):
        a, b = b, a
    x = imp.value(node, a)
    if imp.is_static(b):
        if op == "Add" and _fold_bias(imp, node, x, b):
            return
        arr = imp.const(b)
        shape = tuple(arr.shape) if arr is not None else imp.weight_shape(node, b)
        channels = imp.shape(a)[1] if imp.shape(a) and len(imp.shape(a)) > 1 else None
        per_channel = (
            channels
            and math.prod(shape) == channels
            and ((x.layout == "nchw" and shape[-2:] == (1, 1)) or x.layout == "nhwc")
        )
        if op == "Mul" and per_channel:
            imp.emit(node, "scale", [x.layer], layout=x.layout)
            return
        raise imp.fail(
            node,
            f"{'adds' if op == 'Add' else 'multiplies'} a constant of shape "
            f"{list(shape)}; only a conv/fc bias (Add) and a per-channel "
            "learned scale (Mul) are supported: fold other constants into "
            "the neighbouring layers before export",
        )
    y = imp.value(node, b)
    if op == "Mul":  # SiLU exported as x * sigmoid(x)
        for one, other in ((a, b), (b, a)):
            prod = imp.producers.get(other)
            if (
                prod is not None
                and prod.op_type == "Sigmoid"
                and prod.input[0] == one
                and len(imp.readers.get(other, [])) == 1
            ):
                sig_layer = imp.values[other].layer
                imp.layers = [ly for ly in imp.layers if ly["name"] != sig_layer]
                imp.checked.pop(sig_layer, None)
                imp.emit(
                    node,
                    "act",
                    [imp.values[one].layer],
                    layout=imp.values[one].layout,
                    function="silu",
                )
                return
    sa, sb = imp.shape(a), imp.shape(b)
    if sa is not None and sb is not None and math.prod(sa) < math.prod(sb):
        a, b, x, y, sa, sb = b, a, y, x, sb, sa
    if x.layout != y.layout:
        raise imp.fail(
            node,
            "combines tensors of different layouts (NCHW and NHWC); "
            "transpose them to the same layout first",
        )
    if sa != sb and not (sa and sb and len(sb) == 4 and sb[2:] == (1, 1) and sb[1] == sa[1]):
        raise imp.fail(
            node,
            f"{'adds' if op == 'Add' else 'multiplies'} tensors of shapes "
            f"{list(sa or [])} and {list(sb or [])}; only equal shapes or a "
            "per-channel (N, C, 1, 1) broadcast are supported",
        )
    kind = "add" if op == "Add" else "mul"
    imp.emit(node, kind, [x.layer, y.layer], layout=x.layout)


def _clip(imp: _Importer, node: Any) -> None:
    lo = imp.attr(node, "min")
    hi = imp.attr(node, "max")
    if len(node.input) > 1 and node.input[1]:
        arr = imp.const(node.input[1])
        lo = float(arr) if arr is not None else None
    if len(node.input) > 2 and node.input[2]:
        arr = imp.const(node.input[2])
        hi = float(arr) if arr is not None else None
    x = imp.value(node, node.input[0])
    if lo == 0.0 and hi == 6.0:
        imp.emit(node, "act", [x.layer], layout=x.layout, function="relu6")
    elif lo == 0.0 and hi is None:
        imp.emit(node, "relu", [x.layer], layout=x.layout)
    else:
        raise imp.fail(node, f"clips to [{lo}, {hi}]; only Clip(0, 6) (ReLU6) is supported")


def _pool(imp: _Importer, node: Any) -> None:
    x = imp.value(node, node.input[0])
    if x.layout != "nchw":
        raise imp.fail(node, "pools a channel-last tensor; only NCHW pooling is supported")
    kernel = imp.attr(node, "kernel_shape")
    fields: dict[str, Any] = {
        "kernel": _pair(list(kernel), 1, node, "kernel", imp),
        "stride": _pair(imp.attr(node, "strides"), 1, node, "stride", imp),
    }
    pad = _pads(node, imp)
    if pad != 0:
        fields["padding"] = pad
    if imp.attr(node, "ceil_mode", 0):
        fields["ceil_mode"] = True
    if imp.attr(node, "dilations") and set(imp.attr(node, "dilations")) != {1}:
        raise imp.fail(node, "has dilated pooling windows; only dilation 1 is supported")
    kind = "maxpool" if node.op_type == "MaxPool" else "avgpool"
    if kind == "avgpool" and not imp.attr(node, "count_include_pad", 0) and pad != 0:
        fields["count_include_pad"] = False
    imp.emit(node, kind, [x.layer], **fields)


def _global_pool(imp: _Importer, node: Any) -> None:
    x = imp.value(node, node.input[0])
    if node.op_type == "ReduceMean":
        axes = imp.attr(node, "axes")
        if axes is None and len(node.input) > 1:
            arr = imp.const(node.input[1])
            axes = [int(v) for v in arr] if arr is not None else None
        rank = len(imp.shape(node.input[0]) or (0, 0, 0, 0))
        want = {2, 3} if x.layout == "nchw" else {1, 2}
        if axes is None or {a % rank for a in axes} != want:
            raise imp.fail(
                node,
                f"reduces over axes {axes}; only the spatial mean (global "
                "average pooling) is supported",
            )
    elif x.layout != "nchw":
        raise imp.fail(node, "pools a channel-last tensor; only NCHW pooling is supported")
    imp.emit(node, "gap", [x.layer])


def _norm(imp: _Importer, node: Any) -> None:
    x = imp.value(node, node.input[0])
    if node.op_type == "BatchNormalization":
        if x.layout != "nchw":
            raise imp.fail(
                node, "normalizes a channel-last tensor; only NCHW batch norm is supported"
            )
        imp.emit(node, "norm", [x.layer])
        return
    axis = imp.attr(node, "axis", -1)
    rank = len(imp.shape(node.input[0]) or (0, 0))
    if x.layout == "nchw" and rank == 4:
        raise imp.fail(
            node,
            f"normalizes axis {axis} of an NCHW tensor; only LayerNorm over "
            "the channels (a channel-last tensor's last axis) is supported",
        )
    if axis % max(rank, 1) != rank - 1:
        raise imp.fail(
            node, f"normalizes from axis {axis}; only the last axis (the channels) is supported"
        )
    fields: dict[str, Any] = {}
    if len(node.input) < 2 or not node.input[1]:
        fields["affine"] = False
    eps = imp.attr(node, "epsilon", 1e-5)
    fields["eps"] = float(f"{eps:.6g}")
    imp.emit(node, "layernorm", [x.layer], layout=x.layout, **fields)


def _concat(imp: _Importer, node: Any) -> None:
    if all(imp.is_static(n) for n in node.input):
        imp.static[node.output[0]] = None
        return
    srcs = [imp.value(node, n) for n in node.input]
    rank = len(imp.shape(node.input[0]) or (0, 0, 0, 0))
    axis = imp.attr(node, "axis", 1) % max(rank, 1)
    if any(s.layout != "nchw" for s in srcs) or axis != 1:
        raise imp.fail(
            node,
            f"concatenates along axis {axis}; only the channel axis of NCHW tensors is supported",
        )
    imp.emit(node, "concat", [s.layer for s in srcs])


def _transpose(imp: _Importer, node: Any) -> None:
    x = imp.value(node, node.input[0])
    perm = list(imp.attr(node, "perm", []))
    if perm == NCHW_TO_NHWC and x.layout == "nchw":
        imp.alias(node, x, "nhwc")
    elif perm == NHWC_TO_NCHW and x.layout == "nhwc":
        imp.alias(node, x, "nchw")
    else:
        raise imp.fail(node, f"permutes axes {perm}; only NCHW <-> NHWC permutes are supported")


def _activation(imp: _Importer, node: Any) -> None:
    x = imp.value(node, node.input[0])
    if node.op_type == "Relu":
        imp.emit(node, "relu", [x.layer], layout=x.layout)
        return
    # Gelu's approximate="tanh"/"none" and HardSigmoid's alpha/beta cost the same here.
    imp.emit(node, "act", [x.layer], layout=x.layout, function=_SIMPLE_ACTS[node.op_type])


_HANDLERS = {
    "Conv": _conv,
    "Gemm": _linear,
    "MatMul": _linear,
    "Add": _binary,
    "Mul": _binary,
    "Clip": _clip,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_pool,
    "ReduceMean": _global_pool,
    "BatchNormalization": _norm,
    "LayerNormalization": _norm,
    "Concat": _concat,
    "Transpose": _transpose,
    "Relu": _activation,
    **{op: _activation for op in _SIMPLE_ACTS},
}
SUPPORTED_OPS = tuple(sorted((*_HANDLERS, *_ALIASES, "Softmax", "LogSoftmax", "Constant")))


# ----------------------------------------------------------------------------- driver


def _load_model(onnx: Any, path: Path) -> Any:
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WavecoreError(
            f"ONNX model {source}: cannot be read ({exc.strerror}); check the "
            "path and its permissions"
        ) from None
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeError, version-dependent
        raise WavecoreError(
            f"ONNX model {source}: not a readable ONNX model ({type(exc).__name__}"
            "); give a file written by onnx.save or torch.onnx.export"
        ) from None
    if not model.graph.node:
        raise WavecoreError(
            f"ONNX model {source}: the graph has no nodes (not an ONNX model, "
            "or a truncated file); export the model again"
        )
    return model


def _dims(onnx: Any, vi: Any) -> list[int | str]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _infer_shapes(onnx: Any, model: Any, input_name: str, source: str) -> dict[str, tuple]:
    """Shape inference with the batch dimension set to 1 (shapes are per sample here)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    for vi in m.graph.output:
        vi.type.tensor_type.ClearField("shape")
    for vi in m.graph.input:
        if vi.name == input_name:
            vi.type.tensor_type.shape.dim[0].Clear()
            vi.type.tensor_type.shape.dim[0].dim_value = 1
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception as exc:
        raise WavecoreError(
            f"ONNX model {source}: shape inference failed ({exc}); check the "
            "model with onnx.checker.check_model"
        ) from None
    out: dict[str, tuple] = {}
    for vi in [*m.graph.value_info, *m.graph.input, *m.graph.output]:
        dims = _dims(onnx, vi)
        if dims and all(isinstance(d, int) and d > 0 for d in dims):
            out[vi.name] = tuple(dims)
    return out


def onnx_to_spec(
    path: str | Path, name: str | None = None
) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """Read an ONNX model: the equivalent ``wavecore-network/1`` spec (a dict) and the shape
    the graph gives each layer's output (per sample), for the loader to check."""
    onnx = _onnx()
    path = Path(path)
    source = str(path)
    model = _load_model(onnx, path)
    graph = model.graph
    init = {t.name for t in graph.initializer}
    # The image is the first graph input that is not an initializer (exporters list the
    # model's inputs before its parameters); later ones are the weights of an export without
    # parameters (export_params=False), which keep their shapes.
    inputs = [vi for vi in graph.input if vi.name not in init]
    if not inputs:
        raise WavecoreError(
            f"ONNX model {source}: the graph has no input; export a model with one image input"
        )
    inp = inputs[0]
    dims = _dims(onnx, inp)
    if len(dims) != 4:
        raise WavecoreError(
            f"ONNX model {source}: input {inp.name!r} has shape {dims}; an "
            "image input (N, C, H, W) is needed"
        )
    for axis, d in zip(("channels", "height", "width"), dims[1:], strict=True):
        if not isinstance(d, int) or d < 1:
            raise WavecoreError(
                f"ONNX model {source}: input {inp.name!r} has no fixed {axis} "
                f"({d!r}); export with a fixed input size (e.g. "
                "torch.onnx.export with a 1x3x224x224 example and no dynamic "
                "axes except the batch)"
            )
    imp = _Importer(onnx, source, model)
    imp.shapes = _infer_shapes(onnx, model, inp.name, source)
    imp.values[inp.name] = _Value("input")
    for t in graph.initializer:
        imp.static[t.name] = onnx.numpy_helper.to_array(t) if t.data_location == 0 else None
        imp.weight_shapes[t.name] = tuple(t.dims)
    for vi in graph.input:  # weights declared as inputs (export_params=False)
        if vi.name != inp.name and vi.name not in init:
            imp.static[vi.name] = None
            imp.weight_shapes[vi.name] = tuple(d for d in _dims(onnx, vi) if isinstance(d, int))
    imp.producers = {o: n for n in graph.node for o in n.output}
    for n in graph.node:
        for i in n.input:
            imp.readers.setdefault(i, []).append(n)

    for node in graph.node:
        op = node.op_type
        if op == "Constant":
            value = imp.attr(node, "value")
            imp.static[node.output[0]] = (
                onnx.numpy_helper.to_array(value) if value is not None else None
            )
            continue
        data_inputs = [i for i in node.input if i]
        if op in _STATIC_OPS and data_inputs and all(imp.is_static(i) for i in data_inputs):
            for o in node.output:
                imp.static[o] = None
            continue
        if op == "Shape":
            imp.static[node.output[0]] = None
            continue
        if op in _ALIASES or op in ("Softmax", "LogSoftmax"):
            imp.alias(node, imp.value(node, node.input[0]))
            continue
        handler = _HANDLERS.get(op)
        if handler is None:
            raise imp.fail(
                node,
                "is not supported; supported operators are "
                f"{', '.join(SUPPORTED_OPS)} (docs/network-format.md): "
                "replace it in the model or write the network as JSON",
            )
        handler(imp, node)

    for out in graph.output:
        v = imp.value(graph.node[-1], out.name)
        imp.layers.append(
            {
                "name": imp.unique_name("loss" if len(graph.output) == 1 else f"loss.{out.name}"),
                "kind": "loss",
                "inputs": [v.layer],
            }
        )
    spec_name = name or path.stem  # exporters' graph names are generic ("main_graph")
    spec = {
        "format": FORMAT,
        "name": spec_name,
        "description": f"imported from the ONNX model {path.name} (producer "
        f"{model.producer_name or 'unknown'} {model.producer_version}, opset "
        f"{max((o.version for o in model.opset_import), default=0)}); the batch "
        "dimension is set at run time",
        "input": {"channels": dims[1], "height": dims[2], "width": dims[3]},
        "layers": _drop_default_inputs(imp.layers),
    }
    return spec, _expected_shapes(imp)


def _drop_default_inputs(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leave out ``inputs`` where it is the previous layer (the format's default)."""
    out, previous = [], "input"
    for layer in layers:
        layer = dict(layer)
        if layer["inputs"] == [previous] and layer["kind"] not in ("add", "mul", "concat"):
            del layer["inputs"]
        out.append(layer)
        previous = layer["name"]
    return out


def _expected_shapes(imp: _Importer) -> dict[str, tuple[int, ...]]:
    """Per-sample shape the ONNX graph gives each imported layer's output, as (C, H, W) or
    (F,) for flattened tensors; :func:`wavecore_sim.workload.load_onnx` checks them."""
    out: dict[str, tuple[int, ...]] = {}
    for layer, tensor in imp.checked.items():
        onnx_shape = imp.shapes.get(tensor)
        if onnx_shape is None:
            continue
        per_sample = tuple(onnx_shape[1:])
        if imp.values[tensor].layout == "nhwc" and len(per_sample) == 3:
            per_sample = (per_sample[2], per_sample[0], per_sample[1])
        out[layer] = per_sample
    return out


def write_spec(spec: dict[str, Any], out: str | Path) -> None:
    """Write a spec as JSON, one layer per line, atomically (nothing left on failure)."""
    out = Path(out)
    head = {k: v for k, v in spec.items() if k != "layers"}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines += [
        '  "layers": [',
        ",\n".join(f"    {json.dumps(ly)}" for ly in spec["layers"]),
        "  ]",
        "}",
    ]
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WavecoreError(
            f"--out {out}: cannot write ({exc.strerror}); choose a writable path"
        ) from None
