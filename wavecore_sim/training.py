"""Training stage: expand a network into the ops of one training iteration.

Order of ops: every layer's forward op (topological order), the loss (softmax cross-entropy,
forward and backward fused), every layer's backward op in reverse order, gradient sums where
a tensor fans out to several consumers, and one SGD-with-momentum update per parameterised
layer. Tensors are named ``A:<layer>`` (output activation), ``G:<layer>`` (its gradient),
``G:<src>@<consumer>`` (one consumer's contribution to a fan-out gradient), ``W:``/``dW:``
(bf16 weights and their gradients), ``W32:``/``M:`` (fp32 master weights and momentum).

Convolutions are lowered to GEMMs (DESIGN section 4), per sample and per conv group:

* FWD   ``O = im2col(I) x W``:        M = N*Ho*Wo,          K = Cin/g*kh*kw, N = Cout/g
* DGRAD ``dI = col2im(dO x W^T)``:    M = N*Ho*Wo,          K = Cout/g,      N = Cin/g*kh*kw
* WGRAD ``dW = im2col(I)^T x dO``:    M = Cin/g*kh*kw,      K = N*Ho*Wo,     N = Cout/g

so each pass has exactly the forward MAC count. A layer that reads only the network input has
no DGRAD (nobody needs the gradient of the image); more generally, a gradient is computed only
for tensors that depend on some parameter, so a parameter-free layer applied to the image (a
relu or pool before the first conv) needs none either. FC layers are the 1x1 case with
``Cin*H*W`` input features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import HardwareConfig
from .errors import WavecoreError
from .workload import Layer, Network

FWD, DGRAD, WGRAD = "FWD", "DGRAD", "WGRAD"
PHASES = ("FWD", "LOSS", "BWD", "GRADSUM", "UPDATE")
TENSOR_KINDS = ("activation", "gradient", "weight", "weight_grad", "master_weight", "optimizer")


@dataclass(frozen=True)
class GemmShape:
    """One GEMM ``C[M,N] (+)= A[M,K] x B[K,N]``, repeated ``groups`` times (grouped convs)."""

    role: str
    m: int
    k: int
    n: int
    groups: int = 1

    @property
    def macs(self) -> int:
        return self.groups * self.m * self.k * self.n


@dataclass(frozen=True)
class VectorWork:
    """Element-wise work on the vector unit: ``passes`` sweeps of ``ops_per_element`` each."""

    elements: int
    passes: int
    ops_per_element: int

    @property
    def ops(self) -> int:
        return self.elements * self.passes * self.ops_per_element


@dataclass(frozen=True)
class TensorInfo:
    """A tensor of the iteration. Batch-scaled tensors give bytes per sample, others in total."""

    name: str
    kind: str
    bytes_per_sample: int = 0
    fixed_bytes: int = 0
    shape: tuple[int, int, int] = (0, 0, 0)
    saved: bool = False  # written in the forward pass and read again by the backward pass

    @property
    def per_sample(self) -> bool:
        return self.bytes_per_sample > 0

    def bytes_for(self, samples: int) -> int:
        return self.bytes_per_sample * samples if self.per_sample else self.fixed_bytes


@dataclass(frozen=True)
class TrainingOp:
    """One op of the iteration. Sizes are per sample; :meth:`gemms` scales them to a batch."""

    name: str
    phase: str
    layer: str
    kind: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    roles: tuple[str, ...] = ()  # GEMM roles of a conv/fc op (FWD or DGRAD/WGRAD)
    vector: VectorWork | None = None  # vector work per sample (whole op for UPDATE)
    weights: str | None = None
    weight_grad: str | None = None
    spans_batch: bool = False  # statistics span the mini-batch (batch normalization)
    # a forward op run again at the start of its group's backward pass (activation
    # recomputation): same work and tensors as the forward op it copies, moved to the backward
    recompute: bool = False

    @property
    def is_gemm(self) -> bool:
        return bool(self.roles)


@dataclass(eq=False)  # compared and hashed by identity: it keys the planners' caches
class TrainingGraph:
    """All ops and tensors of one iteration at a given mini-batch size."""

    network: Network
    batch: int
    ops: list[TrainingOp]
    tensors: dict[str, TensorInfo]
    consumers: dict[str, list[str]] = field(default_factory=dict)

    def gemms(self, op: TrainingOp, samples: int | None = None) -> list[GemmShape]:
        """The op's GEMMs for ``samples`` samples (default: the whole mini-batch)."""
        return [
            gemm_shape(self.network.layer(op.layer), role, samples or self.batch)
            for role in op.roles
        ]

    def macs_per_sample(self) -> dict[str, int]:
        totals = {FWD: 0, DGRAD: 0, WGRAD: 0}
        for op in self.ops:
            for g in self.gemms(op, 1):
                totals[g.role] += g.macs
        return totals

    def saved_bytes_per_sample(self) -> int:
        return sum(t.bytes_per_sample for t in self.tensors.values() if t.saved)


def gemm_shape(layer: Layer, role: str, samples: int) -> GemmShape:
    """The GEMM of one role of a conv or fc layer over ``samples`` samples."""
    cin, h, w = layer.in_shape
    cout, ho, wo = layer.out_shape
    if layer.kind == "fc":
        g, rows, red, cols = 1, samples, cin * h * w, cout
    else:
        g = layer.groups
        rows = samples * ho * wo
        red = cin // g * layer.kernel[0] * layer.kernel[1]
        cols = cout // g
    if role == FWD:
        return GemmShape(FWD, rows, red, cols, g)
    if role == DGRAD:
        return GemmShape(DGRAD, rows, cols, red, g)
    if role == WGRAD:
        return GemmShape(WGRAD, red, rows, cols, g)
    raise ValueError(role)


def _elements(shape: tuple[int, int, int]) -> int:
    return shape[0] * shape[1] * shape[2]


@dataclass(frozen=True)
class ActivationCost:
    """Vector-unit ops per element of an activation, and what its backward op reads."""

    fwd_ops: int
    bwd_ops: int
    saves_output: bool  # backward reads the output y (else the input x)


# Ops per element, counting every add, multiply, compare/select and transcendental (exp, tanh,
# reciprocal) as one lane-op: an assumption (the vector unit is taken to have one
# transcendental unit per lane at one op per cycle), not a published figure.
#   relu6        fwd max, min                       bwd 0<y<6 mask, select           (reads y)
#   sigmoid      fwd exp, add, reciprocal           bwd y*(1-y)*dy: sub, mul, mul    (reads y)
#   hardsigmoid  fwd x/6+1/2 (fma), max, min        bwd 0<y<1 mask, select*1/6       (reads y)
#   hardswish    fwd hardsigmoid, mul               bwd piecewise (x/3+1/2)*dy       (reads x)
#   silu         fwd sigmoid, mul                   bwd s=sigmoid(x), dy*s*(1+x(1-s)) (reads x)
#   gelu (tanh)  fwd x^3, fma, mul, tanh, add, mul  bwd recompute tanh t, derivative (reads x)
ACTIVATION_COSTS = {
    "relu6": ActivationCost(2, 2, True),
    "sigmoid": ActivationCost(3, 3, True),
    "hardsigmoid": ActivationCost(3, 3, True),
    "hardswish": ActivationCost(4, 4, False),
    "silu": ActivationCost(4, 7, False),
    "gelu": ActivationCost(8, 12, False),
}


def _forward_vector(layer: Layer) -> VectorWork:
    out_elems = _elements(layer.out_shape)
    if layer.kind in ("norm", "layernorm"):  # statistics pass (sum, sum of squares), then apply
        return VectorWork(out_elems, 2, 2)
    if layer.kind == "act":
        return VectorWork(out_elems, 1, ACTIVATION_COSTS[layer.function].fwd_ops)
    if layer.kind == "scale":  # gamma * x (+ beta)
        return VectorWork(out_elems, 1, 2 if layer.bias else 1)
    if layer.kind in ("maxpool", "avgpool"):
        return VectorWork(out_elems, 1, layer.kernel[0] * layer.kernel[1])
    if layer.kind == "gap":
        return VectorWork(_elements(layer.in_shape), 1, 1)
    if layer.kind == "add":
        return VectorWork(out_elems, 1, len(layer.inputs) - 1)
    return VectorWork(out_elems, 1, 1)  # relu, concat (a copy)


def _backward_vector(layer: Layer) -> VectorWork:
    if layer.kind in ("norm", "layernorm"):  # reduce sum(dy), sum(dy*xhat); then apply
        return VectorWork(_elements(layer.out_shape), 2, 3)
    if layer.kind == "act":
        return VectorWork(_elements(layer.out_shape), 1, ACTIVATION_COSTS[layer.function].bwd_ops)
    if layer.kind == "mul":  # dx = dy*s; ds = dy*x, summed over H*W when s is broadcast
        broadcast = layer.in_shapes[1] != layer.out_shape
        return VectorWork(_elements(layer.out_shape), 1, 3 if broadcast else 2)
    if layer.kind == "scale":  # dx = dy*gamma; dgamma += dy*x (; dbeta += dy)
        return VectorWork(_elements(layer.out_shape), 1, 4 if layer.bias else 3)
    if layer.kind in ("maxpool", "avgpool"):
        return VectorWork(_elements(layer.out_shape), 1, layer.kernel[0] * layer.kernel[1])
    if layer.kind == "gap":
        return VectorWork(_elements(layer.in_shape), 1, 1)
    return VectorWork(_elements(layer.out_shape), 1, 1)  # relu, concat (split copy)


# Loss: softmax cross-entropy fused with its gradient: max, exp-sum, normalise-and-subtract.
LOSS_PASSES, LOSS_OPS_PER_ELEMENT = 3, 2
# SGD with momentum per parameter: m = mu*m + g; w -= lr*m; bf16 copy of w.
UPDATE_OPS_PER_PARAM = 4


#: Largest mini-batch compiled. Work and memory grow with the batch (the sub-batch list,
#: the instructions lowered), so a larger one is refused before anything is built; real
#: training batches are far below it (the paper's is 256).
MAX_BATCH = 1 << 20


def expand_training(network: Network, batch: int, cfg: HardwareConfig) -> TrainingGraph:
    """Expand ``network`` into the ops and tensors of one training iteration."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise WavecoreError(f"--batch must be a positive integer, got {batch!r}")
    if batch > MAX_BATCH:
        raise WavecoreError(
            f"--batch must be at most {MAX_BATCH} samples, got {batch}; lower --batch"
        )
    # A layer may list one input twice (``add`` of x and x, ``concat`` of x with itself): it
    # reads that tensor once and sends it one gradient, so each list below names it once.
    readers = {name: list(dict.fromkeys(users)) for name, users in network.consumers().items()}
    tensors: dict[str, TensorInfo] = {}
    saved: set[str] = set()

    def act(name: str) -> str:
        return f"A:{name}"

    shapes = {"input": network.input_shape} | {ly.name: ly.out_shape for ly in network.layers}
    for name, shape in shapes.items():
        tensors[act(name)] = TensorInfo(
            act(name), "activation", _elements(shape) * cfg.act_bytes, shape=shape
        )

    def passes_through(src: str, consumer: str) -> bool:
        """An add hands its gradient to a full-shape input unchanged; a (C, 1, 1) input
        broadcast over H and W gets the gradient summed over H and W instead."""
        layer = network.layer(consumer)
        return layer.kind == "add" and shapes[src] == layer.out_shape

    def grad_of(name: str) -> str:
        """Name of the gradient of ``name``'s output (an add passes its gradient through)."""
        users = readers[name]
        if len(users) == 1 and passes_through(name, users[0]):
            return grad_of(users[0])
        return f"G:{name}"

    def contribution(consumer: str, src: str) -> str:
        """The tensor that ``consumer``'s backward op writes as its share of src's gradient."""
        if passes_through(src, consumer):
            return grad_of(consumer)
        return grad_of(src) if len(readers[src]) == 1 else f"G:{src}@{consumer}"

    def add_grad(name: str, shape: tuple[int, int, int]) -> None:
        tensors.setdefault(
            name, TensorInfo(name, "gradient", _elements(shape) * cfg.grad_bytes, shape=shape)
        )

    # A tensor needs a gradient only if a parameter lies upstream of it (never the image).
    needs_grad: set[str] = set()
    for layer in network.layers:
        if layer.params or any(s in needs_grad for s in layer.inputs):
            needs_grad.add(layer.name)

    fwd_ops: list[TrainingOp] = []
    loss_ops: list[TrainingOp] = []
    bwd_ops: list[TrainingOp] = []
    update_ops: list[TrainingOp] = []
    for layer in network.layers:
        srcs = tuple(dict.fromkeys(act(s) for s in layer.inputs))
        if layer.params:
            for prefix, kind, size in (
                ("W", "weight", cfg.weight_bytes),
                ("dW", "weight_grad", cfg.weight_grad_bytes),
                ("W32", "master_weight", cfg.master_weight_bytes),
                ("M", "optimizer", cfg.optimizer_state_bytes),
            ):
                tensors[f"{prefix}:{layer.name}"] = TensorInfo(
                    f"{prefix}:{layer.name}", kind, fixed_bytes=layer.params * size
                )
        weights = f"W:{layer.name}" if layer.params else None
        if layer.kind == "loss":
            (src,) = layer.inputs
            out = contribution(layer.name, src)
            add_grad(out, layer.in_shape)
            classes = layer.in_shape[0]
            loss_ops.append(
                TrainingOp(
                    f"loss:{layer.name}",
                    "LOSS",
                    layer.name,
                    "loss",
                    srcs,
                    (out,),
                    vector=VectorWork(classes, LOSS_PASSES, LOSS_OPS_PER_ELEMENT),
                )
            )
            continue
        is_norm_bn = layer.kind == "norm" and layer.norm == "bn"
        if layer.is_gemm:
            fwd_ops.append(
                TrainingOp(
                    f"fwd:{layer.name}",
                    "FWD",
                    layer.name,
                    layer.kind,
                    srcs,
                    (act(layer.name),),
                    roles=(FWD,),
                    weights=weights,
                )
            )
        else:
            fwd_ops.append(
                TrainingOp(
                    f"fwd:{layer.name}",
                    "FWD",
                    layer.name,
                    layer.kind,
                    srcs + ((weights,) if weights else ()),
                    (act(layer.name),),
                    vector=_forward_vector(layer),
                    spans_batch=is_norm_bn,
                )
            )
        if layer.kind == "add":
            # Full-shape inputs get the gradient unchanged (see grad_of); a broadcast
            # (C, 1, 1) input gets it summed over H and W, by a backward op of its own.
            summed = [
                s
                for s in dict.fromkeys(layer.inputs)
                if s in needs_grad and not passes_through(s, layer.name)
            ]
            if summed:
                for s in summed:
                    add_grad(contribution(layer.name, s), shapes[s])
                bwd_ops.append(
                    TrainingOp(
                        f"bwd:{layer.name}",
                        "BWD",
                        layer.name,
                        layer.kind,
                        (grad_of(layer.name),),
                        tuple(contribution(layer.name, s) for s in summed),
                        vector=VectorWork(_elements(layer.out_shape), 1, len(summed)),
                    )
                )
            continue
        needs_input_grad = any(s in needs_grad for s in layer.inputs)
        outs = tuple(
            dict.fromkeys(contribution(layer.name, s) for s in layer.inputs if s in needs_grad)
        )
        for s in layer.inputs:
            if s in needs_grad:
                add_grad(contribution(layer.name, s), shapes[s])
        dy = grad_of(layer.name)
        if layer.is_gemm:
            saved.add(srcs[0])
            roles = (DGRAD, WGRAD) if needs_input_grad else (WGRAD,)
            bwd_ops.append(
                TrainingOp(
                    f"bwd:{layer.name}",
                    "BWD",
                    layer.name,
                    layer.kind,
                    (dy, srcs[0]),
                    outs,
                    roles=roles,
                    weights=weights,
                    weight_grad=f"dW:{layer.name}",
                )
            )
        else:
            need = {
                "norm": srcs,
                "layernorm": srcs,
                "relu": (act(layer.name),),
                "mul": srcs,
                "scale": srcs,
                "maxpool": (*srcs, act(layer.name)),
            }.get(layer.kind, ())
            if layer.kind == "act":
                need = (act(layer.name),) if ACTIVATION_COSTS[layer.function].saves_output else srcs
            if not outs and not layer.params:
                continue  # no input needs a gradient and no weights to train
            saved.update(need)
            vector = _backward_vector(layer)
            if not outs:  # weight gradient only: the reduction pass, no input-gradient pass
                vector = VectorWork(vector.elements, 1, vector.ops_per_element)
            bwd_ops.append(
                TrainingOp(
                    f"bwd:{layer.name}",
                    "BWD",
                    layer.name,
                    layer.kind,
                    (dy, *need) + ((weights,) if weights else ()),
                    outs,
                    vector=vector,
                    weights=weights,
                    weight_grad=f"dW:{layer.name}" if layer.params else None,
                    spans_batch=is_norm_bn,
                )
            )
        if layer.params:
            update_ops.append(
                TrainingOp(
                    f"update:{layer.name}",
                    "UPDATE",
                    layer.name,
                    "update",
                    (f"W32:{layer.name}", f"M:{layer.name}", f"dW:{layer.name}"),
                    (f"W32:{layer.name}", f"M:{layer.name}", f"W:{layer.name}"),
                    vector=VectorWork(layer.params, 1, UPDATE_OPS_PER_PARAM),
                )
            )

    # Backward in reverse order; a fan-out tensor's gradient is summed before any backward op
    # reads it (all its consumers come later in forward order, so earlier here). The readers
    # are the producer's backward op or, for an add (which has none), its inputs' ops.
    backward: list[TrainingOp] = []
    bwd_by_layer = {op.layer: op for op in bwd_ops}

    def parts_of(name: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(contribution(u, name) for u in readers[name]))

    # The gradients read: by a backward op, or by the sum of an earlier layer's gradient (a
    # part passed through an add, e.g. of x and x, that no backward op reads), forward order.
    read_by_bwd = {n for op in bwd_ops for n in op.reads}
    for layer in network.layers:
        if f"G:{layer.name}" in read_by_bwd and len(readers[layer.name]) > 1:
            read_by_bwd.update(parts_of(layer.name))
    for layer in reversed(network.layers):
        dy = f"G:{layer.name}"
        users = readers[layer.name]
        if dy in read_by_bwd and len(users) > 1:
            parts = parts_of(layer.name)
            add_grad(dy, layer.out_shape)
            backward.append(
                TrainingOp(
                    f"gradsum:{layer.name}",
                    "GRADSUM",
                    layer.name,
                    "gradsum",
                    parts,
                    (dy,),
                    vector=VectorWork(_elements(layer.out_shape), 1, len(parts) - 1),
                )
            )
        if layer.name in bwd_by_layer:
            backward.append(bwd_by_layer[layer.name])

    tensors = {
        name: (
            TensorInfo(t.name, t.kind, t.bytes_per_sample, t.fixed_bytes, t.shape, True)
            if name in saved
            else t
        )
        for name, t in tensors.items()
    }
    ops = fwd_ops + loss_ops + backward + update_ops
    used = {n for op in ops for n in op.reads + op.writes}
    tensors = {n: t for n, t in tensors.items() if n in used}
    consumers: dict[str, list[str]] = {n: [] for n in tensors}
    for op in ops:
        for n in op.reads:
            consumers[n].append(op.name)
    return TrainingGraph(network, batch, ops, tensors, consumers)
