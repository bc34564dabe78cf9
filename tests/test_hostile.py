"""Hostile input (issue 13): absurd config values, work that grows with an input, output
directories that cannot be written, and valid networks the compiler once refused.

Every refusal goes through the real command line (``run_cli_subprocess``) and must be: exit 2,
one short ``wavecore-sim: error:`` line on stderr naming the field, no traceback, and nothing
left in the output directory (or anywhere under the test's directory).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import TINYNET, assert_refused, head, spec

from wavecore_sim import api
from wavecore_sim.config import FIELD_RANGES, PRESETS, HardwareConfig, load_config
from wavecore_sim.errors import WavecoreError
from wavecore_sim.schedule import SCHEDULES
from wavecore_sim.training import MAX_BATCH
from wavecore_sim.workload import build_network

RUN = ("run", "--quiet", "--network", str(TINYNET), "--no-plots", "--no-trace")


# ----------------------------------------------------------------------------- absurd configs


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("hbm_gbps=1e-300", "config field 'hbm_gbps' must be >= 0.1, got 1e-300"),
        ("clock_mhz=1e-320", "config field 'clock_mhz' must be >= 1, got 1e-320"),
        ("clock_mhz=inf", "config field 'clock_mhz' must be a positive number, got inf"),
        ("hbm_channels=100000000", "config field 'hbm_channels' must be <= 1024"),
        ("gbuf_banks=1000000000", "config field 'gbuf_banks' must be <= 4096"),
        ("cores=64", "config field 'cores' must be <= 32, got 64"),
        ("hbm_bytes=2PiB", "config field 'hbm_bytes' must be <= 1125899906842624"),
        ("act_bytes=1000", "config field 'act_bytes' must be <= 16"),
        ("hbm_trefi_ns=1e-9", "config field 'hbm_trefi_ns' must be >= 10"),
    ],
)
def test_absurd_set_value_is_refused_with_its_range(
    setting, expected, run_cli_subprocess, tmp_path
):
    result = run_cli_subprocess(*RUN, "--set", setting, "--out", str(tmp_path / "out"))
    assert_refused(result, expected, tmp_path)
    assert "set it within" in result.err  # the range, as the fix


def test_absurd_value_in_a_toml_file_is_refused_the_same_way(run_cli_subprocess, tmp_path):
    (tmp_path / "m.toml").write_text("hbm_channels = 1e8\n")
    result = run_cli_subprocess(
        *RUN, "--config", str(tmp_path / "m.toml"), "--out", str(tmp_path / "out")
    )
    assert_refused(result, "config field 'hbm_channels' must be <= 1024", tmp_path, ("m.toml",))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("cores", 0, "config field 'cores' must be >= 1, got 0; set it within 1 to 32"),
        ("hbm_gbps", 1e-300, "'hbm_gbps' must be >= 0.1"),
        ("gbuf_banks", 10**9, "'gbuf_banks' must be <= 4096"),
        ("cores", "2", "config field 'cores' must be an integer within 1 to 32, got '2'"),
        ("weight_double_buffer", 1, "'weight_double_buffer' must be true or false"),
        ("gbuf_bytes", 1000, "cannot hold one 128x128 tile"),
    ],
)
def test_config_built_directly_is_validated(field, value, expected):
    with pytest.raises(WavecoreError) as err:
        HardwareConfig(**{field: value})
    assert expected in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(WavecoreError, match=field):
        dataclasses.replace(PRESETS["tiny"], **{field: value})


def test_every_preset_and_default_lies_inside_the_documented_ranges():
    from wavecore_sim.config_docs import describe

    for name, cfg in PRESETS.items():
        for field, (lo, hi) in FIELD_RANGES.items():
            assert lo <= getattr(cfg, field) <= hi, (name, field)
    assert set(FIELD_RANGES) == {
        f.name for f in dataclasses.fields(HardwareConfig) if f.type in ("int", "float")
    }
    assert describe("hbm_gbps").valid == "0.1 to 100000 GB/s"
    assert describe("gbuf_bytes").valid.startswith("1B to 64GiB, >= one tile")
    # the bounds themselves are accepted (a range is inclusive)
    assert load_config(overrides={"cores": "32", "hbm_channels": "1024"}).cores == 32


# ----------------------------------------------------------------------------- unbounded work


def test_huge_batch_is_refused_before_anything_is_built(run_cli_subprocess, tmp_path):
    result = run_cli_subprocess(*RUN, "--batch", "99999999999999", "--out", str(tmp_path / "o"))
    assert_refused(result, f"--batch must be at most {MAX_BATCH} samples", tmp_path)


def test_batch_just_over_the_bound_is_refused(run_cli_subprocess, tmp_path):
    out = tmp_path / "o"
    result = run_cli_subprocess(
        "compile", "--quiet", "--network", str(TINYNET), "--batch", str(MAX_BATCH + 1),
        "--out", str(out),
    )  # fmt: skip
    assert_refused(result, f"got {MAX_BATCH + 1}; lower --batch", tmp_path)


def test_huge_gemm_is_refused_naming_m_and_its_bound(run_cli_subprocess, tmp_path):
    result = run_cli_subprocess(
        "gemm", "--m", "1000000000000", "--k", "128", "--n", "128", cwd=tmp_path
    )
    assert_refused(result, "GEMM 1000000000000x128x128: --m must be at most", tmp_path)
    assert "hbm_bytes" in result.err


def test_unbalanced_sub_batches_compile():
    # batch 1000 under mbs2 splits into sub-batches of two sizes, each run long enough to be
    # replayed; the second run once looked up a mark inside the first (KeyError)
    program = api.compile_network(str(TINYNET), batch=1000, schedule="mbs2").program
    assert len(program) > 0


# ----------------------------------------------------------------------------- --out


@pytest.mark.parametrize(
    "argv",
    [
        RUN,
        ("run", "--quiet", "--network", str(TINYNET), "--schedule", "baseline,mbs2"),
        ("compile", "--quiet", "--network", str(TINYNET)),
        ("validate", "--quiet", "--network", str(TINYNET)),
        ("simulate", "--quiet", "no-such-trace"),
        ("sweep", "--quiet", "--network", str(TINYNET), "--param", "hbm_gbps=75,150"),
        ("reproduce", "--quiet", "--networks", "resnet50", "--schedules", "mbs2"),
    ],
    ids=lambda argv: " ".join(argv[:1] + argv[-1:]),
)
def test_empty_out_is_refused(argv, run_cli_subprocess, tmp_path):
    result = run_cli_subprocess(*argv, "--out", "", cwd=tmp_path)
    assert_refused(result, "--out '' is empty; give a directory name", tmp_path)


@pytest.mark.parametrize("command", ["run", "compile"])
def test_out_under_a_file_is_refused_before_any_work(command, run_cli_subprocess, tmp_path):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub" / "dir"
    result = run_cli_subprocess(
        command, "--quiet", "--network", str(TINYNET), "--out", str(out), cwd=tmp_path
    )
    assert_refused(result, "is a file, not a directory", tmp_path, ("afile",))
    assert (tmp_path / "afile").read_text() == "x"


def test_out_under_proc_is_refused(run_cli_subprocess, tmp_path):
    result = run_cli_subprocess(*RUN, "--out", "/proc/wavecore-out/run", cwd=tmp_path)
    assert_refused(result, "--out '/proc/wavecore-out/run': cannot create a directory", tmp_path)
    assert not Path("/proc/wavecore-out").exists()


def test_simulate_out_under_a_file_is_refused_before_reading_the_trace(
    run_cli_subprocess, tmp_path
):
    (tmp_path / "afile").write_text("x")
    result = run_cli_subprocess(
        "simulate", "no-such-trace", "--quiet", "--out", str(tmp_path / "afile" / "o")
    )
    assert_refused(result, "is a file, not a directory", tmp_path, ("afile",))


# ----------------------------------------------------------------------------- duplicate inputs


DUPLICATE_INPUTS = {
    "add": [
        {"name": "c1", "kind": "conv", "out_channels": 8, "kernel": 3, "padding": 1},
        {"name": "a", "kind": "add", "inputs": ["c1", "c1"]},
        {"name": "c2", "kind": "conv", "out_channels": 8, "kernel": 3, "padding": 1},
    ],
    "concat": [
        {"name": "c1", "kind": "conv", "out_channels": 8, "kernel": 3, "padding": 1},
        {"name": "cat", "kind": "concat", "inputs": ["c1", "c1"]},
        {"name": "c2", "kind": "conv", "out_channels": 8, "kernel": 3, "padding": 1},
    ],
    "both, with fan-out": [
        {"name": "c1", "kind": "conv", "out_channels": 8, "kernel": 3, "padding": 1},
        {"name": "a", "kind": "add", "inputs": ["c1", "c1"]},
        {"name": "cat", "kind": "concat", "inputs": ["a", "c1", "a"]},
        {"name": "c2", "kind": "conv", "out_channels": 8, "kernel": 1},
        {"name": "a2", "kind": "add", "inputs": ["c2", "c2", "c2"]},
    ],
}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("case", sorted(DUPLICATE_INPUTS))
def test_add_or_concat_listing_one_input_twice_compiles_verifies_and_simulates(case, schedule):
    network = build_network(spec([*DUPLICATE_INPUTS[case], *head()], 3, 16, 16))
    cfg = load_config("tiny")
    compiled = api.compile_network(network, batch=4, schedule=schedule, cfg=cfg)  # verified
    result, _ = api.simulate_program(compiled.program, cfg)
    assert result.cycles > 0
    for op in compiled.graph.ops:  # each tensor read and written once per op
        assert len(set(op.reads)) == len(op.reads) and len(set(op.writes)) == len(op.writes)


# ----------------------------------------------------------------------------- network files


def tinynet_with(old: str, new: str) -> str:
    """The example network's JSON text with its first ``old`` replaced by ``new``."""
    text = json.dumps(json.loads(TINYNET.read_text()))
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe\x00 not text", "not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
        (b'{"format": "wavecore-network/1", "name": ', "not valid JSON"),
        (tinynet_with('"out_channels": 16', '"out_channels": NaN'), "got nan"),
        (tinynet_with('"out_channels": 16', '"out_channels": 1e400'), "got inf"),
        (tinynet_with('"out_channels": 16', '"out_channels": -8'), "got -8"),
        (tinynet_with('"out_channels": 16', '"out_channels": "16"'), "got '16'"),
        (tinynet_with('"out_channels": 16', '"out_channels": true'), "got True"),
    ],
    ids=["not-utf8", "nested", "truncated", "nan", "1e400", "negative", "string", "bool"],
)
def test_a_hostile_network_file_is_refused_in_one_line(content, expected, run_cli, tmp_path):
    net = tmp_path / "net.json"
    net.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_cli(*RUN, "--network", str(net), "--out", str(tmp_path / "o"))
    assert_refused(result, expected, tmp_path, ("net.json",))
