"""The search space of ``explore``: a TOML file with one table per dimension.

A dimension is any :class:`~wavecore_sim.config.HardwareConfig` field, ``schedule`` or
``batch``, written either as a list of values or as a range::

    [gbuf_bytes]
    values = ["2MiB", "10MiB", "40MiB"]      # sizes like 10MiB are accepted

    [hbm_gbps]
    min = 75
    max = 1200
    scale = "log"                            # or "linear" (the default)

Without a sample size the points are the grid of all the values, the first dimension
varying slowest (ranges cannot be gridded). With one, they are a seeded Latin-hypercube
sample (McKay et al., 1979) of ``k`` points: every dimension's unit interval is cut into
``k`` equal strata and each stratum is used by exactly one point, so even a small sample
covers each dimension's whole range. A point of a range dimension takes the value where
it falls (rounded to an integer for integer fields, to :data:`FLOAT_DIGITS` significant
digits for the others, so values print and hash the same everywhere); a point of a values
dimension takes the value whose share of the interval it falls in.

Each value is checked alone when the file is read (its type and its field's range): a bad
value is a one-line error before any work. Whether a *combination* makes a machine (a
buffer too small for the array, say) is a property of the point: such a point becomes a
failed row with its reason, and the other points run.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FIELD_RANGES, HardwareConfig, apply_overrides
from ..errors import WavecoreError
from ..schedule import SCHEDULES

#: Dimensions that are not config fields.
SCHEDULE, BATCH = "schedule", "batch"
SCALES = ("linear", "log")
#: Significant digits a sampled float value is rounded to.
FLOAT_DIGITS = 6


@dataclass(frozen=True)
class Dimension:
    """One axis of the space: either ``values`` (as coerced) or a ``[lo, hi]`` range."""

    name: str
    values: tuple[Any, ...] = ()
    lo: float | None = None
    hi: float | None = None
    scale: str = "linear"
    integer: bool = False  # a range of an integer field: sampled values are rounded

    @property
    def is_range(self) -> bool:
        return not self.values

    def at(self, u: float) -> Any:
        """The value at ``u`` in [0, 1): the stratum's value, or the point of the range."""
        if not self.is_range:
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        assert self.lo is not None and self.hi is not None
        if self.scale == "log":
            x = math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo)))
        else:
            x = self.lo + u * (self.hi - self.lo)
        x = min(max(x, self.lo), self.hi)
        if self.integer:
            return round(x)
        return float(f"{x:.{FLOAT_DIGITS}g}")

    def describe(self) -> dict[str, Any]:
        """Plain data, for the results database's record of the exploration."""
        if self.is_range:
            return {"min": self.lo, "max": self.hi, "scale": self.scale}
        return {"values": list(self.values)}


@dataclass(frozen=True)
class Space:
    """The dimensions, in the file's order."""

    dims: tuple[Dimension, ...]
    source: str = ""  # the file, for messages

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dims]

    def describe(self) -> dict[str, Any]:
        return {d.name: d.describe() for d in self.dims}

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the values, the first dimension varying slowest."""
        ranges = [d.name for d in self.dims if d.is_range]
        if ranges:
            raise WavecoreError(
                f"space {self.source}: {', '.join(ranges)} "
                f"{'is a range' if len(ranges) == 1 else 'are ranges'}; give --samples K "
                "to sample the space, or list values to make a grid"
            )
        return [
            dict(zip(self.names, combo, strict=True))
            for combo in itertools.product(*[d.values for d in self.dims])
        ]

    def sample(self, k: int, seed: int) -> list[dict[str, Any]]:
        """``k`` Latin-hypercube points (see the module docstring), reproducible from ``seed``."""
        if k < 1:
            raise WavecoreError(f"--samples must be a positive integer, got {k}")
        u = latin_hypercube(k, len(self.dims), seed)
        return [{d.name: d.at(float(u[i, j])) for j, d in enumerate(self.dims)} for i in range(k)]


def latin_hypercube(k: int, d: int, seed: int) -> np.ndarray:
    """``k`` x ``d`` points in [0, 1): in every column, each of the ``k`` strata
    ``[i/k, (i+1)/k)`` holds exactly one point, at a uniform place within it."""
    rng = np.random.default_rng(seed)
    u = np.empty((k, d))
    for j in range(d):
        u[:, j] = (rng.permutation(k) + rng.random(k)) / k
    return u


def read_space(path: str | Path, base: HardwareConfig) -> Space:
    """Parse and check a space file; every problem is one :class:`WavecoreError` line."""
    where = str(path)
    p = Path(path)
    if not p.is_file():
        raise WavecoreError(f"space file {where!r} not found; give an existing TOML file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WavecoreError(f"space file {where}: not valid TOML ({exc}); fix the syntax") from None
    except OSError as exc:
        raise WavecoreError(f"space file {where}: cannot be read ({exc.strerror})") from None
    return parse_space(data, base, where)


def parse_space(data: dict[str, Any], base: HardwareConfig, where: str = "<space>") -> Space:
    """The :class:`Space` of a parsed TOML document (see :func:`read_space`)."""
    if not data:
        raise WavecoreError(
            f'space file {where}: no dimension; add one, e.g. [gbuf_bytes] values = ["2MiB"]'
        )
    fields = base.to_dict()
    dims = []
    for name, spec in data.items():
        if name not in fields and name not in (SCHEDULE, BATCH):
            raise WavecoreError(
                f"space file {where}: unknown dimension {name!r}; use a config field "
                "(`wavecore-sim config show` lists them), schedule or batch"
            )
        dims.append(_dimension(name, spec, base, f"space file {where}: [{name}]"))
    return Space(tuple(dims), where)


def _dimension(name: str, spec: Any, base: HardwareConfig, where: str) -> Dimension:
    if not isinstance(spec, dict):
        raise WavecoreError(
            f"{where}: write a table, {{ values = [...] }} or "
            '{ min = ..., max = ..., scale = "linear" | "log" }'
        )
    keys = set(spec)
    if keys - {"values", "min", "max", "scale"}:
        extra = sorted(keys - {"values", "min", "max", "scale"})
        raise WavecoreError(f"{where}: unknown key {extra[0]!r}; use values, or min, max, scale")
    if "values" in keys:
        if keys != {"values"}:
            raise WavecoreError(f"{where}: give either values or min/max/scale, not both")
        return _values_dimension(name, spec["values"], base, where)
    if not {"min", "max"} <= keys:
        raise WavecoreError(f"{where}: a range needs both min and max (or give values = [...])")
    return _range_dimension(name, spec, base, where)


def _values_dimension(name: str, raw: Any, base: HardwareConfig, where: str) -> Dimension:
    if not isinstance(raw, list) or not raw:
        raise WavecoreError(f"{where}: values must be a non-empty list, e.g. values = [1, 2]")
    values = [check_value(name, v, base, where) for v in raw]
    for v in values:
        if values.count(v) > 1:
            raise WavecoreError(f"{where}: the value {v!r} is listed twice; list each once")
    return Dimension(name, tuple(values))


def _range_dimension(
    name: str, spec: dict[str, Any], base: HardwareConfig, where: str
) -> Dimension:
    if name == SCHEDULE:
        raise WavecoreError(f"{where}: schedules are names; list them with values = [...]")
    scale = spec.get("scale", "linear")
    if scale not in SCALES:
        raise WavecoreError(f"{where}: scale {scale!r} is not one of {', '.join(SCALES)}")
    lo, hi = (check_value(name, spec[k], base, where) for k in ("min", "max"))
    if isinstance(lo, bool | str):
        raise WavecoreError(f"{where}: {name} is not numeric; list its values instead")
    if not lo < hi:
        raise WavecoreError(f"{where}: the range is empty (min {lo} is not below max {hi})")
    if scale == "log" and lo <= 0:
        raise WavecoreError(f"{where}: a log scale needs min > 0, got {lo}")
    return Dimension(name, (), lo, hi, scale, integer=isinstance(lo, int))


def check_value(name: str, value: Any, base: HardwareConfig, where: str) -> Any:
    """One value of a dimension, coerced (``'10MiB'`` -> 10485760) and checked alone.

    A config field's value is checked by the config itself on a machine that relaxes the
    two cross-field rules (buffer vs array size, refresh interval vs refresh time), so that
    only the value's type and range are judged here; a combination is judged per point."""
    if name == SCHEDULE:
        if value not in SCHEDULES:
            raise WavecoreError(
                f"{where}: unknown schedule {value!r}; choose from {', '.join(SCHEDULES)}"
            )
        return value
    if name == BATCH:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise WavecoreError(f"{where}: batch {value!r} is not a positive integer")
        return value
    relaxed = _relaxed(base, name)
    try:
        return getattr(apply_overrides(relaxed, {name: value}, where), name)
    except WavecoreError as exc:
        text = str(exc)
        raise WavecoreError(text if text.startswith(where) else f"{where}: {text}") from None


def _relaxed(base: HardwareConfig, name: str) -> HardwareConfig:
    """``base`` with the cross-field rules' other participants at their most permissive."""
    loosest = {
        "array_rows": 1,
        "array_cols": 1,
        "gbuf_bytes": int(FIELD_RANGES["gbuf_bytes"][1]),
        "hbm_trfc_ns": 0.0,
        "hbm_trefi_ns": FIELD_RANGES["hbm_trefi_ns"][1],
    }
    if name in ("array_rows", "array_cols"):
        loosest.pop("array_rows")
        loosest.pop("array_cols")
    loosest.pop(name, None)
    return dataclasses.replace(base, **loosest)
