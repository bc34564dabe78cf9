"""The instruction IR: one typed, columnar program that every stage after the schedule reads.

The compiler writes it (through :class:`ProgramBuilder`), trace files store it, and the
verifier, the machine, the analytical model and the reports read it. Nothing here knows
about SimPy or networks.

* Opcodes are :class:`Op`; units are :class:`Unit` values (a kind and an index), never names
  to parse.
* Each opcode carries a payload with exactly what execution needs: :class:`Gemm` (``m x k x
  n``, whether it accumulates, and the element size of its output, so the machine never
  looks at a training role), :class:`Vector` (elements, passes, lane operations) and
  :class:`Transfer` (DRAM address and bytes, the DRAM region and its traffic kind).
* Storage is a struct of arrays: a :class:`Program` is numpy columns, one entry per
  instruction, with the variable-length parts (dependencies, buffer accesses) as flattened
  arrays indexed by a pointer column (CSR). A million instructions cost about 100 MB.
  ``program.instr(i)`` (and iterating ``program.instrs``) builds a frozen :class:`Instr`
  view of one instruction, for reports, errors and tests; hot paths read the columns.

Units run their instructions in id order; an instruction starts when the previous one of its
unit allows it and every instruction in its dependencies has completed. Buffer space is
explicit: allocation ``a`` is the byte range ``[alloc_offset[a], alloc_offset[a] +
alloc_size[a])`` of the global buffer, live from the start of its first user to the
completion of its last. DRAM is explicit too: every transfer lies inside a DRAM region (one
per tensor), and regions that share addresses are never live at once.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from .errors import WavecoreError


class Op(IntEnum):
    """Opcodes. The values are what the ``op`` column and trace files store."""

    GEMM = 0
    VEC = 1
    LOAD = 2  # HBM -> global buffer
    STORE = 3  # global buffer -> HBM


class UnitKind(IntEnum):
    """What a unit is. Cores start their instructions in order but may overlap the drain of
    one with the next; every other unit finishes each instruction before the next."""

    CORE = 0
    VEC = 1
    DMA_LD = 2
    DMA_ST = 3

    @property
    def finishes_in_order(self) -> bool:
        return self is not UnitKind.CORE

    @property
    def is_dma(self) -> bool:
        return self in (UnitKind.DMA_LD, UnitKind.DMA_ST)


_UNIT_PREFIX = {
    UnitKind.CORE: "core",
    UnitKind.VEC: "vec",
    UnitKind.DMA_LD: "dma",
    UnitKind.DMA_ST: "dma",
}
_UNIT_SUFFIX = {UnitKind.DMA_LD: ".ld", UnitKind.DMA_ST: ".st"}


@dataclass(frozen=True, slots=True, order=True)
class Unit:
    """One unit of the machine: ``core<i>``, ``vec<i>``, ``dma<i>.ld`` or ``dma<i>.st``."""

    kind: UnitKind
    index: int

    @property
    def name(self) -> str:
        return f"{_UNIT_PREFIX[self.kind]}{self.index}{_UNIT_SUFFIX.get(self.kind, '')}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> Unit:
        """The unit a user-facing name denotes (``core0``, ``dma1.st``); ValueError if none."""
        for kind in UnitKind:
            prefix, suffix = _UNIT_PREFIX[kind], _UNIT_SUFFIX.get(kind, "")
            if name.startswith(prefix) and name.endswith(suffix):
                digits = name[len(prefix) : len(name) - len(suffix)]
                if digits.isdigit() and (suffix or "." not in digits):
                    return cls(kind, int(digits))
        raise ValueError(f"unknown unit name {name!r}")


def machine_units(cores: int) -> tuple[Unit, ...]:
    """The units of a machine with ``cores`` cores: per core an array, a vector unit and a
    load and a store DMA queue."""
    return tuple(Unit(kind, c) for c in range(cores) for kind in UnitKind)


class Traffic(IntEnum):
    """What a DRAM transfer moves (the breakdown every report gives)."""

    WEIGHTS = 0
    ACTIVATIONS = 1
    SAVED_ACTIVATIONS = 2
    GRADIENTS = 3
    WEIGHT_GRADIENTS = 4
    OPTIMIZER_STATE = 5

    @property
    def label(self) -> str:
        return self.name.lower()


TRAFFIC_KINDS = tuple(t.label for t in Traffic)


@dataclass(frozen=True, slots=True)
class Access:
    """Bytes ``[lo, hi)`` of buffer allocation ``alloc``; ``acc``: accumulate (commutative)."""

    alloc: int
    lo: int
    hi: int
    acc: bool = False


@dataclass(frozen=True, slots=True)
class Gemm:
    """Stream ``m`` rows through a ``k x n`` weight operand (every fold of it); the output
    elements are ``out_bytes`` wide and added to the old values when ``accumulate``."""

    m: int
    k: int
    n: int
    accumulate: bool
    out_bytes: int


@dataclass(frozen=True, slots=True)
class Vector:
    """``elements`` elements, ``passes`` passes over them, ``ops`` lane operations in all."""

    elements: int
    passes: int
    ops: int


@dataclass(frozen=True, slots=True)
class Transfer:
    """``nbytes`` at DRAM address ``dram_addr``, inside DRAM region ``region``."""

    dram_addr: int
    nbytes: int
    traffic: Traffic
    region: int


Payload = Gemm | Vector | Transfer
_PAYLOAD_OF = {Op.GEMM: Gemm, Op.VEC: Vector, Op.LOAD: Transfer, Op.STORE: Transfer}


@dataclass(frozen=True, slots=True)
class Step:
    """Provenance of a run of instructions: schedule group, layer and training phase."""

    group: int
    layer: str
    phase: str


@dataclass(frozen=True, slots=True)
class Alloc:
    """A buffer region: ``size`` bytes at ``offset``."""

    id: int
    offset: int
    size: int
    label: str


@dataclass(frozen=True, slots=True)
class DramRegion:
    """DRAM bytes ``[addr, addr + size)`` holding tensor ``label`` while it is live.
    ``persistent`` regions (weights, optimizer state, the input batch) hold data from before
    the iteration and keep it after; the others are written before they are read."""

    id: int
    addr: int
    size: int
    label: str
    persistent: bool


@dataclass(frozen=True, slots=True)
class Instr:
    """A read-only view of one instruction of a :class:`Program`."""

    id: int
    unit: Unit
    op: Op
    deps: tuple[int, ...]
    reads: tuple[Access, ...]
    writes: tuple[Access, ...]
    payload: Payload
    step: Step
    label: str  # GEMM: training role (FWD, DGRAD, WGRAD); VEC: kind of op; transfers: tensor

    @property
    def layer(self) -> str:
        return self.step.layer

    @property
    def phase(self) -> str:
        return self.step.phase

    @property
    def group(self) -> int:
        return self.step.group

    @property
    def macs(self) -> int:
        p = self.payload
        return p.m * p.k * p.n if isinstance(p, Gemm) else 0


@dataclass
class GroupInfo:
    """What the report needs of a schedule group."""

    index: int
    layers: list[str]
    sub_batch: int
    sub_batches: int
    footprint_bytes: int
    weights_resident: bool
    wgrad_resident: bool
    #: the backward pass starts by recomputing the group's forward (``--recompute``); None
    #: only when read from a trace written before groups recorded it under all or auto
    recompute: bool | None = False


@dataclass(frozen=True)
class DramFootprint:
    """The iteration's DRAM footprint: the most bytes of DRAM regions live at once, and what
    was live at that moment by tensor kind (``persistent`` tensors counted throughout)."""

    peak_bytes: int
    by_kind: dict[str, int]


# Column names and dtypes: per instruction, then the flattened dependency and access
# arrays, then the allocation and DRAM-region tables. Trace files store exactly these.
INSTR_COLUMNS: dict[str, str] = {
    "op": "i1",
    "unit": "i2",
    "step": "i4",
    "label": "i4",
    "m": "i8",
    "k": "i8",
    "n": "i8",
    "accumulate": "i1",
    "out_bytes": "i1",
    "elements": "i8",
    "passes": "i8",
    "ops": "i8",
    "dram_addr": "i8",
    "nbytes": "i8",
    "traffic": "i1",
    "region": "i4",
}
FLAT_COLUMNS: dict[str, str] = {
    "dep_ptr": "i8",
    "dep_ids": "i8",
    "acc_ptr": "i8",
    "acc_alloc": "i8",
    "acc_lo": "i8",
    "acc_hi": "i8",
    "acc_flags": "i1",
}
TABLE_COLUMNS: dict[str, str] = {
    "alloc_offset": "i8",
    "alloc_size": "i8",
    "alloc_label": "i4",
    "region_addr": "i8",
    "region_size": "i8",
    "region_label": "i4",
    "region_persistent": "i1",
}
ALL_COLUMNS = {**INSTR_COLUMNS, **FLAT_COLUMNS, **TABLE_COLUMNS}
ACC_WRITE, ACC_ACCUMULATE = 1, 2  # bits of ``acc_flags``; a unit's reads precede its writes


@dataclass(eq=False)
class Program:
    """A compiled training iteration (or any instruction program), as columns.

    ``cols`` holds every array of :data:`ALL_COLUMNS`; ``strings`` the texts that
    ``label``, ``alloc_label`` and ``region_label`` index; ``steps`` the provenance that the
    ``step`` column indexes.
    """

    units: tuple[Unit, ...]
    cols: dict[str, np.ndarray]
    strings: list[str]
    steps: list[Step]
    gbuf_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)
    groups: list[GroupInfo] = field(default_factory=list)
    planned: dict[str, dict[str, int]] = field(default_factory=dict)  # read/write -> kind -> B
    dram_footprint: DramFootprint | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ sizes and views

    def __len__(self) -> int:
        return len(self.cols["op"])

    @property
    def n_allocs(self) -> int:
        return len(self.cols["alloc_offset"])

    @property
    def n_regions(self) -> int:
        return len(self.cols["region_addr"])

    @property
    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]

    def instr(self, i: int) -> Instr:
        """A view of instruction ``i`` (slow: for reports of a few, errors and tests)."""
        c = self.cols
        op = Op(int(c["op"][i]))
        d0, d1 = int(c["dep_ptr"][i]), int(c["dep_ptr"][i + 1])
        a0, a1 = int(c["acc_ptr"][i]), int(c["acc_ptr"][i + 1])
        reads, writes = [], []
        for j in range(a0, a1):
            flags = int(c["acc_flags"][j])
            a = Access(
                int(c["acc_alloc"][j]),
                int(c["acc_lo"][j]),
                int(c["acc_hi"][j]),
                bool(flags & ACC_ACCUMULATE),
            )
            (writes if flags & ACC_WRITE else reads).append(a)
        payload: Payload
        if op == Op.GEMM:
            payload = Gemm(
                int(c["m"][i]),
                int(c["k"][i]),
                int(c["n"][i]),
                bool(c["accumulate"][i]),
                int(c["out_bytes"][i]),
            )
        elif op == Op.VEC:
            payload = Vector(int(c["elements"][i]), int(c["passes"][i]), int(c["ops"][i]))
        else:
            payload = Transfer(
                int(c["dram_addr"][i]),
                int(c["nbytes"][i]),
                Traffic(int(c["traffic"][i])),
                int(c["region"][i]),
            )
        return Instr(
            i,
            self.units[int(c["unit"][i])],
            op,
            tuple(int(x) for x in c["dep_ids"][d0:d1]),
            tuple(reads),
            tuple(writes),
            payload,
            self.steps[int(c["step"][i])],
            self.strings[int(c["label"][i])],
        )

    @property
    def instrs(self) -> Sequence[Instr]:
        return _InstrList(self)

    def alloc(self, a: int) -> Alloc:
        c = self.cols
        return Alloc(
            a,
            int(c["alloc_offset"][a]),
            int(c["alloc_size"][a]),
            self.strings[int(c["alloc_label"][a])],
        )

    @property
    def allocs(self) -> list[Alloc]:
        return [self.alloc(a) for a in range(self.n_allocs)]

    def region(self, r: int) -> DramRegion:
        c = self.cols
        return DramRegion(
            r,
            int(c["region_addr"][r]),
            int(c["region_size"][r]),
            self.strings[int(c["region_label"][r])],
            bool(c["region_persistent"][r]),
        )

    # ------------------------------------------------------------------ derived columns

    def _derived(self, name: str, make) -> Any:
        value = self._cache.get(name)
        if value is None:
            value = self._cache[name] = make()
        return value

    def unit_kinds(self) -> np.ndarray:
        """Per instruction, the :class:`UnitKind` value of its unit."""

        def make() -> np.ndarray:
            kinds = np.array([u.kind for u in self.units], dtype=np.int8)
            return (
                kinds[self.cols["unit"]] if len(self.units) else self.cols["unit"].astype(np.int8)
            )

        return self._derived("unit_kinds", make)

    def stream(self, unit: int) -> np.ndarray:
        """Ids of the instructions of unit index ``unit``, in program order."""
        return np.flatnonzero(self.cols["unit"] == unit)

    def access_instr(self) -> np.ndarray:
        """Per access, the instruction it belongs to."""
        return self._derived(
            "access_instr",
            lambda: np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.cols["acc_ptr"])),
        )

    def dep_instr(self) -> np.ndarray:
        """Per dependency entry, the instruction that has it."""
        return self._derived(
            "dep_instr",
            lambda: np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.cols["dep_ptr"])),
        )

    def access_summary(self) -> dict[str, np.ndarray]:
        """Per instruction: buffer address of its first read and first write (-1 if none) and
        the summed bytes of its reads and of its writes."""

        def make() -> dict[str, np.ndarray]:
            c, n = self.cols, len(self)
            owner = self.access_instr()
            is_write = (c["acc_flags"] & ACC_WRITE).astype(bool)
            addr = (
                c["alloc_offset"][c["acc_alloc"]] + c["acc_lo"]
                if len(owner)
                else np.zeros(0, np.int64)
            )
            size = c["acc_hi"] - c["acc_lo"]
            out = {}
            for name, mask in (("read", ~is_write), ("write", is_write)):
                first = np.full(n, -1, dtype=np.int64)
                idx = np.flatnonzero(mask)
                # reversed assignment: the first access of each instruction wins
                first[owner[idx][::-1]] = addr[idx][::-1]
                out[f"{name}_addr"] = first
                out[f"{name}_bytes"] = np.bincount(
                    owner[idx], weights=size[idx], minlength=n
                ).astype(np.int64)
            return out

        return self._derived("access_summary", make)

    def macs(self) -> int:
        c = self.cols
        gemm = c["op"] == Op.GEMM
        return int((c["m"][gemm] * c["k"][gemm] * c["n"][gemm]).sum())

    def dram_bytes(self) -> tuple[int, int]:
        """(read, write) bytes of all LOAD and STORE instructions."""
        c = self.cols
        return (
            int(c["nbytes"][c["op"] == Op.LOAD].sum()),
            int(c["nbytes"][c["op"] == Op.STORE].sum()),
        )

    def traffic_by_kind(self) -> dict[str, dict[str, int]]:
        c = self.cols
        out = {}
        for direction, op in (("read", Op.LOAD), ("write", Op.STORE)):
            mask = c["op"] == op
            sums = np.bincount(
                c["traffic"][mask].astype(np.int64),
                weights=c["nbytes"][mask],
                minlength=len(Traffic),
            )
            out[direction] = {t.label: int(sums[t]) for t in Traffic}
        return out

    def counts_by_op(self) -> dict[str, int]:
        counts = np.bincount(self.cols["op"].astype(np.int64), minlength=len(Op))
        return {op.name: int(counts[op]) for op in Op if counts[op]}


class _InstrList(Sequence):
    """``program.instrs``: instruction views built on demand."""

    def __init__(self, program: Program) -> None:
        self.program = program

    def __len__(self) -> int:
        return len(self.program)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.program.instr(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.program.instr(i)

    def __iter__(self) -> Iterator[Instr]:
        return (self.program.instr(i) for i in range(len(self)))


@dataclass(frozen=True)
class Mark:
    """How much a :class:`ProgramBuilder` held at one moment (a block's start or end)."""

    instrs: int
    deps: int
    accesses: int
    allocs: int
    regions: int
    steps: int


# columns copied unchanged from a replayed block
_REPLAY_SAME = (
    "op",
    "unit",
    "label",
    "m",
    "k",
    "n",
    "accumulate",
    "out_bytes",
    "elements",
    "passes",
    "ops",
    "nbytes",
    "traffic",
    "region",
)


#: Most instructions one program may hold (about 2 GB of columns, minutes to simulate); the
#: largest zoo program at batch 256 has about 3 M. :class:`ProgramBuilder` refuses to grow a
#: program past it (checked before a replay allocates its copies), so an input whose work
#: grows without bound (a huge batch or GEMM) stops with one line instead of exhausting memory.
MAX_INSTRUCTIONS = 20_000_000


class ProgramBuilder:
    """Appends instructions column by column (``array`` buffers, no per-instruction objects)
    and hands over a :class:`Program`. Texts (labels, tensors) are interned once."""

    def __init__(self, units: Sequence[Unit], gbuf_bytes: int) -> None:
        self.units = tuple(units)
        self.unit_index = {u: i for i, u in enumerate(self.units)}
        self.gbuf_bytes = gbuf_bytes
        self.buf: dict[str, array] = {name: array("q") for name in ALL_COLUMNS}
        self.buf["dep_ptr"].append(0)
        self.buf["acc_ptr"].append(0)
        self.strings: list[str] = [""]
        self._string_index: dict[str, int] = {"": 0}
        self.steps: list[Step] = []
        self._step_index: dict[Step, int] = {}
        self.step = -1
        self.count = 0

    def _check_size(self, more: int) -> None:
        """Refuse to grow past :data:`MAX_INSTRUCTIONS` (before anything is allocated)."""
        if self.count + more > MAX_INSTRUCTIONS:
            raise WavecoreError(
                f"the program would have more than {MAX_INSTRUCTIONS:,} instructions, the "
                "most the simulator handles; lower --batch (or a GEMM's size), or raise "
                "gbuf_bytes so that fewer, larger sub-batches are needed"
            )

    def intern(self, text: str) -> int:
        i = self._string_index.get(text)
        if i is None:
            i = self._string_index[text] = len(self.strings)
            self.strings.append(text)
        return i

    def set_step(self, group: int, layer: str, phase: str) -> None:
        """Provenance of the instructions emitted from now on. Consecutive instructions with
        the same provenance form one step; a step reopened later is a new step."""
        key = Step(group, layer, phase)
        if self.steps and self.steps[-1] == key and self.step == len(self.steps) - 1:
            return
        self.steps.append(key)
        self.step = len(self.steps) - 1

    def alloc(self, offset: int, size: int, label: str) -> int:
        b = self.buf
        b["alloc_offset"].append(offset)
        b["alloc_size"].append(size)
        b["alloc_label"].append(self.intern(label))
        return len(b["alloc_offset"]) - 1

    def alloc_size(self, a: int) -> int:
        return self.buf["alloc_size"][a]

    def alloc_offset(self, a: int) -> int:
        return self.buf["alloc_offset"][a]

    def region(self, addr: int, size: int, label: str, persistent: bool) -> int:
        b = self.buf
        b["region_addr"].append(addr)
        b["region_size"].append(size)
        b["region_label"].append(self.intern(label))
        b["region_persistent"].append(int(persistent))
        return len(b["region_addr"]) - 1

    def emit(
        self,
        unit: Unit,
        op: Op,
        payload: Payload,
        reads: Sequence[Access],
        writes: Sequence[Access],
        deps: Sequence[int],
        label: str = "",
    ) -> int:
        """Append one instruction; return its id."""
        if type(payload) is not _PAYLOAD_OF[op]:
            raise TypeError(f"{op.name} takes a {_PAYLOAD_OF[op].__name__} payload")
        if self.count >= MAX_INSTRUCTIONS:
            self._check_size(1)
        b = self.buf
        b["op"].append(op)
        b["unit"].append(self.unit_index[unit])
        b["step"].append(self.step)
        b["label"].append(self.intern(label))
        if op == Op.GEMM:
            b["m"].append(payload.m)
            b["k"].append(payload.k)
            b["n"].append(payload.n)
            b["accumulate"].append(int(payload.accumulate))
            b["out_bytes"].append(payload.out_bytes)
        else:
            for name in ("m", "k", "n", "accumulate", "out_bytes"):
                b[name].append(0)
        if op == Op.VEC:
            b["elements"].append(payload.elements)
            b["passes"].append(payload.passes)
            b["ops"].append(payload.ops)
        else:
            for name in ("elements", "passes", "ops"):
                b[name].append(0)
        if op in (Op.LOAD, Op.STORE):
            b["dram_addr"].append(payload.dram_addr)
            b["nbytes"].append(payload.nbytes)
            b["traffic"].append(payload.traffic)
            b["region"].append(payload.region)
        else:
            for name in ("dram_addr", "nbytes", "traffic"):
                b[name].append(0)
            b["region"].append(-1)
        b["dep_ids"].extend(deps)
        b["dep_ptr"].append(len(b["dep_ids"]))
        for flags, accesses in ((0, reads), (ACC_WRITE, writes)):
            for a in accesses:
                b["acc_alloc"].append(a.alloc)
                b["acc_lo"].append(a.lo)
                b["acc_hi"].append(a.hi)
                b["acc_flags"].append(flags | (ACC_ACCUMULATE if a.acc else 0))
        b["acc_ptr"].append(len(b["acc_alloc"]))
        self.count += 1
        return self.count - 1

    # ------------------------------------------------------------------ replay

    def mark(self) -> Mark:
        b = self.buf
        return Mark(
            self.count,
            len(b["dep_ids"]),
            len(b["acc_alloc"]),
            len(b["alloc_offset"]),
            len(b["region_addr"]),
            len(self.steps),
        )

    def _col(self, name: str, lo: int, hi: int) -> np.ndarray:
        return np.frombuffer(self.buf[name][lo:hi], dtype=np.int64).copy()

    def _block(self, a: Mark, b: Mark) -> dict[str, np.ndarray]:
        """Columns of the block emitted between marks ``a`` and ``b``."""
        out = {name: self._col(name, a.instrs, b.instrs) for name in INSTR_COLUMNS}
        for name in ("dep_ids",):
            out[name] = self._col(name, a.deps, b.deps)
        out["dep_ptr"] = self._col("dep_ptr", a.instrs, b.instrs + 1) - a.deps
        for name in ("acc_alloc", "acc_lo", "acc_hi", "acc_flags"):
            out[name] = self._col(name, a.accesses, b.accesses)
        out["acc_ptr"] = self._col("acc_ptr", a.instrs, b.instrs + 1) - a.accesses
        for name in ("alloc_offset", "alloc_size", "alloc_label"):
            out[name] = self._col(name, a.allocs, b.allocs)
        return out

    def periodic_shift(
        self, floor: Mark, first: Mark, second: Mark, end: Mark
    ) -> np.ndarray | None:
        """Whether block ``[second, end)`` is block ``[first, second)`` shifted by one period:
        instruction, step and allocation ids at or above ``floor`` shifted by the block's
        counts, the rest equal, DRAM addresses moved by a per-instruction amount, which is
        returned (``None`` if the blocks differ otherwise)."""
        p = second.instrs - first.instrs
        if (
            p != end.instrs - second.instrs
            or end.regions != second.regions
            or second.regions != first.regions
            or second.allocs - first.allocs != end.allocs - second.allocs
            or second.steps - first.steps != end.steps - second.steps
            or self.steps[first.steps : second.steps] != self.steps[second.steps : end.steps]
        ):
            return None
        x, y = self._block(first, second), self._block(second, end)
        for name in (
            *_REPLAY_SAME,
            "dep_ptr",
            "acc_ptr",
            "acc_lo",
            "acc_hi",
            "acc_flags",
            "alloc_offset",
            "alloc_size",
            "alloc_label",
        ):
            if not np.array_equal(x[name], y[name]):
                return None
        if not np.array_equal(x["step"] + (second.steps - first.steps), y["step"]):
            return None
        if not np.array_equal(_shift(x["dep_ids"], floor.instrs, p), y["dep_ids"]):
            return None
        alloc_shift = second.allocs - first.allocs
        if not np.array_equal(_shift(x["acc_alloc"], floor.allocs, alloc_shift), y["acc_alloc"]):
            return None
        return y["dram_addr"] - x["dram_addr"]

    def replay(
        self, floor: Mark, first: Mark, last: Mark, copies: int, addr_shift: np.ndarray
    ) -> None:
        """Append ``copies`` more periods of the block ``[first, last)`` (see
        :meth:`periodic_shift`), all at once."""
        self._check_size((last.instrs - first.instrs) * copies)
        t = self._block(first, last)
        p, q = last.instrs - first.instrs, last.steps - first.steps
        na = last.allocs - first.allocs
        c = np.arange(1, copies + 1, dtype=np.int64)[:, None]  # copy number, as a column

        def tile(values: np.ndarray) -> np.ndarray:
            return np.tile(values, copies)

        b = self.buf
        out = {name: tile(t[name]) for name in _REPLAY_SAME}
        out["step"] = (t["step"] + c * q).ravel()
        out["dram_addr"] = (t["dram_addr"] + c * addr_shift).ravel()
        moves = t["dep_ids"] >= floor.instrs
        out["dep_ids"] = (t["dep_ids"] + c * p * moves).ravel()
        n_deps, n_acc = len(t["dep_ids"]), len(t["acc_alloc"])
        out["dep_ptr"] = (t["dep_ptr"][1:] + len(b["dep_ids"]) + (c - 1) * n_deps).ravel()
        out["acc_ptr"] = (t["acc_ptr"][1:] + len(b["acc_alloc"]) + (c - 1) * n_acc).ravel()
        shifted = t["acc_alloc"] >= floor.allocs
        out["acc_alloc"] = (t["acc_alloc"] + c * na * shifted).ravel()
        for name in ("acc_lo", "acc_hi", "acc_flags", "alloc_offset", "alloc_size", "alloc_label"):
            out[name] = tile(t[name])
        for name, values in out.items():
            b[name].frombytes(values.astype(np.int64).tobytes())
        self.steps.extend(self.steps[first.steps : last.steps] * copies)
        self.step = len(self.steps) - 1
        self.count += p * copies

    def finish(self, **kwargs: Any) -> Program:
        """The program (``kwargs``: meta, groups, planned, dram_footprint). The builder is
        empty afterwards."""
        cols = {}
        for name, dtype in ALL_COLUMNS.items():  # each buffer released once converted
            cols[name] = np.frombuffer(self.buf[name], dtype=np.int64).astype(dtype)
            self.buf[name] = array("q")
        return Program(
            self.units, cols, list(self.strings), list(self.steps), self.gbuf_bytes, **kwargs
        )


def _shift(ids: np.ndarray, floor: int, by: int) -> np.ndarray:
    return ids + by * (ids >= floor)


def program_from_instrs(
    units: Sequence[Unit],
    gbuf_bytes: int,
    allocs: Sequence[Alloc],
    instrs: Sequence[Instr],
    regions: Sequence[DramRegion] = (),
    **kwargs: Any,
) -> Program:
    """A program from instruction views (tests, hand-built programs, mutations): ids and the
    allocation and region ids must be their positions."""
    b = ProgramBuilder(units, gbuf_bytes)
    for a in allocs:
        b.alloc(a.offset, a.size, a.label)
    for r in regions:
        b.region(r.addr, r.size, r.label, r.persistent)
    for ins in instrs:
        b.set_step(ins.step.group, ins.step.layer, ins.step.phase)
        b.emit(ins.unit, ins.op, ins.payload, ins.reads, ins.writes, ins.deps, ins.label)
    return b.finish(**kwargs)
