"""`wavecore-sim compile`: plan.json and program.wct; bad input exits 2 and writes nothing."""

from __future__ import annotations

import json

import pytest
from conftest import TINYNET

from wavecore_sim.compiler.tracefile import read_trace
from wavecore_sim.compiler.verify import verify_program
from wavecore_sim.workload import load_network


def assert_nothing_written(out):
    """DIR was not created, or is still empty (no half-written files, no staging folder)."""
    assert not out.exists() or list(out.iterdir()) == []


def test_compile_resnet50_mbs2_writes_plan_json_and_trace(run_cli, tmp_path):
    out = tmp_path / "r50"
    res = run_cli(
        "compile",
        "--network",
        "resnet50",
        "--batch",
        "32",
        "--schedule",
        "mbs2",
        "--out",
        str(out),
        "--quiet",
    )
    assert res.code == 0, res.err
    assert res.err == ""
    assert f"wrote {out}/plan.json and {out}/program.wct" in res.out
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "program.wct"]
    # the digest gives the DRAM footprint, with units
    assert any(
        line.startswith("DRAM footprint  ") and " GiB peak (saved_activations " in line
        for line in res.out.splitlines()
    ), res.out

    plan = json.loads((out / "plan.json").read_text())
    for key in ("groups", "dram_read_bytes", "dram_write_bytes", "instructions"):
        assert key in plan
    assert (plan["network"], plan["batch"], plan["schedule"], plan["norm"]) == (
        "resnet50",
        32,
        "mbs2",
        "gn",
    )
    # Groups: objects with their layers (every ResNet-50 layer once, in order) and sub-batch.
    layers = [ly.name for ly in load_network("resnet50", norm="gn").layers]
    assert [name for g in plan["groups"] for name in g["layers"]] == layers
    assert all(1 <= g["sub_batch"] <= 32 for g in plan["groups"])
    assert len({g["sub_batch"] for g in plan["groups"]}) > 1  # MBS: sizes differ by depth

    program = read_trace(out)
    verify_program(program)
    assert plan["instructions"] == len(program)
    assert (plan["dram_read_bytes"], plan["dram_write_bytes"]) == program.dram_bytes()
    assert plan["dram_by_kind"] == program.planned
    assert sum(plan["instructions_by_op"].values()) == plan["instructions"]
    assert set(plan["instructions_by_op"]) == {"GEMM", "VEC", "LOAD", "STORE"}
    assert plan["units"] == program.unit_names
    assert plan["dram_peak_bytes"] == program.dram_footprint.peak_bytes > 0
    assert plan["dram_footprint_by_kind"] == program.dram_footprint.by_kind
    assert [g["sub_batch"] for g in plan["groups"]] == [g.sub_batch for g in program.groups]


def test_compile_into_an_existing_directory_keeps_other_files(run_cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = run_cli(
        "compile",
        "--network",
        str(TINYNET),
        "--batch",
        "4",
        "--preset",
        "tiny",
        "--schedule",
        "baseline",
        "--out",
        str(out),
    )
    assert res.code == 0, res.err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "plan.json", "program.wct"]
    assert json.loads((out / "plan.json").read_text())["schedule"] == "baseline"


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--schedule", "mbs3"],
            "unknown schedule 'mbs3'; choose one of baseline, il, mbs-fs, mbs1, mbs2",
        ),
        (["--network", "resnet51"], "unknown network 'resnet51'"),
        (
            ["--set", "gbuf_bytes=1000"],
            "config field 'gbuf_bytes' = 1000 cannot hold one 128x128 "
            "tile with its double buffer; raise it to at least 196608",
        ),
        # Legal config, but ResNet-50's 56x56 layers cannot run in 192 KiB: refused, not compiled.
        (
            ["--set", "gbuf_bytes=192KiB"],
            "does not fit the 196608-byte global buffer; raise gbuf_bytes",
        ),
        (["--set", "gbuf_bytes"], "--set 'gbuf_bytes': write it as FIELD=VALUE"),
        (["--set", "gbuf_mib=10"], "unknown config field 'gbuf_mib'"),
        (["--batch", "0"], "argument --batch: must be a positive integer, got 0"),
        (["--norm", "ln"], "argument --norm: invalid choice: 'ln'"),
    ],
    ids=[
        "schedule",
        "network",
        "tiny-gbuf",
        "gbuf-too-small-for-resnet50",
        "set-syntax",
        "set-field",
        "batch",
        "norm",
    ],
)
def test_bad_compile_input_exits_2_with_one_line_and_writes_nothing(
    args, expected, run_cli, tmp_path
):
    out = tmp_path / "out"
    # The bad option comes after the good defaults; argparse keeps the last value given.
    cmd = [
        "compile",
        "--network",
        "resnet50",
        "--batch",
        "32",
        "--schedule",
        "mbs2",
        *args,
        "--out",
        str(out),
    ]
    res = run_cli(*cmd)
    assert res.code == 2
    assert res.out == ""
    lines = res.err.splitlines()
    assert len(lines) == 1, res.err
    assert expected in lines[0]
    assert "Traceback" not in res.err
    assert_nothing_written(out)


def test_compile_refuses_an_out_path_that_is_a_file(run_cli, tmp_path):
    target = tmp_path / "plan.txt"
    target.write_text("keep me")
    res = run_cli(
        "compile",
        "--network",
        str(TINYNET),
        "--batch",
        "4",
        "--preset",
        "tiny",
        "--out",
        str(target),
    )
    assert res.code == 2
    assert res.err.splitlines() == [
        f"wavecore-sim: error: --out {str(target)!r} is a file; give a directory"
    ]
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.txt"]


def test_compile_requires_out(run_cli):
    res = run_cli("compile", "--network", str(TINYNET))
    assert res.code == 2
    assert len(res.err.splitlines()) == 1 and "--out" in res.err
