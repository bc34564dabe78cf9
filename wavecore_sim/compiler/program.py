"""The compiled program: per-unit instruction streams with explicit dependencies.

Units are ``core<i>`` (systolic array), ``vec<i>`` (vector unit), ``dma<i>.ld`` and
``dma<i>.st`` (DMA queues HBM -> buffer and buffer -> HBM). Each unit runs its stream in
order; an instruction starts when the previous one on its unit allows it and every
instruction in ``deps`` has completed. Buffer space is explicit: an :class:`Alloc` is a fixed
``[offset, offset + size)`` range, live from the start of its first user to the completion of
its last user. Nothing here knows about SimPy or networks.
"""

from __future__ import annotations

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
