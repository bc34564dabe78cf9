"""Shared helpers: build network specs from a few layer dicts, run the CLI and capture it."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wavecore_sim import cli
from wavecore_sim.schedule import clear_caches

REPO = Path(__file__).resolve().parents[1]
TINYNET = REPO / "workloads" / "example_tinynet.json"


def call_cli(*argv: str) -> tuple[int, str, str]:
    """``cli.main`` in-process (usable from module-scoped fixtures, unlike ``capsys``)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def spec(
    layers: list[dict[str, Any]], c: int = 3, h: int = 32, w: int = 32, name: str = "testnet"
) -> dict[str, Any]:
    """A ``wavecore-network/1`` spec with the given input shape and layers."""
    return {
        "format": "wavecore-network/1",
        "name": name,
        "input": {"channels": c, "height": h, "width": w},
        "layers": layers,
    }


def head(classes: int = 10) -> list[dict[str, Any]]:
    """Global average pool, classifier and loss: appended to make a body a valid network."""
    return [
        {"name": "head.gap", "kind": "gap"},
        {"name": "head.fc", "kind": "fc", "out_features": classes},
        {"name": "head.loss", "kind": "loss"},
    ]


@pytest.fixture(autouse=True, scope="module")
def _fresh_compiler_caches():
    """Each test module starts without the compiler memo tables of the modules before it:
    they key on training graphs and keep them alive, so the session would otherwise hold
    every graph it ever compiled."""
    yield
    clear_caches()
    gc.collect()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def write_json(tmp_path):
    """Write a spec (or raw text) to ``tmp_path/<name>`` and return the path as a string."""

    def write(content: Any, name: str = "net.json") -> str:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)

    return write


@pytest.fixture
def run_cli(capsys):
    """Call ``cli.main`` in-process; argparse's SystemExit becomes an exit code."""

    def run(*argv: str) -> CliResult:
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def run_cli_subprocess():
    """Run ``python -m wavecore_sim.cli`` for real, so a traceback would show in its output."""

    def run(*argv: str, cwd: Path = REPO) -> CliResult:
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        proc = subprocess.run(
            [sys.executable, "-m", "wavecore_sim.cli", *argv],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def assert_refused(
    result: CliResult, expected: str, root: Path, keep: tuple[str, ...] = (), code: int = 2
) -> None:
    """Exit ``code`` (2: bad input), one short error line containing ``expected``, no
    traceback, and nothing under ``root`` but the names in ``keep`` (files the test made)."""
    text = result.out + result.err
    assert "Traceback" not in text, text
    assert result.code == code, text
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("wavecore-sim: error: ") and expected in lines[0], lines[0]
    assert len(lines[0]) < 300, lines[0]
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == sorted(keep), left


def rewrite(src: Path | str, dst: Path | str, change) -> None:
    """Copy the zip archive ``src`` (a trace) to ``dst``, ``change(name, data)`` giving each
    member's new bytes (None drops the member)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            data = change(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)


def npy(arr: np.ndarray) -> bytes:
    """``arr`` as the bytes of a .npy file (a trace column)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
