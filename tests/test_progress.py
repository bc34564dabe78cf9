"""Progress reporting: plain timestamped lines for logs, a heartbeat while a step is silent,
done/total with an ETA, nothing when quiet."""

from __future__ import annotations

import io
import re
import time

from wavecore_sim.progress import Progress, process_seconds

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def test_plain_mode_writes_a_timestamped_end_line_per_step():
    out = io.StringIO()
    p = Progress("plain", stream=out, min_seconds=0.0)
    with p.step("compile: schedule"):
        pass
    with p.step("simulate", total=10, unit="instructions") as task:
        task.update(4, 10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(LINE.match(x) for x in lines), lines
    assert lines[0].endswith("compile: schedule: done, 0.0 s")
    # a step with a count ends at its total, whatever the last update said
    assert "simulate: done, 10 instructions, " in lines[1]


def test_plain_mode_leaves_out_short_steps_so_errors_stay_one_line():
    out = io.StringIO()
    p = Progress("plain", stream=out)  # default: steps under 1 s get no line
    with p.step("compile: schedule"):
        pass
    assert out.getvalue() == ""


def test_heartbeat_writes_while_a_step_reports_nothing():
    out = io.StringIO()
    p = Progress("plain", stream=out, interval=0.1)
    with p.step("reproduce", total=4, unit="runs"):
        time.sleep(0.45)  # a pool waiting for its first result: no update at all
    p.close()
    lines = out.getvalue().splitlines()
    running = [x for x in lines if "0/4 runs (0%)" in x]
    assert len(running) >= 2, lines  # one per interval, from the heartbeat thread
    assert all(LINE.match(x) for x in lines)


def test_eta_follows_the_weighted_fraction_done():
    out = io.StringIO()
    p = Progress("plain", stream=out, interval=0.0)
    with p.step("sweep", total=4, unit="runs") as task:
        time.sleep(0.2)
        task.update(1, 4, fraction=0.5)  # one long run of four is half the work
    p.close()
    line = next(x for x in out.getvalue().splitlines() if "1/4 runs (25%)" in x)
    eta = float(re.search(r"ETA ([0-9.]+) s", line).group(1))
    elapsed = float(re.search(r", ([0-9.]+) s elapsed", line).group(1))
    assert eta == elapsed or abs(eta - elapsed) <= 0.1  # half done: as long again


def test_eta_before_anything_finishes_is_the_prior_estimate():
    out = io.StringIO()
    p = Progress("plain", stream=out, interval=0.0)
    with p.step("reproduce", total=4, unit="runs") as task:
        task.expect(90.0)  # the runner's prior: 90 s for the whole step
        task.update(0, 4)
    p.close()
    line = [x for x in out.getvalue().splitlines() if "0/4 runs (0%)" in x][-1]
    assert re.search(r"ETA ~1 min (29|30) s \(estimated\)", line), line


def test_quiet_writes_nothing():
    out = io.StringIO()
    p = Progress("quiet", stream=out, min_seconds=0.0)
    with p.step("simulate", total=3) as task:
        task.update(1, 3)
    p.note("hello")
    assert out.getvalue() == ""


def test_auto_is_plain_off_a_terminal():
    assert Progress("auto", stream=io.StringIO()).mode == "plain"


def test_process_seconds_counts_from_process_start():
    assert 0 < process_seconds() < 3600 * 24


def test_the_heartbeat_does_not_spin_when_the_interval_is_zero():
    # interval 0 (report every update) once made the heartbeat call stop.wait(0) in a loop:
    # left running after a test, that thread held the GIL and made the rest of the suite
    # ten times slower. It now checks at most every MIN_TICK_S (0.05 s): in 0.3 s, at most
    # 0.3 / 0.05 = 6 checks, plus one for the timing of the first and the last.
    from wavecore_sim.progress import MIN_TICK_S

    p = Progress("plain", stream=io.StringIO(), interval=0.0)
    checks = []
    report = p._report
    p._report = lambda task, final, force=False: (checks.append(final), report(task, final, force))
    with p.step("simulate", total=4, unit="instructions"):
        time.sleep(0.3)
    p.close()
    assert len([c for c in checks if not c]) <= 0.3 / MIN_TICK_S + 2
