"""Static verifier: correct programs pass; each kind of corruption is caught and named.

Most programs under test are example_tinynet at batch 4 under mbs2 on the "tiny" preset
(32x32 arrays, 1 MiB buffer): a few hundred instructions. The DRAM-reuse mutations need a
program that reuses DRAM addresses: resnet50 at batch 2 under mbs2 on the default preset.
Programs are compiled without the verifier (it is what is under test); each test corrupts a
copy of the columns and expects :class:`InvariantError` with a message that names the
offending instruction, allocation or region.
"""

from __future__ import annotations

import copy
import dataclasses
import re

import numpy as np
import pytest

from wavecore_sim import config, ir
from wavecore_sim.compiler.dram import plan_dram
from wavecore_sim.compiler.lower import Lowering
from wavecore_sim.compiler.verify import verify_program
from wavecore_sim.errors import InvariantError, WavecoreError
from wavecore_sim.ir import Access, Gemm, Op, Traffic, Transfer, Unit, UnitKind, Vector
from wavecore_sim.schedule import DEFAULT_NORM, build_schedule
from wavecore_sim.training import expand_training
from wavecore_sim.workload import load_network

MiB = 1024 * 1024
TINYNET = "workloads/example_tinynet.json"


def compile_unverified(network: str, batch: int, schedule: str, preset: str):
    cfg = config.load_config(preset, None, {})
    graph = expand_training(load_network(network, norm=DEFAULT_NORM[schedule]), batch, cfg)
    plan = build_schedule(graph, schedule, cfg)
    return Lowering(graph, plan, cfg, plan_dram(graph, plan, cfg)).run(), cfg


@pytest.fixture(scope="module")
def tiny():
    return compile_unverified(TINYNET, 4, "mbs2", "tiny")


@pytest.fixture(scope="module")
def resnet():
    return compile_unverified("resnet50", 2, "mbs2", "wavecore")


def mutate(program: ir.Program, **columns) -> ir.Program:
    """A copy of ``program`` whose named columns are replaced (by a function of a copy of the
    old column, or by an array)."""
    cols = dict(program.cols)
    for name, change in columns.items():
        cols[name] = change(cols[name].copy()) if callable(change) else np.asarray(change)
    return dataclasses.replace(
        program, cols=cols, planned=copy.deepcopy(program.planned), _cache={}
    )


def setting(i, value):
    def change(col):
        col[i] = value
        return col

    return change


def with_deps(program: ir.Program, i: int, deps) -> ir.Program:
    """A copy of ``program`` where instruction ``i`` has dependencies ``deps``."""
    c = program.cols
    ptr, ids = c["dep_ptr"], c["dep_ids"]
    new_ids = np.concatenate((ids[: ptr[i]], np.asarray(deps, dtype=ids.dtype), ids[ptr[i + 1] :]))
    new_ptr = ptr.copy()
    new_ptr[i + 1 :] += len(deps) - (ptr[i + 1] - ptr[i])
    return mutate(program, dep_ptr=new_ptr, dep_ids=new_ids)


def without_deps(program: ir.Program, instrs) -> ir.Program:
    """A copy of ``program`` where the instructions ``instrs`` have no dependencies."""
    c = program.cols
    counts = np.diff(c["dep_ptr"])
    counts[np.asarray(instrs)] = 0
    owner = np.repeat(np.arange(len(program)), np.diff(c["dep_ptr"]))
    keep = counts[owner] > 0
    ptr = np.concatenate(([0], np.cumsum(counts))).astype(c["dep_ptr"].dtype)
    return mutate(program, dep_ptr=ptr, dep_ids=c["dep_ids"][keep])


def first(program: ir.Program, predicate) -> ir.Instr:
    return next(ins for ins in program.instrs if predicate(ins))


def fails(program, cfg=None, match: str = ""):
    with pytest.raises(InvariantError, match="program verification failed: .*" + match):
        verify_program(program, cfg)


# ---------------------------------------------------------------------------- passing programs


def test_the_compiled_program_passes(tiny):
    program, cfg = tiny
    assert program.gbuf_bytes == MiB
    assert len(program) > 100
    verify_program(program, cfg)  # no exception
    assert issubclass(InvariantError, WavecoreError)  # the CLI turns it into one line, exit 2


@pytest.mark.parametrize("schedule", ["baseline", "il", "mbs-fs", "mbs1", "mbs2"])
@pytest.mark.parametrize("network,preset", [(TINYNET, "tiny"), ("resnet50", "wavecore")])
def test_compiled_programs_pass(network, preset, schedule):
    program, cfg = compile_unverified(network, 2, schedule, preset)
    verify_program(program, cfg)


@pytest.mark.parametrize("network", ["inception_v3"])
def test_compiled_branchy_programs_pass(network):
    program, cfg = compile_unverified(network, 2, "mbs2", "wavecore")
    verify_program(program, cfg)


def hand_program(second_deps, second_unit, acc: bool) -> ir.Program:
    """Two instructions on the same buffer bytes: a GEMM on core0 writes them, then an
    instruction on ``second_unit`` writes them again (accumulating when ``acc``)."""
    units = ir.machine_units(1)
    b = ir.ProgramBuilder(units, 4096)
    a = b.alloc(0, 1024, "psum")
    b.set_step(0, "layer", "FWD")
    core = Unit(UnitKind.CORE, 0)
    b.emit(core, Op.GEMM, Gemm(1, 1, 1, acc, 4), (), (Access(a, 0, 512, acc),), ())
    op = Op.GEMM if second_unit.kind is UnitKind.CORE else Op.VEC
    payload = Gemm(1, 1, 1, acc, 4) if op == Op.GEMM else Vector(1, 1, 1)
    b.emit(second_unit, op, payload, (), (Access(a, 0, 512, acc),), second_deps)
    return b.finish()


def test_a_core_accumulating_into_its_own_partial_sums_needs_no_dependency():
    verify_program(hand_program((), Unit(UnitKind.CORE, 0), acc=True))


def test_a_core_overwriting_its_own_output_needs_a_dependency():
    """A core only starts in order: its previous instruction may still be draining."""
    fails(
        hand_program((), Unit(UnitKind.CORE, 0), acc=False),
        match=r"instruction 1 \(core0 GEMM, layer 'layer'\) writes bytes \[0, 512\) of "
        r"allocation 0 \(psum\) without waiting for instruction 0 \(core0 GEMM\)",
    )
    verify_program(hand_program((0,), Unit(UnitKind.CORE, 0), acc=False))


def test_another_unit_must_wait_for_the_core():
    fails(
        hand_program((), Unit(UnitKind.VEC, 0), acc=False),
        match="without waiting for instruction 0",
    )
    verify_program(hand_program((0,), Unit(UnitKind.VEC, 0), acc=False))


# ---------------------------------------------------------------------------- structure


def test_dependency_on_a_later_instruction_is_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.GEMM and i.deps)
    later = ins.id + 1
    fails(
        with_deps(program, ins.id, (*ins.deps, later)),
        cfg,
        match=(
            rf"instruction {ins.id} \({ins.unit} GEMM, layer '{re.escape(ins.layer)}'\) depends "
            rf"on {later}, which does not come before it"
        ),
    )


def test_dependency_on_itself_is_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.LOAD)
    fails(
        with_deps(program, ins.id, (ins.id,)),
        cfg,
        match=rf"depends on {ins.id}, which does not come before",
    )


def test_gemm_on_a_dma_queue_is_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.GEMM)
    queue = program.units.index(Unit(UnitKind.DMA_LD, 0))
    fails(
        mutate(program, unit=setting(ins.id, queue)),
        cfg,
        match=rf"instruction {ins.id}: GEMM runs on dma0.ld, which is not a CORE unit",
    )


def test_load_on_a_store_queue_is_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.LOAD)
    queue = program.units.index(Unit(UnitKind.DMA_ST, 0))
    fails(
        mutate(program, unit=setting(ins.id, queue)),
        cfg,
        match=rf"instruction {ins.id}: LOAD runs on dma0.st, which is not a DMA_LD unit",
    )


def test_unknown_unit_and_opcode_are_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.GEMM)
    fails(
        mutate(program, unit=setting(ins.id, -1)),
        cfg,
        match=rf"instruction {ins.id} runs on unknown unit index -1",
    )
    fails(
        mutate(program, unit=setting(ins.id, len(program.units))),
        cfg,
        match=rf"instruction {ins.id} runs on unknown unit index {len(program.units)}",
    )
    fails(
        mutate(program, op=setting(ins.id, 9)),
        cfg,
        match=rf"instruction {ins.id} has unknown opcode 9",
    )


def test_empty_gemm_and_vector_op_are_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.GEMM)
    fails(
        mutate(program, k=setting(ins.id, 0)),
        cfg,
        match=rf"instruction {ins.id}: GEMM with empty shape {ins.payload.m}x0x",
    )
    vec = first(program, lambda i: i.op == Op.VEC)
    fails(
        mutate(program, passes=setting(vec.id, 0)),
        cfg,
        match=rf"instruction {vec.id}: vector op with no work",
    )


def test_columns_of_different_lengths_are_refused(tiny):
    program, cfg = tiny
    fails(
        mutate(program, m=program.cols["m"][:-1]),
        cfg,
        match=rf"column 'm' has {len(program) - 1} entries for {len(program)} instructions",
    )
    ptr = program.cols["dep_ptr"].copy()
    ptr[5], ptr[6] = ptr[6] + 1, ptr[5]
    fails(mutate(program, dep_ptr=ptr), cfg, match="dep_ptr must hold .* nondecreasing")


def test_access_beyond_its_allocation_is_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.STORE)
    j = int(program.cols["acc_ptr"][ins.id])
    (a,) = ins.reads
    size = program.alloc(a.alloc).size
    fails(
        mutate(program, acc_hi=setting(j, size + 1)),
        cfg,
        match=(
            rf"instruction {ins.id} \({ins.unit} STORE\) accesses bytes \[{a.lo}, {size + 1}\) "
            rf"of allocation {a.alloc}, outside it"
        ),
    )
    fails(
        mutate(program, acc_alloc=setting(j, program.n_allocs)),
        cfg,
        match=rf"of allocation {program.n_allocs}, outside it",
    )


def test_allocation_moved_past_the_buffer_end_is_refused(tiny):
    program, cfg = tiny
    alloc = program.alloc(3)
    end = MiB + 64
    fails(
        mutate(program, alloc_offset=setting(3, end - alloc.size)),
        cfg,
        match=(
            rf"allocation 3 \({re.escape(alloc.label)}\) \[{end - alloc.size}, {end}\) lies "
            r"outside the 1048576-byte buffer"
        ),
    )


def test_load_whose_size_differs_from_its_buffer_range_is_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.LOAD)
    n = ins.payload.nbytes - 1
    fails(
        mutate(program, nbytes=setting(ins.id, n)),
        cfg,
        match=(
            rf"instruction {ins.id}: LOAD of {n} bytes must write exactly one buffer range of "
            "that size"
        ),
    )


def test_store_reading_two_ranges_or_writing_is_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.STORE)
    twice = ir.program_from_instrs(
        program.units,
        program.gbuf_bytes,
        program.allocs,
        [
            dataclasses.replace(i, reads=i.reads * 2) if i.id == ins.id else i
            for i in program.instrs
        ],
        [program.region(r) for r in range(program.n_regions)],
        planned=program.planned,
    )
    fails(twice, cfg, match=rf"instruction {ins.id}: STORE of \d+ bytes must read exactly one")
    j = int(program.cols["acc_ptr"][ins.id])
    fails(
        mutate(program, acc_flags=setting(j, ir.ACC_WRITE)),
        cfg,
        match=rf"instruction {ins.id}: STORE of \d+ bytes must read exactly one",
    )


def test_unknown_traffic_kind_is_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.STORE)
    fails(
        mutate(program, traffic=setting(ins.id, len(Traffic))),
        cfg,
        match=rf"instruction {ins.id}: unknown traffic kind {len(Traffic)}",
    )


def test_transfer_outside_its_region_is_refused(tiny):
    program, cfg = tiny
    ins = first(program, lambda i: i.op == Op.LOAD)
    fails(
        mutate(program, dram_addr=setting(ins.id, -1)),
        cfg,
        match=(
            rf"instruction {ins.id} \(.*\) moves DRAM bytes \[-1, .*\) outside its region "
            rf"{ins.payload.region}"
        ),
    )


def move_region(program: ir.Program, r: int, addr: int) -> ir.Program:
    """Move DRAM region ``r`` to ``addr``, with its transfers."""
    delta = addr - int(program.cols["region_addr"][r])
    moves = (program.cols["region"] == r) & (
        (program.cols["op"] == Op.LOAD) | (program.cols["op"] == Op.STORE)
    )
    return mutate(
        program, region_addr=setting(r, addr), dram_addr=lambda col: col + np.where(moves, delta, 0)
    )


def test_dram_region_at_a_negative_address_or_past_hbm_bytes_is_refused(tiny):
    program, cfg = tiny
    region = program.region(2)
    fails(
        move_region(program, 2, -4096),
        cfg,
        match=rf"DRAM region 2 \({region.label}\) \[-4096, .*\) lies outside the "
        rf"{cfg.hbm_bytes}-byte DRAM \(hbm_bytes\)",
    )
    past = cfg.hbm_bytes - region.size + 4096
    fails(
        move_region(program, 2, past),
        cfg,
        match=rf"DRAM region 2 \({region.label}\) \[{past}, {past + region.size}\) lies "
        "outside the",
    )
    verify_program(move_region(program, 2, past))  # without a config: only addresses >= 0


def role_of(program: ir.Program, role: str | None, op: Op = Op.GEMM) -> int:
    """The first instruction of opcode ``op`` labelled ``role`` (a GEMM's training role)."""
    return first(program, lambda i: i.op == op and (role is None or i.label == role)).id


@pytest.mark.parametrize(
    ("role", "column", "factor", "expected"),
    [
        ("FWD", "m", 1000, "it writes .* bytes, not groups x m x n x act_bytes"),
        ("FWD", "k", 3, "its weights are .* bytes, not a multiple of k x n x weight_bytes"),
        ("DGRAD", "m", 1000, "bytes of gradients, fewer than groups x m x k x act_bytes"),
        ("WGRAD", "m", 7, "it accumulates .* bytes, not a multiple of m x n x weight_grad_bytes"),
        ("WGRAD", "k", 10**6, "bytes of gradients, fewer than k x act_bytes"),
        ("FWD", "out_bytes", 2, "a FWD GEMM writes 2-byte elements"),
    ],
)
def test_a_gemm_whose_shape_disagrees_with_its_accesses_is_refused(
    tiny, role, column, factor, expected
):
    program, cfg = tiny
    i = role_of(program, role)
    fails(mutate(program, **{column: setting(i, program.cols[column][i] * factor)}), cfg, expected)
    verify_program(program, None)  # shapes need the config's element sizes: unchecked without


def test_a_gemm_with_an_overflowing_mac_count_or_no_role_is_refused(tiny):
    program, cfg = tiny
    i = role_of(program, "FWD")
    fails(mutate(program, m=setting(i, 2**40), n=setting(i, 2**30)), cfg, "64-bit count")
    fails(mutate(program, label=setting(i, 0)), cfg, "a GEMM's label is its role")


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("elements", 10**12, "vector op of 1000000000000 elements"),
        ("ops", 10**15, "1000000000000000 lane ops"),
        ("passes", 10**4, "10000 passes"),
    ],
)
def test_a_vector_op_whose_shape_disagrees_with_its_accesses_is_refused(
    tiny, column, value, expected
):
    program, cfg = tiny
    i = role_of(program, None, Op.VEC)
    fails(mutate(program, **{column: setting(i, value)}), cfg, expected)


def test_units_must_be_a_machines(tiny):
    program, cfg = tiny
    renamed = dataclasses.replace(program, units=(Unit(UnitKind.CORE, 7), *program.units[1:]))
    fails(renamed, cfg, "unit core7 does not belong to a machine of 2 cores")
    twice = dataclasses.replace(program, units=(*program.units[:-1], program.units[0]))
    fails(twice, cfg, "unit core0 is listed twice")
    fails(program, dataclasses.replace(cfg, cores=1), "units for 2 cores, the config 1")


def test_a_column_of_the_wrong_dtype_is_refused(tiny):
    program, cfg = tiny
    fails(mutate(program, op=program.cols["op"].astype(np.int64)), cfg, "column 'op' is not")


# ---------------------------------------------------------------------------- buffer


def test_dropping_the_dependencies_that_guard_a_reused_buffer_region_is_caught(tiny):
    """Find an instruction whose dependencies order it after the last users of an older
    allocation at the same addresses; without them it may overwrite bytes still in use."""
    program, cfg = tiny
    caught = None
    for ins in program.instrs:
        if not ins.deps:
            continue
        try:
            verify_program(with_deps(program, ins.id, ()), cfg)
        except InvariantError as exc:
            if "reuses bytes of allocation" in str(exc):  # (other checks may fire first)
                caught = (ins, str(exc))
                break
    assert caught, "no dependency removal was reported as reuse of bytes still in use"
    ins, message = caught
    m = re.search(
        r"allocation (\d+) \((.+?)\) reuses bytes of allocation (\d+) \((.+?)\) while "
        r"it may still be in use: instruction (\d+) \((\S+)\) does not wait for (\S+)",
        message,
    )
    assert m, message
    new, old = program.alloc(int(m[1])), program.alloc(int(m[3]))
    # The message names the two allocations by id and label ...
    assert (m[2], m[4]) == (new.label, old.label)
    # ... they really share buffer addresses, the older one first ...
    assert new.offset < old.offset + old.size and old.offset < new.offset + new.size
    assert old.id < new.id
    # ... the named instruction is the one we mutated, and it uses the newer allocation ...
    assert (int(m[5]), m[6]) == (ins.id, str(ins.unit))
    assert new.id in {a.alloc for a in ins.reads + ins.writes}
    # ... and the unit it no longer waits for really used the older allocation.
    assert any(
        old.id in {a.alloc for a in i.reads + i.writes} and str(i.unit) == m[7]
        for i in program.instrs
    )


def test_two_live_allocations_at_the_same_addresses_are_caught(tiny):
    # Each core keeps its own partial sums; both are live while the cores run side by side.
    program, cfg = tiny
    psum0 = next(a for a in program.allocs if a.label == "psum0")
    psum1 = program.alloc(psum0.id + 1)
    assert psum1.label == "psum1"
    fails(
        mutate(program, alloc_offset=setting(psum1.id, psum0.offset)),
        cfg,
        match=(
            rf"allocation {psum1.id} \(psum1\) reuses bytes of allocation {psum0.id} \(psum0\) "
            r"while it may still be in use: instruction \d+ \(core1\) does not wait for core0"
        ),
    )


def test_consumer_that_stops_waiting_for_its_producer_load_is_caught(tiny):
    program, cfg = tiny
    gemm = first(program, lambda i: i.op == Op.GEMM and i.deps)
    inputs = {a.alloc for a in gemm.reads}
    producer = max(
        i.id
        for i in program.instrs[: gemm.id]
        if i.op == Op.LOAD and {a.alloc for a in i.writes} & inputs
    )
    assert producer in gemm.deps  # the compiler got it right
    fails(
        with_deps(program, gemm.id, [d for d in gemm.deps if d != producer]),
        cfg,
        match=rf"instruction {gemm.id} .* without waiting for instruction {producer}",
    )


# ---------------------------------------------------------------------------- DRAM


def test_dropping_the_dependency_of_a_store_into_reused_dram_bytes_is_caught(resnet):
    """A STORE into DRAM bytes that an older tensor's region held must wait for that tensor's
    last LOAD of them. In the compiled program that order is also implied through the buffer
    (the stored data was computed after the load) and the queue, so the store and its queue
    lose every dependency, and the DRAM check (run on its own, as the buffer checks would
    fire first) names both; the whole verifier refuses the program too."""
    from wavecore_sim.compiler import verify

    program, cfg = resnet
    c = program.cols
    moves = np.flatnonzero((c["op"] == Op.LOAD) | (c["op"] == Op.STORE))
    lo, hi = c["dram_addr"][moves], (c["dram_addr"] + c["nbytes"])[moves]
    cases = 0
    for k in np.flatnonzero(c["op"][moves] == Op.STORE):
        y = int(moves[k])
        earlier = moves[:k][
            (lo[:k] < hi[k]) & (hi[:k] > lo[k]) & (c["region"][moves[:k]] != c["region"][y])
        ]
        loads = earlier[c["op"][earlier] == Op.LOAD]
        if not len(loads) or int(loads[-1]) not in program.instr(y).deps:
            continue
        # the store and every earlier instruction of its queue lose their dependencies (the
        # queue finishes in order, so an earlier store's dependencies would order it too)
        queue = np.flatnonzero(c["unit"][: y + 1] == c["unit"][y])
        mutated = without_deps(program, queue)
        with pytest.raises(
            InvariantError,
            match=(
                r"instruction \d+ \(dma\d.st STORE, .*\) touches DRAM bytes .* that "
                r"instruction \d+ \(LOAD on dma\d.ld\) also touches, without waiting for it"
            ),
        ):
            verify._check_dram(mutated, verify.HappensBefore.of(mutated))
        with pytest.raises(InvariantError):
            verify_program(mutated, cfg)
        cases += 1
        if cases == 3:
            break
    assert cases, "resnet50 at batch 2 should store into reused DRAM bytes"


def live_pair(program: ir.Program) -> tuple[int, int]:
    """Two non-persistent regions whose transfers interleave in program order."""
    c = program.cols
    moves = np.flatnonzero((c["op"] == Op.LOAD) | (c["op"] == Op.STORE))
    span = {}
    for i in moves.tolist():
        r = int(c["region"][i])
        span[r] = (span.get(r, (i, i))[0], i)
    regions = [r for r in span if not c["region_persistent"][r]]
    for r in regions:
        for s in regions:
            if (
                r < s
                and span[r][0] < span[s][0] < span[r][1]
                and c["region_size"][s] <= c["region_size"][r]
            ):
                return r, s
    raise AssertionError("no live pair")


def test_a_region_moved_onto_a_live_regions_addresses_is_caught(tiny):
    program, cfg = tiny
    r, s = live_pair(program)
    fails(move_region(program, s, int(program.cols["region_addr"][r])), cfg, match=r"DRAM")
    # the region check itself, apart from the byte hazards: regions share bytes but no bytes
    # are moved twice
    with pytest.raises(
        InvariantError,
        match=(rf"DRAM regions {r} \(.*\) and {s} \(.*\) share bytes .* and are live at once"),
    ):
        from wavecore_sim.compiler import verify

        mutated = move_region(program, s, int(program.cols["region_addr"][r]))
        verify._check_regions(
            mutated, verify.HappensBefore.of(mutated), *_moves_and_regions(mutated)
        )


def _moves_and_regions(program):
    c = program.cols
    moves = np.flatnonzero((c["op"] == Op.LOAD) | (c["op"] == Op.STORE))
    return moves, c["region"][moves].astype(np.int64)


def test_persistent_region_sharing_bytes_is_caught(tiny):
    program, cfg = tiny
    c = program.cols
    weights = next(r for r in range(program.n_regions) if c["region_persistent"][r])
    other = next(
        r
        for r in range(program.n_regions)
        if not c["region_persistent"][r] and c["region_size"][r] >= c["region_size"][weights]
    )
    fails(move_region(program, weights, int(c["region_addr"][other])), cfg, match="DRAM")


def test_a_load_of_a_region_before_its_store_is_caught(tiny):
    """Point a LOAD at a non-persistent region that is stored only later."""
    program, cfg = tiny
    c = program.cols
    load = first(
        program, lambda i: i.op == Op.LOAD and not program.region(i.payload.region).persistent
    )
    stores = np.flatnonzero(c["op"] == Op.STORE)
    later = next(
        int(c["region"][s])
        for s in stores
        if s > load.id
        and not c["region_persistent"][c["region"][s]]
        and c["region_size"][c["region"][s]] >= load.payload.nbytes
        and not (c["region"][stores[stores < load.id]] == c["region"][s]).any()
    )
    mutated = mutate(
        program,
        region=setting(load.id, later),
        dram_addr=setting(load.id, int(c["region_addr"][later])),
    )
    fails(
        mutated,
        cfg,
        match=(
            rf"instruction {load.id} \(.* LOAD, .*\) loads DRAM bytes .* of region {later} "
            r"\(.*\) that no earlier STORE of that region wrote"
        ),
    )


# ---------------------------------------------------------------------------- planned bytes


def test_planned_bytes_off_by_one_are_refused(tiny):
    program, cfg = tiny
    emitted = program.traffic_by_kind()["read"]["weights"]
    assert program.planned["read"]["weights"] == emitted
    mutated = mutate(program)
    mutated.planned["read"]["weights"] += 1
    fails(
        mutated,
        cfg,
        match=(
            rf"planned DRAM read bytes of weights \({emitted + 1}\) differ "
            rf"from the transfers emitted \({emitted}\)"
        ),
    )


def test_planned_write_bytes_missing_a_kind_are_refused(tiny):
    program, cfg = tiny
    emitted = program.traffic_by_kind()["write"]["optimizer_state"]
    assert emitted > 0
    mutated = mutate(program)
    del mutated.planned["write"]["optimizer_state"]  # counts as 0 planned
    fails(
        mutated,
        cfg,
        match=(
            rf"planned DRAM write bytes of optimizer_state \(0\) differ "
            rf"from the transfers emitted \({emitted}\)"
        ),
    )


def test_an_empty_planned_table_is_refused(tiny):
    program, cfg = tiny
    fails(
        dataclasses.replace(program, planned={}, _cache={}),
        cfg,
        match="moves DRAM bytes but has no planned DRAM bytes",
    )
    fails(
        dataclasses.replace(program, planned={"read": {}, "write": {}}, _cache={}),
        cfg,
        match="no planned DRAM bytes",
    )


def test_a_program_without_transfers_needs_no_plan():
    units = ir.machine_units(1)
    b = ir.ProgramBuilder(units, 4096)
    a = b.alloc(0, 64, "x")
    b.set_step(0, "layer", "FWD")
    b.emit(Unit(UnitKind.VEC, 0), Op.VEC, Vector(8, 1, 8), (), (Access(a, 0, 64),), ())
    verify_program(b.finish())
    b = ir.ProgramBuilder(units, 4096)
    a = b.alloc(0, 64, "x")
    b.set_step(0, "layer", "FWD")
    b.emit(Unit(UnitKind.VEC, 0), Op.VEC, Vector(8, 1, 8), (), (Access(a, 0, 64),), ())
    r = b.region(0, 4096, "t", False)
    b.emit(
        Unit(UnitKind.DMA_ST, 0),
        Op.STORE,
        Transfer(0, 64, Traffic.ACTIVATIONS, r),
        (Access(a, 0, 64),),
        (),
        (0,),
    )
    fails(b.finish(), match="no planned DRAM bytes")
