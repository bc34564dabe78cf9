"""``reproduce`` and ``sweep``: parallel runs, deterministic files, failed points, bad input.

All on the ``tiny`` preset (32x32 arrays, 1 MiB buffer, 75 GB/s) with tinynet at batch 4:
each run takes a fraction of a second; ``--jobs 2`` adds the start-up of spawned workers.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import TINYNET

from wavecore_sim import api, cli_experiments  # noqa: F401  (registers reproduce and sweep)
from wavecore_sim.energy import COMPONENTS
from wavecore_sim.errors import WavecoreError
from wavecore_sim.experiments import (
    SweepParam,
    fixed_values,
    parse_param,
    reproduce,
    sweep,
)

TINY = ("--network", str(TINYNET), "--batch", "4", "--preset", "tiny")
# 64 KiB: mbs2 fits tinynet, baseline does not (its batch-norm step needs whole samples)
SWEEP = (
    *TINY,
    "--schedule",
    "baseline,mbs2",
    "--param",
    "gbuf_bytes=32KiB,1MiB",
    "--param",
    "hbm_gbps=75,150",
)
REPRO_FIGURES = (
    "traffic_by_kind.png",
    "speedup.png",
    "energy_breakdown.png",
    "utilization.png",
    "mbs2_sub_batch.png",
    "tradeoff.png",  # DRAM traffic vs iteration time, one mark per schedule (issue 16)
    "footprint.png",
)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[int, Path]:
    """The same sweep with one worker (in-process) and with two worker processes."""
    base = tmp_path_factory.mktemp("sweep")
    out = {}
    for jobs in (1, 2):
        out[jobs] = base / f"jobs{jobs}"
        sweep(
            out[jobs],
            str(TINYNET),
            ["baseline", "mbs2"],
            ["gbuf_bytes=32KiB,1MiB", "hbm_gbps=75,150"],
            batch=4,
            jobs=jobs,
            preset="tiny",
        )
    return out


def test_sweep_csv_is_byte_identical_for_one_and_two_jobs(sweeps):
    assert (sweeps[1] / "sweep.csv").read_bytes() == (sweeps[2] / "sweep.csv").read_bytes()


def test_sweep_rows_follow_the_cross_product_then_the_schedule(sweeps):
    rows = read_csv(sweeps[2] / "sweep.csv")
    keys = [(r["gbuf_bytes"], r["hbm_gbps"], r["schedule"]) for r in rows]
    assert keys == [
        (g, h, s)
        for g in ("32768", "1048576")
        for h in ("75.0", "150.0")
        for s in ("baseline", "mbs2")
    ]


def test_sweep_records_a_point_that_does_not_fit_as_failed_with_its_reason(sweeps):
    rows = read_csv(sweeps[1] / "sweep.csv")
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all(r["gbuf_bytes"] == "32768" for r in failed)
    assert all("does not fit" in r["error"] and "\n" not in r["error"] for r in failed)
    assert all(r["cycles"] == "" for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == len(rows) - len(failed) and all(int(r["cycles"]) > 0 for r in ok)


def test_sweep_energy_columns_sum_to_the_total(sweeps):
    for r in read_csv(sweeps[1] / "sweep.csv"):
        if r["status"] == "ok":
            parts = sum(float(r[f"energy_{c}_j"]) for c in COMPONENTS)
            assert parts == pytest.approx(float(r["energy_total_j"]), rel=1e-12)


def test_sweep_more_bandwidth_never_slows_a_run(sweeps):
    rows = read_csv(sweeps[1] / "sweep.csv")
    by = {(r["gbuf_bytes"], r["hbm_gbps"], r["schedule"]): r for r in rows if r["status"] == "ok"}
    for (g, h, s), r in by.items():
        if h == "75.0" and (g, "150.0", s) in by:
            assert int(by[(g, "150.0", s)]["cycles"]) <= int(r["cycles"])


def test_sweep_writes_one_figure_per_parameter_and_its_metadata(sweeps):
    for name in ("sweep_gbuf_bytes.png", "sweep_hbm_gbps.png"):
        assert (sweeps[2] / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((sweeps[2] / "sweep.json").read_text())
    assert meta["params"] == {"gbuf_bytes": ["32KiB", "1MiB"], "hbm_gbps": ["75", "150"]}
    # tiny's defaults (1 MiB, 75 GB/s) are among the values, so each figure holds them
    assert meta["held_at_in_figures"]["gbuf_bytes"]["why"] == "default"
    assert meta["held_at_in_figures"]["hbm_gbps"]["value"] == 75.0


def test_sweep_cli_prints_the_failed_points_and_exits_1_when_all_fail(run_cli, tmp_path):
    res = run_cli(
        "sweep",
        *TINY,
        "--schedule",
        "baseline",
        "--param",
        "gbuf_bytes=32KiB",
        "--jobs",
        "1",
        "--out",
        str(tmp_path / "s"),
    )
    assert res.code == 1, res.err
    assert "failed: baseline at gbuf_bytes=32768: layer" in res.out
    assert "1 of 1 points failed" in res.out and "every sweep point failed" in res.err
    assert (tmp_path / "s" / "sweep.csv").exists()


def test_sweep_cli_with_some_points_failed_exits_0_and_counts_them(run_cli, tmp_path):
    res = run_cli(
        "sweep",
        *TINY,
        "--schedule",
        "baseline",
        "--param",
        "gbuf_bytes=32KiB,1MiB",
        "--jobs",
        "1",
        "--out",
        str(tmp_path / "s"),
    )
    assert res.code == 0, res.err
    assert "1 of 2 points failed" in res.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--param", "gbuf_byte=1MiB"), "unknown config field 'gbuf_byte'"),
        (("--param", "gbuf_bytes=1MiB,lots"), "'lots' is not an integer or a size"),
        (("--param", "hbm_gbps=75,fast"), "'fast' is not a number"),
        (("--param", "hbm_gbps"), "write it as FIELD=V1,V2"),
        (("--param", "hbm_gbps=75,,150"), "give one or more comma-separated values"),
        (("--param", "hbm_gbps="), "give one or more comma-separated values"),
        (("--param", "hbm_gbps=75", "--schedule", ""), "give one or more of"),
        (("--param", "hbm_gbps=75,75.0"), "a value is repeated"),
        (("--param", "hbm_gbps=75", "--param", "hbm_gbps=150"), "is given twice"),
        (("--param", "hbm_gbps=75,-1"), "must be a positive number"),
        (("--param", "gbuf_bytes=1KiB"), "cannot hold one 32x32 tile"),
        (("--param", "hbm_gbps=75", "--schedule", "baseline,mbs3"), "unknown schedule 'mbs3'"),
        (("--param", "hbm_gbps=75", "--network", "resnet5"), "resnet5"),
    ],
)
def test_bad_sweep_input_exits_2_with_one_line_and_writes_nothing(run_cli, tmp_path, args, message):
    out = tmp_path / "never"
    argv = [
        "sweep",
        "--preset",
        "tiny",
        "--batch",
        "4",
        "--network",
        str(TINYNET),
        "--jobs",
        "1",
        *args,
        "--out",
        str(out),
    ]
    res = run_cli(*argv)
    assert res.code == 2
    assert res.err.count("\n") == 1 and message in res.err, res.err
    assert res.out == ""
    assert not out.exists()


def test_parse_param_reads_sizes_and_keeps_the_text_for_labels():
    p = parse_param("gbuf_bytes=2MiB, 5MiB", api.make_config())
    assert p == SweepParam("gbuf_bytes", ("2MiB", "5MiB"), (2 * 2**20, 5 * 2**20))


def test_other_parameters_are_held_at_the_default_else_the_middle_value():
    cfg = api.make_config()  # gbuf_bytes 10 MiB, hbm_gbps 300
    held = fixed_values(
        [
            parse_param("gbuf_bytes=40MiB,2MiB,20MiB,10MiB", cfg),
            parse_param("hbm_gbps=1200,75,150,600", cfg),
        ],
        cfg,
    )
    assert held["gbuf_bytes"] == {"value": 10 * 2**20, "text": "10MiB", "why": "default"}
    # 300 is not swept: sorted 75,150,600,1200 -> the upper middle, 600
    assert held["hbm_gbps"] == {"value": 600.0, "text": "600", "why": "middle value"}


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro") / "r"
    result = reproduce(
        out, networks=[str(TINYNET)], batch=4, schedules=["baseline", "mbs2"], jobs=2, preset="tiny"
    )
    return out, result


def test_reproduce_writes_tables_and_figures(repro):
    out, result = repro
    assert not result.failed
    rows = read_csv(out / "results.csv")
    assert [(r["network"], r["schedule"]) for r in rows] == [
        ("tinynet", "baseline"),
        ("tinynet", "mbs2"),
    ]
    for column in (
        "cycles",
        "seconds",
        "dram_read_bytes",
        "dram_weights_bytes",
        "energy_dram_j",
        "energy_total_j",
        "util_temporal",
        "util_spatial",
        "speedup_vs_baseline",
    ):
        assert all(r[column] != "" for r in rows), column
    for name in REPRO_FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    doc = json.loads((out / "results.json").read_text())
    assert [r["schedule"] for r in doc["runs"]] == ["baseline", "mbs2"]
    assert doc["runs"][1]["summary"]["groups"][0]["sub_batch"] >= 1


def test_reproduce_markdown_compares_with_baseline_and_the_paper(repro):
    out, result = repro
    md = (out / "results.md").read_text()
    assert md == result.markdown
    assert "| tinynet | baseline |" in md and "| 1.00 (+0%) | 1.00x (+0%) |" in md
    assert "**paper (MBS + WaveCore)** | | 0.25 (-75%) | 1.53x (+53%) | 0.74 (-26%)" in md
    rows = {r["schedule"]: r for r in read_csv(out / "results.csv")}
    speedup = int(rows["baseline"]["cycles"]) / int(rows["mbs2"]["cycles"])
    assert float(rows["mbs2"]["speedup_vs_baseline"]) == pytest.approx(speedup)
    assert f"{speedup:.2f}x" in md


def test_reproduce_cli_rejects_quick_with_networks(run_cli, tmp_path):
    res = run_cli("reproduce", "--quick", "--networks", "resnet50", "--out", str(tmp_path / "r"))
    assert res.code == 2 and res.err.count("\n") == 1 and "--networks" in res.err
    assert not (tmp_path / "r").exists()


def test_reproduce_cli_rejects_an_unknown_schedule_before_running(run_cli, tmp_path):
    res = run_cli(
        "reproduce",
        "--networks",
        str(TINYNET),
        "--schedules",
        "baseline,fast",
        "--out",
        str(tmp_path / "r"),
    )
    assert res.code == 2 and "unknown schedule 'fast'" in res.err and res.err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_reproduce_api_refuses_quick_and_networks_together(tmp_path):
    with pytest.raises(WavecoreError, match="not both"):
        reproduce(tmp_path / "r", networks=["resnet50"], quick=True)


def test_reproduce_runs_schedules_with_run_options(tmp_path):
    # A schedule may carry run's options: mbs2 with every group recomputing its forward pass
    # beside plain mbs2 on tinynet batch 8 (one group at sub-batch 2, test_schedule_opt.py).
    result = reproduce(
        tmp_path / "r",
        networks=[str(TINYNET)],
        batch=8,
        schedules=["mbs2", "mbs2:recompute=all"],
        jobs=1,
        preset="tiny",
    )
    assert not result.failed
    plain, redo = (r["summary"] for r in result.records)
    assert [r["schedule"] for r in result.records] == ["mbs2", "mbs2:recompute=all"]
    assert (plain["recompute"], redo["recompute"]) == ("none", "all")
    assert redo["recomputed_groups"] >= 1 and plain["recomputed_groups"] == 0
    saved = {name: sum(run["dram_by_kind"][d]["saved_activations"] for d in ("read", "write"))
             for name, run in (("plain", plain), ("redo", redo))}  # fmt: skip
    # recomputing, only the image is read back (to run stem.conv again): 8 x 3x32x32 x 2 B
    assert saved["redo"] == 8 * 3 * 32 * 32 * 2 < saved["plain"]
    assert redo["dram_bytes"] < plain["dram_bytes"]
    assert "| tinynet | mbs2:recompute=all |" in result.markdown


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mbs2:objective=traffic", "objective is one of time, traffic, energy, on mbs-opt only"),
        ("mbs-opt:speed=1", "'speed=1' is not one of KEY=VALUE"),
        ("baseline:recompute=all", "--recompute all needs a schedule that keeps"),
        ("mbs2:referee=2", "referee is a count of plans >= 0, on mbs-opt only"),
        ("mbs2,mbs2", "listed twice"),
    ],
)
def test_reproduce_refuses_a_bad_schedule_spec_in_one_line(run_cli, tmp_path, spec, expected):
    res = run_cli("reproduce", "--networks", str(TINYNET), "--schedules", spec, "--out",
                  str(tmp_path / "r"))  # fmt: skip
    assert res.code == 2 and res.err.count("\n") == 1 and expected in res.err, res.err
    assert "Traceback" not in res.err and not (tmp_path / "r").exists()
