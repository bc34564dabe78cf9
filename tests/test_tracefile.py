"""Trace files (``wavecore-trace/2``): lossless round trip, and one-line refusal of anything
else: version 1 files, foreign files, corrupted, truncated or inconsistent archives."""

from __future__ import annotations

import gzip
import io
import json
import zipfile

import numpy as np
import pytest
from conftest import TINYNET, npy, rewrite

from wavecore_sim import api
from wavecore_sim.compiler.dram import plan_dram
from wavecore_sim.compiler.lower import Lowering
from wavecore_sim.compiler.tracefile import FILENAME, FORMAT, read_trace, write_trace
from wavecore_sim.errors import WavecoreError
from wavecore_sim.ir import ALL_COLUMNS, Program
from wavecore_sim.schedule import DEFAULT_NORM, build_schedule
from wavecore_sim.training import expand_training
from wavecore_sim.workload import load_network

HEADER_FIELDS = (
    "units",
    "strings",
    "steps",
    "gbuf_bytes",
    "meta",
    "groups",
    "planned",
    "dram_footprint",
)


def compile_tiny(schedule: str = "mbs2", batch: int = 4) -> Program:
    """tinynet on the tiny preset, lowered (the verifier is not what these tests check)."""
    cfg = api.make_config("tiny")
    graph = expand_training(load_network(str(TINYNET), norm=DEFAULT_NORM[schedule]), batch, cfg)
    plan = build_schedule(graph, schedule, cfg)
    program = Lowering(graph, plan, cfg, plan_dram(graph, plan, cfg)).run()
    program.meta.update(
        {
            "network": "tinynet",
            "batch": batch,
            "schedule": schedule,
            "notes": list(plan.notes),
            "config": cfg.to_dict(),
        }
    )
    return program


@pytest.fixture(scope="module")
def program() -> Program:
    return compile_tiny()


@pytest.fixture
def written(program, tmp_path):
    return write_trace(program, tmp_path)


def assert_identical(a: Program, b: Program) -> None:
    assert set(a.cols) == set(b.cols) == set(ALL_COLUMNS)
    for name in ALL_COLUMNS:
        assert a.cols[name].dtype == b.cols[name].dtype, name
        np.testing.assert_array_equal(a.cols[name], b.cols[name], err_msg=name)
    for field in HEADER_FIELDS:
        assert getattr(a, field) == getattr(b, field), field


def refused(path) -> str:
    """The one-line error reading ``path`` gives."""
    with pytest.raises(WavecoreError) as info:
        read_trace(path)
    message = str(info.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("schedule", ["baseline", "mbs2"])
def test_round_trip_is_identical(schedule, tmp_path):
    program = compile_tiny(schedule)
    path = write_trace(program, tmp_path)
    assert path.name == FILENAME == "program.wct"
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]  # no temporary left
    back = read_trace(tmp_path)
    assert_identical(back, program)
    assert back.dram_footprint is not None and back.dram_footprint.peak_bytes > 0
    assert_identical(read_trace(path), program)  # the file itself, not its directory
    assert [back.instr(i) for i in range(len(back))] == list(program.instrs)


def test_every_field_is_written_explicitly(written):
    with zipfile.ZipFile(written) as zf:
        header = json.loads(zf.read("header.json"))
        names = set(zf.namelist())
    assert header["format"] == FORMAT == "wavecore-trace/2"
    assert names == {"header.json"} | {f"{c}.npy" for c in ALL_COLUMNS}
    assert header["columns"].keys() == ALL_COLUMNS.keys()
    assert all(c["dtype"] == ALL_COLUMNS[n] for n, c in header["columns"].items())
    assert header["units"][:4] == [["CORE", 0], ["VEC", 0], ["DMA_LD", 0], ["DMA_ST", 0]]
    assert set(header["dram_footprint"]) == {"peak_bytes", "by_kind"}


def test_the_same_program_gives_the_same_bytes(written, tmp_path):
    """No write time in the file: every member carries the zip epoch, and a second write of
    the same program is byte for byte the first."""
    with zipfile.ZipFile(written) as zf:
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    again = write_trace(read_trace(written), tmp_path / "again")
    assert again.read_bytes() == written.read_bytes()


def test_empty_program_round_trips(tmp_path):
    from wavecore_sim.ir import ProgramBuilder, machine_units

    program = ProgramBuilder(machine_units(1), 1 << 20).finish()
    assert_identical(read_trace(write_trace(program, tmp_path)), program)


# ----------------------------------------------------------------------------- refusals


def test_version_1_trace_is_refused_by_name(tmp_path):
    old = tmp_path / "program.wct.gz"
    with gzip.open(old, "wt") as fh:
        fh.write(
            json.dumps({"format": "wavecore-trace/1", "units": ["core0"], "allocs": 0, "instrs": 0})
            + "\n"
        )
    expected = (
        f"trace {old} is format wavecore-trace/1, which this version no longer "
        "reads; recompile it with `wavecore-sim compile`"
    )
    assert refused(tmp_path) == expected  # found in the directory
    assert refused(old) == expected


def test_foreign_files_are_refused(tmp_path):
    text = tmp_path / "a.wct"
    text.write_text("hello")
    assert "corrupt or truncated" in refused(text)
    other = tmp_path / "b.wct"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("header.json", json.dumps({"format": "something/9"}))
    assert "is format 'something/9', not wavecore-trace/2" in refused(other)
    assert "not found" in refused(tmp_path / "missing")


def test_truncated_trace_is_refused(written, tmp_path):
    data = written.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.wct"
        bad.write_bytes(data[:cut])
        message = refused(bad)
        assert "recompile it" in message and str(bad) in message


def test_byte_flips_are_refused(written, tmp_path):
    """Flips inside compressed member data: CRC or zlib errors, never a traceback or a
    silently different program."""
    data = written.read_bytes()
    with zipfile.ZipFile(written) as zf:
        infos = [i for i in zf.infolist() if i.compress_size > 40]
    rng = np.random.default_rng(3)
    for info in infos[:: max(1, len(infos) // 8)]:
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        pos = int(start + rng.integers(8, info.compress_size - 8))
        bad = tmp_path / f"flip-{info.filename}.wct"
        bad.write_bytes(data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1 :])
        assert "recompile it" in refused(bad), info.filename


def test_wrong_dtype_column_is_refused(written, tmp_path):
    bad = tmp_path / "dtype.wct"
    rewrite(
        written,
        bad,
        lambda name, data: (
            npy(np.load(io.BytesIO(data)).astype(np.int32)) if name == "op.npy" else data
        ),
    )
    assert "column 'op' has dtype <i4, expected |i1" in refused(bad)


@pytest.mark.parametrize(
    ("column", "mutate", "expected"),
    [
        ("op", lambda a: np.concatenate([a, a[:1]]), "column 'op' has shape"),
        (
            "op",
            lambda a: np.where(np.arange(len(a)) == 3, 9, a).astype(a.dtype),
            "column 'op'[3] = 9 is outside [0, 4)",
        ),
        ("unit", lambda a: np.full_like(a, 8), "column 'unit'[0] = 8 is outside [0, 8)"),
        ("traffic", lambda a: np.full_like(a, -1), "column 'traffic'[0] = -1"),
        ("dep_ptr", lambda a: a[::-1].copy(), "'dep_ptr' does not start at 0"),
        ("acc_alloc", lambda a: a + 10**6, "column 'acc_alloc'"),
    ],
    ids=["length", "opcode", "unit", "traffic", "pointers", "alloc"],
)
def test_inconsistent_columns_are_refused(written, tmp_path, column, mutate, expected):
    bad = tmp_path / "bad.wct"

    def change(name, data):
        if name == f"{column}.npy":
            return npy(mutate(np.load(io.BytesIO(data))))
        if name == "header.json" and column == "op" and expected.endswith("has shape"):
            return data  # header keeps the old length: the column disagrees with it
        return data

    rewrite(written, bad, change)
    assert expected in refused(bad)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda h: h.pop("steps"), "header.json lacks steps"),
        (lambda h: h["units"].__setitem__(0, ["GPU", 0]), "header 'units' must be"),
        (lambda h: h["columns"].pop("op"), "header 'columns' does not list"),
        (lambda h: h["groups"][0].pop("sub_batch"), "header 'groups' entries"),
        (lambda h: h.__setitem__("dram_footprint", 5), "header 'dram_footprint'"),
    ],
    ids=["missing-key", "unit-kind", "columns", "groups", "footprint"],
)
def test_malformed_header_is_refused(written, tmp_path, mutate, expected):
    bad = tmp_path / "hdr.wct"

    def change(name, data):
        if name != "header.json":
            return data
        header = json.loads(data)
        mutate(header)
        return json.dumps(header)

    rewrite(written, bad, change)
    assert expected in refused(bad)


def test_missing_and_extra_members_are_refused(written, tmp_path):
    bad = tmp_path / "missing.wct"
    rewrite(written, bad, lambda name, data: None if name == "dep_ids.npy" else data)
    assert "missing member dep_ids.npy" in refused(bad)
    extra = tmp_path / "extra.wct"
    with zipfile.ZipFile(extra, "w") as zf, zipfile.ZipFile(written) as zin:
        for name in zin.namelist():
            zf.writestr(name, zin.read(name))
        zf.writestr("notes.txt", "hi")
    assert "unexpected member notes.txt" in refused(extra)


def test_a_failed_write_leaves_no_file(program, tmp_path):
    broken = Program(
        program.units,
        {**program.cols, "op": program.cols["op"].astype(np.int64)},
        program.strings,
        program.steps,
        program.gbuf_bytes,
    )
    with pytest.raises(ValueError, match="'op'"):
        write_trace(broken, tmp_path)
    assert list(tmp_path.iterdir()) == []
