"""Lower a schedule to per-unit instruction streams.

Loop nest of one step (one op on one sub-batch)::

    for role in op's GEMM roles (FWD | DGRAD, WGRAD) or the vector op's sweeps:
        for chunk c of stationary columns:            # weights (FWD/DGRAD) or dW (WGRAD)
            load weight chunk c (unless kept on chip)  /  load partial dW chunk (RMW)
            for block j of output positions:
                load DRAM operands of block j into staging slot j % 2
                tiles: for n-fold, for k-fold, for core: GEMM(m_core, k_t, n_t)
                store DRAM-only outputs from slot j % 2; write-through stores of kept outputs
            store dW chunk c (unless kept on chip across sub-batches)

Work is split across cores along the streamed rows ``M`` (FWD/DGRAD: the block's positions;
WGRAD: the ``Cin*kh*kw`` or ``Cout`` rows of dW), so the cores never write the same output
and no cross-core reduction is needed; a weight tile is read from the buffer by both cores,
which costs buffer bandwidth but no DRAM traffic. Vector work alternates blocks between the
vector units; DMA alternates blocks between the per-core queues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import HardwareConfig
from ..errors import WavecoreError
from ..ir import (
    TRAFFIC_KINDS,
    Access,
    Gemm,
    GroupInfo,
    Mark,
    Op,
    Program,
    ProgramBuilder,
    Traffic,
    Transfer,
    Unit,
    UnitKind,
    Vector,
    machine_units,
)
from ..schedule import FirstFit, Group, SchedulePlan, StepIO
from ..tiling import ALIGN_SLACK, Block, GemmPlan, Operand, plan_step, step_operands
from ..training import DGRAD, FWD, WGRAD, TensorInfo, TrainingGraph, TrainingOp
from .dram import DramPlan
from .scoreboard import Scoreboard, add_dram_dependencies


def _share(a: Access, lo: int, hi: int, total: int) -> Access:
    """The bytes of ``a`` for items ``[lo, hi)`` of ``total`` spread evenly over it, never
    empty: a share of less than a byte gets the byte it starts in (inside ``a``, as
    ``lo < total``), which the next share covers too."""
    span = a.hi - a.lo
    first, last = a.lo + span * lo // total, a.lo + span * hi // total
    return Access(a.alloc, first, max(last, first + 1), a.acc)


def _part(accesses: tuple[Access, ...], part: int, parts: int) -> tuple[Access, ...]:
    """The ``part``-th of ``parts`` equal slices of each access (work split across units)."""
    if parts == 1:
        return accesses
    return tuple(_share(a, part, part + 1, parts) for a in accesses)


_TRAFFIC_OF_KIND = {
    "gradient": Traffic.GRADIENTS,
    "weight": Traffic.WEIGHTS,
    "weight_grad": Traffic.WEIGHT_GRADIENTS,
    "master_weight": Traffic.OPTIMIZER_STATE,
    "optimizer": Traffic.OPTIMIZER_STATE,
}


def traffic_kind(t: TensorInfo, is_load: bool, phase: str) -> Traffic:
    """Which DRAM-traffic category a transfer of tensor ``t`` belongs to."""
    if t.kind == "activation":
        backward = phase in ("BWD", "GRADSUM")
        if t.saved and (backward or not is_load):
            return Traffic.SAVED_ACTIVATIONS
        return Traffic.ACTIVATIONS
    return _TRAFFIC_OF_KIND[t.kind]


@dataclass
class _Source:
    """Where a step operand lives: a resident allocation or per-block staging slots."""

    operand: Operand
    resident: int | None  # alloc id when resident
    slots: tuple[int, int] | None = None  # staging alloc ids when streamed
    dram_base: int = 0


class Lowering:
    """Emits the program for one schedule; one instance per compile."""

    def __init__(
        self,
        graph: TrainingGraph,
        plan: SchedulePlan,
        cfg: HardwareConfig,
        dram: DramPlan,
        replay: bool = True,
    ) -> None:
        self.graph, self.plan, self.cfg, self.dram = graph, plan, cfg, dram
        self.replay = replay
        self.units = machine_units(cfg.cores)
        self.builder = ProgramBuilder(self.units, cfg.gbuf_bytes)
        self.unit_index = self.builder.unit_index
        self.cores = [Unit(UnitKind.CORE, c) for c in range(cfg.cores)]
        self.vecs = [Unit(UnitKind.VEC, c) for c in range(cfg.cores)]
        self.heap = FirstFit(cfg.gbuf_bytes)
        self.board = Scoreboard(cfg.gbuf_bytes)
        self.region: dict[str, int] = {}  # tensor -> DRAM region id, as first moved
        self.resident: dict[str, int] = {}
        self.group = -1
        self.phase = ""
        self.layer = ""
        self.planned = {
            "read": dict.fromkeys(TRAFFIC_KINDS, 0),
            "write": dict.fromkeys(TRAFFIC_KINDS, 0),
        }

    # ------------------------------------------------------------------ primitives

    def alloc(self, size: int, label: str) -> int:
        offset = self.heap.alloc(size)
        if offset is None:
            raise WavecoreError(
                f"internal: global buffer exhausted allocating {size} bytes for "
                f"{label} (group {self.group}); raise gbuf_bytes"
            )
        rounded = self.heap._round(max(size, 1))
        aid = self.builder.alloc(offset, rounded, label)
        self.board.on_alloc(aid, offset, rounded)
        return aid

    def alloc_size(self, aid: int) -> int:
        return self.builder.alloc_size(aid)

    def free(self, aid: int) -> None:
        self.heap.release(self.builder.alloc_offset(aid), self.builder.alloc_size(aid))
        self.board.on_free(aid)

    def emit(
        self,
        unit: Unit,
        op: Op,
        payload: Gemm | Vector | Transfer,
        reads: tuple[Access, ...],
        writes: tuple[Access, ...],
        label: str = "",
    ) -> int:
        b = self.builder
        b.set_step(self.group, self.layer, self.phase)
        deps = self.board.deps_for(
            b.count, self.unit_index[unit], reads, writes, in_order=unit.kind.finishes_in_order
        )
        return b.emit(unit, op, payload, reads, writes, deps, label)

    def dram_addr(self, tensor: str) -> int:
        """DRAM address of ``tensor`` (placed by the DRAM plan before lowering)."""
        if tensor not in self.region:
            addr = self.dram.addr.get(tensor)
            if addr is None:
                raise WavecoreError(
                    f"internal: tensor {tensor!r} is moved by the lowering but "
                    "has no place in the DRAM plan"
                )
            self.region[tensor] = self.builder.region(
                addr, self.dram.size[tensor], tensor, tensor in self.dram.persistent
            )
        return self.dram.addr[tensor]

    def transfer(self, op: Op, queue: Unit, tensor: str, addr: int, access: Access) -> int:
        t = self.graph.tensors[tensor]
        self.dram_addr(tensor)
        payload = Transfer(
            addr,
            access.hi - access.lo,
            traffic_kind(t, op == Op.LOAD, self.phase),
            self.region[tensor],
        )
        if op == Op.LOAD:
            return self.emit(queue, op, payload, (), (access,), tensor)
        return self.emit(queue, op, payload, (access,), (), tensor)

    def plan_bytes(self, direction: str, tensor: str, nbytes: int) -> None:
        """Record planned traffic (closed form, independent of the emitted transfers)."""
        t = self.graph.tensors[tensor]
        self.planned[direction][traffic_kind(t, direction == "read", self.phase).label] += nbytes

    def queue(self, direction: str, stream: str) -> Unit:
        """DMA queue of a transfer. Activation and gradient blocks stream through queue 0 in
        program order (each transfer already spans every HBM channel); weights, weight
        gradients and optimizer state use the last queue, so they load alongside the blocks.
        One stream per queue keeps consecutive steps from skewing against each other."""
        index = 0 if stream == "blocks" else self.cfg.cores - 1
        return Unit(UnitKind.DMA_LD if direction == "ld" else UnitKind.DMA_ST, index)

    # ------------------------------------------------------------------ whole program

    def run(self) -> Program:
        batch = self.graph.batch
        for group in self.plan.groups:
            self._pass(group, group.fwd, "forward")
        for group in reversed(self.plan.groups):
            self._pass(group, group.bwd, "backward")
        self._update_phase()
        info = [
            GroupInfo(
                g.index,
                list(g.layers),
                g.sub_batch,
                len(g.sub_batches(batch)),
                g.footprint_bytes,
                g.weights_resident,
                g.wgrad_resident,
                g.recompute,
            )
            for g in self.plan.groups
        ]
        return add_dram_dependencies(
            self.builder.finish(
                groups=info, planned=self.planned, dram_footprint=self.dram.footprint
            )
        )

    def _pass(self, group: Group, steps: list[StepIO], which: str) -> None:
        if not steps:
            return
        self.group = group.index
        weights: dict[str, tuple[int, int]] = {}  # tensor -> (alloc, 0)
        wgrads: dict[str, int] = {}
        keep_w = group.weights_resident
        if keep_w:
            self.phase = "FWD" if which == "forward" else "BWD"
            for st in steps:
                w = st.op.weights
                if w and w not in weights:
                    self.layer = st.op.layer
                    size = self.graph.tensors[w].fixed_bytes
                    aid = self.alloc(size, w)
                    self.plan_bytes("read", w, size)
                    self.transfer(
                        Op.LOAD,
                        self.queue("ld", "weights"),
                        w,
                        self.dram_addr(w),
                        Access(aid, 0, size),
                    )
                    weights[w] = (aid, 0)
        if which == "backward" and group.wgrad_resident:
            for st in steps:
                dw = st.op.weight_grad
                if dw:
                    wgrads[dw] = self.alloc(self.graph.tensors[dw].fixed_bytes, dw)
        self._sub_batches(group, steps, weights, wgrads)
        for dw, aid in wgrads.items():
            size = self.graph.tensors[dw].fixed_bytes
            self.phase, self.layer = "BWD", dw.split(":", 1)[1]
            self.plan_bytes("write", dw, size)
            self.transfer(
                Op.STORE, self.queue("st", "weights"), dw, self.dram_addr(dw), Access(aid, 0, size)
            )
            self.free(aid)
        for aid, _ in weights.values():
            self.free(aid)

    def _sub_batches(
        self,
        group: Group,
        steps: list[StepIO],
        weights: dict[str, tuple[int, int]],
        wgrads: dict[str, int],
    ) -> None:
        """The pass's steps for each sub-batch. A sub-batch after the first two of a run of
        equal sizes emits what the one before it did, with instruction, step and
        allocation ids moved by one block and DRAM addresses by one sub-batch: once two
        consecutive blocks show that (checked on every column), the rest of the run is
        appended as shifted copies instead of being lowered again, and the scoreboard's
        recorded ids are moved to match. ``replay=False`` lowers every block."""
        subs = group.sub_batches(self.graph.batch)
        marks: dict[int, tuple[Mark, tuple, dict]] = {}
        index = 0
        while index < len(subs):
            s0, ns = subs[index]
            # (index - 3 is unmarked when it lies in a run that was itself replayed)
            if (
                self.replay
                and index - 3 in marks
                and subs[index - 1][1] == subs[index - 2][1] == ns
            ):
                end = index
                while end < len(subs) and subs[end][1] == ns:
                    end += 1
                if self._replay(
                    marks[index - 3], marks[index - 2], marks[index - 1], self._mark(), end - index
                ):
                    index = end
                    continue
            marks[index] = self._mark()
            for st in steps:
                self._step(group, st, s0, ns, weights, wgrads, index, len(subs))
            index += 1

    def _mark(self) -> tuple[Mark, tuple, dict]:
        """The builder's counts, the buffer's free list and the planned bytes, now."""
        planned = {d: dict(kinds) for d, kinds in self.planned.items()}
        return self.builder.mark(), tuple(self.heap.free), planned

    def _replay(self, floor, first, second, end, copies: int) -> bool:
        """Append ``copies`` periods of the block ``[second, end)`` if it is block ``[first,
        second)`` shifted (ids below ``floor`` fixed); False (nothing done) otherwise."""
        (m0, _, _), (m1, heap1, _), (m2, heap2, planned2) = floor, first, second
        m3, heap3, planned3 = end
        if not heap1 == heap2 == heap3 or any(a >= m2.allocs for a in self.resident.values()):
            return False
        shift = self.builder.periodic_shift(m0, m1, m2, m3)
        if shift is None:
            return False
        self.builder.replay(m1, m2, m3, copies, shift)
        for direction, kinds in self.planned.items():
            for kind in kinds:
                kinds[kind] += copies * (planned3[direction][kind] - planned2[direction][kind])
        self.board.shift(m1.instrs, copies * (m3.instrs - m2.instrs))
        return True

    # ------------------------------------------------------------------ one step

    def _step(
        self,
        group: Group,
        st: StepIO,
        s0: int,
        ns: int,
        weights: dict[str, tuple[int, int]],
        wgrads: dict[str, int],
        sub_index: int,
        sub_count: int,
    ) -> None:
        op = st.op
        # a recomputed forward op runs in the backward pass: its loads are saved activations
        self.phase, self.layer = ("BWD" if op.recompute else op.phase), op.layer
        tensors = self.graph.tensors
        for t in sorted(st.load_resident):
            size = tensors[t].bytes_for(ns)
            aid = self.alloc(size, t)
            self.plan_bytes("read", t, size)
            addr = self.dram_addr(t) + s0 * tensors[t].bytes_per_sample
            self.transfer(Op.LOAD, self.queue("ld", "blocks"), t, addr, Access(aid, 0, size))
            self.resident[t] = aid
        for t in sorted(st.resident_out):
            self.resident[t] = self.alloc(tensors[t].bytes_for(ns), t)

        space = self.heap.largest_hole()[1] - ALIGN_SLACK
        store_only = set(st.store_out - st.resident_out)
        tiling = plan_step(
            self.graph,
            op,
            ns,
            set(st.dram_in),
            store_only,
            space,
            self.cfg,
            weights_resident=bool(op.weights and op.weights in weights),
        )
        ins, outs, out_rows = step_operands(self.graph, op, self.cfg)
        transient: list[int] = []
        sources: dict[str, _Source] = {}
        for o in ins + outs:
            if o.tensor in self.resident:
                sources[o.tensor] = _Source(o, self.resident[o.tensor])
            else:
                biggest = max(o.block_bytes(b, out_rows) for b in tiling.blocks)
                slots = (self.alloc(biggest, o.tensor + "#0"), self.alloc(biggest, o.tensor + "#1"))
                transient += slots
                sources[o.tensor] = _Source(o, None, slots)
            if o.tensor in self.dram.addr:  # else never moved (kept on chip throughout)
                sources[o.tensor].dram_base = (
                    self.dram.addr[o.tensor] + s0 * tensors[o.tensor].bytes_per_sample
                )

        if op.is_gemm:
            self._gemm_step(
                st,
                tiling.blocks,
                tiling.plans,
                out_rows,
                sources,
                weights,
                wgrads,
                sub_index,
                transient,
            )
        else:
            self._vector_step(
                st,
                tiling.blocks,
                out_rows,
                sources,
                weights,
                wgrads,
                sub_index,
                sub_count,
                transient,
            )
        for aid in transient:
            self.free(aid)
        for t in sorted(st.frees):
            self.free(self.resident.pop(t))

    # ------------------------------------------------------------------ operand movement

    def _slice(self, src: _Source, block: Block, out_rows: int) -> tuple[int, int]:
        """Byte range of a block's rows inside the operand's sub-batch layout."""
        o = src.operand
        lo_row, hi_row = o.rows_for(block.r0, block.r1, out_rows)
        h = o.shape[1]
        start = (block.n0 * h + lo_row) * o.row_bytes
        if block.samples > 1:
            return start, (block.n1 * h) * o.row_bytes
        return start, (block.n0 * h + hi_row) * o.row_bytes

    def _bring_in(self, src: _Source, block: Block, out_rows: int, j: int) -> Access:
        """Access for reading a block of an operand, loading it first if it is streamed."""
        lo, hi = self._slice(src, block, out_rows)
        if src.resident is not None:
            return Access(src.resident, lo, hi)
        slot = src.slots[j % 2]
        access = Access(slot, 0, hi - lo)
        self.transfer(
            Op.LOAD, self.queue("ld", "blocks"), src.operand.tensor, src.dram_base + lo, access
        )
        return access

    def _out_range(
        self, src: _Source, block: Block, out_rows: int, j: int, col_lo: int, col_hi: int, cols: int
    ) -> tuple[int, int, int]:
        """(alloc, lo, hi) of the output columns [col_lo, col_hi) of a block.

        A block's output is viewed column-chunk-major, so each chunk of output columns is
        one contiguous range (in DRAM too: one transfer per chunk and block)."""
        lo, hi = self._slice(src, block, out_rows)
        span = hi - lo
        c_lo, c_hi = span * col_lo // cols, span * col_hi // cols
        if src.resident is not None:
            return src.resident, lo + c_lo, lo + c_hi
        return src.slots[j % 2], c_lo, c_hi

    def _out_access(
        self,
        src: _Source,
        block: Block,
        out_rows: int,
        j: int,
        col_lo: int = 0,
        col_hi: int = 1,
        cols: int = 1,
    ) -> Access:
        alloc, lo, hi = self._out_range(src, block, out_rows, j, col_lo, col_hi, cols)
        # a chunk of more columns than the block has output bytes (a DGRAD whose im2col
        # columns outnumber the input gradient's bytes) accumulates into the byte it starts
        # in, which the next chunk stores
        return Access(alloc, lo, max(hi, lo + 1), acc=True)

    def _send_out(
        self,
        st: StepIO,
        src: _Source,
        block: Block,
        out_rows: int,
        j: int,
        col_lo: int = 0,
        col_hi: int = 1,
        cols: int = 1,
    ) -> None:
        if src.operand.tensor not in st.store_out:
            return
        alloc, lo, hi = self._out_range(src, block, out_rows, j, col_lo, col_hi, cols)
        if hi == lo:
            return  # a chunk of less than a byte: stored with the next chunk
        block_lo = self._slice(src, block, out_rows)[0]
        offset = lo if src.resident is not None else block_lo + lo
        self.transfer(
            Op.STORE,
            self.queue("st", "blocks"),
            src.operand.tensor,
            src.dram_base + offset,
            Access(alloc, lo, hi),
        )

    def _plan_operand(
        self,
        st: StepIO,
        src: _Source,
        blocks: tuple[Block, ...],
        out_rows: int,
        times: int,
        is_output: bool,
    ) -> None:
        t = src.operand.tensor
        total = sum(src.operand.block_bytes(b, out_rows) for b in blocks)
        if is_output and t in st.store_out:
            self.plan_bytes("write", t, total * times)
        elif not is_output and t in st.dram_in:
            self.plan_bytes("read", t, total * times)

    # ------------------------------------------------------------------ GEMM steps

    def _gemm_step(
        self,
        st: StepIO,
        blocks: tuple[Block, ...],
        plans: tuple[GemmPlan, ...],
        out_rows: int,
        sources: dict[str, _Source],
        weights: dict[str, tuple[int, int]],
        wgrads: dict[str, int],
        sub_index: int,
        transient: list[int],
    ) -> None:
        op = st.op
        x_name = op.reads[0] if op.phase == "FWD" else op.reads[1]
        dy_name = op.reads[0]
        for plan in plans:
            if plan.role == FWD:
                row_ins, outs = [sources[x_name]], [sources[op.writes[0]]]
            elif plan.role == DGRAD:
                row_ins, outs = [sources[dy_name]], [sources[op.writes[0]]]
            else:
                row_ins, outs = [sources[x_name], sources[dy_name]], []
            for src in row_ins:
                self._plan_operand(st, src, blocks, out_rows, plan.chunks, False)
            for src in outs:
                self._plan_operand(st, src, blocks, out_rows, 1, True)
            self._gemm_role(
                st, op, plan, blocks, out_rows, row_ins, outs, weights, wgrads, sub_index, transient
            )

    def _stationary(
        self,
        op: TrainingOp,
        plan: GemmPlan,
        weights: dict[str, tuple[int, int]],
        slots: list[int],
        chunk: int,
    ) -> tuple[int, int]:
        """Alloc and byte offset of weight chunk ``chunk``; loads it unless kept on chip."""
        lo, nbytes = plan.chunk_range(chunk, self.cfg)
        w = op.weights
        if w in weights:
            return weights[w][0], lo
        slot = slots[chunk % len(slots)]
        self.plan_bytes("read", w, nbytes)
        self.transfer(
            Op.LOAD, self.queue("ld", "weights"), w, self.dram_addr(w) + lo, Access(slot, 0, nbytes)
        )
        return slot, 0

    def _gemm_role(
        self,
        st: StepIO,
        op: TrainingOp,
        plan: GemmPlan,
        blocks: tuple[Block, ...],
        out_rows: int,
        row_ins: list[_Source],
        outs: list[_Source],
        weights: dict[str, tuple[int, int]],
        wgrads: dict[str, int],
        sub_index: int,
        transient: list[int],
    ) -> None:
        cfg = self.cfg
        r, c = cfg.array_rows, cfg.array_cols
        layer = self.graph.network.layer(op.layer)
        out_cols = layer.out_shape[2]
        psum: list[int] = []
        if plan.role != WGRAD and plan.k > r:
            per_core = math.ceil(
                max(b.samples * (b.r1 - b.r0) for b in blocks) * out_cols / cfg.cores
            )
            psum = [
                self.alloc(per_core * min(plan.n, c) * cfg.accum_bytes, f"psum{i}")
                for i in range(cfg.cores)
            ]
            transient += psum
        dw = op.weight_grad
        slots: list[int] = []
        if plan.role == WGRAD and dw not in wgrads:
            slots = [self.alloc(plan.slot_bytes(cfg), dw + "#acc")]
        elif plan.role != WGRAD and op.weights not in weights:
            slots = [
                self.alloc(plan.slot_bytes(cfg), f"{op.weights}#{i}")
                for i in range(plan.weight_slots)
            ]
        transient += slots
        for chunk in range(plan.chunks):
            cols = min(plan.chunk_cols, plan.n - chunk * plan.chunk_cols)
            if plan.role == WGRAD:
                region, base, loaded = self._wgrad_chunk(
                    dw, plan, chunk, cols, wgrads, sub_index, slots
                )
            else:
                region, base = self._stationary(op, plan, weights, slots, chunk)
            for j, block in enumerate(blocks):
                in_acc = tuple(self._bring_in(src, block, out_rows, j) for src in row_ins)
                positions = block.samples * (block.r1 - block.r0) * out_cols
                if plan.role == WGRAD:
                    self._wgrad_tiles(
                        plan, positions, cols, region, base, in_acc, first=(j == 0 and not loaded)
                    )
                else:
                    col_lo, col_hi = chunk * plan.chunk_cols, chunk * plan.chunk_cols + cols
                    out_acc = self._out_access(outs[0], block, out_rows, j, col_lo, col_hi, plan.n)
                    self._tiles(plan, positions, cols, region, base, in_acc, out_acc, psum)
                    self._send_out(st, outs[0], block, out_rows, j, col_lo, col_hi, plan.n)
            if plan.role == WGRAD and dw not in wgrads:
                lo, nbytes = plan.chunk_range(chunk, cfg)
                self.plan_bytes("write", dw, nbytes)
                self.transfer(
                    Op.STORE,
                    self.queue("st", "weights"),
                    dw,
                    self.dram_addr(dw) + lo,
                    Access(region, 0, nbytes),
                )

    def _wgrad_chunk(
        self,
        dw: str,
        plan: GemmPlan,
        chunk: int,
        cols: int,
        wgrads: dict[str, int],
        sub_index: int,
        slots: list[int],
    ) -> tuple[int, int, bool]:
        """Region holding the dW chunk's accumulators; RMW-loads partial sums if needed."""
        lo, nbytes = plan.chunk_range(chunk, self.cfg)
        if dw in wgrads:
            return wgrads[dw], lo, sub_index > 0
        region = slots[0]
        if sub_index > 0:
            self.plan_bytes("read", dw, nbytes)
            self.transfer(
                Op.LOAD,
                self.queue("ld", "weights"),
                dw,
                self.dram_addr(dw) + lo,
                Access(region, 0, nbytes),
            )
        return region, 0, sub_index > 0

    def _core_rows(self, rows: int) -> list[tuple[int, int]]:
        cores = self.cfg.cores
        base, extra = divmod(rows, cores)
        out, start = [], 0
        for i in range(cores):
            n = base + (1 if i < extra else 0)
            if n:
                out.append((start, n))
            start += n
        return out

    def _tiles(
        self,
        plan: GemmPlan,
        positions: int,
        cols: int,
        region: int,
        base: int,
        in_acc: tuple[Access, ...],
        out_acc: Access,
        psum: list[int],
    ) -> None:
        """FWD/DGRAD of one block: per core, one GEMM over its share of the rows.

        The instruction covers every fold (ceil(K/R) x ceil(cols/C) weight tiles) of that
        share; k-folds accumulate in the core's partial-sum region, forwarded in order."""
        cfg = self.cfg
        w_bytes = plan.k * cols * plan.groups * cfg.weight_bytes
        w_acc = Access(region, base, base + w_bytes)
        for core, (row0, rows) in enumerate(self._core_rows(positions)):
            my_out = _share(out_acc, row0, row0 + rows, positions)
            scratch = (Access(psum[core], 0, self.alloc_size(psum[core]), True),) if psum else ()
            payload = Gemm(rows, plan.k, cols, False, cfg.act_bytes)
            for _ in range(plan.groups):
                self.emit(
                    self.cores[core],
                    Op.GEMM,
                    payload,
                    (*in_acc, w_acc, *scratch),
                    (my_out, *scratch),
                    plan.role,
                )

    def _wgrad_tiles(
        self,
        plan: GemmPlan,
        positions: int,
        cols: int,
        region: int,
        base: int,
        in_acc: tuple[Access, ...],
        first: bool,
    ) -> None:
        """WGRAD of one block: the block's positions are the reduction; cores split dW rows."""
        per_row = cols * plan.groups * self.cfg.weight_grad_bytes
        for core, (row0, rows) in enumerate(self._core_rows(plan.m)):
            acc = Access(region, base + row0 * per_row, base + (row0 + rows) * per_row, True)
            payload = Gemm(rows, positions, cols, not first, self.cfg.accum_bytes)
            for _ in range(plan.groups):
                self.emit(self.cores[core], Op.GEMM, payload, (*in_acc, acc), (acc,), WGRAD)

    # ------------------------------------------------------------------ vector steps

    def _vector_step(
        self,
        st: StepIO,
        blocks: tuple[Block, ...],
        out_rows: int,
        sources: dict[str, _Source],
        weights: dict[str, tuple[int, int]],
        wgrads: dict[str, int],
        sub_index: int,
        sub_count: int,
        transient: list[int],
    ) -> None:
        op = st.op
        work = op.vector
        small_in: list[Access] = []
        if op.weights:  # normalization scale and shift: tiny, loaded whole per step
            if op.weights in weights:
                aid = weights[op.weights][0]
                small_in.append(Access(aid, 0, self.alloc_size(aid)))
            else:
                size = self.graph.tensors[op.weights].fixed_bytes
                aid = self.alloc(size, op.weights)
                transient.append(aid)
                self.plan_bytes("read", op.weights, size)
                self.transfer(
                    Op.LOAD,
                    self.queue("ld", "weights"),
                    op.weights,
                    self.dram_addr(op.weights),
                    Access(aid, 0, size),
                )
                small_in.append(Access(aid, 0, size))
        dw_region = None
        if op.weight_grad:
            dw = op.weight_grad
            size = self.graph.tensors[dw].fixed_bytes
            if dw in wgrads:
                dw_region = wgrads[dw]
            else:
                dw_region = self.alloc(size, dw + "#acc")
                transient.append(dw_region)
                if sub_index > 0:
                    self.plan_bytes("read", dw, size)
                    self.transfer(
                        Op.LOAD,
                        self.queue("ld", "weights"),
                        dw,
                        self.dram_addr(dw),
                        Access(dw_region, 0, size),
                    )
        ins = [sources[t] for t in op.reads if t in sources]
        outs = [sources[t] for t in op.writes if t in sources]
        # Statistics spanning more than one block (batch norm over a streamed mini-batch, or a
        # sample cut into row bands) need a separate statistics sweep over the data; a
        # one-pass op (the backward of a norm on the network input: the scale and shift
        # gradients only) is that reduction already.
        two_sweeps = (
            op.kind == "norm"
            and work.passes > 1
            and ((op.spans_batch and len(blocks) > 1) or blocks[0].r1 - blocks[0].r0 < out_rows)
        )
        sweeps = [(1, False), (work.passes - 1, True)] if two_sweeps else [(work.passes, True)]
        for src in ins:
            self._plan_operand(st, src, blocks, out_rows, len(sweeps), False)
        for src in outs:
            self._plan_operand(st, src, blocks, out_rows, 1, True)
        units = self.cfg.cores
        split = units  # every block is shared by all vector units
        for passes, final in sweeps:
            for j, block in enumerate(blocks):
                in_acc = tuple(self._bring_in(src, block, out_rows, j) for src in ins)
                out_acc = (
                    tuple(self._out_access(src, block, out_rows, j) for src in outs)
                    if final
                    else ()
                )
                extra_w = (
                    (Access(dw_region, 0, self.alloc_size(dw_region), True),)
                    if dw_region is not None and final
                    else ()
                )
                frac = block.samples * (block.r1 - block.r0) / out_rows
                elements = max(1, round(work.elements * frac))
                for part in range(split):
                    share = elements * (part + 1) // split - elements * part // split
                    if share < 1:
                        continue
                    self.emit(
                        self.vecs[part],
                        Op.VEC,
                        Vector(share, passes, share * passes * work.ops_per_element),
                        _part(in_acc, part, split) + tuple(small_in),
                        _part(out_acc, part, split) + extra_w,
                        op.kind,
                    )
                if final:
                    for src in outs:
                        self._send_out(st, src, block, out_rows, j)
        if dw_region is not None and op.weight_grad not in wgrads:
            size = self.graph.tensors[op.weight_grad].fixed_bytes
            self.plan_bytes("write", op.weight_grad, size)
            self.transfer(
                Op.STORE,
                self.queue("st", "weights"),
                op.weight_grad,
                self.dram_addr(op.weight_grad),
                Access(dw_region, 0, size),
            )

    # ------------------------------------------------------------------ weight update

    def _update_phase(self) -> None:
        """SGD with momentum, streamed: read W32, M, dW; write W32, M and the bf16 W."""
        self.group, self.phase = -1, "UPDATE"
        tensors = self.graph.tensors
        j = 0
        for op in self.plan.update_ops:
            self.layer = op.layer
            params = op.vector.elements
            reads, writes = op.reads, op.writes
            bytes_per_param = sum(tensors[t].fixed_bytes for t in reads + writes) / params
            space = self.heap.largest_hole()[1] - ALIGN_SLACK
            per_block = max(1, min(params, int(space // (2 * bytes_per_param))))
            per_block = min(per_block, math.ceil(params / 2)) if params > 4096 else per_block
            slots = {
                t: (
                    self.alloc(per_block * tensors[t].fixed_bytes // params + 64, t + "#0"),
                    self.alloc(per_block * tensors[t].fixed_bytes // params + 64, t + "#1"),
                )
                for t in dict.fromkeys(reads + writes)
            }
            for t in reads:
                self.plan_bytes("read", t, tensors[t].fixed_bytes)
            for t in writes:
                self.plan_bytes("write", t, tensors[t].fixed_bytes)
            for p0 in range(0, params, per_block):
                n = min(per_block, params - p0)
                acc_in = []
                for t in reads:
                    esz = tensors[t].fixed_bytes // params
                    a = Access(slots[t][j % 2], 0, n * esz)
                    addr = self.dram_addr(t) + p0 * esz
                    self.transfer(Op.LOAD, self.queue("ld", "weights"), t, addr, a)
                    acc_in.append(a)
                acc_out = tuple(
                    Access(slots[t][j % 2], 0, n * (tensors[t].fixed_bytes // params), acc=True)
                    for t in writes
                )
                for part in range(self.cfg.cores):
                    share = n * (part + 1) // self.cfg.cores - n * part // self.cfg.cores
                    if share:
                        self.emit(
                            self.vecs[part],
                            Op.VEC,
                            Vector(share, 1, share * op.vector.ops_per_element),
                            _part(tuple(acc_in), part, self.cfg.cores),
                            _part(acc_out, part, self.cfg.cores),
                            "update",
                        )
                for t in writes:
                    esz = tensors[t].fixed_bytes // params
                    addr = self.dram_addr(t) + p0 * esz
                    self.transfer(
                        Op.STORE,
                        self.queue("st", "weights"),
                        t,
                        addr,
                        Access(slots[t][j % 2], 0, n * esz),
                    )
                j += 1
            for pair in slots.values():
                for aid in pair:
                    self.free(aid)
