"""Instruction-trace files: a compiled program written to disk and read back losslessly.

Format ``wavecore-trace/2`` (docs/trace-format.md): a zip archive ``program.wct`` holding

* ``header.json``: ``format``, ``units`` (``[kind, index]`` pairs), ``gbuf_bytes``, ``meta``,
  ``planned``, ``groups``, ``dram_footprint``, ``strings``, ``steps`` and ``columns`` (each
  column's dtype and length);
* one ``<column>.npy`` per column of :data:`wavecore_sim.ir.ALL_COLUMNS`.

Every field is written explicitly: nothing is left out for being equal to a default, so a
default changed later cannot change what an old file means. The reader checks everything it
can without running the verifier (format, members, dtypes, lengths, CSR pointers, enum and
index ranges, the zip's CRCs) and refuses anything else with one line naming the problem and
the fix. Version 1 files (``program.wct.gz``, gzip JSON lines) are refused by name.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WavecoreError
from ..ir import (
    ACC_ACCUMULATE,
    ACC_WRITE,
    ALL_COLUMNS,
    INSTR_COLUMNS,
    DramFootprint,
    GroupInfo,
    Op,
    Program,
    Step,
    Traffic,
    Unit,
    UnitKind,
)

FORMAT = "wavecore-trace/2"
FILENAME = "program.wct"
V1_FILENAME = "program.wct.gz"
HEADER = "header.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip member can carry
_FIX = "recompile it with `wavecore-sim compile`"
_GROUP_FIELDS = {f.name: f.type for f in fields(GroupInfo)}
#: group fields a trace written before they existed may lack (read as described in _group)
_GROUP_OPTIONAL = {"recompute"}
_HEADER_KEYS = (
    "format",
    "units",
    "gbuf_bytes",
    "meta",
    "planned",
    "groups",
    "dram_footprint",
    "strings",
    "steps",
    "columns",
)


def trace_path(directory: str | Path) -> Path:
    return Path(directory) / FILENAME


# ---------------------------------------------------------------------------- writing


def _header(program: Program) -> dict[str, Any]:
    fp = program.dram_footprint
    return {
        "format": FORMAT,
        "units": [[u.kind.name, u.index] for u in program.units],
        "gbuf_bytes": int(program.gbuf_bytes),
        "meta": program.meta,
        "planned": program.planned,
        "groups": [asdict(g) for g in program.groups],
        "dram_footprint": None
        if fp is None
        else {"peak_bytes": int(fp.peak_bytes), "by_kind": dict(fp.by_kind)},
        "strings": list(program.strings),
        "steps": [[s.group, s.layer, s.phase] for s in program.steps],
        "columns": {
            name: {"dtype": dtype, "length": len(program.cols[name])}
            for name, dtype in ALL_COLUMNS.items()
        },
    }


def write_trace(program: Program, directory: str | Path, compresslevel: int = 1) -> Path:
    """Write ``program`` to ``directory/program.wct`` atomically (a temporary file in the same
    directory, renamed over the target once complete)."""
    path = trace_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, dtype in ALL_COLUMNS.items():
        col = program.cols.get(name)
        if col is None or col.dtype != np.dtype(dtype) or col.ndim != 1:
            raise ValueError(f"program column {name!r} is missing or not 1-d {dtype}")
    header = json.dumps(_header(program), separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(prefix=".program-", suffix=".wct.tmp", dir=path.parent)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            zipfile.ZipFile(
                raw, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
            ) as zf,
        ):
            zf.writestr(_entry(HEADER, compresslevel), header)
            for name in ALL_COLUMNS:
                with zf.open(_entry(f"{name}.npy", compresslevel), "w", force_zip64=True) as fh:
                    np.lib.format.write_array(
                        fh, np.ascontiguousarray(program.cols[name]), allow_pickle=False
                    )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _entry(name: str, compresslevel: int) -> zipfile.ZipInfo:
    """A zip member stamped with a fixed time, so the same program gives the same bytes."""
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = compresslevel  # no public setter before Python 3.13
    return info


# ---------------------------------------------------------------------------- reading


class _BadTraceError(Exception):
    """A problem with the file's content (turned into one WavecoreError line)."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise _BadTraceError(what)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _locate(directory_or_file: str | Path) -> Path:
    path = Path(directory_or_file)
    if path.is_dir():
        if trace_path(path).is_file():
            return trace_path(path)
        if (path / V1_FILENAME).is_file():
            return path / V1_FILENAME
        path = trace_path(path)
    if not path.is_file():
        raise WavecoreError(
            f"trace {str(path)!r} not found; give a directory written by "
            f"`wavecore-sim compile --out DIR` or its {FILENAME}"
        )
    return path


def _refuse_gzip(path: Path) -> None:
    """A gzip file: name its format (version 1 traces were gzip JSON lines)."""
    found = None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            head = json.loads(fh.readline(1 << 20))
        found = head.get("format") if isinstance(head, dict) else None
    except (OSError, EOFError, ValueError, zlib.error):
        pass
    if isinstance(found, str) and found:
        raise WavecoreError(
            f"trace {path} is format {found}, which this version no longer reads; {_FIX}"
        )
    raise WavecoreError(f"trace {path} is a gzip file, not a {FORMAT} archive; {_FIX}")


def _check_header(h: Any) -> None:
    _need(isinstance(h, dict), "header.json is not an object")
    missing = [k for k in _HEADER_KEYS if k not in h]
    _need(not missing, f"header.json lacks {', '.join(missing)}")
    _need(
        isinstance(h["units"], list)
        and all(
            isinstance(u, list)
            and len(u) == 2
            and u[0] in UnitKind.__members__
            and _is_int(u[1])
            and u[1] >= 0
            for u in h["units"]
        ),
        "header 'units' must be [kind, index] pairs with kind one of "
        + ", ".join(UnitKind.__members__),
    )
    _need(len({tuple(u) for u in h["units"]}) == len(h["units"]), "header 'units' repeat")
    _need(
        _is_int(h["gbuf_bytes"]) and h["gbuf_bytes"] > 0,
        "header 'gbuf_bytes' is not a positive integer",
    )
    _need(isinstance(h["meta"], dict), "header 'meta' is not an object")
    _need(
        isinstance(h["planned"], dict)
        and all(
            isinstance(v, dict) and all(isinstance(k, str) and _is_int(b) for k, b in v.items())
            for v in h["planned"].values()
        ),
        "header 'planned' is not {direction: {kind: bytes}}",
    )
    _need(
        isinstance(h["groups"], list)
        and all(
            isinstance(g, dict)
            and set(_GROUP_FIELDS) - _GROUP_OPTIONAL <= set(g) <= set(_GROUP_FIELDS)
            for g in h["groups"]
        ),
        "header 'groups' entries must have exactly "
        + ", ".join(_GROUP_FIELDS)
        + f" ({', '.join(sorted(_GROUP_OPTIONAL))} may be absent)",
    )
    for g in h["groups"]:
        _need(
            all(_is_int(g[k]) for k in ("index", "sub_batch", "sub_batches", "footprint_bytes"))
            and isinstance(g["layers"], list)
            and all(isinstance(x, str) for x in g["layers"])
            and all(isinstance(g[k], bool) for k in ("weights_resident", "wgrad_resident"))
            and isinstance(g.get("recompute", False), bool | None),
            f"header group {g.get('index')!r} has a field of the wrong type",
        )
    fp = h["dram_footprint"]
    _need(
        fp is None
        or (
            isinstance(fp, dict)
            and set(fp) == {"peak_bytes", "by_kind"}
            and _is_int(fp["peak_bytes"])
            and isinstance(fp["by_kind"], dict)
            and all(_is_int(v) for v in fp["by_kind"].values())
        ),
        "header 'dram_footprint' is not null or {peak_bytes, by_kind}",
    )
    _need(
        isinstance(h["strings"], list) and all(isinstance(s, str) for s in h["strings"]),
        "header 'strings' is not a list of strings",
    )
    _need(
        isinstance(h["steps"], list)
        and all(
            isinstance(s, list)
            and len(s) == 3
            and _is_int(s[0])
            and isinstance(s[1], str)
            and isinstance(s[2], str)
            for s in h["steps"]
        ),
        "header 'steps' must be [group, layer, phase] triples",
    )
    cols = h["columns"]
    _need(
        isinstance(cols, dict) and set(cols) == set(ALL_COLUMNS),
        "header 'columns' does not list exactly the columns of this format",
    )
    for name, dtype in ALL_COLUMNS.items():
        c = cols[name]
        _need(
            isinstance(c, dict)
            and c.get("dtype") == dtype
            and _is_int(c.get("length"))
            and c["length"] >= 0,
            f"header column {name!r} is not {{dtype: {dtype!r}, length}}}}",
        )


def _read_column(zf: zipfile.ZipFile, name: str, dtype: str, length: int) -> np.ndarray:
    data = zf.read(f"{name}.npy")  # checks the member's CRC
    try:
        arr = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise _BadTraceError(f"column {name!r} is not a readable .npy array ({exc})") from None
    _need(
        arr.dtype == np.dtype(dtype),
        f"column {name!r} has dtype {arr.dtype.str}, expected {np.dtype(dtype).str}",
    )
    _need(
        arr.ndim == 1 and len(arr) == length,
        f"column {name!r} has shape {arr.shape}, header says {length}",
    )
    return arr


def _in_range(cols: dict[str, np.ndarray], name: str, lo: int, hi: int) -> None:
    """Every value of ``cols[name]`` lies in ``[lo, hi)``."""
    a = cols[name]
    if len(a):
        bad = np.flatnonzero((a < lo) | (a >= hi))
        if len(bad):
            raise _BadTraceError(
                f"column {name!r}[{int(bad[0])}] = {int(a[bad[0]])} is outside [{lo}, {hi})"
            )


def _check_columns(cols: dict[str, np.ndarray], n_units: int, n_strings: int, n_steps: int) -> None:
    n = len(cols["op"])
    for name in INSTR_COLUMNS:
        _need(len(cols[name]) == n, f"column {name!r} has {len(cols[name])} entries, 'op' has {n}")
    for ptr, flats in (
        ("dep_ptr", ("dep_ids",)),
        ("acc_ptr", ("acc_alloc", "acc_lo", "acc_hi", "acc_flags")),
    ):
        p = cols[ptr]
        _need(len(p) == n + 1, f"column {ptr!r} has {len(p)} entries, expected {n + 1}")
        _need(
            p[0] == 0 and bool(np.all(np.diff(p) >= 0)),
            f"column {ptr!r} does not start at 0 and never decrease",
        )
        for f in flats:
            _need(
                len(cols[f]) == p[-1],
                f"column {f!r} has {len(cols[f])} entries, {ptr!r} ends at {int(p[-1])}",
            )
    for table, names in (
        ("alloc", ("alloc_offset", "alloc_size", "alloc_label")),
        ("region", ("region_addr", "region_size", "region_label", "region_persistent")),
    ):
        lengths = {len(cols[x]) for x in names}
        _need(len(lengths) == 1, f"the {table} columns differ in length")
    n_allocs, n_regions = len(cols["alloc_offset"]), len(cols["region_addr"])
    _in_range(cols, "op", 0, len(Op))
    _in_range(cols, "unit", 0, n_units)
    _in_range(cols, "step", 0, n_steps)
    for name in ("label", "alloc_label", "region_label"):
        _in_range(cols, name, 0, n_strings)
    _in_range(cols, "traffic", 0, len(Traffic))
    _in_range(cols, "region", -1, n_regions)
    _in_range(cols, "accumulate", 0, 2)
    _in_range(cols, "region_persistent", 0, 2)
    _in_range(cols, "dep_ids", 0, n)
    _in_range(cols, "acc_alloc", 0, n_allocs)
    _in_range(cols, "acc_flags", 0, (ACC_WRITE | ACC_ACCUMULATE) + 1)
    for name in (
        "m",
        "k",
        "n",
        "out_bytes",
        "elements",
        "passes",
        "ops",
        "dram_addr",
        "nbytes",
        "acc_lo",
        "alloc_offset",
        "alloc_size",
        "region_addr",
        "region_size",
    ):
        _in_range(cols, name, 0, np.iinfo(cols[name].dtype).max)
    _need(bool(np.all(cols["acc_hi"] >= cols["acc_lo"])), "an access ends before it starts")


def _group(g: dict[str, Any], meta: dict[str, Any]) -> GroupInfo:
    """A header group. One written before groups recorded ``recompute`` recomputes nothing if
    its program was compiled with no ``--recompute`` (or before the option existed); under
    all or auto which groups recomputed is not known (None)."""
    if "recompute" not in g:
        g = {**g, "recompute": None if meta.get("recompute", "none") != "none" else False}
    return GroupInfo(**g)


def read_trace(directory_or_file: str | Path) -> Program:
    """Read a trace written by :func:`write_trace`; refuses anything else with one line."""
    path = _locate(directory_or_file)
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise WavecoreError(f"trace {path}: cannot read it ({exc.strerror})") from None
    if magic[:2] == b"\x1f\x8b":
        _refuse_gzip(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            expected = {HEADER} | {f"{c}.npy" for c in ALL_COLUMNS}
            _need(HEADER in names, "no header.json")
            header = json.loads(zf.read(HEADER).decode("utf-8"))
            if isinstance(header, dict) and header.get("format") != FORMAT:
                found = header.get("format")
                raise WavecoreError(f"trace {path} is format {found!r}, not {FORMAT}; {_FIX}")
            _check_header(header)
            missing = sorted(expected - names)
            _need(
                not missing,
                f"missing member {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""),
            )
            extra = sorted(names - expected)
            _need(not extra, f"unexpected member {extra[0] if extra else ''}")
            cols = {
                name: _read_column(zf, name, dtype, header["columns"][name]["length"])
                for name, dtype in ALL_COLUMNS.items()
            }
    except WavecoreError:
        raise
    except _BadTraceError as exc:
        raise WavecoreError(f"trace {path} is malformed: {exc}; {_FIX}") from None
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        UnicodeDecodeError,
        ValueError,
        KeyError,
        NotImplementedError,
        RecursionError,  # header.json nested too deeply for the JSON parser
        MemoryError,
    ) as exc:
        what = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise WavecoreError(f"trace {path} is corrupt or truncated ({what}); {_FIX}") from None
    try:
        _check_columns(cols, len(header["units"]), len(header["strings"]), len(header["steps"]))
    except _BadTraceError as exc:
        raise WavecoreError(f"trace {path} is malformed: {exc}; {_FIX}") from None
    fp = header["dram_footprint"]
    return Program(
        units=tuple(Unit(UnitKind[k], i) for k, i in header["units"]),
        cols=cols,
        strings=header["strings"],
        steps=[Step(g, layer, phase) for g, layer, phase in header["steps"]],
        gbuf_bytes=header["gbuf_bytes"],
        meta=header["meta"],
        groups=[_group(g, header["meta"]) for g in header["groups"]],
        planned=header["planned"],
        dram_footprint=None if fp is None else DramFootprint(fp["peak_bytes"], fp["by_kind"]),
    )
