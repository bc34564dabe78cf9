"""Static verifier, run on every compile (and on every trace read back).

It reads the program's columns only and shares no code with the compiler's scoreboard: the
orderings the program needs are derived here from the buffer accesses and DRAM transfers
with a numpy sweep over byte boundaries, and checked against a happens-before relation
computed from the dependencies the compiler emitted. Checks, each failing with
``InvariantError("program verification failed: ...")`` that names the offending instruction,
allocation or region:

1. Structure. Columns have their dtypes, consistent lengths and monotone CSR pointers;
   the units are those of a machine (``core<i>``, ``vec<i>``, ``dma<i>.ld``, ``dma<i>.st``
   for ``i`` in ``0..cores-1``, each once; ``cores`` of the config when one is given); every
   dependency names an earlier instruction (so the dependency graph is a DAG in program
   order and no schedule deadlocks); opcodes, unit indices and traffic kinds are valid; each
   opcode runs on a unit of its kind (GEMM on a core, VEC on a vector unit, LOAD on a load
   queue, STORE on a store queue); sizes are positive; every access lies inside its
   allocation; a LOAD writes exactly one buffer range of its size and a STORE reads one;
   every transfer lies inside its DRAM region, every region inside ``[0, hbm_bytes)`` (when
   a config is given) and every allocation inside ``[0, gbuf_bytes)``.
1b. Shapes (when a config is given: element sizes). A GEMM's ``m x k x n`` fits a 64-bit
   count and agrees with its buffer accesses as lowering emits them, by its role (label):
   FWD and DGRAD read a stationary operand of ``g x k x n`` weights (``g`` >= 1 groups, the
   last plain read) and write an ``act_bytes`` output without accumulating; FWD writes
   exactly ``g x m x n`` elements; DGRAD reads at least ``g x m x k`` gradient elements (its
   first plain read); WGRAD accumulates ``g x m x n`` weight gradients (a multiple of
   ``m x n`` at ``weight_grad_bytes``) at ``accum_bytes`` and reads at least ``k`` gradient
   elements (its last plain read). A vector op does ``elements x passes x ops-per-element``
   lane operations (at most 2**20 per element, a 1024 x 1024 pooling window; at most 1024
   passes) and touches at least one byte per element.
2. Happens-before is computed with vector clocks over the dependency edges and each unit's
   program order: an instruction starts after the previous one of its unit started, so it
   inherits that one's knowledge; DMA queues and vector units also finish in order, so the
   previous instruction of such a unit is complete; a core only starts in order, so an
   earlier core instruction is known complete only through an explicit dependency.
3. Two allocations sharing buffer addresses are never live at once: every user of an
   allocation happens after every user of the previous occupant of its bytes (program order
   suffices on the same unit).
4. Inside each allocation, a read happens after the writes of its bytes, and a write after
   the earlier reads and writes of its bytes. Accumulating writes commute with each other
   (each waits for the last plain write and the reads before it); a core's accumulation into
   its own partial sums is forwarded by the array in program order, so for ``acc`` accesses
   program order suffices on the same unit.
5. DRAM: a LOAD of bytes an earlier STORE wrote, and a STORE over bytes loaded or stored
   earlier, happen after them. Regions that share DRAM addresses are never live at once:
   their program-order lifetimes (first to last transfer) do not interleave, and every
   transfer of the older one happens before every transfer of the newer one that touches the
   shared bytes; persistent regions share bytes with no other region. Every LOAD of a
   non-persistent region reads bytes whose last STORE belongs to that region (and check 4's
   rule makes the load wait for it).
6. The planned DRAM bytes per traffic kind equal the bytes of the emitted LOAD and STORE
   instructions, for reads and for writes; a program with transfers must have a plan.

Cost: one Python pass over the instructions for the clocks (a dependency already implied by
the clock is skipped without work), everything else in numpy; the clocks take 4 bytes per
instruction and unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import HardwareConfig
from ..errors import InvariantError
from ..ir import (
    ACC_ACCUMULATE,
    ACC_WRITE,
    ALL_COLUMNS,
    FLAT_COLUMNS,
    INSTR_COLUMNS,
    TABLE_COLUMNS,
    TRAFFIC_KINDS,
    Op,
    Program,
    Traffic,
    Unit,
    UnitKind,
)
from ..training import DGRAD, FWD, WGRAD

# The unit kind each opcode must run on.
_KIND_OF_OP = {
    Op.GEMM: UnitKind.CORE,
    Op.VEC: UnitKind.VEC,
    Op.LOAD: UnitKind.DMA_LD,
    Op.STORE: UnitKind.DMA_ST,
}
# Access kinds of the hazard sweep (check 4 and 5).
_READ, _ACC_WRITE, _PLAIN_WRITE = 0, 1, 2
_FIELD_BITS = 32  # bits per unit in a packed clock: positions below 2**31 - 1


def _fail(msg: str) -> InvariantError:
    return InvariantError(f"program verification failed: {msg}")


def _describe(program: Program, i: int) -> str:
    ins = program.instr(int(i))
    return f"instruction {ins.id} ({ins.unit} {ins.op.name}, layer {ins.layer!r})"


def verify_program(program: Program, cfg: HardwareConfig | None = None) -> None:
    """Raise :class:`InvariantError` unless the program passes every check above."""
    _check_columns(program)
    _check_units(program, cfg)
    _check_instructions(program)
    if cfg is not None:
        _check_shapes(program, cfg)
    _check_tables(program, cfg)
    order = HappensBefore.of(program)
    _check_buffer_reuse(program, order)
    _check_buffer_hazards(program, order)
    _check_dram(program, order)
    _check_planned(program)


# ---------------------------------------------------------------------------- 1. structure


def _check_columns(program: Program) -> None:
    c = program.cols
    missing = sorted(set(ALL_COLUMNS) - set(c))
    if missing:
        raise _fail(f"columns {missing} are missing")
    for name, dtype in ALL_COLUMNS.items():
        col = c[name]
        if not isinstance(col, np.ndarray) or col.dtype != np.dtype(dtype) or col.ndim != 1:
            got = getattr(col, "dtype", type(col).__name__)
            raise _fail(f"column {name!r} is not a 1-d array of {np.dtype(dtype)} ({got})")
    n = len(c["op"])
    for name in INSTR_COLUMNS:
        if len(c[name]) != n:
            raise _fail(f"column {name!r} has {len(c[name])} entries for {n} instructions")
    for ptr, flat in (
        ("dep_ptr", ("dep_ids",)),
        ("acc_ptr", ("acc_alloc", "acc_lo", "acc_hi", "acc_flags")),
    ):
        p = c[ptr]
        if len(p) != n + 1 or p[0] != 0 or np.any(np.diff(p) < 0):
            raise _fail(f"{ptr} must hold {n + 1} nondecreasing offsets from 0")
        for name in flat:
            if len(c[name]) != p[-1]:
                raise _fail(
                    f"column {name!r} has {len(c[name])} entries, {ptr} ends at {int(p[-1])}"
                )
    for prefix in ("alloc_", "region_"):
        names = [name for name in TABLE_COLUMNS if name.startswith(prefix)]
        if len({len(c[name]) for name in names}) != 1:
            raise _fail(f"table columns {names} differ in length")
    assert set(FLAT_COLUMNS) | set(INSTR_COLUMNS) | set(TABLE_COLUMNS) == set(ALL_COLUMNS)


def _check_units(program: Program, cfg: HardwareConfig | None) -> None:
    """The units are a machine's: every kind for each core index ``0..cores-1``, once."""
    units = program.units
    if len(set(units)) != len(units):
        dup = next(u for u in units if units.count(u) > 1)
        raise _fail(f"unit {dup} is listed twice")
    cores = len(units) // len(UnitKind)
    if cfg is not None and cores != cfg.cores:
        raise _fail(
            f"the program has units for {len(units) / len(UnitKind):g} cores, the config "
            f"{cfg.cores} (cores); simulate it on the machine it was compiled for"
        )
    want = {Unit(kind, i) for i in range(cores) for kind in UnitKind}
    odd = sorted(set(units) - want)
    if odd or len(units) % len(UnitKind):
        what = f"unit {odd[0]}" if odd else f"{len(units)} units"
        raise _fail(
            f"{what} does not belong to a machine of {cores} cores (core, vec, dma.ld and "
            f"dma.st units numbered 0 to {cores - 1})"
        )


def _first_bad(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if len(bad) else None


def _check_instructions(program: Program) -> None:
    c, n = program.cols, len(program)
    op, unit = c["op"].astype(np.int64), c["unit"].astype(np.int64)
    i = _first_bad((op < 0) | (op >= len(Op)))
    if i is not None:
        raise _fail(f"instruction {i} has unknown opcode {int(op[i])}")
    i = _first_bad((unit < 0) | (unit >= len(program.units)))
    if i is not None:
        raise _fail(
            f"instruction {i} runs on unknown unit index {int(unit[i])} (the program "
            f"has {len(program.units)} units)"
        )
    unit_kind = np.array([u.kind for u in program.units], dtype=np.int64)
    need = np.array([_KIND_OF_OP[o] for o in Op], dtype=np.int64)
    i = _first_bad(unit_kind[unit] != need[op])
    if i is not None:
        raise _fail(
            f"instruction {i}: {Op(int(op[i])).name} runs on "
            f"{program.units[unit[i]]}, which is not a {_KIND_OF_OP[Op(int(op[i]))].name} "
            "unit"
        )
    dep_owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(c["dep_ptr"]))
    j = _first_bad((c["dep_ids"] < 0) | (c["dep_ids"] >= dep_owner))
    if j is not None:
        i = int(dep_owner[j])
        raise _fail(
            f"{_describe(program, i)} depends on {int(c['dep_ids'][j])}, which does not "
            "come before it"
        )

    gemm, vec = op == Op.GEMM, op == Op.VEC
    i = _first_bad(
        gemm & ((np.minimum(np.minimum(c["m"], c["k"]), c["n"]) < 1) | (c["out_bytes"] < 1))
    )
    if i is not None:
        raise _fail(
            f"instruction {i}: GEMM with empty shape {c['m'][i]}x{c['k'][i]}x{c['n'][i]} "
            f"or output element size {c['out_bytes'][i]}"
        )
    i = _first_bad(vec & (np.minimum(np.minimum(c["elements"], c["passes"]), c["ops"]) < 1))
    if i is not None:
        raise _fail(f"instruction {i}: vector op with no work")

    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(c["acc_ptr"]))
    alloc, lo, hi = c["acc_alloc"], c["acc_lo"], c["acc_hi"]
    inside = (alloc >= 0) & (alloc < program.n_allocs)
    size = np.where(
        inside, c["alloc_size"][np.where(inside, alloc, 0)] if program.n_allocs else 0, 0
    )
    j = _first_bad(
        ~inside
        | (lo < 0)
        | (lo >= hi)
        | (hi > size)
        | ((c["acc_flags"] & ~(ACC_WRITE | ACC_ACCUMULATE)) != 0)
    )
    if j is not None:
        i = int(owner[j])
        raise _fail(
            f"instruction {i} ({program.units[unit[i]]} {Op(int(op[i])).name}) accesses "
            f"bytes [{int(lo[j])}, {int(hi[j])}) of allocation {int(alloc[j])}, outside "
            "it"
        )

    transfer = (op == Op.LOAD) | (op == Op.STORE)
    n_acc = np.diff(c["acc_ptr"])
    first = np.minimum(c["acc_ptr"][:-1], max(len(alloc) - 1, 0))
    if len(alloc):
        is_write = (c["acc_flags"][first] & ACC_WRITE) != 0
        span = hi[first] - lo[first]
    else:
        is_write = span = np.zeros(n, dtype=np.int64)
    right_side = np.where(op == Op.LOAD, is_write, ~np.asarray(is_write, dtype=bool))
    i = _first_bad(
        transfer & ((c["nbytes"] < 1) | (n_acc != 1) | ~right_side | (span != c["nbytes"]))
    )
    if i is not None:
        raise _fail(
            f"instruction {i}: {Op(int(op[i])).name} of {int(c['nbytes'][i])} bytes "
            f"must {'write' if op[i] == Op.LOAD else 'read'} exactly one buffer range of "
            "that size"
        )
    traffic = c["traffic"].astype(np.int64)
    i = _first_bad(transfer & ((traffic < 0) | (traffic >= len(Traffic))))
    if i is not None:
        raise _fail(f"instruction {i}: unknown traffic kind {int(traffic[i])}")
    region = c["region"].astype(np.int64)
    i = _first_bad(transfer & ((region < 0) | (region >= program.n_regions)))
    if i is not None:
        raise _fail(
            f"instruction {i}: {Op(int(op[i])).name} of unknown DRAM region {int(region[i])}"
        )
    r = np.where(transfer, region, 0)
    if program.n_regions:
        r_lo = c["region_addr"][r]
        r_hi = r_lo + c["region_size"][r]
        addr = c["dram_addr"]
        i = _first_bad(transfer & ((addr < r_lo) | (addr + c["nbytes"] > r_hi)))
        if i is not None:
            reg = program.region(int(region[i]))
            raise _fail(
                f"{_describe(program, i)} moves DRAM bytes [{int(addr[i])}, "
                f"{int(addr[i] + c['nbytes'][i])}) outside its region {reg.id} "
                f"({reg.label}) [{reg.addr}, {reg.addr + reg.size})"
            )


_ROLES = (FWD, DGRAD, WGRAD)  # a GEMM's label: its training role
MAX_VEC_OPS_PER_ELEMENT = 2**20  # a 1024 x 1024 pooling window
MAX_VEC_PASSES = 1024
_COUNT_LIMIT = 2.0**62  # work counts beyond this would overflow a 64-bit sum
_BYTES_LIMIT = 2.0**50  # no access is this large (the buffer is at most 64 GiB)


@dataclass(frozen=True)
class _Operands:
    """Per instruction, the sizes of the buffer accesses shape checks look at (0: none)."""

    first_read: np.ndarray  # first plain (non-accumulating) read
    last_read: np.ndarray  # last plain read
    plain_reads: np.ndarray  # how many plain reads
    first_write: np.ndarray
    writes: np.ndarray
    touched: np.ndarray  # bytes of all accesses

    @classmethod
    def of(cls, program: Program) -> _Operands:
        c, n = program.cols, len(program)
        owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(c["acc_ptr"]))
        size = c["acc_hi"] - c["acc_lo"]
        flags = c["acc_flags"]
        plain, write = flags == 0, (flags & ACC_WRITE) != 0

        def pick(mask: np.ndarray, last: bool) -> np.ndarray:
            out = np.zeros(n, dtype=np.int64)
            who, sz = owner[mask], size[mask]
            if last:
                who, sz = who[::-1], sz[::-1]
            ids, at = np.unique(who, return_index=True)  # owners sorted: first per owner
            out[ids] = sz[at]
            return out

        return cls(
            pick(plain, False),
            pick(plain, True),
            np.bincount(owner[plain], minlength=n),
            pick(write, False),
            np.bincount(owner[write], minlength=n),
            np.bincount(owner, weights=size, minlength=n),
        )


def _check_shapes(program: Program, cfg: HardwareConfig) -> None:
    """Check 1b: each GEMM's and vector op's shape agrees with its buffer accesses."""
    c, n = program.cols, len(program)
    if not n:
        return
    acc = _Operands.of(program)
    op = c["op"]
    gemm, vec = op == Op.GEMM, op == Op.VEC
    m, k, nn = (c[x].astype(np.float64) for x in ("m", "k", "n"))
    i = _first_bad(gemm & (m * k * nn >= _COUNT_LIMIT))
    if i is not None:
        raise _fail(
            f"{_describe(program, i)}: GEMM {c['m'][i]}x{c['k'][i]}x{c['n'][i]} has more "
            "multiply-accumulates than a 64-bit count holds"
        )
    code = {name: j for j, name in enumerate(_ROLES)}
    role_of = np.array([code.get(t, -1) for t in program.strings], dtype=np.int64)
    role = np.where(gemm, role_of[np.clip(c["label"], 0, len(role_of) - 1)], -1)
    i = _first_bad(gemm & (role < 0))
    if i is not None:
        raise _fail(
            f"{_describe(program, i)}: a GEMM's label is its role, one of {', '.join(_ROLES)}"
        )
    fwd, dgrad, wgrad = (gemm & (role == code[r]) for r in _ROLES)
    want = np.where(wgrad, cfg.accum_bytes, cfg.act_bytes)
    i = _first_bad(gemm & ((c["out_bytes"] != want) | (~wgrad & (c["accumulate"] != 0))))
    if i is not None:
        rule = "" if wgrad[i] else " and does not accumulate"
        raise _fail(
            f"{_describe(program, i)}: a {program.strings[c['label'][i]]} GEMM writes "
            f"{int(want[i])}-byte elements (out_bytes){rule}"
        )

    def refuse(mask: np.ndarray, what: str) -> None:
        j = _first_bad(mask)
        if j is not None:
            sizes = {x: int(getattr(acc, x)[j]) for x in ("first_read", "last_read", "first_write")}
            raise _fail(
                f"{_describe(program, j)}: GEMM {c['m'][j]}x{c['k'][j]}x{c['n'][j]} does not "
                f"match its buffer accesses: {what.format(**sizes)}"
            )

    # FWD and DGRAD: the stationary operand (last plain read) is g >= 1 k x n weight tiles
    stationary = fwd | dgrad
    refuse(
        stationary & ((acc.plain_reads < 2) | (acc.writes < 1)),
        "FWD and DGRAD read rows and weights and write an output",
    )
    tile = k * nn * cfg.weight_bytes
    g = np.floor(acc.last_read / np.maximum(tile, 1))
    refuse(
        stationary & ((tile > _BYTES_LIMIT) | (g < 1) | (g * tile != acc.last_read)),
        "its weights are {last_read} bytes, not a multiple of k x n x weight_bytes",
    )
    out = g * m * nn * cfg.act_bytes
    refuse(
        fwd & (out != acc.first_write),
        "it writes {first_write} bytes, not groups x m x n x act_bytes",
    )
    refuse(
        dgrad & (acc.first_read < g * m * k * cfg.act_bytes),
        "it reads {first_read} bytes of gradients, fewer than groups x m x k x act_bytes",
    )
    # WGRAD: accumulates g >= 1 m x n tiles of weight gradients, reads k positions of dy
    dw = m * nn * cfg.weight_grad_bytes
    g = np.floor(acc.first_write / np.maximum(dw, 1))
    refuse(
        wgrad & ((acc.writes < 1) | (dw > _BYTES_LIMIT) | (g < 1) | (g * dw != acc.first_write)),
        "it accumulates {first_write} bytes, not a multiple of m x n x weight_grad_bytes",
    )
    refuse(
        wgrad & ((acc.plain_reads < 1) | (acc.last_read < k * cfg.act_bytes)),
        "it reads {last_read} bytes of gradients, fewer than k x act_bytes",
    )

    elements, passes, ops = (c[x].astype(np.float64) for x in ("elements", "passes", "ops"))
    sweeps = elements * passes
    per = np.floor(ops / np.maximum(sweeps, 1))
    i = _first_bad(
        vec
        & (
            (passes > MAX_VEC_PASSES)
            | (sweeps >= _COUNT_LIMIT)
            | (per * sweeps != ops)
            | (per > MAX_VEC_OPS_PER_ELEMENT)
            | (elements > acc.touched)
        )
    )
    if i is not None:
        raise _fail(
            f"{_describe(program, i)}: vector op of {c['elements'][i]} elements x "
            f"{c['passes'][i]} passes, {c['ops'][i]} lane ops, {int(acc.touched[i])} bytes "
            "accessed: want ops = elements x passes x (1 to 2**20), <= 1024 passes, >= 1 "
            "byte per element"
        )


def _check_tables(program: Program, cfg: HardwareConfig | None) -> None:
    c = program.cols
    offset, size = c["alloc_offset"], c["alloc_size"]
    a = _first_bad((offset < 0) | (size <= 0) | (offset + size > program.gbuf_bytes))
    if a is not None:
        al = program.alloc(a)
        raise _fail(
            f"allocation {a} ({al.label}) [{al.offset}, {al.offset + al.size}) lies "
            f"outside the {program.gbuf_bytes}-byte buffer"
        )
    addr, size = c["region_addr"], c["region_size"]
    limit = cfg.hbm_bytes if cfg is not None else np.iinfo(np.int64).max
    r = _first_bad((addr < 0) | (size <= 0) | (addr > limit - size))
    if r is not None:
        reg = program.region(r)
        where = f"the {cfg.hbm_bytes}-byte DRAM (hbm_bytes)" if cfg is not None else "DRAM"
        raise _fail(
            f"DRAM region {r} ({reg.label}) [{reg.addr}, {reg.addr + reg.size}) lies "
            f"outside {where}"
        )


# ---------------------------------------------------------------------------- 2. happens-before


@dataclass(frozen=True)
class HappensBefore:
    """Vector clocks of a program.

    ``clock[i, u]`` is the highest position on unit ``u`` (its ``pos``-th instruction) known
    complete when instruction ``i`` starts (-1: none), where a position known complete
    implies all earlier positions of that unit are (the ordering the clocks encode).
    ``lenient`` is ``clock`` with each instruction's own column raised to ``pos - 1``: every
    earlier instruction of its own unit counts as ordered before it (in-order units; a core's
    accumulation, forwarded in program order). ``own`` keeps ``clock[i, unit[i]]``, the strict
    value for a core's plain accesses.
    """

    unit: np.ndarray  # per instruction, unit index
    pos: np.ndarray  # per instruction, its position on its unit
    by_unit: np.ndarray  # instruction ids grouped by unit, each unit's in program order
    unit_start: np.ndarray  # where each unit's run starts in ``by_unit``
    lenient: np.ndarray  # (n, units) int32
    own: np.ndarray  # per instruction, clock[i, unit[i]]
    core: np.ndarray  # per unit, True for cores

    @classmethod
    def of(cls, program: Program) -> HappensBefore:
        c, n, n_units = program.cols, len(program), len(program.units)
        unit = c["unit"].astype(np.int64)
        by_unit = np.argsort(unit, kind="stable")
        starts = np.concatenate(([0], np.cumsum(np.bincount(unit, minlength=n_units))))
        pos = np.empty(n, dtype=np.int64)
        pos[by_unit] = np.arange(n) - starts[unit[by_unit]]
        if n and pos.max() >= 2 ** (_FIELD_BITS - 1) - 2:
            raise _fail("a unit runs more than 2**31 instructions")
        clock = _clocks(
            unit, pos, c["dep_ptr"], c["dep_ids"], [u.kind.finishes_in_order for u in program.units]
        )
        rows = np.arange(n)
        own = clock[rows, unit].copy()
        clock[rows, unit] = pos - 1
        core = np.array([not u.kind.finishes_in_order for u in program.units], dtype=bool)
        return cls(unit, pos, by_unit, starts, clock, own, core)

    def instr_at(self, unit: int, pos: int) -> int:
        """The instruction at position ``pos`` of unit ``unit``."""
        return int(self.by_unit[self.unit_start[unit] + pos])


def _clocks(
    unit: np.ndarray,
    pos: np.ndarray,
    dep_ptr: np.ndarray,
    dep_ids: np.ndarray,
    in_order: list[bool],
) -> np.ndarray:
    """The (n, units) int32 vector clocks (see :class:`HappensBefore`), one pass in order.

    A unit's next instruction starts from the clock of its previous one (that one started
    first, so its dependencies are done), plus that instruction itself on units that finish
    in order. A dependency ``d`` raises the clock to ``d``'s own clock and position; when the
    clock already covers ``d``'s position it covers ``d``'s clock too (the instruction that
    put that position there started after ``d`` on the same unit), so the merge is skipped.

    A clock is packed into one Python int, a 32-bit field per unit holding position + 1, and
    two clocks merge with a few integer operations (the guard bit of each field tells which
    side is larger), several times faster than an element-wise max over lists. Only units
    that run an instruction get a field (the others' columns are -1): with many cores most
    DMA queues are idle, and the merges cost in proportion to the fields.
    """
    used = np.unique(unit)
    dense = np.zeros(len(in_order), dtype=np.int64)
    dense[used] = np.arange(len(used))
    unit, in_order = dense[unit], [in_order[u] for u in used.tolist()]
    n_units, n, w = len(in_order), len(unit), _FIELD_BITS
    guard = sum(1 << (w * k + w - 1) for k in range(n_units))
    field = [((1 << w) - 1) << (w * k) for k in range(n_units)]
    every = (1 << (w * n_units)) - 1
    other = [every ^ f for f in field]
    shift = [w * k for k in range(n_units)]
    # memoryviews, not lists: a million Python ints per column would cost more than the clocks
    unit_l, pos_l = memoryview(unit.astype(np.int64)), memoryview(pos.astype(np.int64))
    ptr, ids = memoryview(dep_ptr.astype(np.int64)), memoryview(dep_ids.astype(np.int64))
    clocks = [0] * n
    start = [0] * n_units  # packed clock the next instruction of each unit starts from
    for i in range(n):
        u = unit_l[i]
        clk = start[u]
        for d in ids[ptr[i] : ptr[i + 1]]:
            ud = unit_l[d]
            mine = (pos_l[d] + 1) << shift[ud]
            if clk & field[ud] < mine:
                theirs = clocks[d]
                ge = ((clk | guard) - theirs) & guard  # guard bit set where clk >= theirs
                keep = ge - (ge >> (w - 1))
                clk = (((clk & keep) | (theirs & ~keep)) & other[ud]) | mine
        clocks[i] = clk
        if in_order[u]:
            clk = (clk & other[u]) | ((pos_l[i] + 1) << shift[u])
        start[u] = clk
    out = np.empty((n, n_units), dtype=np.int32)
    step = 1 << 16
    for i0 in range(0, n, step):  # unpack in slices: the packed bytes of all at once are big
        packed = b"".join([x.to_bytes(w // 8 * n_units, "little") for x in clocks[i0 : i0 + step]])
        out[i0 : i0 + step] = np.frombuffer(packed, dtype=np.uint32).reshape(-1, n_units)
    out -= 1  # fields hold position + 1
    every_unit = np.full((n, len(dense)), -1, dtype=np.int32)
    every_unit[:, used] = out
    return every_unit


# ---------------------------------------------------------------------------- 3. buffer reuse

_CHUNK = 1 << 18  # elements per numpy sweep chunk: bounds the verifier's working memory


def _check_buffer_reuse(program: Program, order: HappensBefore) -> None:
    """Pairs (older, newer) of allocations where the older one is the latest earlier occupant
    of some byte of the newer one: every user of the newer one must happen after every user
    of the older one. Found per elementary address segment (between allocation boundaries),
    allocations in id order, in chunks."""
    c, n_allocs, n_units = program.cols, program.n_allocs, len(program.units)
    if not n_allocs:
        return
    alloc = c["acc_alloc"]
    owner = np.repeat(np.arange(len(program), dtype=np.int64), np.diff(c["acc_ptr"]))
    last = np.full(n_allocs * n_units, -1, dtype=np.int64)  # per (alloc, unit): last user
    np.maximum.at(last, alloc * n_units + order.unit[owner], order.pos[owner])
    last = last.reshape(n_allocs, n_units)
    floor = np.full((n_allocs, n_units), np.iinfo(np.int32).max, dtype=np.int32)
    by_alloc = np.argsort(alloc, kind="stable")
    users = owner[by_alloc]
    if len(users):
        a_sorted = alloc[by_alloc]
        firsts = np.flatnonzero(np.r_[True, a_sorted[1:] != a_sorted[:-1]])
        for v in range(n_units):  # earliest clock among each allocation's users, per unit
            floor[a_sorted[firsts], v] = np.minimum.reduceat(order.lenient[users, v], firsts)

    lo = c["alloc_offset"]
    hi = lo + c["alloc_size"]
    pts = np.unique(np.concatenate((lo, hi)))
    s0 = np.searchsorted(pts, lo)
    cnt = np.searchsorted(pts, hi) - s0
    occupant = np.full(len(pts), -1, dtype=np.int64)  # latest allocation of each segment
    ends = np.cumsum(cnt)
    a0 = 0
    while a0 < n_allocs:
        a1 = max(int(np.searchsorted(ends, (ends[a0 - 1] if a0 else 0) + _CHUNK)), a0 + 1)
        a1 = min(a1, n_allocs)
        k = cnt[a0:a1]
        ids = np.repeat(np.arange(a0, a1, dtype=np.int64), k)
        seg = np.repeat(s0[a0:a1], k) + np.arange(len(ids)) - np.repeat(np.cumsum(k) - k, k)
        srt = np.argsort(seg, kind="stable")  # by segment, then allocation id
        seg, ids = seg[srt], ids[srt]
        first = np.r_[True, seg[1:] != seg[:-1]]
        prev = np.where(first, occupant[seg], np.r_[-1, ids[:-1]])
        latest = np.r_[first[1:], True]  # the last allocation of each segment so far
        occupant[seg[latest]] = ids[latest]
        pairs = np.unique((prev * n_allocs + ids)[prev >= 0])
        old, new = pairs // n_allocs, pairs % n_allocs
        bad = np.flatnonzero((last[old] > floor[new]).any(axis=1))
        if len(bad):
            _report_reuse(program, order, int(old[bad[0]]), int(new[bad[0]]), last, owner)
        a0 = a1


def _report_reuse(
    program: Program, order: HappensBefore, old: int, new: int, last: np.ndarray, owner: np.ndarray
) -> None:
    users = np.unique(owner[program.cols["acc_alloc"] == new])
    for y in users:
        bad = np.flatnonzero(last[old] > order.lenient[y])
        if len(bad):
            k = int(bad[0])
            o, a = program.alloc(old), program.alloc(new)
            raise _fail(
                f"allocation {new} ({a.label}) reuses bytes of allocation {old} "
                f"({o.label}) while it may still be in use: instruction {int(y)} "
                f"({program.units[order.unit[y]]}) does not wait for "
                f"{program.units[k]} (instruction {order.instr_at(k, int(last[old, k]))})"
            )
    raise AssertionError("unreachable: a failing pair has a failing user")


# ---------------------------------------------------------------------------- 4. hazards


@dataclass(frozen=True)
class _Accesses:
    """Accesses to independent byte spaces, sorted by (space, instruction, reads first)."""

    space: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    instr: np.ndarray
    kind: np.ndarray  # _READ, _ACC_WRITE or _PLAIN_WRITE
    lenient: np.ndarray  # bool: program order on the same unit suffices
    tag: np.ndarray  # DRAM: region of the transfer
    need_tag: np.ndarray  # DRAM: a load's region when it must read a store of its region


def _check_buffer_hazards(program: Program, order: HappensBefore) -> None:
    c = program.cols
    flags = c["acc_flags"]
    owner = np.repeat(np.arange(len(program), dtype=np.int64), np.diff(c["acc_ptr"]))
    write = (flags & ACC_WRITE) != 0
    acc = (flags & ACC_ACCUMULATE) != 0
    kind = np.where(write, np.where(acc, _ACC_WRITE, _PLAIN_WRITE), _READ)
    key = c["acc_alloc"] * (2 * len(program) + 2) + owner * 2 + write
    srt = np.argsort(key)
    del key
    lenient = acc | ~order.core[order.unit[owner]]
    none = np.full(1, -1, dtype=np.int64)
    acs = _Accesses(c["acc_alloc"], c["acc_lo"], c["acc_hi"], owner, kind, lenient, none, none)
    bad = _sweep_chunks(acs, srt, order)
    if bad is not None:
        j, x = bad
        y, a = int(acs.instr[j]), int(acs.space[j])
        xi = program.instr(x)
        raise _fail(
            f"{_describe(program, y)} "
            f"{'reads' if acs.kind[j] == _READ else 'writes'} bytes "
            f"[{int(acs.lo[j])}, {int(acs.hi[j])}) of allocation {a} "
            f"({program.alloc(a).label}) without waiting for instruction {x} "
            f"({xi.unit} {xi.op.name})"
        )


def _sweep_chunks(acs: _Accesses, srt: np.ndarray, order: HappensBefore) -> tuple[int, int] | None:
    """Run :func:`_sweep` over the accesses in the order ``srt`` (by space, instruction,
    reads first), in runs of whole spaces of about ``_CHUNK`` accesses; return the index of
    the failing access (into ``acs``) and the instruction it does not wait for."""
    n = len(srt)
    space = acs.space[srt]
    i0 = 0
    while i0 < n:
        i1 = min(i0 + _CHUNK, n)
        if i1 < n:  # extend to the end of the space
            i1 = int(np.searchsorted(space, space[i1 - 1], side="right"))
        pick = srt[i0:i1]
        part = _Accesses(
            *(
                getattr(acs, f)[pick]
                if len(getattr(acs, f)) > 1 or n == 1
                else np.full(len(pick), -1, dtype=np.int64)
                for f in _Accesses.__dataclass_fields__
            )
        )
        bad = _sweep(part, order)
        if bad is not None:
            return int(pick[bad[0]]), bad[1]
        i0 = i1
    return None


def _segmented_max(values: np.ndarray, epoch: np.ndarray, big: int) -> np.ndarray:
    """Inclusive running max of ``values`` (>= -1) restarting at each new ``epoch``."""
    base = epoch * big
    return np.maximum.accumulate(base + values + 1) - base - 1


def _sweep(acs: _Accesses, order: HappensBefore) -> tuple[int, int] | None:
    """The first access that does not wait for what it must, as (access index, instruction
    it does not wait for), or None.

    Each access is cut at every access boundary of its space into elementary segments; per
    segment, in program order, an access's requirements are read off the accesses before its
    own instruction since the last plain write (the *epoch*): a read waits for the
    accumulating writes of the epoch, or when there are none for the plain write that opened
    it; an accumulating write for that plain write and the reads of the epoch; a plain write
    for the reads of the epoch and what a read would wait for. A requirement is kept per unit
    as the highest position on it, and compared with the clock."""
    span = int(acs.hi.max()) + 1
    space = acs.space - acs.space[0]
    klo, khi = space * span + acs.lo, space * span + acs.hi
    pts = np.unique(np.concatenate((klo, khi)))
    s0 = np.searchsorted(pts, klo)
    cnt = np.searchsorted(pts, khi) - s0
    e = np.repeat(np.arange(len(klo), dtype=np.int64), cnt)
    seg = np.repeat(s0, cnt) + np.arange(len(e)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    srt = np.argsort(seg, kind="stable")
    e, seg = e[srt], seg[srt]
    del srt
    idx = np.arange(len(e))
    ins = acs.instr[e]
    kind = acs.kind[e]
    unit = order.unit[ins]
    pos = order.pos[ins]
    first = np.r_[True, seg[1:] != seg[:-1]]
    gstart = np.maximum.accumulate(np.where(first | np.r_[True, ins[1:] != ins[:-1]], idx, 0))
    has_p = ~first[gstart]
    p = np.where(has_p, gstart - 1, 0)  # the last element before this instruction's
    plain = kind == _PLAIN_WRITE
    opens = first | plain
    epoch = np.cumsum(opens)
    w = np.maximum.accumulate(np.where(opens, idx, 0))[p]  # element that opened p's epoch
    has_w = has_p & plain[w]
    big = int(pos.max()) + 2
    any_acc = has_p & (_segmented_max(np.where(kind == _ACC_WRITE, 0, -1), epoch, big)[p] >= 0)
    is_read = kind == _READ
    bad_tag = (acs.need_tag[e] >= 0) & ~(has_w & (acs.tag[e[w]] == acs.need_tag[e]))
    if bad_tag.any():
        k = int(np.flatnonzero(bad_tag)[0])
        return int(e[k]), -1
    for v in np.unique(unit).tolist():  # (a unit with no access here requires nothing)
        on_v = unit == v
        r_v = np.where(has_p, _segmented_max(np.where(is_read & on_v, pos, -1), epoch, big)[p], -1)
        a_v = np.where(
            has_p, _segmented_max(np.where((kind == _ACC_WRITE) & on_v, pos, -1), epoch, big)[p], -1
        )
        w_v = np.where(has_w & (unit[w] == v), pos[w], -1)
        last_write = np.where(any_acc, a_v, w_v)
        req = np.where(
            is_read, last_write, np.where(plain, np.maximum(r_v, last_write), np.maximum(r_v, w_v))
        )
        allowed = order.lenient[ins, v].astype(np.int64)
        strict = on_v & ~acs.lenient[e]
        allowed[strict] = order.own[ins[strict]]
        bad = np.flatnonzero(req > allowed)
        if len(bad):
            k = int(bad[0])
            return int(e[k]), order.instr_at(v, int(req[k]))
    return None


# ---------------------------------------------------------------------------- 5. DRAM


def _check_dram(program: Program, order: HappensBefore) -> None:
    c = program.cols
    op = c["op"]
    moves = np.flatnonzero((op == Op.LOAD) | (op == Op.STORE))
    if not len(moves):
        return
    region = c["region"][moves].astype(np.int64)
    store = op[moves] == Op.STORE
    persistent = c["region_persistent"][region] != 0
    lo = c["dram_addr"][moves]
    acs = _Accesses(
        np.zeros(len(moves), dtype=np.int64),
        lo,
        lo + c["nbytes"][moves],
        moves,
        np.where(store, _PLAIN_WRITE, _READ),
        np.ones(len(moves), dtype=bool),
        region,
        np.where(store | persistent, -1, region),
    )
    bad = _sweep_chunks(acs, np.arange(len(moves)), order)
    if bad is not None:
        j, x = bad
        y = int(moves[j])
        if x < 0:
            reg = program.region(int(region[j]))
            raise _fail(
                f"{_describe(program, y)} loads DRAM bytes [{int(lo[j])}, "
                f"{int(acs.hi[j])}) of region {reg.id} ({reg.label}) that no earlier "
                "STORE of that region wrote"
            )
        xi = program.instr(x)
        raise _fail(
            f"{_describe(program, y)} touches DRAM bytes [{int(lo[j])}, "
            f"{int(acs.hi[j])}) that instruction {x} ({xi.op.name} on {xi.unit}) also "
            "touches, without waiting for it"
        )
    _check_regions(program, order, moves, region)


def _check_regions(
    program: Program, order: HappensBefore, moves: np.ndarray, region: np.ndarray
) -> None:
    """Regions sharing DRAM bytes are never live at once (see check 5)."""
    c, n_regions, n_units = program.cols, program.n_regions, len(program.units)
    first = np.full(n_regions, len(program), dtype=np.int64)
    final = np.full(n_regions, -1, dtype=np.int64)
    np.minimum.at(first, region, moves)
    np.maximum.at(final, region, moves)
    last = np.full(n_regions * n_units, -1, dtype=np.int64)  # per (region, unit): last move
    np.maximum.at(last, region * n_units + order.unit[moves], order.pos[moves])
    last = last.reshape(n_regions, n_units)
    by_region = np.argsort(region, kind="stable")
    bounds = np.searchsorted(region[by_region], np.arange(n_regions + 1))
    addr = c["region_addr"]
    end = addr + c["region_size"]
    persistent = c["region_persistent"] != 0
    by_addr = np.argsort(addr, kind="stable")
    for i, r in enumerate(by_addr.tolist()):
        for s in by_addr[i + 1 :].tolist():
            if addr[s] >= end[r]:
                break
            old, new = (r, s) if (first[r], r) < (first[s], s) else (s, r)
            lo, hi = int(max(addr[r], addr[s])), int(min(end[r], end[s]))
            o, nw = program.region(old), program.region(new)
            what = f"DRAM regions {old} ({o.label}) and {new} ({nw.label}) share bytes [{lo}, {hi})"
            if persistent[old] or persistent[new]:
                raise _fail(
                    f"{what}, but {f'{old if persistent[old] else new} is'} "
                    "persistent (live for the whole iteration)"
                )
            if final[old] < 0 or final[new] < 0:
                continue  # a region nothing moves is never live
            if final[old] >= first[new]:
                raise _fail(
                    f"{what} and are live at once: instruction {int(first[new])} moves "
                    f"region {new} before instruction {int(final[old])} moves region "
                    f"{old} for the last time"
                )
            mine = moves[by_region[bounds[new] : bounds[new + 1]]]
            touch = mine[
                (c["dram_addr"][mine] < hi) & (c["dram_addr"][mine] + c["nbytes"][mine] > lo)
            ]
            for y in touch[(last[old] > order.lenient[touch]).any(axis=1)][:1].tolist():
                k = int(np.flatnonzero(last[old] > order.lenient[y])[0])
                raise _fail(
                    f"{what}: {_describe(program, y)} does not wait for instruction "
                    f"{order.instr_at(k, int(last[old, k]))} of region {old} on "
                    f"{program.units[k]}"
                )


# ---------------------------------------------------------------------------- 6. planned bytes


def _check_planned(program: Program) -> None:
    emitted = program.traffic_by_kind()
    planned = program.planned or {}
    transfers = sum(sum(by_kind.values()) for by_kind in emitted.values())
    if transfers and not any(planned.get(d) for d in ("read", "write")):
        raise _fail(
            "the program moves DRAM bytes but has no planned DRAM bytes to compare "
            "them with (program.planned is empty)"
        )
    for direction in ("read", "write"):
        plan = planned.get(direction, {})
        unknown = sorted(set(plan) - set(TRAFFIC_KINDS))
        if unknown:
            raise _fail(f"planned DRAM {direction} bytes name unknown traffic kinds {unknown}")
        for kind in TRAFFIC_KINDS:
            if plan.get(kind, 0) != emitted[direction][kind]:
                raise _fail(
                    f"planned DRAM {direction} bytes of {kind} ({plan.get(kind, 0)}) "
                    f"differ from the transfers emitted ({emitted[direction][kind]})"
                )
