"""Buffer-fit rules shared by the schedule and the compiler: blocks, chunks and working sets.

A *step* is one training op run on one sub-batch. Its rows are the output positions
``(sample, output row, output column)``; a step is cut into *blocks* of whole samples or into
bands of output rows of one sample. Every operand that lives in DRAM is staged through the
buffer block by block, double-buffered so the next block loads while this one computes. GEMM
weights are loaded whole when they fit in the role's share of the step's space, else in
column *chunks* of whole array widths (double-buffered), the chunk loop outside the block
loop; dW chunks stay put while the blocks stream.

Working set of a step with block ``b`` and chunk width ``Nc`` (bytes)::

    W(b, Nc) = sum_{DRAM operands o} 2 * bytes_o(b)          # staging, double-buffered
             + weight_slots * (K + bias) * Nc * weight_bytes  # 1 slot if whole, else 2
             + cores * ceil(rows(b) / cores) * C * accum_bytes  # partial sums (FWD/DGRAD)
             + Mw * Nc * weight_grad_bytes                     # dW chunk (WGRAD)
             + |W| + |dW|                                  # a vector op's weights and dW

``bytes_o(b)`` is taken for the largest block of the cut (an interior row band's halo is not
clipped by the padding). Among the cuts that fit, :func:`plan_step` takes the one with the
shortest estimated time (see there). The smallest legal step, one output row with one
single-buffered array width of weights, is the buffer-fit rule the schedule checks; if even
that exceeds the space left by the resident tensors, the configuration is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .config import HardwareConfig
from .errors import WavecoreError
from .training import DGRAD, FWD, WGRAD, TrainingGraph, TrainingOp, gemm_shape
from .workload import Layer

# Keep at least this many blocks in a step that streams DRAM data, so loads of block j+1
# overlap compute of block j; with 4 blocks at most a quarter of the traffic is exposed.
MIN_PIPELINE_BLOCKS = 4

# Bytes of a step's free space not handed to its working set: room for the 64-byte alignment
# of every region the step allocates.
ALIGN_SLACK = 4096

#: alignment of every global-buffer allocation (``schedule.FirstFit``)
ALIGNMENT = 64


def aligned_bytes(size: int) -> int:
    """Bytes one allocation of ``size`` takes in the buffer (rounded up to the alignment)."""
    return -(-max(size, 1) // ALIGNMENT) * ALIGNMENT


@dataclass(frozen=True)
class Block:
    """Samples ``[n0, n1)`` and output rows ``[r0, r1)`` of each of them."""

    n0: int
    n1: int
    r0: int
    r1: int

    @property
    def samples(self) -> int:
        return self.n1 - self.n0


@dataclass(frozen=True)
class Operand:
    """A batch-scaled tensor as a step sees it: rows needed per block of output rows."""

    tensor: str
    shape: tuple[int, int, int]  # per sample (C, H, W)
    elem_bytes: int
    kernel: int = 1  # row window of the op on this operand (1: row to row)
    stride: int = 1
    padding: int = 0
    whole_sample: bool = False  # the op needs the whole sample (fc, gap, loss)
    written: bool = False  # the op writes this operand (an input gradient, for DGRAD)

    @property
    def row_bytes(self) -> int:
        return self.shape[0] * self.shape[2] * self.elem_bytes

    @property
    def sample_bytes(self) -> int:
        return self.row_bytes * self.shape[1]

    def rows_for(self, r0: int, r1: int, out_rows: int) -> tuple[int, int]:
        """Rows of this operand needed to produce output rows ``[r0, r1)``. A written
        operand's bands also cover the rows up to the next band's first (and the last band
        the rows below it): a window narrower than its stride (a strided 1x1 convolution)
        skips rows, whose input gradient is zero but still written. A band whose windows all
        lie in the padding (a padding wider than the kernel: the edge rows of a 1x1
        convolution with padding 2) takes the nearest row: every block reads (or writes)
        some of every operand, as its instructions say (an empty range would be no access)."""
        h = self.shape[1]
        # h == 1 < out_rows: a per-channel (C, 1, 1) operand broadcast over the rows (the
        # scale of a squeeze-and-excitation mul, or its gradient): every band needs all of it.
        if self.whole_sample or (r0 == 0 and r1 == out_rows) or h == 1:
            return 0, h
        lo = max(0, r0 * self.stride - self.padding)
        hi = min(h, (r1 - 1) * self.stride - self.padding + self.kernel)
        if self.written:
            lo = 0 if r0 == 0 else lo
            hi = h if r1 == out_rows else max(hi, min(h, r1 * self.stride - self.padding))
        if hi <= lo:  # every window in the padding (wider than the kernel): the nearest row
            lo = min(lo, h - 1)
            hi = lo + 1
        return lo, hi

    def block_bytes(self, block: Block, out_rows: int) -> int:
        lo, hi = self.rows_for(block.r0, block.r1, out_rows)
        return block.samples * (hi - lo) * self.row_bytes


def make_blocks(
    samples: int, out_rows: int, samples_per_block: int, rows_per_band: int
) -> list[Block]:
    """Whole-sample blocks when ``samples_per_block >= 1``, else row bands of one sample."""
    if samples_per_block >= 1:
        return [
            Block(n, min(samples, n + samples_per_block), 0, out_rows)
            for n in range(0, samples, samples_per_block)
        ]
    return [
        Block(n, n + 1, r, min(out_rows, r + rows_per_band))
        for n in range(samples)
        for r in range(0, out_rows, rows_per_band)
    ]


@dataclass(frozen=True)
class GemmPlan:
    """How one GEMM role of a step is tiled."""

    role: str
    m: int  # streamed rows per block (FWD/DGRAD: positions; WGRAD: Cin*kh*kw or Cout)
    k: int  # reduction per block (WGRAD: positions)
    n: int
    groups: int
    chunk_cols: int  # stationary columns per chunk
    weight_slots: int  # 1 (whole weights, or chunks that cannot double-buffer) or 2
    transposed: bool = False  # WGRAD computed as dW^T = dO^T x im2col(I)
    bias: int = 0  # 1 when the layer has a bias (an extra weight row; extra dW entries)

    @property
    def chunks(self) -> int:
        return math.ceil(self.n / self.chunk_cols)

    def col_bytes(self, cfg: HardwareConfig) -> int:
        """Stationary bytes per column: weights (FWD/DGRAD) or dW accumulators (WGRAD).

        The bias travels with the weights of the forward pass (one more row of W) and with
        the dW of the untransposed WGRAD (one more row of dW); DGRAD does not need it."""
        if self.role == WGRAD:
            rows = self.m + (0 if self.transposed else self.bias)
            return rows * self.groups * cfg.weight_grad_bytes
        return (self.k + (self.bias if self.role == FWD else 0)) * self.groups * cfg.weight_bytes

    def extra_bytes(self, cfg: HardwareConfig) -> int:
        """Bytes held beside the columns with chunk 0: the bias gradient of a transposed
        WGRAD (one value per output channel, which are its rows)."""
        if self.role == WGRAD and self.transposed and self.bias:
            return self.m * self.groups * cfg.weight_grad_bytes
        return 0

    def chunk_range(self, chunk: int, cfg: HardwareConfig) -> tuple[int, int]:
        """(offset in the tensor, bytes) of stationary chunk ``chunk``."""
        cols = min(self.chunk_cols, self.n - chunk * self.chunk_cols)
        extra = self.extra_bytes(cfg)
        lo = chunk * self.chunk_cols * self.col_bytes(cfg) + (extra if chunk else 0)
        return lo, cols * self.col_bytes(cfg) + (0 if chunk else extra)

    def slot_bytes(self, cfg: HardwareConfig) -> int:
        return self.chunk_cols * self.col_bytes(cfg) + self.extra_bytes(cfg)


@lru_cache(maxsize=8192)  # asked again for every candidate group; the graph keys by identity
def step_operands(
    graph: TrainingGraph, op: TrainingOp, cfg: HardwareConfig
) -> tuple[tuple[Operand, ...], tuple[Operand, ...], int]:
    """Batch-scaled input and output operands of an op and its output rows per sample.

    Blocks run over the layer's output positions. Tensors on the layer's input side of a
    convolution or pooling layer (its input activation, and the gradient flowing back to it)
    need a window of rows per output row; output-side tensors map row to row.
    """
    tensors = graph.tensors
    layer = graph.network.layer(op.layer)
    output_side = {f"A:{layer.name}"} | ({op.reads[0]} if op.phase == "BWD" else set())
    windowed_layer = layer.kind in ("conv", "maxpool", "avgpool") and op.phase in ("FWD", "BWD")
    whole = layer.kind in ("fc", "gap", "loss")
    eff_kernel = layer.dilation[0] * (layer.kernel[0] - 1) + 1

    def operand(name: str, written: bool) -> Operand:
        t = tensors[name]
        elem = cfg.act_bytes if t.kind == "activation" else cfg.grad_bytes
        if windowed_layer and name not in output_side:
            return Operand(
                name, t.shape, elem, eff_kernel, layer.stride[0], layer.padding[0], written=written
            )
        return Operand(name, t.shape, elem, whole_sample=whole, written=written)

    reads = tuple(operand(t, False) for t in op.reads if tensors[t].per_sample)
    writes = tuple(operand(t, True) for t in op.writes if tensors[t].per_sample)
    return reads, writes, layer.out_shape[1]


def gemm_plans(
    layer: Layer,
    op: TrainingOp,
    samples: int,
    positions_per_block: int,
    space: int,
    cfg: HardwareConfig,
    minimal: bool = False,
) -> list[GemmPlan]:
    """Tiling of each GEMM role of ``op`` given the bytes left for weights and dW chunks.

    Whole weights (or dW) when they fit the role's share of ``space``, else chunks of whole
    array widths: double-buffered weight chunks, one dW chunk. ``minimal`` gives the smallest
    legal footprint instead: one array width, one weight slot, and the WGRAD orientation with
    the narrower dW column."""
    plans = []
    bias = 1 if layer.bias else 0
    for role in op.roles:
        g = gemm_shape(layer, role, samples)
        if role == WGRAD:
            m, n, transposed = g.m, g.n, False
            # Stream the longer of Cin*kh*kw and Cout so weight loads hide behind the stream,
            # unless only the other orientation fits.
            if g.n > g.m:
                m, n, transposed = g.n, g.m, True
            if minimal and m > n:
                m, n, transposed = n, m, not transposed
            k = positions_per_block
        else:
            m, n, transposed, k = positions_per_block, g.n, False, g.k
        plan = GemmPlan(role, m, k, n, g.groups, n, 1, transposed, bias)
        whole = plan.slot_bytes(cfg)
        budget = space // 2 if len(op.roles) == 1 else space // 4
        if whole <= budget:
            plans.append(plan)
            continue
        per_col = plan.col_bytes(cfg)
        slots = 1 if role == WGRAD or minimal else 2
        chunk = (
            cfg.array_cols
            if minimal
            else max(
                cfg.array_cols,
                ((budget - plan.extra_bytes(cfg)) // (slots * per_col))
                // cfg.array_cols
                * cfg.array_cols,
            )
        )
        plans.append(GemmPlan(role, m, k, n, g.groups, min(n, chunk), slots, transposed, bias))
    return plans


def gemm_chunk_bytes(plan: GemmPlan, cfg: HardwareConfig) -> int:
    """Bytes of one stationary chunk slot (weights for FWD/DGRAD, dW accumulators for WGRAD)."""
    return plan.slot_bytes(cfg)


def psum_bytes(plan: GemmPlan, cfg: HardwareConfig) -> int:
    """Partial-sum space for FWD/DGRAD blocks whose reduction spans several array heights."""
    if plan.role == WGRAD or plan.k <= cfg.array_rows:
        return 0
    per_core = math.ceil(plan.m / cfg.cores)
    return cfg.cores * per_core * min(plan.n, cfg.array_cols) * cfg.accum_bytes


def step_working_set(
    block_bytes_dram: int, plans: list[GemmPlan], cfg: HardwareConfig, weights_resident: bool
) -> int:
    """Bytes a step needs beyond its resident tensors (see the module docstring)."""
    total = 2 * block_bytes_dram
    for plan in plans:
        if plan.role == WGRAD or not weights_resident:
            total += plan.weight_slots * gemm_chunk_bytes(plan, cfg)
        total += psum_bytes(plan, cfg)
    return total


def vector_held_bytes(graph: TrainingGraph, op: TrainingOp, weights_resident: bool) -> int:
    """Bytes a vector step allocates whole beside its blocks, as the lowering does: its
    weights (a norm's scale and shift) unless kept on chip, and its weight-gradient
    accumulators (counted even when kept on chip across sub-batches, as a WGRAD chunk is),
    each rounded to the alignment."""
    tensors = graph.tensors
    held = [op.weight_grad] + ([] if weights_resident else [op.weights])
    return sum(aligned_bytes(tensors[t].fixed_bytes) for t in held if t)


@dataclass(frozen=True)
class StepTiling:
    """The blocks and GEMM plans a step uses."""

    blocks: tuple[Block, ...]
    plans: tuple[GemmPlan, ...]
    out_rows: int
    working_set: int


def _staged_operands(
    graph: TrainingGraph,
    op: TrainingOp,
    dram_inputs: set[str],
    dram_only_outputs: set[str],
    cfg: HardwareConfig,
) -> tuple[list[Operand], int, bool]:
    ins, outs, out_rows = step_operands(graph, op, cfg)
    staged = [o for o in ins if o.tensor in dram_inputs] + [
        o for o in outs if o.tensor in dram_only_outputs
    ]
    whole_sample = any(o.whole_sample for o in ins + outs)
    return staged, out_rows, whole_sample


def _largest_block_bytes(o: Operand, block: Block, out_rows: int) -> int:
    """Bytes of the largest block cut like ``block``: for row bands, the first band's halo is
    clipped by the padding, so an interior (or the last) band can need more rows."""
    rows = block.r1 - block.r0
    if rows >= out_rows:
        return o.block_bytes(block, out_rows)
    starts = {0, rows, (out_rows - 1) // rows * rows}
    return max(
        o.block_bytes(Block(0, 1, r, min(out_rows, r + rows)), out_rows)
        for r in starts
        if r < out_rows
    )


def _block_working_set(
    graph: TrainingGraph,
    op: TrainingOp,
    samples: int,
    staged: list[Operand],
    out_rows: int,
    block: Block,
    space: int,
    cfg: HardwareConfig,
    weights_resident: bool,
    narrow: bool = True,
) -> tuple[int, list[GemmPlan]]:
    layer = graph.network.layer(op.layer)
    dram_bytes = sum(_largest_block_bytes(o, block, out_rows) for o in staged)
    positions = block.samples * (block.r1 - block.r0) * layer.out_shape[2]
    if not op.is_gemm:
        held = vector_held_bytes(graph, op, weights_resident)
        return step_working_set(dram_bytes, [], cfg, weights_resident) + held, []
    plans = gemm_plans(layer, op, samples, positions, max(0, space - 2 * dram_bytes), cfg)
    need = step_working_set(dram_bytes, plans, cfg, weights_resident)
    if need > space and narrow:  # wide chunks did not fit: the smallest legal footprint
        plans = gemm_plans(layer, op, samples, positions, 0, cfg, minimal=True)
        need = step_working_set(dram_bytes, plans, cfg, weights_resident)
    return need, plans


def min_step_bytes(
    graph: TrainingGraph,
    op: TrainingOp,
    samples: int,
    dram_inputs: set[str],
    dram_only_outputs: set[str],
    cfg: HardwareConfig,
    weights_resident: bool = False,
) -> int:
    """Working set of the smallest legal block: one output row (one sample if it must be
    whole), one array width of weight columns. The buffer-fit rule checks this."""
    staged, out_rows, whole_sample = _staged_operands(
        graph, op, dram_inputs, dram_only_outputs, cfg
    )
    block = Block(0, 1, 0, out_rows if whole_sample else 1)
    need, _ = _block_working_set(
        graph, op, samples, staged, out_rows, block, 0, cfg, weights_resident
    )
    return need


def plan_step(
    graph: TrainingGraph,
    op: TrainingOp,
    samples: int,
    dram_inputs: set[str],
    dram_only_outputs: set[str],
    space: int,
    cfg: HardwareConfig,
    weights_resident: bool = False,
) -> StepTiling:
    """Largest-benefit blocks whose working set fits in ``space`` bytes (memoised)."""
    return _plan_step_cached(
        graph,
        op,
        samples,
        frozenset(dram_inputs),
        frozenset(dram_only_outputs),
        space,
        cfg,
        weights_resident,
    )


@lru_cache(maxsize=4096)
def _plan_step_cached(
    graph: TrainingGraph,
    op: TrainingOp,
    samples: int,
    dram_inputs: frozenset[str],
    dram_only_outputs: frozenset[str],
    space: int,
    cfg: HardwareConfig,
    weights_resident: bool,
) -> StepTiling:
    """Largest blocks (whole samples first) whose working set fits in ``space`` bytes.

    ``dram_inputs`` are staged from DRAM; ``dram_only_outputs`` are staged to DRAM. Raises
    WavecoreError when not even the smallest block fits.
    """
    staged, out_rows, whole_sample = _staged_operands(
        graph, op, dram_inputs, dram_only_outputs, cfg
    )

    layer = graph.network.layer(op.layer)

    def shapes_of(block: Block) -> list[tuple[Block, int]]:
        """The distinct block shapes of a cut like ``block`` and how often each occurs."""
        if block.r1 - block.r0 == out_rows:
            full, rest = divmod(samples, block.samples)
            out = [(Block(0, block.samples, 0, out_rows), full)]
            return out + ([(Block(0, rest, 0, out_rows), 1)] if rest else [])
        rows = block.r1 - block.r0
        full, rest = divmod(out_rows, rows)
        out = [(Block(0, 1, 0, rows), full * samples)]
        return out + ([(Block(0, 1, out_rows - rest, out_rows), samples)] if rest else [])

    max_samples = samples
    if staged and samples >= MIN_PIPELINE_BLOCKS:
        max_samples = math.ceil(samples / MIN_PIPELINE_BLOCKS)
    candidates = [Block(0, n, 0, out_rows) for n in _descending(max_samples)]
    if not whole_sample:
        max_rows = out_rows
        if staged and samples < MIN_PIPELINE_BLOCKS:
            max_rows = max(1, math.ceil(out_rows / MIN_PIPELINE_BLOCKS))
        candidates += [Block(0, 1, 0, r) for r in _descending(max_rows) if r < out_rows]
    # Among the blocks that fit, take the one with the shortest estimated time: the larger of
    # its GEMM time (shared tile formula, rows split over cores) and its DRAM time (narrow
    # weight chunks re-read every staged input once per chunk); ties go to larger blocks.
    from .timing import gemm_timing

    staged_inputs = [o for o in staged if o.tensor not in dram_only_outputs]
    staged_outputs = [o for o in staged if o.tensor in dram_only_outputs]
    best: tuple[tuple[float, int], Block, list[GemmPlan], int] | None = None
    for block in candidates:
        need, plans = _block_working_set(
            graph, op, samples, staged, out_rows, block, space, cfg, weights_resident, True
        )
        if need > space:
            continue
        shapes = shapes_of(block)
        reads = sum(o.block_bytes(b, out_rows) * n for o in staged_inputs for b, n in shapes)
        writes = sum(o.block_bytes(b, out_rows) * n for o in staged_outputs for b, n in shapes)
        chunks = max((p.chunks for p in plans), default=1)
        weights = (
            sum(gemm_chunk_bytes(p, cfg) * p.chunks for p in plans if p.role != WGRAD)
            if not weights_resident
            else 0
        )
        memory = (reads * chunks + writes + weights) / cfg.hbm_bytes_per_cycle
        compute = 0
        for p in plans:
            for b, n in shapes:
                positions = b.samples * (b.r1 - b.r0) * layer.out_shape[2]
                m, k = (p.m, positions) if p.role == WGRAD else (positions, p.k)
                cols = min(p.chunk_cols, p.n)
                compute += (
                    n
                    * p.chunks
                    * p.groups
                    * gemm_timing(math.ceil(m / cfg.cores), k, cols, cfg).total
                )
        cost = (max(memory, compute), -block.samples * (block.r1 - block.r0))
        if best is None or cost < best[0]:
            best = (cost, block, plans, need)
    if best is not None:
        _, block, plans, need = best
        if block.r1 - block.r0 == out_rows:
            blocks = make_blocks(samples, out_rows, block.samples, out_rows)
        else:
            blocks = make_blocks(samples, out_rows, 0, block.r1 - block.r0)
        return StepTiling(tuple(blocks), tuple(plans), out_rows, need)
    raise WavecoreError(
        f"layer {op.layer!r} ({op.phase}) cannot run in the global buffer: it "
        f"needs more than the {space} bytes left; raise gbuf_bytes"
    )


def _descending(n: int) -> list[int]:
    """Candidate sizes n, then halvings: a short list so planning stays fast."""
    out, v = [], n
    while v >= 1:
        out.append(v)
        if v == 1:
            break
        v = math.ceil(v / 2)
    return out


ROLES = (FWD, DGRAD, WGRAD)


def clear_caches() -> None:
    """Forget the memoised step plans (they key on, and so keep alive, training graphs)."""
    step_operands.cache_clear()
    _plan_step_cached.cache_clear()
