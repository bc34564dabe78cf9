"""Instruction-trace files: a compiled program written to disk and read back losslessly.

Format ``wavecore-trace/1``: a gzip-compressed text file of JSON lines (docs/trace-format.md).

* line 1, the header: ``{"format", "units", "gbuf_bytes", "meta", "planned", "groups",
  "allocs": N, "instrs": M}``
* N allocation lines: ``[id, offset, size, label]``
* M instruction lines: an object with ``id``, ``unit`` (index into ``units``), ``op`` and only
  the fields that differ from their defaults; accesses are ``[alloc, lo, hi, acc]``.

Streams are implicit: a unit's stream is its instructions in id order.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

from ..errors import WavecoreError
from .program import Access, Alloc, GroupInfo, Instr, Program

FORMAT = "wavecore-trace/1"
FILENAME = "program.wct.gz"
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Instr)
             if f.default is not dataclasses.MISSING}
_ACCESS_FIELDS = ("reads", "writes")


def trace_path(directory: str | Path) -> Path:
    return Path(directory) / FILENAME


def write_trace(program: Program, directory: str | Path) -> Path:
    """Write ``program`` to ``directory/program.wct.gz`` (atomically: temp file, then rename)."""
    path = trace_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    unit_index = {u: i for i, u in enumerate(program.units)}
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=6) as fh:
        header = {"format": FORMAT, "units": program.units, "gbuf_bytes": program.gbuf_bytes,
                  "meta": program.meta, "planned": program.planned,
                  "groups": [dataclasses.asdict(g) for g in program.groups],
                  "allocs": len(program.allocs), "instrs": len(program.instrs)}
        fh.write(json.dumps(header) + "\n")
        for a in program.allocs:
            fh.write(json.dumps([a.id, a.offset, a.size, a.label]) + "\n")
        for ins in program.instrs:
            rec = {"id": ins.id, "unit": unit_index[ins.unit], "op": ins.op}
            for name, default in _DEFAULTS.items():
                value = getattr(ins, name)
                if value != default:
                    if name in _ACCESS_FIELDS:
                        value = [[a.alloc, a.lo, a.hi, int(a.acc)] for a in value]
                    elif name == "deps":
                        value = list(value)
                    rec[name] = value
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
    tmp.replace(path)
    return path


def read_trace(directory_or_file: str | Path) -> Program:
    """Read a trace written by :func:`write_trace`; refuses anything else with one line."""
    path = Path(directory_or_file)
    if path.is_dir():
        path = trace_path(path)
    if not path.is_file():
        raise WavecoreError(f"trace {str(path)!r} not found; give a directory written by "
                            "`wavecore-sim compile --out DIR` or its program.wct.gz")
    try:
        with gzip.open(path, "rt") as fh:
            header = json.loads(fh.readline())
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                found = header.get("format") if isinstance(header, dict) else None
                raise WavecoreError(f"trace {path}: not a {FORMAT} file (header 'format' is "
                                    f"{found!r}); recompile it")
            units = header["units"]
            allocs = []
            for _ in range(header["allocs"]):
                aid, off, size, label = json.loads(fh.readline())
                allocs.append(Alloc(aid, off, size, label))
            instrs = []
            for _ in range(header["instrs"]):
                rec = json.loads(fh.readline())
                rec["unit"] = units[rec["unit"]]
                for name in _ACCESS_FIELDS:
                    if name in rec:
                        rec[name] = tuple(Access(a, lo, hi, bool(acc)) for a, lo, hi, acc
                                          in rec[name])
                if "deps" in rec:
                    rec["deps"] = tuple(rec["deps"])
                instrs.append(Instr(**rec))
            if fh.readline().strip():
                raise WavecoreError(f"trace {path}: more records than the header announces; "
                                    "the file is corrupt, recompile it")
    except WavecoreError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise WavecoreError(f"trace {path}: malformed or truncated ({type(exc).__name__}); "
                            "recompile it") from None
    groups = [GroupInfo(**g) for g in header.get("groups", [])]
    return Program(units, instrs, allocs, header["gbuf_bytes"], header.get("meta", {}), groups,
                   header.get("planned", {}))
