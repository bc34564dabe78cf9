"""The compiled program: per-unit instruction streams with explicit dependencies.

Units are ``core<i>`` (systolic array), ``vec<i>`` (vector unit), ``dma<i>.ld`` and
``dma<i>.st`` (DMA queues HBM -> buffer and buffer -> HBM). Each unit runs its stream in
order; an instruction starts when the previous one on its unit allows it and every
instruction in ``deps`` has completed. Buffer space is explicit: an :class:`Alloc` is a fixed
``[offset, offset + size)`` range, live from the start of its first user to the completion of
its last user. Nothing here knows about SimPy or networks.
"""

from __future__ import annotations

import operator
from array import array
from dataclasses import dataclass, field

LOAD, STORE, GEMM, VEC = "LOAD", "STORE", "GEMM", "VEC"
OPCODES = (LOAD, STORE, GEMM, VEC)
TRAFFIC_KINDS = ("weights", "activations", "saved_activations", "gradients", "weight_gradients",
                 "optimizer_state")


@dataclass(frozen=True, slots=True)
class Access:
    """Bytes ``[lo, hi)`` of buffer allocation ``alloc``; ``acc``: accumulate (commutative)."""

    alloc: int
    lo: int
    hi: int
    acc: bool = False


@dataclass(slots=True)
class Instr:
    """One instruction. Fields unused by an opcode stay at their defaults."""

    id: int
    unit: str
    op: str
    deps: tuple[int, ...] = ()
    reads: tuple[Access, ...] = ()
    writes: tuple[Access, ...] = ()
    # GEMM tile: stream m rows through a k x n weight tile
    m: int = 0
    k: int = 0
    n: int = 0
    accumulate: bool = False
    # VEC: kind of op (relu, norm, ...), elements, passes and total lane ops; GEMM: its role
    vkind: str = ""
    elements: int = 0
    passes: int = 0
    ops: int = 0
    # LOAD / STORE
    dram_addr: int = 0
    nbytes: int = 0
    traffic: str = ""  # one of TRAFFIC_KINDS
    # provenance, for reports
    tensor: str = ""
    layer: str = ""
    phase: str = ""
    group: int = -1

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n if self.op == GEMM else 0


@dataclass(frozen=True, slots=True)
class Alloc:
    """A buffer region: ``size`` bytes at ``offset``."""

    id: int
    offset: int
    size: int
    label: str


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


_OPCODE_INDEX = {GEMM: 0, VEC: 1, LOAD: 2, STORE: 3}


class InstrColumns:
    """The instructions field by field, one int64 ``array`` per field, for arithmetic on
    whole columns (the analytical model reads them as numpy arrays without a per-element
    conversion). The compiler appends each instruction as it emits it, so a large program
    does not have to be read back object by object; any other program gets its columns from
    its instructions (:meth:`Program.columns`).

    Columns: ``op`` (0 GEMM, 1 VEC, 2 LOAD, 3 STORE), ``unit`` (index into ``units``), ``step``
    (index of the run of instructions sharing group, layer and phase), the GEMM, vector and
    transfer fields, the buffer address of the first read and write access (-1 if none),
    the summed access sizes of vector ops (0 for the others) and the dependencies, flattened.
    """

    NAMES = ("op", "unit", "step", "m", "k", "n", "accumulate", "wgrad", "ops", "passes",
             "nbytes", "dram_addr", "read_addr", "write_addr", "read_bytes", "write_bytes",
             "dep_count")

    def __init__(self) -> None:
        self.data: dict[str, array] = {name: array("q") for name in self.NAMES}
        self.deps = array("q")
        self.units: list[str] = []
        self.steps: list[tuple[int, str, str]] = []  # (group, layer, phase) of each step
        self.sources: list[Instr] = []  # the instructions these columns describe
        self._unit_index: dict[str, int] = {}

    def add(self, ins: Instr, allocs: list[Alloc]) -> None:
        """Append one instruction (``allocs``: the program's buffer allocations so far)."""
        d = self.data
        d["op"].append(_OPCODE_INDEX[ins.op])
        unit = self._unit_index.get(ins.unit)
        if unit is None:
            unit = self._unit_index[ins.unit] = len(self.units)
            self.units.append(ins.unit)
        d["unit"].append(unit)
        key = (ins.group, ins.layer, ins.phase)
        if not self.steps or self.steps[-1] != key:
            self.steps.append(key)
        d["step"].append(len(self.steps) - 1)
        d["m"].append(ins.m)
        d["k"].append(ins.k)
        d["n"].append(ins.n)
        d["accumulate"].append(ins.accumulate)
        d["wgrad"].append(ins.vkind == "WGRAD")
        d["ops"].append(ins.ops)
        d["passes"].append(ins.passes)
        d["nbytes"].append(ins.nbytes)
        d["dram_addr"].append(ins.dram_addr)
        r, w = ins.reads, ins.writes
        d["read_addr"].append(allocs[r[0].alloc].offset + r[0].lo if r else -1)
        d["write_addr"].append(allocs[w[0].alloc].offset + w[0].lo if w else -1)
        vector = ins.op == VEC
        d["read_bytes"].append(sum(a.hi - a.lo for a in r) if vector else 0)
        d["write_bytes"].append(sum(a.hi - a.lo for a in w) if vector else 0)
        d["dep_count"].append(len(ins.deps))
        self.deps.extend(ins.deps)
        self.sources.append(ins)

    def describes(self, instrs: list[Instr]) -> bool:
        """True if these columns were taken from exactly these instruction objects (an
        instruction replaced since, as the verifier's tests do, makes them stale)."""
        return len(instrs) == len(self.sources) and all(map(operator.is_, instrs, self.sources))


@dataclass
class Program:
    """A compiled training iteration (or any instruction program)."""

    units: list[str]
    instrs: list[Instr]
    allocs: list[Alloc]
    gbuf_bytes: int
    meta: dict = field(default_factory=dict)
    groups: list[GroupInfo] = field(default_factory=list)
    planned: dict[str, dict[str, int]] = field(default_factory=dict)  # read/write -> kind -> B
    emitted_columns: InstrColumns | None = field(default=None, repr=False, compare=False)

    def columns(self) -> InstrColumns:
        """The instructions as columns: those the compiler kept while emitting, if they still
        describe ``instrs``, else taken from the instructions now."""
        if self.emitted_columns is None or not self.emitted_columns.describes(self.instrs):
            columns = InstrColumns()
            for ins in self.instrs:
                columns.add(ins, self.allocs)
            self.emitted_columns = columns
        return self.emitted_columns

    def stream(self, unit: str) -> list[Instr]:
        return [i for i in self.instrs if i.unit == unit]

    def dram_bytes(self) -> tuple[int, int]:
        """(read, write) bytes of all LOAD and STORE instructions."""
        rd = sum(i.nbytes for i in self.instrs if i.op == LOAD)
        wr = sum(i.nbytes for i in self.instrs if i.op == STORE)
        return rd, wr

    def traffic_by_kind(self) -> dict[str, dict[str, int]]:
        out = {"read": dict.fromkeys(TRAFFIC_KINDS, 0), "write": dict.fromkeys(TRAFFIC_KINDS, 0)}
        for i in self.instrs:
            if i.op == LOAD:
                out["read"][i.traffic] += i.nbytes
            elif i.op == STORE:
                out["write"][i.traffic] += i.nbytes
        return out


def unit_names(cores: int) -> list[str]:
    names = []
    for c in range(cores):
        names += [f"core{c}", f"vec{c}", f"dma{c}.ld", f"dma{c}.st"]
    return names


def unit_kind(unit: str) -> str:
    """``core``, ``vec`` or ``dma``."""
    return "dma" if unit.startswith("dma") else unit.rstrip("0123456789")
