"""Hostile input, part 2 (issue 13): corrupted and edited traces, a trace simulated on a
machine it was not compiled for, output directories that cannot take the outputs, a full disk
or stdout, signals while outputs are written, absurd numbers, reproduce with nothing to run.

Every case runs the command line and asserts: non-zero exit, one short error line on stderr,
no traceback, nothing left in the output directory (nor anywhere under the test's directory
but the files the test made). In-process (``run_cli``) where an escaping exception would fail
the test anyway; in a subprocess for signals, a full stdout and the cases that must show no
traceback on the real process.

Signals: writing the tiny outputs takes milliseconds, too short to interrupt on purpose, so the
signal tests set :data:`wavecore_sim.api.SLOW_OUTPUT_ENV`, a test hook that only sleeps after
each output file is staged, and send the signal once the first staged file appears.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, TINYNET, assert_refused, npy, rewrite

from wavecore_sim import api
from wavecore_sim.compiler.tracefile import FILENAME, read_trace
from wavecore_sim.ir import Op, Program, UnitKind

GiB = 1024**3
QUIET = ("--quiet", "--no-plots", "--no-trace")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """tinynet, batch 4, mbs2, on the tiny preset (2 cores of 32x32): the trace under test."""
    out = tmp_path_factory.mktemp("trace") / "c"
    api.compile_to(out, network=str(TINYNET), batch=4, schedule="mbs2", cfg=api.make_config("tiny"))
    return out / FILENAME


@pytest.fixture(scope="module")
def program(compiled) -> Program:
    return read_trace(compiled)


# ----------------------------------------------------------------------------- trace edits

Change = Callable[[str, bytes], bytes | None]
Edit = Callable[[Program], Change]


def first(program: Program, op: Op) -> int:
    """The first instruction with opcode ``op``."""
    return int(np.flatnonzero(program.cols["op"] == op)[0])


def unit_index(program: Program, kind: UnitKind) -> int:
    """The index (in the unit table) of the first unit of ``kind``."""
    return next(i for i, u in enumerate(program.units) if u.kind is kind)


def column(name: str, edit: Callable[[np.ndarray, Program], np.ndarray]) -> Edit:
    """Replace column ``name`` by ``edit(column, program)``."""

    def make(program: Program) -> Change:
        def change(member: str, data: bytes) -> bytes:
            if member != f"{name}.npy":
                return data
            return npy(edit(np.load(io.BytesIO(data)).copy(), program))

        return change

    return make


def put(name: str, where: Callable[[Program], int], value: Any) -> Edit:
    """Set ``column[where(program)] = value``."""

    def edit(col: np.ndarray, program: Program) -> np.ndarray:
        col[where(program)] = value(program) if callable(value) else value
        return col

    return column(name, edit)


def header(edit: Callable[[dict[str, Any]], Any]) -> Edit:
    """Change header.json in place with ``edit(header)``."""

    def make(program: Program) -> Change:
        def change(member: str, data: bytes) -> bytes:
            if member != "header.json":
                return data
            h = json.loads(data)
            edit(h)
            return json.dumps(h).encode()

        return change

    return make


def replace_member(name: str, data: bytes) -> Edit:
    return lambda program: lambda member, old: data if member == name else old


def both(a: Edit, b: Edit) -> Edit:
    """Apply edit ``a`` then ``b`` (to different members)."""
    return lambda program: lambda member, data: b(program)(member, a(program)(member, data))


def shift_dram(by: int) -> Edit:
    """Move every DRAM region and transfer by ``by`` bytes (consistently)."""
    return both(
        column("region_addr", lambda col, p: col + by),
        column("dram_addr", lambda col, p: col + by),
    )


def gemm(p: Program) -> int:
    return first(p, Op.GEMM)


def vec(p: Program) -> int:
    return first(p, Op.VEC)


def load(p: Program) -> int:
    return first(p, Op.LOAD)


def store(p: Program) -> int:
    return first(p, Op.STORE)


def kind(k: UnitKind) -> Callable[[Program], int]:
    return lambda p: unit_index(p, k)


def set_config(key: str, value: Any) -> Edit:
    return header(lambda h: h["meta"]["config"].__setitem__(key, value))


TRACE_EDITS: dict[str, tuple[Edit, str]] = {
    # which unit an instruction runs on, and the unit table
    "GEMM on a DMA load queue": (
        put("unit", gemm, kind(UnitKind.DMA_LD)),
        "GEMM runs on dma0.ld, which is not a CORE unit",
    ),
    "LOAD on a store queue": (
        put("unit", load, kind(UnitKind.DMA_ST)),
        "LOAD runs on dma0.st, which is not a DMA_LD unit",
    ),
    "STORE on a load queue": (
        put("unit", store, kind(UnitKind.DMA_LD)),
        "STORE runs on dma0.ld, which is not a DMA_ST unit",
    ),
    "VEC on a core": (
        put("unit", vec, kind(UnitKind.CORE)),
        "VEC runs on core0, which is not a VEC unit",
    ),
    "unit index -1 in the unit column": (put("unit", gemm, -1), "column 'unit'"),
    "unit index -1 in the unit table": (
        header(lambda h: h["units"].__setitem__(0, ["CORE", -1])),
        "header 'units' must be [kind, index] pairs",
    ),
    "a core renamed core7": (
        header(lambda h: h["units"].__setitem__(0, ["CORE", 7])),
        "unit core7 does not belong to a machine of 2 cores",
    ),
    "every unit renumbered from 5": (
        header(lambda h: [u.__setitem__(1, u[1] + 5) for u in h["units"]]),
        "unit core5 does not belong to a machine of 2 cores",
    ),
    "a unit listed twice": (
        header(lambda h: h["units"].__setitem__(4, ["CORE", 0])),
        "header 'units' repeat",
    ),
    "a unit kind that does not exist": (
        header(lambda h: h["units"].__setitem__(0, ["GPU", 0])),
        "header 'units' must be",
    ),
    # shapes that disagree with the buffer accesses
    "GEMM m = 1e12, accesses unchanged": (
        put("m", gemm, 10**12),
        "GEMM 1000000000000x27x16 does not match its buffer accesses",
    ),
    "GEMM m = 9e18 (the MAC count overflows)": (
        put("m", gemm, 9 * 10**18),
        "has more multiply-accumulates than a 64-bit count holds",
    ),
    "GEMM k = 1e12": (put("k", gemm, 10**12), "its weights are 864 bytes"),
    "GEMM n = 1e12": (put("n", gemm, 10**12), "its weights are 864 bytes"),
    "GEMM output element size 4": (put("out_bytes", gemm, 4), "writes 2-byte elements"),
    "GEMM relabelled": (put("label", gemm, 0), "a GEMM's label is its role"),
    "vector op of 1e12 elements": (
        put("elements", vec, 10**12),
        "vector op of 1000000000000 elements",
    ),
    "vector op of 1e15 lane ops": (put("ops", vec, 10**15), "1000000000000000 lane ops"),
    "vector op of 1e9 passes": (put("passes", vec, 10**9), "1000000000 passes"),
    # DRAM addresses and the planned-bytes table
    "negative DRAM address": (put("dram_addr", load, -64), "= -64 is outside"),
    "DRAM past hbm_bytes": (shift_dram(32 * GiB), "outside the 34359738368-byte DRAM"),
    "transfer outside its region": (
        put("dram_addr", load, 2**40),
        "outside its region",
    ),
    "empty planned table": (
        header(lambda h: h.__setitem__("planned", {})),
        "has no planned DRAM bytes to compare them with",
    ),
    "planned table missing a kind": (
        header(lambda h: h["planned"]["read"].pop("weights")),
        "planned DRAM read bytes of weights (0) differ",
    ),
    "planned table with an unknown kind": (
        header(lambda h: h["planned"]["write"].__setitem__("bogus", 1)),
        "unknown traffic kinds ['bogus']",
    ),
    "planned bytes as strings": (
        header(lambda h: h["planned"]["read"].__setitem__("weights", "39348")),
        "header 'planned' is not",
    ),
    # header fields of the wrong type
    "gbuf_bytes a string": (
        header(lambda h: h.__setitem__("gbuf_bytes", "1MiB")),
        "header 'gbuf_bytes' is not a positive integer",
    ),
    "strings not strings": (
        header(lambda h: h["strings"].__setitem__(0, 5)),
        "header 'strings' is not a list of strings",
    ),
    "step group a string": (
        header(lambda h: h["steps"][0].__setitem__(0, "0")),
        "header 'steps' must be [group, layer, phase] triples",
    ),
    "group field of the wrong type": (
        header(lambda h: h["groups"][0].__setitem__("sub_batch", 2.5)),
        "has a field of the wrong type",
    ),
    "meta a list": (header(lambda h: h.__setitem__("meta", [])), "header 'meta' is not"),
    "column table a list": (
        header(lambda h: h.__setitem__("columns", [])),
        "header 'columns' does not list",
    ),
    # the config the trace was compiled for
    "stored config a string": (
        header(lambda h: h["meta"].__setitem__("config", "tiny")),
        "its config is not a table of fields",
    ),
    "stored config field of the wrong type": (
        set_config("cores", "two"),
        "config field 'cores': 'two' is not an integer",
    ),
    "stored config lacks a field": (
        header(lambda h: h["meta"]["config"].pop("hbm_gbps")),
        "its config lacks hbm_gbps",
    ),
    "stored config with an unknown field": (set_config("warp", 3), "has unknown 'warp'"),
    "stored config out of range": (set_config("clock_mhz", 1e-320), "'clock_mhz' must be >= 1"),
    "stored config of 1 core for 2 cores of units": (
        set_config("cores", 1),
        "the program has units for 2 cores, the config 1",
    ),
    # columns
    "float dependencies": (
        column("dep_ids", lambda col, p: col.astype(np.float64)),
        "column 'dep_ids' has dtype <f8",
    ),
    "string dependencies": (
        column("dep_ids", lambda col, p: col.astype(str)),
        "column 'dep_ids' has dtype <U",
    ),
    "dependency on a later instruction": (
        put("dep_ids", lambda p: 0, lambda p: len(p) - 1),
        "which does not come before it",
    ),
    "allocation id out of range": (put("acc_alloc", lambda p: 0, 10**6), "column 'acc_alloc'"),
    "access past its allocation": (
        put("acc_hi", lambda p: 0, 2**40),
        "outside it",
    ),
    "2-d column": (column("op", lambda col, p: col.reshape(1, -1)), "column 'op' has shape"),
    "column of garbage bytes": (
        replace_member("op.npy", b"garbage"),
        "column 'op' is not a readable .npy array",
    ),
    "object column": (
        replace_member("op.npy", npy(np.zeros(3))[:10] + b"{'descr': '|O'}"),
        "recompile it",
    ),
    "header not JSON": (replace_member("header.json", b"{not json"), "is corrupt or truncated"),
    "header not UTF-8": (replace_member("header.json", b"\xff\xfe"), "is corrupt or truncated"),
    "header nested 100,000 deep": (
        replace_member("header.json", b"[" * 100_000 + b"]" * 100_000),
        "is corrupt or truncated",
    ),
    "header a list": (replace_member("header.json", b"[]"), "header.json is not an object"),
    "member missing": (lambda p: lambda m, d: None if m == "dep_ids.npy" else d, "missing member"),
}


def simulate(run_cli, trace: Path | str, out: Path, *options: str):
    return run_cli("simulate", str(trace), *QUIET, "--out", str(out), *options)


@pytest.mark.parametrize("case", list(TRACE_EDITS))
def test_an_edited_trace_is_refused_in_one_line(case, compiled, program, run_cli, tmp_path):
    edit, expected = TRACE_EDITS[case]
    bad = tmp_path / "bad.wct"
    rewrite(compiled, bad, edit(program))
    result = simulate(run_cli, bad, tmp_path / "out")
    assert_refused(result, expected, tmp_path, ("bad.wct",))


def flipped(data: bytes, member_start: int, at: int) -> bytes:
    pos = member_start + at
    return data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1 :]


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_a_byte_flip_is_refused_in_one_line(where, compiled, program, run_cli, tmp_path):
    """Flips inside the compressed data: zlib, CRC or parse errors, always one line; or, for
    a flip in bits deflate never reads (a code length of an unused symbol), the very same
    program, never a silently different one."""
    data = compiled.read_bytes()
    pos = int(len(data) * 0.8 * where) + 40  # inside the members, before the directory
    bad = tmp_path / "bad.wct"
    bad.write_bytes(flipped(data, 0, pos))
    result = simulate(run_cli, bad, tmp_path / "out")
    if result.code == 0:
        back = read_trace(bad)
        assert all(np.array_equal(back.cols[k], v) for k, v in program.cols.items())
        assert (back.units, back.strings, back.meta, back.planned) == (
            program.units, program.strings, program.meta, program.planned
        )  # fmt: skip
        return
    assert_refused(result, "recompile it", tmp_path, ("bad.wct",))


@pytest.mark.parametrize(
    ("case", "content"),
    [
        ("truncated", None),
        ("empty", b""),
        ("text", b"hello, not a trace"),
        ("version 1 gzip", "gzip"),
    ],
)
def test_a_file_that_is_no_trace_is_refused(case, content, compiled, run_cli, tmp_path):
    bad = tmp_path / "bad.wct"
    if content is None:
        bad.write_bytes(compiled.read_bytes()[:2000])
    elif content == "gzip":
        bad.write_bytes(gzip.compress(b'{"format": "wavecore-trace/1"}\n'))
    else:
        bad.write_bytes(content)
    result = simulate(run_cli, bad, tmp_path / "out")
    assert_refused(result, "recompile it with `wavecore-sim compile`", tmp_path, ("bad.wct",))


# ----------------------------------------------------------------------------- the trace's config


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("--set", "cores=1"), "cores 2, not 1: --set would change the program; recompile"),
        (("--set", "hbm_gbps=600"), "compiled for hbm_gbps 75.0, not 600.0"),
        (("--set", "gbuf_bytes=2MiB"), "compile --set gbuf_bytes=2097152"),
        (("--preset", "wavecore"), "array_rows 32, not 128"),
        (
            ("--preset", "tiny", "--set", "array_cols=16"),
            "--preset tiny --set array_cols=16 would change",
        ),
        (("--config", "CONFIG"), "array_rows 32, not 64"),
        (("--set", "nosuch=1"), "unknown config field 'nosuch'"),
        (("--set", "gbuf_banks=0"), "config field 'gbuf_banks' must be >= 1"),
        (("--set", "hbm_gbps=1e-300"), "config field 'hbm_gbps' must be >= 0.1, got 1e-300"),
        (("--set", "clock_mhz=1e-320"), "config field 'clock_mhz' must be >= 1, got 1e-320"),
    ],
    ids=lambda x: " ".join(x) if isinstance(x, tuple) else None,
)
def test_simulate_refuses_a_machine_the_trace_was_not_compiled_for(
    options, expected, compiled, run_cli, tmp_path
):
    (tmp_path / "m.toml").write_text('preset = "tiny"\narray_rows = 64\n')
    options = tuple(str(tmp_path / "m.toml") if o == "CONFIG" else o for o in options)
    result = simulate(run_cli, compiled, tmp_path / "out", *options)
    assert_refused(result, expected, tmp_path, ("m.toml",))


def test_simulate_runs_on_the_trace_config_with_execution_only_overrides(
    compiled, run_cli, tmp_path
):
    base = simulate(run_cli, compiled, tmp_path / "a", "--json")
    assert base.code == 0, base.err
    assert json.loads(base.out)["config"]["cores"] == 2  # the trace's, not the default preset's
    # execution-only fields, the agreeing preset, hbm_gbps with clock_mhz at the same ratio
    for options in (
        ("--set", "hbm_model=ideal", "--set", "gbuf_banks=4"),
        ("--preset", "tiny", "--set", "hbm_model=ideal"),
        ("--set", "hbm_gbps=150", "--set", "clock_mhz=1400"),
    ):
        other = simulate(run_cli, compiled, tmp_path / "b", "--json", *options)
        assert other.code == 0, other.err
        summary = json.loads(other.out)
        assert summary["config"]["cores"] == 2 and summary["cycles"] > 0
    help_text = run_cli("simulate", "--help").out
    assert "hbm_model" in help_text and "execution-only" in help_text


# ----------------------------------------------------------------------------- output directories


@pytest.mark.parametrize(
    ("argv", "blocker"),
    [
        (("run", "--network", str(TINYNET), "--preset", "tiny", *QUIET), "summary.json"),
        (("run", "--network", str(TINYNET), "--preset", "tiny", "--quiet"), "timeline.png"),
        (("compile", "--network", str(TINYNET), "--preset", "tiny", "--quiet"), FILENAME),
        (("simulate", "TRACE", *QUIET), "layers.csv"),
    ],
    ids=lambda x: x if isinstance(x, str) else x[0],
)
def test_a_directory_named_like_an_output_is_refused_before_any_work(
    argv, blocker, compiled, run_cli, tmp_path
):
    out = tmp_path / "out"
    (out / blocker).mkdir(parents=True)
    argv = tuple(str(compiled) if a == "TRACE" else a for a in argv)
    result = run_cli(*argv, "--out", str(out))
    assert_refused(
        result, f"holds a directory named {blocker}, a file this run writes", tmp_path,
        ("out", f"out/{blocker}"),
    )  # fmt: skip


def test_several_schedules_check_every_out_dir_before_the_first_runs(run_cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mbs2").write_text("x")
    result = run_cli(
        "run", "--network", str(TINYNET), "--preset", "tiny", *QUIET,
        "--schedule", "baseline,mbs2", "--out", str(out),
    )  # fmt: skip
    assert_refused(result, "is a file; give a directory", tmp_path, ("out", "out/mbs2"))


def no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    ("argv", "target"),
    [
        (("run", "--network", str(TINYNET), "--preset", "tiny", *QUIET), "write_csv"),
        (("compile", "--network", str(TINYNET), "--preset", "tiny", "--quiet"), "write_trace"),
    ],
    ids=["run", "compile"],
)
def test_a_full_disk_while_writing_leaves_nothing(argv, target, run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(api, target, no_space)
    out = tmp_path / "a" / "out"
    result = run_cli(*argv, "--out", str(out))
    assert_refused(result, f"{out}: No space left on device; free some space", tmp_path, code=1)


def test_stdout_on_a_full_device_is_one_line(tmp_path):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "wavecore_sim.cli", "workloads", "list"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == "wavecore-sim: error: standard output: No space left on device\n"


# ----------------------------------------------------------------------------- signals


def staged(root: Path) -> bool:
    """Whether a staging folder under ``root`` holds a file yet."""
    try:
        return any(p.is_file() for p in root.rglob(".wavecore-[0-9]*/*"))
    except FileNotFoundError:  # a folder went away during the walk (the writability probe)
        return False


def interrupted(argv: list[str], sig: int, root: Path) -> subprocess.CompletedProcess:
    """Run the CLI with the slow-output hook, send ``sig`` once a staged file exists."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **{api.SLOW_OUTPUT_ENV: "5"})
    cmd = [sys.executable, "-m", "wavecore_sim.cli", *argv]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not staged(root):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode(), err.decode())


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        ("run", signal.SIGINT),
        ("run", signal.SIGTERM),
        ("compile", signal.SIGTERM),
        ("simulate", signal.SIGINT),
        ("simulate", signal.SIGTERM),
    ],
    ids=lambda x: x if isinstance(x, str) else signal.Signals(x).name,
)
def test_a_signal_while_outputs_are_written_leaves_nothing(command, sig, compiled, tmp_path):
    out = tmp_path / "new" / "out"
    if command == "simulate":
        argv = ["simulate", str(compiled), "--quiet"]
    else:
        argv = [command, "--network", str(TINYNET), "--preset", "tiny", "--quiet"]
    proc = interrupted([*argv, "--out", str(out)], sig, tmp_path)
    word, code = ("interrupted", 130) if sig == signal.SIGINT else ("terminated", 143)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert (proc.returncode, proc.stderr) == (code, f"wavecore-sim: {word}\n")
    assert list(tmp_path.rglob("*")) == []  # no partial files, no staging folder, no new dirs


def test_a_signal_while_writing_into_an_existing_directory_keeps_its_files(compiled, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["simulate", str(compiled), "--quiet", "--out", str(out)]
    proc = interrupted(argv, signal.SIGTERM, tmp_path)
    assert proc.returncode == 143 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# ----------------------------------------------------------------------------- absurd numbers


def test_a_network_integer_with_5000_digits_is_one_line(run_cli_subprocess, tmp_path):
    spec = json.loads(TINYNET.read_text())
    text = json.dumps(spec).replace('"out_channels": 16', '"out_channels": ' + "9" * 5000, 1)
    (tmp_path / "net.json").write_text(text)
    started = time.monotonic()
    result = run_cli_subprocess(
        "run", "--network", str(tmp_path / "net.json"), *QUIET, "--out", str(tmp_path / "o")
    )
    assert time.monotonic() - started < 30
    assert_refused(result, "a number has thousands of digits", tmp_path, ("net.json",))


def test_a_config_integer_with_5000_digits_is_one_line(run_cli, tmp_path):
    (tmp_path / "m.toml").write_text("cores = " + "9" * 5000 + "\n")
    result = run_cli("config", "show", "--config", str(tmp_path / "m.toml"))
    assert_refused(result, "a value has thousands of digits", tmp_path, ("m.toml",))
    result = run_cli("config", "show", "--set", "cores=" + "9" * 5000)
    assert_refused(result, "(5,002 characters) is not an integer", tmp_path, ("m.toml",))


# ----------------------------------------------------------------------------- reproduce


def test_reproduce_with_an_empty_network_list_is_refused(run_cli, tmp_path):
    result = run_cli("reproduce", "--quiet", "--networks", "", "--out", str(tmp_path / "o"))
    assert_refused(result, "no network given", tmp_path)


def test_reproduce_with_an_empty_schedule_list_is_refused(run_cli, tmp_path):
    result = run_cli("reproduce", "--quiet", "--schedules", "", "--out", str(tmp_path / "o"))
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip().splitlines() == [
        "wavecore-sim reproduce: error: argument --schedule/--schedules: give one or more of "
        + ", ".join(api.SCHEDULES)
        + " (see wavecore-sim reproduce --help)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_reproduce_exits_non_zero_and_writes_nothing_when_every_run_fails(run_cli, tmp_path):
    result = run_cli(
        "reproduce", "--quiet", "--networks", str(TINYNET), "--schedules", "baseline,mbs2",
        "--preset", "tiny", "--set", "gbuf_bytes=16KiB", "--jobs", "1", "--batch", "2",
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert_refused(result, "all 2 runs failed, nothing written (first: ", tmp_path)
