"""Single-GEMM programs for ``wavecore-sim gemm``: the timing model without a network.

With ideal memory, each core runs one GEMM instruction over its share of the M rows and
nothing else (no DMA, no buffer-port limits). Otherwise B (K x N) is loaded once, A is
streamed in double-buffered blocks of rows, and C is stored block by block.
"""

from __future__ import annotations

import math

from ..config import HardwareConfig
from ..errors import WavecoreError
from ..schedule import FirstFit
from .program import GEMM, LOAD, STORE, Access, Alloc, Instr, Program, unit_names
from .scoreboard import Scoreboard


def _split(rows: int, parts: int) -> list[int]:
    return [rows * (i + 1) // parts - rows * i // parts for i in range(parts)]


def gemm_program(m: int, k: int, n: int, cfg: HardwareConfig, ideal_memory: bool = False
                 ) -> Program:
    """A program computing one M x K x N GEMM (bf16 in, bf16 out) on all cores."""
    if min(m, k, n) < 1:
        raise WavecoreError(f"GEMM sizes must be positive, got M={m} K={k} N={n}")
    units = unit_names(cfg.cores)
    instrs: list[Instr] = []
    allocs: list[Alloc] = []
    meta = {"network": f"gemm {m}x{k}x{n}", "batch": 1, "schedule": "gemm", "norm": "-",
            "config": cfg.to_dict()}
    if ideal_memory:
        for core, rows in enumerate(_split(m, cfg.cores)):
            if rows:
                instrs.append(Instr(len(instrs), f"core{core}", GEMM, m=rows, k=k, n=n,
                                    vkind="FWD", layer="gemm", phase="FWD", group=0))
        return Program(units, instrs, allocs, cfg.gbuf_bytes, meta)

    heap, board = FirstFit(cfg.gbuf_bytes), Scoreboard(cfg.gbuf_bytes)

    def alloc(size: int, label: str) -> int:
        off = heap.alloc(size)
        if off is None:
            raise WavecoreError(f"GEMM {m}x{k}x{n}: {label} does not fit gbuf_bytes="
                                f"{cfg.gbuf_bytes}; use --ideal-memory or a smaller K x N")
        allocs.append(Alloc(len(allocs), off, heap._round(size), label))
        board.on_alloc(allocs[-1].id, off, allocs[-1].size)
        return allocs[-1].id

    def emit(unit: str, op: str, reads=(), writes=(), **kw) -> None:
        iid = len(instrs)
        dram = None
        if op in (LOAD, STORE):
            dram = (kw["dram_addr"], kw["dram_addr"] + kw["nbytes"], op == STORE)
        deps = board.deps_for(iid, unit, tuple(reads), tuple(writes),
                              in_order=not unit.startswith("core"), dram=dram)
        instrs.append(Instr(iid, unit, op, deps, tuple(reads), tuple(writes), layer="gemm",
                            phase="FWD", group=0, **kw))

    b_bytes = k * n * cfg.weight_bytes
    b = alloc(b_bytes, "B")
    space = heap.largest_hole()[1] - 4096
    per_row = (k + n) * cfg.act_bytes
    rows = min(m, max(1, space // (2 * per_row)), max(cfg.array_rows, math.ceil(m / 4)))
    if space < 2 * per_row:
        raise WavecoreError(f"GEMM {m}x{k}x{n}: one row of A and C does not fit next to B; "
                            "use --ideal-memory or a smaller K x N")
    slots_a = [alloc(rows * k * cfg.act_bytes, f"A#{i}") for i in range(2)]
    slots_c = [alloc(rows * n * cfg.act_bytes, f"C#{i}") for i in range(2)]
    a_base, c_base = 0, (m * k * cfg.act_bytes + 4095) // 4096 * 4096
    b_base = c_base + (m * n * cfg.act_bytes + 4095) // 4096 * 4096
    planned = {"read": {"weights": b_bytes, "activations": m * k * cfg.act_bytes},
               "write": {"activations": m * n * cfg.act_bytes}}
    emit("dma0.ld", LOAD, writes=[Access(b, 0, b_bytes)], dram_addr=b_base, nbytes=b_bytes,
         traffic="weights", tensor="B")
    for j, r0 in enumerate(range(0, m, rows)):
        mr = min(rows, m - r0)
        a_acc = Access(slots_a[j % 2], 0, mr * k * cfg.act_bytes)
        emit(f"dma{j % cfg.cores}.ld", LOAD, writes=[a_acc], nbytes=a_acc.hi,
             dram_addr=a_base + r0 * k * cfg.act_bytes, traffic="activations", tensor="A")
        c_span = mr * n * cfg.act_bytes
        lo = 0
        for core, share in enumerate(_split(mr, cfg.cores)):
            if share:
                hi = lo + share * n * cfg.act_bytes
                emit(f"core{core}", GEMM, reads=[a_acc, Access(b, 0, b_bytes)],
                     writes=[Access(slots_c[j % 2], lo, hi, True)], m=share, k=k, n=n,
                     vkind="FWD")
                lo = hi
        emit(f"dma{j % cfg.cores}.st", STORE, reads=[Access(slots_c[j % 2], 0, c_span)],
             nbytes=c_span, dram_addr=c_base + r0 * n * cfg.act_bytes, traffic="activations",
             tensor="C")
    full = {d: {kind: planned[d].get(kind, 0) for kind in
                ("weights", "activations", "saved_activations", "gradients", "weight_gradients",
                 "optimizer_state")} for d in ("read", "write")}
    return Program(units, instrs, allocs, cfg.gbuf_bytes, meta, planned=full)
