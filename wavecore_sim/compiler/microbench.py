"""Single-GEMM programs for ``wavecore-sim gemm``: the timing model without a network.

With ideal memory, each core runs one GEMM instruction over its share of the M rows and
nothing else (no DMA, no buffer-port limits). Otherwise B (K x N) is loaded once, A is
streamed in double-buffered blocks of rows, and C is stored block by block.
"""

from __future__ import annotations

import math

from ..config import HardwareConfig
from ..errors import WavecoreError
from ..ir import (
    MAX_INSTRUCTIONS,
    TRAFFIC_KINDS,
    Access,
    Gemm,
    Op,
    Program,
    ProgramBuilder,
    Traffic,
    Transfer,
    Unit,
    UnitKind,
    machine_units,
)
from ..schedule import FirstFit
from .dram import dram_alignment
from .scoreboard import Scoreboard, add_dram_dependencies


def _split(rows: int, parts: int) -> list[int]:
    return [rows * (i + 1) // parts - rows * i // parts for i in range(parts)]


def gemm_program(
    m: int, k: int, n: int, cfg: HardwareConfig, ideal_memory: bool = False
) -> Program:
    """A program computing one M x K x N GEMM (bf16 in, bf16 out) on all cores."""
    if min(m, k, n) < 1:
        raise WavecoreError(f"GEMM sizes must be positive, got M={m} K={k} N={n}")
    # capacity first: operands that do not fit the HBM (or a program past the instruction
    # limit, below) are refused before anything proportional to them is built
    dram = (m * k + m * n) * cfg.act_bytes + k * n * cfg.weight_bytes
    if dram > cfg.hbm_bytes:
        most = max(0, (cfg.hbm_bytes - k * n * cfg.weight_bytes) // ((k + n) * cfg.act_bytes))
        raise WavecoreError(
            f"GEMM {m}x{k}x{n}: --m must be at most {most} for this K, N and hbm_bytes = "
            f"{cfg.hbm_bytes} (its operands need {dram} bytes of DRAM); lower --m, --k or --n"
        )
    builder = ProgramBuilder(machine_units(cfg.cores), cfg.gbuf_bytes)
    builder.set_step(0, "gemm", "FWD")
    meta = {
        "network": f"gemm {m}x{k}x{n}",
        "batch": 1,
        "schedule": "gemm",
        "norm": "-",
        "config": cfg.to_dict(),
    }
    core = [Unit(UnitKind.CORE, c) for c in range(cfg.cores)]
    if ideal_memory:
        for c, rows in enumerate(_split(m, cfg.cores)):
            if rows:
                builder.emit(
                    core[c], Op.GEMM, Gemm(rows, k, n, False, cfg.act_bytes), (), (), (), "FWD"
                )
        return builder.finish(meta=meta)

    heap, board = FirstFit(cfg.gbuf_bytes), Scoreboard(cfg.gbuf_bytes)

    def alloc(size: int, label: str) -> int:
        off = heap.alloc(size)
        if off is None:
            raise WavecoreError(
                f"GEMM {m}x{k}x{n}: {label} does not fit gbuf_bytes="
                f"{cfg.gbuf_bytes}; use --ideal-memory or a smaller K x N"
            )
        aid = builder.alloc(off, heap._round(size), label)
        board.on_alloc(aid, off, heap._round(size))
        return aid

    def emit(unit: Unit, op: Op, payload, reads=(), writes=(), label: str = "") -> None:
        deps = board.deps_for(
            builder.count,
            builder.unit_index[unit],
            tuple(reads),
            tuple(writes),
            in_order=unit.kind.finishes_in_order,
        )
        builder.emit(unit, op, payload, reads, writes, deps, label)

    def dma(direction: UnitKind, index: int) -> Unit:
        return Unit(direction, index)

    b_bytes = k * n * cfg.weight_bytes
    b = alloc(b_bytes, "B")
    space = heap.largest_hole()[1] - 4096
    per_row = (k + n) * cfg.act_bytes
    rows = min(m, max(1, space // (2 * per_row)), max(cfg.array_rows, math.ceil(m / 4)))
    if space < 2 * per_row:
        raise WavecoreError(
            f"GEMM {m}x{k}x{n}: one row of A and C does not fit next to B; "
            "use --ideal-memory or a smaller K x N"
        )
    blocks = -(-m // rows)
    if blocks * (1 + cfg.cores) > MAX_INSTRUCTIONS:
        raise WavecoreError(
            f"GEMM {m}x{k}x{n}: --m must be at most {rows * (MAX_INSTRUCTIONS // (1 + cfg.cores))}"
            f" here: it streams in {blocks:,} blocks of {rows} rows, more than the "
            f"{MAX_INSTRUCTIONS:,} instructions a program may hold; lower --m"
        )
    slots_a = [alloc(rows * k * cfg.act_bytes, f"A#{i}") for i in range(2)]
    slots_c = [alloc(rows * n * cfg.act_bytes, f"C#{i}") for i in range(2)]
    align = dram_alignment(cfg)
    sizes = {"A": m * k * cfg.act_bytes, "C": m * n * cfg.act_bytes, "B": b_bytes}
    base, regions, top = {}, {}, 0
    for name in ("A", "C", "B"):
        base[name] = top
        regions[name] = builder.region(top, -(-sizes[name] // align) * align, name, name != "C")
        top += -(-sizes[name] // align) * align
    planned = {
        "read": {"weights": b_bytes, "activations": sizes["A"]},
        "write": {"activations": sizes["C"]},
    }
    emit(
        dma(UnitKind.DMA_LD, 0),
        Op.LOAD,
        Transfer(base["B"], b_bytes, Traffic.WEIGHTS, regions["B"]),
        writes=[Access(b, 0, b_bytes)],
        label="B",
    )
    for j, r0 in enumerate(range(0, m, rows)):
        mr = min(rows, m - r0)
        a_acc = Access(slots_a[j % 2], 0, mr * k * cfg.act_bytes)
        emit(
            dma(UnitKind.DMA_LD, j % cfg.cores),
            Op.LOAD,
            Transfer(
                base["A"] + r0 * k * cfg.act_bytes, a_acc.hi, Traffic.ACTIVATIONS, regions["A"]
            ),
            writes=[a_acc],
            label="A",
        )
        c_span = mr * n * cfg.act_bytes
        lo = 0
        for c, share in enumerate(_split(mr, cfg.cores)):
            if share:
                hi = lo + share * n * cfg.act_bytes
                emit(
                    core[c],
                    Op.GEMM,
                    Gemm(share, k, n, False, cfg.act_bytes),
                    reads=[a_acc, Access(b, 0, b_bytes)],
                    writes=[Access(slots_c[j % 2], lo, hi, True)],
                    label="FWD",
                )
                lo = hi
        emit(
            dma(UnitKind.DMA_ST, j % cfg.cores),
            Op.STORE,
            Transfer(base["C"] + r0 * n * cfg.act_bytes, c_span, Traffic.ACTIVATIONS, regions["C"]),
            reads=[Access(slots_c[j % 2], 0, c_span)],
            label="C",
        )
    full = {d: {kind: planned[d].get(kind, 0) for kind in TRAFFIC_KINDS} for d in ("read", "write")}
    return add_dram_dependencies(builder.finish(meta=meta, planned=full))
