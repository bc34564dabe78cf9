"""``explore``: the space file, sampling, the Pareto front and Kendall's tau by hand, the
compile cache, the results database (resume after ``kill -9``, identical under Dask), the
command line and its one-line errors.

Everything runs tinynet on the ``tiny`` preset (32x32 arrays, 1 MiB buffer, 75 GB/s) at
batch 4, where a point compiles and runs in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINYNET

from wavecore_sim import api, cli
from wavecore_sim.errors import WavecoreError
from wavecore_sim.experiments.evaluate import program_counts
from wavecore_sim.experiments.explore import build_designs, explore, make_jobs
from wavecore_sim.experiments.pareto import kendall_tau, pareto_front, ranks
from wavecore_sim.experiments.results_db import TIMING_COLUMNS
from wavecore_sim.experiments.space import latin_hypercube, parse_space

TINY = ("--network", str(TINYNET), "--batch", "4", "--preset", "tiny")
MiB = 2**20
# 32 KiB: baseline does not fit tinynet (test_experiments.py)
SPACE = """
[gbuf_bytes]
values = ["32KiB", "256KiB", "1MiB"]
[hbm_gbps]
min = 20
max = 300
scale = "log"
[schedule]
values = ["baseline", "mbs2"]
"""


def tiny() -> api.HardwareConfig:
    return api.make_config("tiny")


def write_space(tmp_path: Path, text: str = SPACE, name: str = "space.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def db_rows(path: Path, skip: tuple[str, ...] = ()) -> list[tuple]:
    conn = sqlite3.connect(path)
    cur = conn.execute("SELECT * FROM results ORDER BY point_key, model")
    names = [d[0] for d in cur.description]
    keep = [i for i, n in enumerate(names) if n not in skip]
    rows = [tuple(r[i] for i in keep) for r in cur]
    conn.close()
    return rows


# ------------------------------------------------------------------ formulas, by hand


def test_pareto_front_of_a_hand_made_set():
    points = [(1, 5), (2, 2), (3, 1), (2, 3), (4, 4), (2, 2)]
    # (2, 3) is dominated by (2, 2), (4, 4) by (2, 2) and (3, 1); the two (2, 2) tie: both in
    assert pareto_front(points) == [0, 1, 2, 5]
    assert pareto_front([]) == []
    assert pareto_front([(1, 1, 1), (1, 1, 2), (0, 2, 2)]) == [0, 2]


def test_kendall_tau_of_hand_made_rankings():
    # one swapped pair of 6: (5 concordant - 1 discordant) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 2, 3], [30, 20, 10]) == -1.0
    # tau-b with ties: pairs (1,2) tied in a and (2,3) tied in b; 4 concordant, 0 discordant:
    # 4 / sqrt((6 - 1) * (6 - 1))
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert math.isnan(kendall_tau([1], [2]))
    assert ranks([3.0, 1.0, 2.0, 1.0]) == [4, 1, 3, 1]


def test_latin_hypercube_uses_every_stratum_once_per_dimension():
    u = latin_hypercube(10, 3, seed=7)
    assert u.shape == (10, 3) and ((u >= 0) & (u < 1)).all()
    for j in range(3):
        assert sorted(np.floor(u[:, j] * 10).astype(int)) == list(range(10))
    assert (latin_hypercube(10, 3, seed=7) == u).all()
    assert not (latin_hypercube(10, 3, seed=8) == u).all()


def test_sample_spreads_values_evenly_and_ranges_over_their_log_strata():
    space = parse_space(
        {
            "cores": {"values": [1, 2, 4]},
            "hbm_gbps": {"min": 10, "max": 1000, "scale": "log"},
            "gbuf_bytes": {"min": "1MiB", "max": "2MiB"},
        },
        tiny(),
    )
    points = space.sample(9, seed=3)
    assert sorted(p["cores"] for p in points) == [1, 1, 1, 2, 2, 2, 4, 4, 4]
    # log scale: each ninth of log10(10)..log10(1000) holds one point
    strata = sorted(int((math.log10(p["hbm_gbps"]) - 1) / 2 * 9) for p in points)
    assert strata == list(range(9))
    assert all(
        isinstance(p["gbuf_bytes"], int) and MiB <= p["gbuf_bytes"] <= 2 * MiB for p in points
    )
    assert space.sample(9, seed=3) == points


def test_space_reads_sizes_and_grids_with_the_first_dimension_slowest():
    space = parse_space(
        {"gbuf_bytes": {"values": ["2MiB", "10MiB"]}, "schedule": {"values": ["baseline", "mbs2"]}},
        api.make_config(),
    )
    assert space.grid() == [
        {"gbuf_bytes": 2 * MiB, "schedule": "baseline"},
        {"gbuf_bytes": 2 * MiB, "schedule": "mbs2"},
        {"gbuf_bytes": 10 * MiB, "schedule": "baseline"},
        {"gbuf_bytes": 10 * MiB, "schedule": "mbs2"},
    ]


def test_a_value_is_judged_alone_and_a_combination_per_point():
    # 128 KiB cannot hold one 128x128 tile (tiny's base has 32x32 arrays: it can), so the
    # value is accepted and only the combination with 128-wide arrays makes no machine
    space = parse_space(
        {"gbuf_bytes": {"values": ["128KiB"]}, "array_rows": {"values": [32, 128]}},
        tiny(),
    )
    designs = build_designs(
        space.grid(), "tinynet", 4, "mbs2", None, "tiny", None, {"array_cols": 128}
    )
    assert [d.cfg is None for d in designs] == [False, True]
    assert "cannot hold one 128x128 tile" in designs[1].error


# ------------------------------------------------------------------ models and the cache


@pytest.mark.parametrize("schedule", ["baseline", "mbs2"])
def test_program_counts_equal_the_simulated_runs(schedule):
    """The analytical energy's event counts are the machine's (energy.py's inputs)."""
    out = api.run(str(TINYNET), 4, schedule, cfg=tiny(), out_dir=None)
    counts = program_counts(out.program, out.cfg)
    r = out.result
    assert (counts.macs, counts.vector_ops) == (r.macs, r.vector_ops)
    assert (counts.gbuf_read_bytes, counts.gbuf_write_bytes) == (
        r.gbuf_read_bytes,
        r.gbuf_write_bytes,
    )
    assert (counts.dram_read_bytes, counts.dram_write_bytes) == (
        r.dram_read_bytes,
        r.dram_write_bytes,
    )


def test_points_differing_in_execution_only_fields_share_one_compile(tmp_path):
    # static power and HBM timings are execution-only; 150 GB/s at 1400 MHz is the same
    # bytes per cycle as tiny's 75 GB/s at 700 MHz: all six points compile to one program
    space = parse_space(
        {
            "static_watts": {"values": [6.0, 12.0, 24.0]},
            "hbm_trcd_ns": {"values": [14.507, 20.0]},
        },
        tiny(),
    )
    designs = build_designs(space.grid(), "tinynet", 4, "mbs2", None, "tiny", None, {})
    assert len(make_jobs(str(TINYNET), designs, "analytical")) == 1
    ratio = build_designs(
        [{"hbm_gbps": 75.0, "clock_mhz": 700.0}, {"hbm_gbps": 150.0, "clock_mhz": 1400.0}],
        "tinynet",
        4,
        "mbs2",
        None,
        "tiny",
        None,
        {},
    )
    assert len(make_jobs(str(TINYNET), ratio, "cycle")) == 1
    result = explore(
        tmp_path / "out",
        str(TINYNET),
        space,
        tmp_path / "x.sqlite",
        batch=4,
        model="cycle",
        jobs=1,
        preset="tiny",
        objectives=["seconds", "energy_total_j"],
    )
    rows = {(r[0]["static_watts"], r[0]["hbm_trcd_ns"]): r[1:] for r in _cycle_rows(tmp_path)}
    assert result.phases["cycle"].ran == 6
    # static power changes energy, not time; the same program ran each time
    assert rows[(6.0, 14.507)][0] == rows[(24.0, 14.507)][0]
    assert rows[(6.0, 14.507)][1] < rows[(24.0, 14.507)][1]


def _cycle_rows(tmp_path: Path) -> list[tuple]:
    conn = sqlite3.connect(tmp_path / "x.sqlite")
    rows = conn.execute("SELECT params, cycles, energy_total_j FROM results").fetchall()
    conn.close()
    return [(json.loads(p), c, e) for p, c, e in rows]


# ------------------------------------------------------------------ end to end, CLI


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """One --model both exploration through the CLI, shared by the tests below."""
    base = tmp_path_factory.mktemp("both")
    space = write_space(base)
    argv = [
        "explore",
        *TINY,
        "--space",
        space,
        "--samples",
        "12",
        "--seed",
        "1",
        "--model",
        "both",
        "--top",
        "3",
        "--jobs",
        "1",
        "--db",
        str(base / "x.sqlite"),
        "--out",
        str(base / "out"),
        "--progress",
        "quiet",
    ]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(argv)
    return base, argv, code, stdout.getvalue()


def test_both_screens_every_point_and_referees_the_front_at_cycle_level(both):
    base, _, code, out = both
    assert code == 0, out
    assert "rank agreement on" in out and "Kendall tau" in out
    conn = sqlite3.connect(base / "x.sqlite")
    counts = dict(conn.execute("SELECT model, COUNT(*) FROM results GROUP BY model"))
    assert counts["analytical"] == 12
    front = [r.split(",") for r in (base / "out" / "pareto.csv").read_text().splitlines()]
    header, rows = front[0], front[1:]
    assert rows and {"analytical_seconds", "cycle_rank", "area_pes"} <= set(header)
    # every front point was simulated, and the refereed set is the front plus the top 3
    assert all(r[header.index("model")] == "cycle" for r in rows)
    assert len(rows) <= counts["cycle"] <= 12
    failed = conn.execute("SELECT params, error FROM results WHERE status = 'failed'").fetchall()
    # 32 KiB does not fit; those rows carry the compiler's one-line reason
    assert failed
    assert all(json.loads(p)["gbuf_bytes"] == 32768 and "does not fit" in e for p, e in failed)
    for name in ("pareto.png", "param_gbuf_bytes.png", "param_hbm_gbps.png", "explore.json"):
        assert (base / "out" / name).exists(), name
    doc = json.loads((base / "out" / "explore.json").read_text())
    assert doc["kendall_tau"] is not None and -1 <= doc["kendall_tau"] <= 1


def test_rerun_skips_done_points_and_show_prints_the_front(both, run_cli):
    base, argv, _, _ = both
    before = db_rows(base / "x.sqlite")
    res = run_cli(*argv)
    assert res.code == 0, res.err
    assert "analytical: 0 evaluated now, 12 found in the database" in res.out
    assert db_rows(base / "x.sqlite") == before  # nothing rewritten, nothing added
    shown = run_cli("explore", "--show", str(base / "x.sqlite"))
    assert shown.code == 0 and "Pareto front" in shown.out and "Kendall tau" in shown.out


def test_every_point_failing_exits_non_zero(run_cli, tmp_path):
    space = write_space(tmp_path, '[gbuf_bytes]\nvalues = ["32KiB"]\n')
    res = run_cli(
        "explore",
        *TINY,
        "--schedule",
        "baseline",
        "--space",
        space,
        "--jobs",
        "1",
        "--db",
        str(tmp_path / "x.sqlite"),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    )
    assert res.code == 1 and "every point failed" in res.err


@pytest.mark.parametrize(
    ("space", "args", "message"),
    [
        ("[gbuf_byte]\nvalues = [1]\n", (), "unknown dimension 'gbuf_byte'"),
        ('[schedule]\nvalues = ["mbs3"]\n', (), "unknown schedule 'mbs3'"),
        ("[cores\nvalues = [1]\n", (), "not valid TOML"),
        ("[hbm_gbps]\nmin = 75\nmax = 300\n", (), "give --samples K"),
        ("[hbm_gbps]\nvalues = []\n", (), "non-empty list"),
        ("[hbm_gbps]\nmin = 300\nmax = 75\n", ("--samples", "4"), "the range is empty"),
        ('[hbm_gbps]\nvalues = [75, "fast"]\n', (), "'fast' is not a number"),
        ("[hbm_gbps]\nvalues = [-1]\n", (), "must be a positive number"),
        ("[hbm_gbps]\nvalues = [75]\nmin = 1\n", (), "not both"),
        ("[hbm_gbps]\nvalue = [75]\n", (), "unknown key 'value'"),
        ('[schedule]\nmin = "a"\nmax = "b"\n', ("--samples", "2"), "schedules are names"),
        ("[cores]\nvalues = [1]\n", ("--db", "/proc/x.sqlite"), "cannot be written"),
        ("[cores]\nvalues = [1]\n", ("--db", "/tmp"), "is a directory"),
        ("[cores]\nvalues = [1]\n", ("--db", "/nonexistent/x.sqlite"), "does not exist"),
        ("[cores]\nvalues = [1]\n", ("--out", "/proc/x"), "cannot create a directory"),
        ("[cores]\nvalues = [1]\n", ("--network", "resnet5"), "unknown network 'resnet5'"),
        ("[cores]\nvalues = [1]\n", ("--scheduler", "tcp://x:1"), "use it with --executor dask"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(run_cli, tmp_path, space, args, message):
    path = write_space(tmp_path, space)
    db, out = tmp_path / "x.sqlite", tmp_path / "out"
    opts = {"--db": str(db), "--out": str(out)}
    rest = list(args)
    for flag in ("--db", "--out"):
        if flag in rest:
            opts.pop(flag)
    argv = ["explore", *TINY, "--space", path, "--jobs", "1", *rest]
    for flag, value in opts.items():
        argv += [flag, value]
    res = run_cli(*argv)
    assert res.code == 2, res.err
    assert res.err.count("\n") == 1 and message in res.err, res.err
    assert res.out == ""
    assert not db.exists() and not out.exists()


def test_explore_help_and_show_of_a_missing_database(run_cli, tmp_path):
    res = run_cli("explore", "--help")
    assert res.code == 0 and "--space" in res.out and "--samples" in res.out
    res = run_cli("explore", "--show", str(tmp_path / "none.sqlite"))
    assert res.code == 2 and res.err.count("\n") == 1 and "not found" in res.err
    res = run_cli("explore", *TINY, "--db", str(tmp_path / "x.sqlite"), "--out", str(tmp_path))
    assert res.code == 2 and "explore needs --space" in res.err


def test_a_database_of_another_exploration_is_refused(tmp_path):
    space = write_space(tmp_path, "[cores]\nvalues = [1]\n")
    kwargs = dict(batch=4, jobs=1, preset="tiny", progress=api.QUIET)
    explore(tmp_path / "o", str(TINYNET), space, tmp_path / "x.sqlite", **kwargs)
    with pytest.raises(WavecoreError, match=r"holds another exploration .*batch"):
        explore(
            tmp_path / "o", str(TINYNET), space, tmp_path / "x.sqlite", **{**kwargs, "batch": 2}
        )


# ------------------------------------------------------------------ kill -9, Dask


def test_kill_9_halfway_then_rerun_finishes_each_point_exactly_once(tmp_path):
    space = write_space(tmp_path)
    db = tmp_path / "x.sqlite"
    argv = [
        sys.executable,
        "-m",
        "wavecore_sim.cli",
        "explore",
        *TINY,
        "--space",
        space,
        "--samples",
        "40",
        "--jobs",
        "1",
        "--db",
        str(db),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                conn = sqlite3.connect(db, timeout=1)
                done = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                conn.close()
            except sqlite3.OperationalError:
                done = 0  # the table is not there yet
        if done >= 10:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the exploration ended before it was killed"
    first = {r[0]: r for r in db_rows(db)}
    assert 10 <= len(first) < 40
    res = subprocess.run(
        [*argv[:-1], "--progress", "quiet"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert f"{40 - len(first)} evaluated now, {len(first)} found in the database" in res.stdout
    rows = db_rows(db)
    keys = [r[0] for r in rows]
    assert len(keys) == len(set(keys)) == 40
    assert all(first[r[0]] == r for r in rows if r[0] in first)  # untouched by the rerun


def test_local_and_dask_executors_give_the_same_database(tmp_path):
    pytest.importorskip("distributed")
    # a 60-point grid of 12 programs (static power is execution-only): a few seconds
    space = write_space(
        tmp_path,
        '[gbuf_bytes]\nvalues = ["32KiB", "1MiB"]\n[hbm_gbps]\nvalues = [75, 150, 300]\n'
        '[schedule]\nvalues = ["baseline", "mbs2"]\n'
        "[static_watts]\nvalues = [4.0, 8.0, 12.0, 16.0, 20.0]\n",
    )
    common = dict(batch=4, preset="tiny", progress=api.QUIET)
    explore(tmp_path / "ol", str(TINYNET), space, tmp_path / "local.sqlite", jobs=1, **common)
    explore(
        tmp_path / "od",
        str(TINYNET),
        space,
        tmp_path / "dask.sqlite",
        executor="dask",
        jobs=2,
        **common,
    )
    local = db_rows(tmp_path / "local.sqlite", skip=TIMING_COLUMNS)
    dask = db_rows(tmp_path / "dask.sqlite", skip=TIMING_COLUMNS)
    assert len(local) == 60 and local == dask
