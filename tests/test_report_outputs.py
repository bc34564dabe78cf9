"""``trace.json`` (Chrome/Perfetto trace events) and ``timeline.png`` of a run.

One small run per schedule (tinynet, batch 4, the ``tiny`` config) writes both files through
``api.run``; the tests check the trace against the trace-event format and the simulation
result it came from, and that the picture is a real PNG of the expected size.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections import Counter, defaultdict

import numpy as np
import pytest
from conftest import TINYNET

from wavecore_sim import api
from wavecore_sim.ir import Op
from wavecore_sim.report.busy import unit_activity
from wavecore_sim.report.perfetto import _lanes, _merge_transfers, fmt_bytes, write_perfetto
from wavecore_sim.report.timeline import (
    PASS_OF_PHASE,
    binned_load,
    bucket_edges,
    channel_bytes,
    group_spans,
    instr_arrays,
    pass_spans,
    plot_timeline,
    unit_utilization,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EPS = 1e-6  # microseconds; timestamps are rounded to 1e-3


@pytest.fixture(scope="module", params=["mbs2", "baseline"])
def run(request, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp(f"run_{request.param}")
    out = api.run(
        str(TINYNET), batch=4, schedule=request.param, cfg=api.make_config("tiny"), out_dir=out_dir
    )
    trace = json.loads((out_dir / "trace.json").read_text())
    return out, trace


def tracks(trace) -> dict[int, str]:
    """Track names; a unit track's name ends with its utilization (``core0 busy 57.8%``),
    which is left out here."""
    return {
        e["tid"]: e["args"]["name"].split(" busy ")[0]
        for e in trace["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }


PARTS = ("stall", "drain")  # categories of the slices that are not instructions


def slices_by_track(trace) -> dict[str, list[dict]]:
    names = tracks(trace)
    out = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            out[names[e["tid"]]].append(e)
    return out


# ----------------------------------------------------------------------------- trace.json


def test_trace_is_a_trace_event_object(run):
    out, trace = run
    assert set(trace) >= {"traceEvents", "displayTimeUnit", "metadata"}
    assert trace["displayTimeUnit"] == "ns"
    assert trace["metadata"]["cycles"] == out.summary["cycles"]
    assert trace["metadata"]["network"] == out.summary["network"]
    for e in trace["traceEvents"]:
        assert {"ph", "pid", "tid", "name"} <= set(e), e
        assert e["ph"] in ("X", "C", "M"), e
        if e["ph"] != "M":
            assert isinstance(e["ts"], int | float) and e["ts"] >= 0, e
        if e["ph"] == "X":
            assert isinstance(e["dur"], int | float) and e["dur"] >= 0, e
            assert isinstance(e["args"], dict)
    procs = [e for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"]
    assert [p["args"]["name"] for p in procs] == ["wavecore"]
    assert {e["pid"] for e in trace["traceEvents"]} == {procs[0]["pid"]}


def test_trace_times_are_microseconds(run):
    out, trace = run
    xs = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    last = max(e["ts"] + e["dur"] for e in xs)
    assert last == pytest.approx(out.summary["seconds"] * 1e6, rel=0.01)
    mhz = out.cfg.clock_mhz
    by_id = {e["args"]["id"]: e for e in xs if "id" in e["args"] and e.get("cat") not in PARTS}
    for ins in out.program.instrs[:: max(1, len(out.program.instrs) // 50)]:
        e = by_id[ins.id]
        assert e["ts"] == pytest.approx(out.result.start[ins.id] / mhz, abs=1e-3)
        assert e["ts"] + e["dur"] == pytest.approx(out.result.end[ins.id] / mhz, abs=2e-3)


def test_one_track_per_unit_and_hbm_channel(run):
    out, trace = run
    names = Counter(tracks(trace).values())
    for unit in out.program.units:
        assert names[unit.name] == 1, unit
    hbm = sorted(n for n in names if n.startswith("hbm ch"))
    assert hbm == sorted(f"hbm ch{c}" for c in range(out.cfg.hbm_channels))
    assert all(names[n] == 1 for n in hbm)
    sort_index = {
        e["tid"]
        for e in trace["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_sort_index"
    }
    assert sort_index == set(tracks(trace))


def test_every_instruction_is_one_slice_on_its_unit(run):
    out, trace = run
    by_track = slices_by_track(trace)
    ids = []
    for unit in out.program.units:
        for e in by_track[unit.name]:
            if e.get("cat") in PARTS:
                continue
            ins = out.program.instr(e["args"]["id"])
            assert ins.unit == unit
            assert e["args"]["layer"] == ins.layer and e["args"]["phase"] == ins.phase
            assert e["args"]["group"] == ins.group
            assert e["cat"] == (ins.phase or "none")
            p = ins.payload
            if ins.op in (Op.LOAD, Op.STORE):
                assert e["name"] == f"{ins.op.name} {p.traffic.label}"
                assert e["args"]["bytes"] == p.nbytes and e["args"]["tensor"] == ins.label
            elif ins.op == Op.GEMM:
                assert e["name"] == f"GEMM {ins.label.lower()} {p.m}x{p.k}x{p.n}"
                assert e["args"]["macs"] == ins.macs
            else:
                assert e["name"] == f"VEC {ins.label}"
                assert (e["args"]["elements"], e["args"]["ops"]) == (p.elements, p.ops)
            ids.append(ins.id)
    assert sorted(ids) == list(range(len(out.program)))
    roles = {e["name"].split()[1] for e in by_track["core0"] if e.get("cat") not in PARTS}
    assert roles == {"fwd", "dgrad", "wgrad"}


def test_no_track_has_overlapping_slices(run):
    """Instructions and drains never overlap on a track; each stall slice nests inside its
    own instruction's slice (Perfetto draws it as a child)."""
    _out, trace = run
    for name, events in slices_by_track(trace).items():
        top = sorted((e for e in events if e.get("cat") != "stall"), key=lambda e: e["ts"])
        for a, b in itertools.pairwise(top):
            assert a["ts"] + a["dur"] <= b["ts"] + EPS, (name, a, b)
        parent = {
            e["args"]["id"]: e for e in top if e.get("cat") not in PARTS and "id" in e["args"]
        }
        for e in events:
            if e.get("cat") == "stall":
                p = parent[e["args"]["id"]]
                assert p["ts"] - EPS <= e["ts"], (name, p, e)
                assert e["ts"] + e["dur"] <= p["ts"] + p["dur"] + EPS, (name, p, e)


def test_unit_intervals_never_overlap_in_the_result(run):
    """The premise of one slice per instruction on a unit track: [start, end) are disjoint."""
    out, _trace = run
    res = out.result
    for u in range(len(out.program.units)):
        ids = out.program.stream(u)
        spans = sorted(zip(res.start[ids].tolist(), res.end[ids].tolist(), strict=True))
        for (_s0, e0), (s1, _e1) in itertools.pairwise(spans):
            assert e0 <= s1, u


def test_hbm_channel_slices_carry_all_bytes(run):
    out, trace = run
    by_track = slices_by_track(trace)
    total = 0
    log = out.result.channel_log
    for c in range(out.cfg.hbm_channels):
        events = by_track[f"hbm ch{c}"]
        got = sum(e["args"]["bytes"] for e in events)
        assert got == int(log.nbytes[log.channel == c].sum())
        assert sum(e["args"].get("transfers", 1) for e in events) == int((log.channel == c).sum())
        total += got
    assert total == out.summary["dram_bytes"]


def test_groups_and_passes_tracks(run):
    out, trace = run
    by_track = slices_by_track(trace)
    groups = [e for name, ev in by_track.items() if name.startswith("groups") for e in ev]
    steps = out.program.steps
    expected = {
        (steps[s].group, PASS_OF_PHASE[steps[s].phase])
        for s in set(out.program.cols["step"].tolist())
        if steps[s].group >= 0
    }
    assert {g for g, _p in expected} == {g.index for g in out.program.groups}
    assert {(e["args"]["group"], e["args"]["pass"]) for e in groups} == expected
    passes = {e["name"] for name, ev in by_track.items() if name.startswith("passes") for e in ev}
    assert passes == {"forward", "backward", "update"}


def test_counters(run):
    out, trace = run
    counters = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "C":
            assert e["args"] and all(isinstance(v, int | float) for v in e["args"].values())
            counters[e["name"]].append(e)
    assert set(counters) >= {"gbuf occupancy", "hbm bandwidth GB/s", "hbm channel GB/s"}
    occ = [e["args"]["bytes"] for e in counters["gbuf occupancy"]]
    assert max(occ) == out.result.peak_buffer_bytes
    assert min(occ) >= 0
    bw = counters["hbm bandwidth GB/s"]
    assert max(e["args"]["total"] for e in bw) <= out.cfg.hbm_gbps * 1.001
    # bucketed bandwidth integrates back to the bytes moved
    ts = [e["ts"] for e in bw]
    moved = sum(
        e["args"]["total"] * 1e9 * (t1 - t0) * 1e-6
        for e, t0, t1 in zip(bw, ts, ts[1:], strict=False)
    )
    assert moved == pytest.approx(out.summary["dram_bytes"], rel=0.01)
    per_channel = counters["hbm channel GB/s"][0]["args"]
    assert set(per_channel) == {f"ch{c}" for c in range(out.cfg.hbm_channels)}


# ----------------------------------------------------------------------------- timeline.png


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_timeline_png(run):
    out, _trace = run
    path = out.out_dir / "timeline.png"
    assert 20_000 < path.stat().st_size < 5_000_000
    w, h = png_size(path)
    assert (w, h) == (1540, 990)


def test_outputs_with_ideal_memory(tmp_path):
    """No HBM channel traffic at all (ideal memory): both writers still work."""
    cfg = api.make_config("tiny")
    compiled = api.compile_network(str(TINYNET), batch=2, schedule="mbs2", cfg=cfg)
    result, _summary = api.simulate_program(compiled.program, cfg, ideal_memory=True)
    assert len(result.channel_log.instr) == 0
    plot_timeline(compiled.program, cfg, result, tmp_path / "t.png")
    png_size(tmp_path / "t.png")
    write_perfetto(compiled.program, cfg, result, tmp_path / "trace.json")
    trace = json.loads((tmp_path / "trace.json").read_text())
    names = Counter(tracks(trace).values())
    assert all(names[f"hbm ch{c}"] == 1 for c in range(cfg.hbm_channels))


# ----------------------------------------------------------------------------- helpers


def test_binned_load_matches_brute_force():
    rng = np.random.default_rng(7)
    s = rng.integers(0, 900, 300)
    e = np.minimum(s + rng.integers(0, 120, 300), 1000)
    w = rng.random(300)
    edges = bucket_edges(1000, 37)
    got = binned_load(edges, s, e, w)
    want = np.zeros(37)
    for si, ei, wi in zip(s, e, w, strict=True):
        for k in range(37):
            want[k] += wi * max(0.0, min(ei, edges[k + 1]) - max(si, edges[k]))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(binned_load(edges, s, e).sum(), (e - s).sum())


def test_binned_views_conserve_totals(run):
    out, _trace = run
    res = out.result
    edges = bucket_edges(res.cycles, 97)
    arr = instr_arrays(out.program, res)
    act = unit_activity(out.program, out.cfg, res)
    util = unit_utilization(out.program, arr, act, edges)
    assert util.min() >= 0 and util.max() <= 1
    width = np.diff(edges)
    for u, unit in enumerate(out.program.unit_names):
        busy = res.units[unit].busy  # the machine's own accounting
        assert (util[u] * width).sum() == pytest.approx(busy, rel=1e-9, abs=1e-6), unit
    by_channel = channel_bytes(res, edges, out.cfg.hbm_channels).sum(axis=1)
    log = res.channel_log
    for c in range(out.cfg.hbm_channels):
        assert by_channel[c] == pytest.approx(int(log.nbytes[log.channel == c].sum()), rel=1e-9)


def test_spans_cover_the_run(run):
    out, _trace = run
    arr = instr_arrays(out.program, out.result)
    passes = pass_spans(arr)
    assert passes[0][0] == "FWD"
    assert max(d for _p, _s, d in passes) == out.result.cycles
    assert min(s for _p, s, _d in passes) == 0
    for g, _p, s, d in group_spans(arr):
        assert g >= 0 and 0 <= s <= d <= out.result.cycles


def test_lanes_and_merging():
    spans = [(0, 10), (5, 12), (10, 20), (11, 13), (20, 21)]
    lanes = _lanes(spans)
    for lane in set(lanes):
        mine = [sp for sp, ln in zip(spans, lanes, strict=True) if ln == lane]
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(mine))
    assert max(lanes) == 2  # three spans are live at cycle 11
    iv = np.array([[0, 5, 10], [5, 9, 20], [12, 14, 1], [20, 30, 4]])
    s, e, b, n = _merge_transfers(iv, budget=10)
    assert (s, e, b, n) == ([0, 12, 20], [9, 14, 30], [30, 1, 4], [2, 1, 1])
    s, e, b, n = _merge_transfers(iv, budget=1)
    assert (s, e, b, n) == ([0], [30], [35], [4])
    assert fmt_bytes(512) == "512 B" and fmt_bytes(3174) == "3.1 KB"
