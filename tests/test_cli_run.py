"""End to end: ``run``, ``compile`` + ``simulate`` and ``gemm`` on the tiny example network.

Everything runs on the ``tiny`` preset (32x32 arrays, 1 MiB buffer) with tinynet at batch 8:
a few hundred instructions per run, well under a second each.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINYNET, call_cli

from wavecore_sim import api, cli
from wavecore_sim.ir import machine_units
from wavecore_sim.sim.machine import STALL_CAUSES

SCHEDULES = ("baseline", "mbs2")
RUN_ARGS = ("--network", str(TINYNET), "--batch", "8", "--preset", "tiny")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Per schedule: ``run --out RUN`` (mbs2 with ``--json``, its stdout kept) and
    ``compile --out PLAN``; for mbs2 also ``simulate PLAN --out SIM``. Drawing timeline.png
    is the slow part (~1 s), so only three commands write plots."""
    base = tmp_path_factory.mktemp("cli_run")
    dirs: dict[str, dict] = {}
    for schedule in SCHEDULES:
        d: dict = {name: base / f"{schedule}-{name}" for name in ("run", "plan", "sim")}
        json_flag = ("--json",) if schedule == "mbs2" else ()
        commands = [
            (
                "run",
                "--quiet",
                *RUN_ARGS,
                "--schedule",
                schedule,
                "--out",
                str(d["run"]),
                *json_flag,
            ),
            ("compile", "--quiet", *RUN_ARGS, "--schedule", schedule, "--out", str(d["plan"])),
        ]
        if schedule == "mbs2":
            commands.append(("simulate", "--quiet", str(d["plan"]), "--out", str(d["sim"])))
        for argv in commands:
            code, out, err = call_cli(*argv)
            assert (code, err) == (0, ""), (argv, out, err)
            d.setdefault("stdout", out)  # the run's
        dirs[schedule] = d
    return dirs


def last_done_cycles(trace: dict) -> dict[str, int]:
    """Per unit track of a trace.json: the cycle its last instruction completed (the slice
    end, or ``args.done_us`` when the results drain later), from the slices alone."""
    mhz = trace["metadata"]["clock_mhz"]
    units = set(trace["metadata"]["units"])
    names = {
        e["tid"]: e["args"]["name"].split(" busy ")[0]
        for e in trace["traceEvents"]
        if e.get("ph") == "M" and e["name"] == "thread_name"
    }
    last: dict[str, float] = {}
    for e in trace["traceEvents"]:
        name = names.get(e.get("tid"))
        if e.get("ph") == "X" and name in units:
            end = max(e["ts"] + e["dur"], e.get("args", {}).get("done_us", 0.0))
            last[name] = max(last.get(name, 0.0), end)
    return {name: round(us * mhz) for name, us in last.items()}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------- run


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_run_writes_every_output_file(runs, schedule):
    files = {p.name for p in runs[schedule]["run"].iterdir()}
    # no staging folder (.wavecore-*) left behind
    assert files == {"summary.json", "layers.csv", "groups.csv", "timeline.png", "trace.json"}
    assert (runs[schedule]["run"] / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_json(runs[schedule]["run"] / "trace.json")  # valid, non-empty JSON


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_run_summary_has_cycles_traffic_utilization_and_per_unit_accounting(runs, schedule):
    s = read_json(runs[schedule]["run"] / "summary.json")
    assert (s["network"], s["batch"], s["schedule"]) == ("tinynet", 8, schedule)
    assert isinstance(s["cycles"], int) and s["cycles"] > 0
    # tiny preset clock 700 MHz: seconds = cycles / 7e8
    assert s["seconds"] == pytest.approx(s["cycles"] / 700e6)
    assert s["macs"] > 0 and s["instructions"] > 0 and s["wall_seconds"] >= 0
    assert s["dram_read_bytes"] > 0 and s["dram_write_bytes"] > 0
    assert s["dram_bytes"] == s["dram_read_bytes"] + s["dram_write_bytes"]
    for key in ("temporal", "spatial"):
        assert 0 < s["utilization"][key] <= 1
    assert set(s["core_stalls"]) == set(STALL_CAUSES)
    assert set(s["units"]) == {u.name for u in machine_units(2)}  # core, vec, dma.ld, dma.st
    # idle, counted from the unit's own instructions in trace.json rather than as the
    # remainder: a unit is busy or stalled from cycle 0 until its last instruction completes
    # (waits before its first one are dependency stalls), idle after that
    last = last_done_cycles(read_json(runs[schedule]["run"] / "trace.json"))
    for name, unit in s["units"].items():
        assert unit["idle"] == s["cycles"] - last.get(name, 0), name
        assert min(unit["busy"], unit["idle"], *unit["stalls"].values()) >= 0, name
    # core_stalls is the sum over the cores
    for cause in STALL_CAUSES:
        assert s["core_stalls"][cause] == sum(
            s["units"][f"core{c}"]["stalls"][cause] for c in (0, 1)
        )


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_run_dram_bytes_equal_the_compiled_plan(runs, schedule):
    summary = read_json(runs[schedule]["run"] / "summary.json")
    plan = read_json(runs[schedule]["plan"] / "plan.json")
    assert (summary["dram_read_bytes"], summary["dram_write_bytes"]) == (
        plan["dram_read_bytes"],
        plan["dram_write_bytes"],
    )
    assert summary["instructions"] == plan["instructions"]


def test_mbs2_moves_fewer_dram_bytes_than_baseline(runs):
    base = read_json(runs["baseline"]["run"] / "summary.json")
    mbs2 = read_json(runs["mbs2"]["run"] / "summary.json")
    assert mbs2["dram_bytes"] < base["dram_bytes"]
    assert mbs2["cycles"] < base["cycles"]
    assert mbs2["macs"] == base["macs"]  # same GEMMs, only the order and grouping differ


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", ["layers.csv", "groups.csv"])
def test_layer_and_group_tables_have_headers_and_rows(runs, schedule, name):
    rows = read_csv(runs[schedule]["run"] / name)
    assert rows
    first_column = "layer" if name == "layers.csv" else "group"
    assert next(iter(rows[0])) == first_column
    for column in (
        "first_start",
        "last_done",
        "core_cycles",
        "macs",
        "dram_read_bytes",
        "dram_write_bytes",
        "span_cycles",
    ):
        assert column in rows[0]
    summary = read_json(runs[schedule]["run"] / "summary.json")
    # every instruction belongs to exactly one row of each table
    assert sum(int(r["instructions"]) for r in rows) == summary["instructions"]
    assert sum(int(r["dram_read_bytes"]) for r in rows) == summary["dram_read_bytes"]
    assert max(int(r["last_done"]) for r in rows) == summary["cycles"]


def test_simulating_the_compiled_trace_gives_the_same_run(runs):
    run = read_json(runs["mbs2"]["run"] / "summary.json")
    sim = read_json(runs["mbs2"]["sim"] / "summary.json")
    assert {p.name for p in runs["mbs2"]["sim"].iterdir()} == {
        "summary.json",
        "layers.csv",
        "groups.csv",
        "timeline.png",
        "trace.json",
    }
    for key in (
        "cycles",
        "macs",
        "dram_read_bytes",
        "dram_write_bytes",
        "instructions",
        "core_stalls",
        "utilization",
        "units",
    ):
        assert sim[key] == run[key], key


def test_api_run_without_plots_or_trace_writes_only_the_tables(tmp_path):
    out = api.run(
        str(TINYNET),
        8,
        "mbs2",
        cfg=api.make_config("tiny"),
        out_dir=tmp_path / "o",
        plots=False,
        trace_json=False,
    )
    assert {p.name for p in (tmp_path / "o").iterdir()} == {
        "summary.json",
        "layers.csv",
        "groups.csv",
    }
    assert read_json(tmp_path / "o" / "summary.json")["cycles"] == out.summary["cycles"]


@pytest.mark.parametrize(
    ("flags", "skipped"),
    [
        (("--no-trace",), {"trace.json"}),
        (("--no-plots",), {"timeline.png"}),
        (("--no-trace", "--no-plots"), {"trace.json", "timeline.png"}),
    ],
)
def test_no_trace_and_no_plots_are_honoured(runs, tmp_path, flags, skipped):
    every = {"summary.json", "layers.csv", "groups.csv", "timeline.png", "trace.json"}
    run_dir, sim_dir = tmp_path / "run", tmp_path / "sim"
    code, out, err = call_cli(
        "run", "--quiet", *RUN_ARGS, "--schedule", "mbs2", "--out", str(run_dir), *flags
    )
    assert (code, err) == (0, "")
    assert {p.name for p in run_dir.iterdir()} == every - skipped
    wrote = next(line for line in out.splitlines() if line.startswith("wrote "))
    assert all(name not in wrote for name in skipped)
    code, out, err = call_cli(
        "simulate", "--quiet", str(runs["mbs2"]["plan"]), "--out", str(sim_dir), *flags
    )
    assert (code, err) == (0, "")
    assert {p.name for p in sim_dir.iterdir()} == every - skipped


def test_no_plots_does_not_import_matplotlib(tmp_path):
    """Neither ``import wavecore_sim.api`` nor a run without a PNG loads matplotlib."""
    import subprocess
    import sys

    code = (
        "import sys; from wavecore_sim import api, cli; "
        f"cli.main(['run', *{list(RUN_ARGS)!r}, '--out', {str(tmp_path / 'o')!r}, "
        "'--no-plots', '--json']); print('matplotlib' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "False"


def test_summary_and_digest_give_the_dram_footprint(runs):
    s = read_json(runs["baseline"]["run"] / "summary.json")
    assert s["dram_peak_bytes"] > 0
    assert sum(s["dram_footprint_by_kind"].values()) <= s["dram_peak_bytes"]
    assert set(s["dram_footprint_by_kind"]) <= {
        "weights",
        "activations",
        "saved_activations",
        "gradients",
        "weight_gradients",
        "optimizer_state",
    }
    lines = [
        ln
        for ln in runs["baseline"]["stdout"].splitlines()
        if ln.startswith("  footprint     DRAM ")
    ]
    assert len(lines) == 1 and " peak (" in lines[0]
    assert any(unit in lines[0] for unit in (" B ", " KiB", " MiB", " GiB"))


def test_simulate_refuses_a_version_1_trace_in_one_line(run_cli_subprocess, tmp_path):
    old = tmp_path / "plan"
    old.mkdir()
    with gzip.open(old / "program.wct.gz", "wt") as fh:
        fh.write(json.dumps({"format": "wavecore-trace/1", "allocs": 0, "instrs": 0}) + "\n")
    result = run_cli_subprocess("simulate", str(old), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.code == 2 and result.out == ""
    assert result.err.splitlines() == [
        f"wavecore-sim: error: trace {old / 'program.wct.gz'} is format wavecore-trace/1, "
        "which this version no longer reads; recompile it with `wavecore-sim compile`"
    ]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_run_json_prints_the_summary_it_writes(runs):
    assert json.loads(runs["mbs2"]["stdout"]) == read_json(runs["mbs2"]["run"] / "summary.json")


# ----------------------------------------------------------------------------- gemm


def test_gemm_cli_prints_scale_sim_cycles_for_256x300x200():
    code, out, err = call_cli(
        "gemm",
        "--m",
        "256",
        "--k",
        "300",
        "--n",
        "200",
        "--ideal-memory",
        "--set",
        "weight_double_buffer=false",
        "--json",
    )
    assert (code, err) == (0, "")
    # ceil(300/128) * ceil(200/128) * (2*128 + 128 + 256 - 2) = 3 * 2 * 638 = 3828
    assert json.loads(out)["cycles"] == 3828


def test_gemm_cli_text_output_is_one_line():
    code, out, _ = call_cli("gemm", "--m", "256", "--k", "300", "--n", "200", "--ideal-memory")
    assert code == 0
    assert out.splitlines() == [out.strip()]
    # 128 + 6*256 + 254 = 1918 cycles with double-buffering
    assert "1,918 cycles" in out


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", *RUN_ARGS[:2], "--batch", "0", "--schedule", "mbs2"), "--batch"),
        (("run", "--quiet", *RUN_ARGS, "--schedule", "mbs9"), "unknown schedule 'mbs9'"),
        (
            ("run", "--network", "no/such/net.json", "--batch", "8", "--schedule", "mbs2"),
            "not found",
        ),
        (
            ("run", "--quiet", *RUN_ARGS, "--schedule", "mbs2", "--set", "gbuf_bytes=1"),
            "gbuf_bytes",
        ),
        (("simulate", "NO_SUCH_TRACE_DIR"), "not found"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    run_cli_subprocess, tmp_path, args, expected
):
    out_dir = tmp_path / "out"
    result = run_cli_subprocess(*args, "--out", str(out_dir), cwd=tmp_path)
    assert "Traceback" not in result.out + result.err, result.err
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.err
    assert result.out == ""
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_progress_off_a_terminal_is_timestamped_lines_and_quiet_is_silent(tmp_path):
    """stderr is not a terminal here: plain lines only (no carriage returns), each one
    timestamped (a tiny run's steps are too short to be listed: see test_progress.py);
    --quiet leaves stderr empty."""
    code, _, err = call_cli(
        "run", *RUN_ARGS, "--out", str(tmp_path / "a"), "--no-plots", "--progress", "plain"
    )
    assert code == 0
    assert all(re.match(r"^\[\d\d:\d\d:\d\d\] ", line) for line in err.splitlines()), err
    assert "\r" not in err
    code, _, err = call_cli(
        "run", *RUN_ARGS, "--out", str(tmp_path / "b"), "--no-plots", "--no-trace", "--quiet"
    )
    assert (code, err) == (0, "")


def test_digest_wall_time_is_the_whole_process_with_its_stage_split(tmp_path):
    code, out, _ = call_cli(
        "run", "--quiet", *RUN_ARGS, "--no-plots", "--no-trace", "--out", str(tmp_path)
    )
    assert code == 0
    wall = re.search(
        r"wall ([0-9.]+) s for the whole process \(start-up and imports "
        r"([0-9.]+), compile ([0-9.]+), simulate ([0-9.]+), outputs ([0-9.]+)\)",
        out,
    )
    assert wall, out
    total, *parts = (float(x) for x in wall.groups())
    assert sum(parts) == pytest.approx(total, abs=0.25)  # each part is rounded to 0.1 s


def test_digest_scales_units_and_labels_stalls_per_core(tmp_path):
    digest = call_cli(
        "run", "--quiet", *RUN_ARGS, "--no-plots", "--no-trace", "--out", str(tmp_path)
    )[1]
    assert "0.000" not in digest
    assert re.search(r"DRAM +read [0-9.]+ (KB|MB), write [0-9.]+ (KB|MB)", digest), digest
    assert "core stalls   cycles per core (mean of 2)" in digest


def test_version_and_python_dash_m(tmp_path):
    from wavecore_sim import __version__

    code, out, _ = call_cli("--version")
    assert (code, out.strip()) == (0, f"wavecore-sim {__version__}")
    res = subprocess.run(
        [sys.executable, "-m", "wavecore_sim", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (res.returncode, res.stdout.strip()) == (0, f"wavecore-sim {__version__}")


def test_config_presets_lists_every_preset():
    from wavecore_sim.config import PRESETS

    code, out, _ = call_cli("config", "presets")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == list(PRESETS)
    assert "cores=1" in out  # wavecore-1core, said by how it differs from the default


def test_gemm_refuses_more_cores_than_the_preset_has():
    code, _, err = call_cli("gemm", "--m", "64", "--k", "64", "--n", "64", "--cores", "4")
    assert code == 2 and "--set cores=4" in err and len(err.splitlines()) == 1


def test_a_set_that_changes_the_preset_machine_shape_is_stated(tmp_path):
    code, _, err = call_cli(
        "run",
        "--quiet",
        *RUN_ARGS,
        "--set",
        "cores=1",
        "--out",
        str(tmp_path),
        "--no-plots",
        "--no-trace",
    )
    assert code == 0
    assert "--set cores=1 replaces preset tiny's cores=2" in err


def test_schedule_takes_a_list_on_run_and_the_old_reproduce_spelling_still_works(tmp_path):
    code, out, _ = call_cli(
        "run",
        "--quiet",
        *RUN_ARGS,
        "--schedule",
        "baseline,mbs2",
        "--out",
        str(tmp_path),
        "--no-plots",
        "--no-trace",
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline", "mbs2"]
    assert out.count("wrote ") == 2
    parser = cli.build_parser()
    for spelling in ("--schedule", "--schedules"):
        args = parser.parse_args(["reproduce", "--out", "x", spelling, "baseline,mbs2"])
        assert args.schedule == ["baseline", "mbs2"]
    args = parser.parse_args(["sweep", "--out", "x", "--param", "cores=1,2", "--config", "m.toml"])
    assert args.config == "m.toml"
