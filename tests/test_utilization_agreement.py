"""One utilization definition everywhere: summary.json, trace.json and timeline.png agree.

The summary's busy cycles come from the machine's own accounting (static work per
instruction plus the cores' drain, ``sim/machine.py``). The trace's are recomputed here from
its slices alone: a unit's instruction slices, less its ``stall`` slices, plus its ``drain``
slices. The timeline's are the mean of each unit's strip. The three are computed differently
and must agree to 0.1 percentage point on every unit.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from conftest import TINYNET

from wavecore_sim import api
from wavecore_sim.report.timeline import timeline_data

CASES = [
    ("tiny", "mbs2", {}),
    ("tiny", "baseline", {}),
    ("tiny", "mbs2", {"weight_double_buffer": "false"}),
    ("wavecore", "mbs2", {}),
]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}-{len(c[2])}")
def run(request, tmp_path_factory):
    preset, schedule, overrides = request.param
    out_dir = tmp_path_factory.mktemp("util")
    cfg = api.make_config(preset, None, overrides)
    out = api.run(str(TINYNET), 4, schedule, cfg=cfg, out_dir=out_dir)
    return out, out_dir


def trace_utilization(trace: dict) -> dict[str, float]:
    """Per unit track: (instruction slices - stall slices + drain slices) / elapsed."""
    names = {
        e["tid"]: e["args"]["name"].split(" busy ")[0]
        for e in trace["traceEvents"]
        if e.get("ph") == "M" and e["name"] == "thread_name"
    }
    units = trace["metadata"]["units"]
    tid_of = {name: tid for tid, name in names.items() if name in units}
    busy_us: dict[int, float] = defaultdict(float)
    for e in trace["traceEvents"]:
        if e.get("ph") != "X" or e["tid"] not in tid_of.values():
            continue
        sign = -1.0 if e.get("cat") == "stall" else 1.0
        busy_us[e["tid"]] += sign * e["dur"]
    elapsed_us = trace["metadata"]["cycles"] / trace["metadata"]["clock_mhz"]
    return {u: busy_us[tid_of[u]] / elapsed_us for u in units}


def test_summary_and_trace_agree_on_every_unit(run):
    _, out_dir = run
    summary = json.loads((out_dir / "summary.json").read_text())
    trace = json.loads((out_dir / "trace.json").read_text())
    from_trace = trace_utilization(trace)
    assert set(from_trace) == set(summary["units"])
    for unit, entry in summary["units"].items():
        assert from_trace[unit] == pytest.approx(entry["temporal_utilization"], abs=1e-3), unit


def test_trace_track_names_show_the_summary_utilization(run):
    _, out_dir = run
    summary = json.loads((out_dir / "summary.json").read_text())
    trace = json.loads((out_dir / "trace.json").read_text())
    shown = {
        e["args"]["name"].split(" busy ")[0]: e["args"]["name"].split(" busy ")[1]
        for e in trace["traceEvents"]
        if e.get("ph") == "M" and e["name"] == "thread_name" and " busy " in e["args"]["name"]
    }
    for unit, entry in summary["units"].items():
        assert shown[unit] == f"{entry['temporal_utilization']:.1%}"


def test_timeline_strips_average_to_the_summary_utilization(run):
    out, _ = run
    data = timeline_data(out.program, out.cfg, out.result)
    for i, unit in enumerate(data.unit_names):
        expected = out.summary["units"][unit]["temporal_utilization"]
        assert data.util[i].mean() == pytest.approx(expected, abs=1e-3), unit


def test_stalls_inside_instructions_are_not_busy(run):
    """Independent of the machine's sums: a unit's busy time is at most the time its
    instructions occupied it plus its drains, and the stall slices are exactly the
    recorded per-instruction waits."""
    out, out_dir = run
    trace = json.loads((out_dir / "trace.json").read_text())
    stall_us = sum(
        e["dur"] for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "stall"
    )
    r = out.result
    recorded = int(r.wait_hbm.sum() + r.wait_port.sum() + r.wait_weight.sum())
    # plus the exposed weight loads inside GEMMs, which no wait array holds
    exposed_stall = sum(
        st.stalls["weight_load"] for name, st in r.units.items() if name.startswith("core")
    ) - int(r.wait_weight.sum())
    mhz = out.cfg.clock_mhz
    assert stall_us == pytest.approx((recorded + exposed_stall) / mhz, rel=1e-3, abs=0.01)
