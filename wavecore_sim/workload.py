"""Workload stage: a CNN as a DAG of layers over per-sample tensors of shape (C, H, W).

Networks come from JSON files in the ``wavecore-network/1`` format (docs/network-format.md).
The zoo's files live in ``workloads/`` and are installed as the package ``wavecore_sim.zoo``;
any other file is accepted by path, and so is an ONNX model (``*.onnx``, converted by
:mod:`wavecore_sim.onnx_import`). Loading validates every field and reports the first
problem as a :class:`WavecoreError` naming the file, the layer and the fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import WavecoreError

FORMAT = "wavecore-network/1"
LAYER_KINDS = (
    "conv",
    "fc",
    "norm",
    "layernorm",
    "relu",
    "act",
    "maxpool",
    "avgpool",
    "gap",
    "add",
    "mul",
    "scale",
    "concat",
    "loss",
)
GEMM_KINDS = ("conv", "fc")
NORM_TYPES = ("bn", "gn")
# Element-wise activations of the ``act`` kind (``relu`` keeps its own kind). torch names:
# ReLU6, Sigmoid, Hardsigmoid, Hardswish, SiLU (= Swish), GELU.
ACT_FUNCTIONS = ("relu6", "sigmoid", "hardsigmoid", "hardswish", "silu", "gelu")
# Group normalization's default group count (Wu & He, "Group Normalization", ECCV 2018).
DEFAULT_GN_GROUPS = 32

Shape = tuple[int, int, int]  # per-sample (C, H, W)


@dataclass(frozen=True)
class Layer:
    """One layer, with everything later stages need already derived from its input shapes."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    params: int
    macs_per_sample: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1  # conv groups, or normalization groups when norm == "gn"
    bias: bool = False
    norm: str = ""  # "bn" or "gn" for norm layers
    function: str = ""  # the activation of an ``act`` layer (one of ACT_FUNCTIONS)

    @property
    def in_shape(self) -> Shape:
        return self.in_shapes[0]

    @property
    def is_gemm(self) -> bool:
        return self.kind in GEMM_KINDS


@dataclass(frozen=True)
class Network:
    """A validated network: layers in topological order, input shape, normalization choice."""

    name: str
    input_shape: Shape
    layers: tuple[Layer, ...]
    norm: str
    description: str = ""
    source: str = ""
    _by_name: dict[str, Layer] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({layer.name: layer for layer in self.layers})

    def layer(self, name: str) -> Layer:
        return self._by_name[name]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def fwd_macs_per_sample(self) -> int:
        return sum(layer.macs_per_sample for layer in self.layers)

    def consumers(self) -> dict[str, list[str]]:
        """Map each layer name (and ``"input"``) to the layers that read its output, in order."""
        readers: dict[str, list[str]] = {"input": []}
        for layer in self.layers:
            readers.setdefault(layer.name, [])
            for src in layer.inputs:
                readers[src].append(layer.name)
        return readers


# ----------------------------------------------------------------------------- zoo lookup


def _zoo_dir() -> Path:
    return Path(str(resources.files("wavecore_sim.zoo")))


def list_networks() -> list[str]:
    """Names of the built-in networks (the example file excluded)."""
    return sorted(p.stem for p in _zoo_dir().glob("*.json") if not p.stem.startswith("example"))


def list_example_networks() -> list[str]:
    """Names of the example networks shipped next to the zoo (``example_*.json``: small
    networks to try the tools on, not part of the zoo's experiments)."""
    return sorted(p.stem for p in _zoo_dir().glob("example*.json"))


def resolve_network_path(name_or_path: str) -> Path:
    """A zoo name (``resnet50``) or a path to a network file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".json", ".onnx") or candidate.exists() or "/" in name_or_path:
        if not candidate.is_file():
            raise WavecoreError(
                f"network file {name_or_path!r} not found; give an existing "
                f"path or a zoo name ({', '.join(list_networks())})"
            )
        return candidate
    zoo_file = _zoo_dir() / f"{name_or_path}.json"
    if not zoo_file.is_file():
        raise WavecoreError(
            f"unknown network {name_or_path!r}; choose one of "
            f"{', '.join(list_networks())} or pass a .json or .onnx network "
            "file"
        )
    return zoo_file


def load_network(name_or_path: str, norm: str = "bn") -> Network:
    """Load, validate and shape-infer a zoo network or a network file."""
    if norm not in NORM_TYPES:
        raise WavecoreError(f"--norm {norm!r} is not known; use bn (batch norm) or gn (group norm)")
    path = resolve_network_path(name_or_path)
    if path.suffix.lower() == ".onnx":
        return load_onnx(path, norm=norm)[0]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WavecoreError(
            f"network file {path}: not UTF-8 text; give a JSON network file"
        ) from None
    except OSError as exc:
        raise WavecoreError(
            f"network file {path}: cannot be read ({exc.strerror}); check "
            "the path and its permissions"
        ) from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WavecoreError(
            f"network file {path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix the syntax"
        ) from None
    except RecursionError:
        raise WavecoreError(
            f"network file {path}: JSON nested too deeply; fix the syntax"
        ) from None
    except ValueError:  # an integer longer than Python converts (4300 digits)
        raise WavecoreError(
            f"network file {path}: a number has thousands of digits, more than any field "
            "allows; fix the value"
        ) from None
    return build_network(spec, norm=norm, source=str(path))


def load_onnx(
    path: str | Path, norm: str = "bn", name: str | None = None
) -> tuple[Network, dict[str, Any]]:
    """An ONNX model as a network and as the spec it was built from (to write as JSON).

    The ONNX front end is an optional extra, imported only here. Every layer's inferred
    (C, H, W) must equal the shape the ONNX graph gives its tensor."""
    from .onnx_import import onnx_to_spec

    spec, expected = onnx_to_spec(path, name=name)
    network = build_network(spec, norm=norm, source=str(path))
    for layer in network.layers:
        want = expected.get(layer.name)
        got = layer.out_shape
        if want is None or want == got or (len(want) == 1 and got == (want[0], 1, 1)):
            continue
        raise WavecoreError(
            f"ONNX model {path}: layer {layer.name!r} ({layer.kind}) comes out "
            f"as {got} but the graph says {want}; this export is not supported "
            "as is: simplify the model around that node or write the network "
            "as JSON"
        )
    return network, spec


# ----------------------------------------------------------------------------- validation


class _SpecReader:
    """Reads typed fields from one JSON object, raising errors that name the field."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise WavecoreError(f"{where}: expected a JSON object; write {{...}}")
        self.obj = obj
        self.where = where

    def _fail(self, key: str, what: str) -> WavecoreError:
        return WavecoreError(f"{self.where}: field {key!r} {what}")

    def str(self, key: str, default: str | None = None) -> str:
        if key not in self.obj:
            if default is None:
                raise self._fail(key, "is missing; add it (a string)")
            return default
        value = self.obj[key]
        if not isinstance(value, str) or not value:
            raise self._fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def int(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        if key not in self.obj:
            if default is None:
                raise self._fail(key, f"is missing; add it (an integer >= {minimum})")
            return default
        value = self.obj[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._fail(key, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def pair(self, key: str, default: int | None = None, minimum: int = 1) -> tuple[int, int]:
        if key not in self.obj:
            if default is None:
                raise self._fail(
                    key, f"is missing; add it (an integer >= {minimum} or [height, width])"
                )
            return (default, default)
        value = self.obj[key]
        items = value if isinstance(value, list) else [value, value]
        if len(items) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in items
        ):
            raise self._fail(
                key, f"must be an integer >= {minimum} or a [height, width] pair, got {value!r}"
            )
        return (items[0], items[1])

    def bool(self, key: str, default: bool) -> bool:
        value = self.obj.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, got {value!r}")
        return value

    def names(self, key: str) -> list[str] | None:
        if key not in self.obj:
            return None
        value = self.obj[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self._fail(key, f"must be a non-empty list of layer names, got {value!r}")
        return value

    def reject_unknown(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.obj) - allowed)
        if unknown:
            raise self._fail(
                unknown[0], f"is not known here; remove it (allowed: {', '.join(sorted(allowed))})"
            )


_COMMON = {"name", "kind", "inputs", "comment"}
_FIELDS = {
    "conv": {"out_channels", "kernel", "stride", "padding", "dilation", "groups", "bias"},
    "fc": {"out_features", "bias"},
    "norm": {"groups", "affine", "eps"},
    "layernorm": {"affine", "eps"},
    "relu": set(),
    "act": {"function"},
    "maxpool": {"kernel", "stride", "padding", "ceil_mode", "count_include_pad"},
    "avgpool": {"kernel", "stride", "padding", "ceil_mode", "count_include_pad"},
    "gap": set(),
    "add": set(),
    "mul": set(),
    "scale": {"bias"},
    "concat": set(),
    "loss": set(),
}


def _conv_out(size: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:  # PyTorch: last window must start inside
        out -= 1
    return out


def _topological_order(
    specs: list[dict[str, Any]], inputs: dict[str, list[str]], where: str
) -> list[str]:
    """Kahn's algorithm, stable in file order; a cycle is reported with its members."""
    order_index = {spec["name"]: i for i, spec in enumerate(specs)}
    pending = {name: len(srcs) - srcs.count("input") for name, srcs in inputs.items()}
    readers: dict[str, list[str]] = {name: [] for name in inputs}
    for name, srcs in inputs.items():
        for src in srcs:
            if src != "input":
                readers[src].append(name)
    ready = sorted((n for n, c in pending.items() if c == 0), key=order_index.__getitem__)
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for reader in readers[name]:
            pending[reader] -= 1
            if pending[reader] == 0:
                ready.append(reader)
                ready.sort(key=order_index.__getitem__)
    if len(order) != len(specs):
        stuck = {n for n in inputs if n not in set(order)}
        # Layers merely downstream of the cycle are stuck too; peel them off (repeatedly drop
        # stuck layers that no stuck layer reads) so the message names the cycle itself.
        while sinks := {n for n in stuck if not stuck.intersection(readers[n])}:
            stuck -= sinks
        stuck = sorted(stuck, key=order_index.__getitem__)
        raise WavecoreError(
            f"{where}: the layer graph has a cycle through "
            f"{', '.join(stuck[:4])}{' ...' if len(stuck) > 4 else ''}; "
            "make every layer read only layers that come before it"
        )
    return order


def build_network(spec: Any, norm: str = "bn", source: str = "<dict>") -> Network:
    """Validate a parsed network spec and infer every layer's shapes, parameters and MACs."""
    if norm not in NORM_TYPES:
        raise WavecoreError(f"--norm {norm!r} is not known; use bn (batch norm) or gn (group norm)")
    top = _SpecReader(spec, f"network file {source}")
    top.reject_unknown({"format", "name", "description", "input", "layers", "comment"})
    fmt = top.str("format")
    if fmt != FORMAT:
        raise WavecoreError(
            f"network file {source}: field 'format' is {fmt!r}; set it to {FORMAT!r}"
        )
    name = top.str("name")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise WavecoreError(
            f"network file {source}: field 'description' must be a string, got {description!r}"
        )
    if "input" not in spec:
        raise WavecoreError(
            f"network file {source}: field 'input' is missing; add it "
            '({"channels": C, "height": H, "width": W})'
        )
    inp = _SpecReader(spec["input"], f"network file {source}: 'input'")
    inp.reject_unknown({"channels", "height", "width", "comment"})
    input_shape = (inp.int("channels"), inp.int("height"), inp.int("width"))
    layer_specs = spec.get("layers")
    if not isinstance(layer_specs, list) or not layer_specs:
        raise WavecoreError(
            f"network file {source}: field 'layers' must be a non-empty list of layer objects"
        )

    readers: list[_SpecReader] = []
    inputs: dict[str, list[str]] = {}
    previous = "input"
    for i, layer_spec in enumerate(layer_specs):
        where = f"network file {source}: layers[{i}]"
        reader = _SpecReader(layer_spec, where)
        lname = reader.str("name")
        reader.where = f"{where} ({lname!r})"
        kind = reader.str("kind")
        if kind not in LAYER_KINDS:
            raise WavecoreError(
                f"{reader.where}: kind {kind!r} is not known; use one of {', '.join(LAYER_KINDS)}"
            )
        reader.reject_unknown(_COMMON | _FIELDS[kind])
        if lname == "input" or lname in inputs:
            raise WavecoreError(
                f"{reader.where}: layer name {lname!r} is used twice (or is the "
                "reserved name 'input'); give every layer a unique name"
            )
        inputs[lname] = reader.names("inputs") or [previous]
        readers.append(reader)
        previous = lname
    for reader in readers:
        for src in inputs[reader.obj["name"]]:
            if src != "input" and src not in inputs:
                raise WavecoreError(
                    f"{reader.where}: input {src!r} is not a layer of this "
                    "network; name an existing layer or 'input'"
                )

    by_name = {r.obj["name"]: r for r in readers}
    shapes: dict[str, Shape] = {"input": input_shape}
    layers: list[Layer] = []
    for lname in _topological_order(layer_specs, inputs, f"network file {source}"):
        layer = _infer_layer(by_name[lname], inputs[lname], shapes, norm)
        shapes[lname] = layer.out_shape
        layers.append(layer)

    network = Network(
        name=name,
        input_shape=input_shape,
        layers=tuple(layers),
        norm=norm,
        description=description,
        source=source,
    )
    _check_sinks(network, source)
    return network


def _check_sinks(network: Network, source: str) -> None:
    readers = network.consumers()
    losses = [layer for layer in network.layers if layer.kind == "loss"]
    if not losses:
        raise WavecoreError(
            f"network file {source}: no 'loss' layer; end the network with "
            '{"kind": "loss"} after the classifier'
        )
    for layer in network.layers:
        if layer.kind == "loss" and readers[layer.name]:
            raise WavecoreError(
                f"network file {source}: loss layer {layer.name!r} is read by "
                f"{readers[layer.name][0]!r}; a loss must be a sink of the graph"
            )
        if layer.kind != "loss" and not readers[layer.name]:
            raise WavecoreError(
                f"network file {source}: layer {layer.name!r} is read by no "
                "layer; connect it or end it with a loss layer"
            )


def _infer_layer(r: _SpecReader, srcs: list[str], shapes: dict[str, Shape], norm: str) -> Layer:
    kind = r.obj["kind"]
    in_shapes = tuple(shapes[s] for s in srcs)
    c, h, w = in_shapes[0]
    base = {"name": r.obj["name"], "kind": kind, "inputs": tuple(srcs), "in_shapes": in_shapes}

    def single_input() -> None:
        if len(srcs) != 1:
            raise WavecoreError(
                f"{r.where}: a {kind} layer reads exactly one input, got "
                f"{len(srcs)}; list one name in 'inputs'"
            )

    if kind == "conv":
        single_input()
        out_c, groups = r.int("out_channels"), r.int("groups", 1)
        k, s = r.pair("kernel"), r.pair("stride", 1)
        p, d = r.pair("padding", 0, minimum=0), r.pair("dilation", 1)
        if c % groups or out_c % groups:
            raise WavecoreError(
                f"{r.where}: groups={groups} must divide the input channels "
                f"({c}) and out_channels ({out_c}); change 'groups'"
            )
        ho, wo = (_conv_out(h, k[0], s[0], p[0], d[0]), _conv_out(w, k[1], s[1], p[1], d[1]))
        if ho < 1 or wo < 1:
            raise WavecoreError(
                f"{r.where}: kernel {k} does not fit the {h}x{w} input with "
                f"padding {p}; shrink 'kernel' or raise 'padding'"
            )
        bias = r.bool("bias", False)
        params = out_c * (c // groups) * k[0] * k[1] + (out_c if bias else 0)
        macs = ho * wo * out_c * (c // groups) * k[0] * k[1]
        return Layer(
            **base,
            out_shape=(out_c, ho, wo),
            params=params,
            macs_per_sample=macs,
            kernel=k,
            stride=s,
            padding=p,
            dilation=d,
            groups=groups,
            bias=bias,
        )
    if kind == "fc":
        single_input()
        out_f, bias = r.int("out_features"), r.bool("bias", True)
        in_f = c * h * w
        return Layer(
            **base,
            out_shape=(out_f, 1, 1),
            params=out_f * in_f + (out_f if bias else 0),
            macs_per_sample=out_f * in_f,
            bias=bias,
        )
    if kind in ("norm", "layernorm"):
        single_input()
        wanted = r.int("groups", DEFAULT_GN_GROUPS) if kind == "norm" else 1
        groups = wanted if c % wanted == 0 else math.gcd(c, wanted)
        affine = r.bool("affine", True)
        eps = r.obj.get("eps", 1e-5)
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < math.inf:
            raise WavecoreError(f"{r.where}: field 'eps' must be a positive number, got {eps!r}")
        if kind == "layernorm":  # per position over the channels: never spans the batch
            return Layer(
                **base, out_shape=(c, h, w), params=2 * c if affine else 0, macs_per_sample=0
            )
        return Layer(
            **base,
            out_shape=(c, h, w),
            params=2 * c if affine else 0,
            macs_per_sample=0,
            groups=groups if norm == "gn" else 1,
            norm=norm,
        )
    if kind == "act":
        single_input()
        function = r.str("function")
        if function not in ACT_FUNCTIONS:
            raise WavecoreError(
                f"{r.where}: field 'function' is {function!r}; use one of "
                f"{', '.join(ACT_FUNCTIONS)} (or kind 'relu')"
            )
        return Layer(**base, out_shape=(c, h, w), params=0, macs_per_sample=0, function=function)
    if kind == "scale":  # learned per-channel multiplier (ConvNeXt layer scale), + shift if bias
        single_input()
        bias = r.bool("bias", False)
        return Layer(
            **base, out_shape=(c, h, w), params=2 * c if bias else c, macs_per_sample=0, bias=bias
        )
    if kind == "mul":
        full, other = in_shapes[0], in_shapes[-1]
        if len(srcs) != 2 or other not in (full, (full[0], 1, 1)):
            raise WavecoreError(
                f"{r.where}: mul needs two inputs, the second of the first's "
                "shape or (channels, 1, 1) (a per-channel broadcast, as in "
                f"squeeze-and-excitation), got "
                f"{dict(zip(srcs, in_shapes, strict=True))}; fix 'inputs'"
            )
        return Layer(**base, out_shape=full, params=0, macs_per_sample=0)
    if kind in ("maxpool", "avgpool"):
        single_input()
        k = r.pair("kernel")
        s = r.pair("stride", k[0]) if "stride" in r.obj else k
        p = r.pair("padding", 0, minimum=0)
        ceil_mode = r.bool("ceil_mode", False)
        r.bool("count_include_pad", True)
        if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
            raise WavecoreError(
                f"{r.where}: padding {p} exceeds half the kernel {k}; lower 'padding'"
            )
        ho, wo = (
            _conv_out(h, k[0], s[0], p[0], 1, ceil_mode),
            _conv_out(w, k[1], s[1], p[1], 1, ceil_mode),
        )
        if ho < 1 or wo < 1:
            raise WavecoreError(
                f"{r.where}: pooling window {k} does not fit the {h}x{w} input; shrink 'kernel'"
            )
        return Layer(
            **base,
            out_shape=(c, ho, wo),
            params=0,
            macs_per_sample=0,
            kernel=k,
            stride=s,
            padding=p,
        )
    if kind == "add":
        if len(srcs) < 2 or any(sh not in (in_shapes[0], (c, 1, 1)) for sh in in_shapes):
            raise WavecoreError(
                f"{r.where}: add needs two or more inputs of equal shape (or "
                "(channels, 1, 1), broadcast over height and width), got "
                f"{dict(zip(srcs, in_shapes, strict=True))}; fix 'inputs'"
            )
        return Layer(**base, out_shape=in_shapes[0], params=0, macs_per_sample=0)
    if kind == "concat":
        if any(sh[1:] != in_shapes[0][1:] for sh in in_shapes):
            raise WavecoreError(
                f"{r.where}: concat inputs must share height and width, got "
                f"{dict(zip(srcs, in_shapes, strict=True))}; fix 'inputs'"
            )
        return Layer(
            **base, out_shape=(sum(sh[0] for sh in in_shapes), h, w), params=0, macs_per_sample=0
        )
    if kind == "loss":
        single_input()
        if (h, w) != (1, 1):
            raise WavecoreError(
                f"{r.where}: loss reads class scores of shape (classes, 1, 1), "
                f"got {in_shapes[0]}; put an fc or gap layer before it"
            )
        return Layer(**base, out_shape=(1, 1, 1), params=0, macs_per_sample=0)
    single_input()  # relu, gap
    out = (c, 1, 1) if kind == "gap" else (c, h, w)
    return Layer(**base, out_shape=out, params=0, macs_per_sample=0)
