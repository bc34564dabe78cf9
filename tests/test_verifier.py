"""Static verifier: a correct program passes; each kind of corruption is caught and named.

The program under test is example_tinynet at batch 4 under mbs2 on the "tiny" preset
(32x32 arrays, 1 MiB buffer): a few hundred instructions, compiled in well under a second.
Each test corrupts a deep copy and expects :class:`InvariantError` with a message that names
the offending instruction or allocation.
"""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest

from wavecore_sim import api
from wavecore_sim.compiler.program import GEMM, LOAD, STORE, Program
from wavecore_sim.compiler.verify import verify_program
from wavecore_sim.errors import InvariantError, WavecoreError

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def compiled() -> Program:
    result = api.compile_network("workloads/example_tinynet.json", batch=4, schedule="mbs2",
                                 cfg=api.make_config("tiny"))
    return result.program


@pytest.fixture
def program(compiled) -> Program:
    """A fresh deep copy for each test to corrupt."""
    return copy.deepcopy(compiled)


def first(program: Program, predicate):
    return next(ins for ins in program.instrs if predicate(ins))


def test_the_compiled_program_passes(compiled):
    assert compiled.gbuf_bytes == MiB
    assert len(compiled.instrs) > 100
    verify_program(compiled)  # no exception
    assert issubclass(InvariantError, WavecoreError)  # the CLI turns it into one line, exit 2


# ---------------------------------------------------------------------------- dependencies


def test_dependency_on_a_later_instruction_is_refused(program):
    ins = first(program, lambda i: i.op == GEMM and i.deps)
    later = ins.id + 1
    program.instrs[ins.id] = dataclasses.replace(ins, deps=(*ins.deps, later))
    with pytest.raises(InvariantError, match=(
            rf"instruction {ins.id} \({ins.unit} GEMM, layer '{re.escape(ins.layer)}'\) depends "
            rf"on {later}, which does not come before it")):
        verify_program(program)


def test_dependency_on_itself_is_refused(program):
    ins = first(program, lambda i: i.op == LOAD)
    program.instrs[ins.id] = dataclasses.replace(ins, deps=(ins.id,))
    with pytest.raises(InvariantError, match=rf"depends on {ins.id}, which does not come before"):
        verify_program(program)


def test_dropping_the_dependencies_that_guard_a_reused_buffer_region_is_caught(compiled):
    """Find an instruction whose dependencies order it after the last users of an older
    allocation at the same addresses; without them it may overwrite bytes still in use."""
    caught = None
    for ins in compiled.instrs:
        if not ins.deps:
            continue
        mutated = copy.deepcopy(compiled)
        mutated.instrs[ins.id] = dataclasses.replace(ins, deps=())
        try:
            verify_program(mutated)
        except InvariantError as exc:
            if "reuses bytes of allocation" in str(exc):  # (other checks may fire first)
                caught = (ins, str(exc))
                break
    assert caught, "no dependency removal was reported as reuse of bytes still in use"
    ins, message = caught
    m = re.search(r"allocation (\d+) \((.+?)\) reuses bytes of allocation (\d+) \((.+?)\) while "
                  r"it may still be in use: instruction (\d+) \((\S+)\) does not wait for (\S+)",
                  message)
    assert m, message
    new, old = compiled.allocs[int(m[1])], compiled.allocs[int(m[3])]
    # The message names the two allocations by id and label ...
    assert (m[2], m[4]) == (new.label, old.label)
    # ... they really share buffer addresses, the older one first ...
    assert new.offset < old.offset + old.size and old.offset < new.offset + new.size
    assert old.id < new.id
    # ... the named instruction is the one we mutated, and it uses the newer allocation ...
    assert (int(m[5]), m[6]) == (ins.id, ins.unit)
    assert new.id in {a.alloc for a in ins.reads + ins.writes}
    # ... and the unit it no longer waits for really used the older allocation.
    assert any(old.id in {a.alloc for a in i.reads + i.writes} and i.unit == m[7]
               for i in compiled.instrs)


def test_two_live_allocations_at_the_same_addresses_are_caught(program):
    # Each core keeps its own partial sums; both are live while the cores run side by side.
    psum0 = next(a for a in program.allocs if a.label == "psum0")
    psum1 = next(a for a in program.allocs if a.label == "psum1" and a.id == psum0.id + 1)
    program.allocs[psum1.id] = dataclasses.replace(psum1, offset=psum0.offset)
    with pytest.raises(InvariantError, match=(
            rf"allocation {psum1.id} \(psum1\) reuses bytes of allocation {psum0.id} \(psum0\) "
            r"while it may still be in use: instruction \d+ \(core1\) does not wait for core0")):
        verify_program(program)


# ---------------------------------------------------------------------------- capacity


def test_allocation_moved_past_the_buffer_end_is_refused(program):
    alloc = program.allocs[3]
    end = MiB + 64
    program.allocs[3] = dataclasses.replace(alloc, offset=end - alloc.size)
    with pytest.raises(InvariantError, match=(
            rf"allocation 3 \({re.escape(alloc.label)}\) \[{end - alloc.size}, {end}\) lies "
            r"outside the 1048576-byte buffer")):
        verify_program(program)


def test_access_beyond_its_allocation_is_refused(program):
    ins = first(program, lambda i: i.op == STORE)
    (a,) = ins.reads
    size = program.allocs[a.alloc].size
    bad = dataclasses.replace(a, hi=size + 1)
    program.instrs[ins.id] = dataclasses.replace(ins, reads=(bad,), nbytes=size + 1 - a.lo)
    with pytest.raises(InvariantError, match=(
            rf"instruction {ins.id} \({ins.unit} STORE\) accesses bytes \[{a.lo}, {size + 1}\) "
            rf"of allocation {a.alloc}, outside it")):
        verify_program(program)


# ---------------------------------------------------------------------------- transfers


def test_planned_bytes_off_by_one_are_refused(program):
    emitted = program.traffic_by_kind()["read"]["weights"]
    assert program.planned["read"]["weights"] == emitted
    program.planned["read"]["weights"] += 1
    with pytest.raises(InvariantError, match=(
            rf"planned DRAM read bytes of weights \({emitted + 1}\) differ from the transfers "
            rf"emitted \({emitted}\)")):
        verify_program(program)


def test_planned_write_bytes_missing_a_kind_are_refused(program):
    emitted = program.traffic_by_kind()["write"]["optimizer_state"]
    assert emitted > 0
    del program.planned["write"]["optimizer_state"]  # counts as 0 planned
    with pytest.raises(InvariantError, match=(
            rf"planned DRAM write bytes of optimizer_state \(0\) differ from the transfers "
            rf"emitted \({emitted}\)")):
        verify_program(program)


def test_load_whose_size_differs_from_its_buffer_range_is_refused(program):
    ins = first(program, lambda i: i.op == LOAD)
    program.instrs[ins.id] = dataclasses.replace(ins, nbytes=ins.nbytes - 1)
    with pytest.raises(InvariantError, match=(
            rf"instruction {ins.id}: LOAD of {ins.nbytes - 1} bytes must move exactly one "
            r"buffer range of that size")):
        verify_program(program)


def test_store_reading_two_ranges_is_refused(program):
    ins = first(program, lambda i: i.op == STORE)
    program.instrs[ins.id] = dataclasses.replace(ins, reads=ins.reads * 2)
    with pytest.raises(InvariantError, match=rf"instruction {ins.id}: STORE of \d+ bytes must "
                                             "move exactly one buffer range"):
        verify_program(program)


def test_unknown_traffic_kind_is_refused(program):
    ins = first(program, lambda i: i.op == STORE)
    program.instrs[ins.id] = dataclasses.replace(ins, traffic="scratch")
    with pytest.raises(InvariantError, match=rf"instruction {ins.id}: unknown traffic kind "
                                             "'scratch'"):
        verify_program(program)


# ---------------------------------------------------------------------------- well-formedness


def test_unknown_unit_and_opcode_are_refused(program):
    ins = first(program, lambda i: i.op == GEMM)
    broken = copy.deepcopy(program)
    broken.instrs[ins.id] = dataclasses.replace(ins, unit="core7")
    with pytest.raises(InvariantError, match=rf"instruction {ins.id} runs on unknown unit "
                                             "'core7'"):
        verify_program(broken)
    program.instrs[ins.id] = dataclasses.replace(ins, op="MAC")
    with pytest.raises(InvariantError, match=rf"instruction {ins.id} has unknown opcode 'MAC'"):
        verify_program(program)


def test_empty_gemm_is_refused(program):
    ins = first(program, lambda i: i.op == GEMM)
    program.instrs[ins.id] = dataclasses.replace(ins, k=0)
    with pytest.raises(InvariantError, match=rf"instruction {ins.id}: GEMM with empty shape "
                                             rf"{ins.m}x0x{ins.n}"):
        verify_program(program)


def test_instruction_ids_out_of_order_are_refused(program):
    program.instrs[5], program.instrs[6] = program.instrs[6], program.instrs[5]
    with pytest.raises(InvariantError, match="instruction at index 5 has id 6; ids must be "
                                             r"0\.\.n-1 in order"):
        verify_program(program)


def test_consumer_that_stops_waiting_for_its_producer_load_is_caught(program):
    gemm = first(program, lambda i: i.op == GEMM and i.deps)
    inputs = {a.alloc for a in gemm.reads}
    producer = max(i.id for i in program.instrs[:gemm.id]
                   if i.op == LOAD and {a.alloc for a in i.writes} & inputs)
    assert producer in gemm.deps  # the compiler got it right
    program.instrs[gemm.id] = dataclasses.replace(
        gemm, deps=tuple(d for d in gemm.deps if d != producer))
    with pytest.raises(InvariantError):
        verify_program(program)
