"""The hardware configuration: one validated, frozen object read by every later stage.

Units are in the field names. Published WaveCore facts (Lym et al., MLSys 2019): 2 cores of
128x128 systolic arrays, a 10 MB-class global buffer, HBM2 at 300 GB/s, 3.9 pJ/bit DRAM
energy. Every other value is a named assumption, documented once, here, beside its field.
Configs come from a preset, optionally a TOML file (``--config``), then ``--set key=value``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import WavecoreError, brief

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@dataclass(frozen=True)
class HardwareConfig:
    """WaveCore-class machine. See docs in this module for the source of each default."""

    # --- cores (published: 2 cores of 128 x 128 weight-stationary systolic arrays)
    cores: int = 2
    array_rows: int = 128
    array_cols: int = 128
    # assumption: TPUv2-class clock; peak 2 x 128 x 128 x 2 x 0.7 GHz = 45.9 TFLOP/s
    clock_mhz: float = 700.0
    # weights double-buffered in the PEs: the next tile's weights load while this one streams
    weight_double_buffer: bool = True

    # --- global buffer (published: 10 MB class, shared, banked)
    gbuf_bytes: int = 10 * MiB
    # assumption: 64 banks interleaved every 64 B, one read and one write port per bank, each
    # 64 B/cycle: 4 KiB/cycle each way, enough for two cores at full rate plus DMA
    gbuf_banks: int = 64
    gbuf_interleave_bytes: int = 64
    gbuf_port_bytes_per_cycle: int = 64

    # --- vector unit, one per core (assumption: TPUv2-class VPU, 128 lanes x 8 sublanes)
    vector_lanes: int = 128
    vector_ops_per_lane_per_cycle: int = 8
    # assumption: pipeline start-up per pass over the data
    vector_startup_cycles: int = 32

    # --- HBM2 (published: 300 GB/s; assumption: 8 channels, 256 B interleave, 100-cycle latency)
    hbm_channels: int = 8
    hbm_gbps: float = 300.0
    hbm_interleave_bytes: int = 256
    hbm_latency_cycles: int = 100  # the "ideal" model's fixed latency (143 ns)
    hbm_bytes: int = 32 * GiB
    # which HBM model the machine runs: "calibrated" (banks, rows, refresh, turnaround; the
    # fields below, checked against DRAMsim3 in docs/validation.md) or "ideal" (per-channel
    # FIFO at hbm_gbps / hbm_channels after hbm_latency_cycles, as before issue 12)
    hbm_model: str = "calibrated"
    # address map (as DRAMsim3 was set up in the reference): bank = (addr // 16 KiB) % 16,
    # row = addr // (16 KiB * 16) (one 2 KiB row per channel per 16 KiB); JEDEC HBM2: 16 banks
    hbm_banks_per_channel: int = 16
    hbm_bank_interleave_bytes: int = 16 * KiB
    # assumption: PHY, controller front end and on-chip network between the HBM and the
    # buffer, on top of the DRAM-core latency the timings below give (57 ns)
    hbm_onchip_latency_cycles: int = 40
    # JEDEC HBM2 timings, as DRAMsim3's HBM2_8Gb_x128 (tCK 0.853333 ns) and the reference
    # README: tRCD 17, tRP 17, CL 17, CWL 5, tWR 19, tRAS 40, tRFC 305, tREFI 4570 tCK
    hbm_tck_ns: float = 0.853  # DRAM clock; a command issues the cycle after it arrives
    hbm_trcd_ns: float = 14.507  # activate to read/write (17 tCK)
    hbm_trp_ns: float = 14.507  # precharge (17 tCK)
    hbm_tcl_ns: float = 14.507  # read command to data (CL 17 tCK)
    hbm_tcwl_ns: float = 4.267  # write command to data (CWL 5 tCK)
    hbm_twr_ns: float = 16.213  # write recovery: data written to the array (19 tCK)
    hbm_tras_ns: float = 34.133  # activate to precharge (40 tCK); tRC = tRAS + tRP
    hbm_trfc_ns: float = 260.267  # all-bank refresh (305 tCK)
    hbm_trefi_ns: float = 3900.0  # refresh interval (4570 tCK)
    # direction turnaround on a channel: write-to-read tCWL + BL/2 + tWTR_L (5 + 2 + 10 tCK),
    # read-to-write CL + BL/2 + 2 - CWL (17 + 2 + 2 - 5 tCK); the reference measured about
    # 16 tCK per switch
    hbm_write_to_read_ns: float = 14.507
    hbm_read_to_write_ns: float = 13.653
    # calibrated on the reference's pattern c (8 read streams walking the same banks reach
    # 18% of peak): a bank that k streams contend for on different rows serves
    # hbm_conflict_window_requests / k requests per row opening, one opening per tRC (the
    # reference saw 2.7 requests per opening with about two banks opening at once)
    hbm_conflict_window_requests: int = 44
    hbm_request_bytes: int = 64  # one HBM2 access (BL4 x 128 bit)

    # --- element sizes (bf16 data, fp32 accumulators, master weights and optimizer state)
    act_bytes: int = 2
    weight_bytes: int = 2
    grad_bytes: int = 2
    accum_bytes: int = 4
    weight_grad_bytes: int = 4  # assumption: weight gradients kept at accumulator precision
    master_weight_bytes: int = 4
    optimizer_state_bytes: int = 4  # SGD momentum, one value per parameter

    # --- energy (issue: energy model). pJ unless named otherwise.
    dram_pj_per_bit: float = 3.9  # published (HBM2, the paper's figure)
    mac_pj: float = 0.26  # assumption: bf16 MAC + fp32 add, 16 nm-class (Horowitz-scaled)
    gbuf_read_pj_per_byte: float = 1.2  # assumption: large banked SRAM, per byte
    gbuf_write_pj_per_byte: float = 1.4  # assumption
    vector_op_pj: float = 0.9  # assumption: one fp32 lane op incl. register file
    static_watts: float = 12.0  # assumption: leakage + clocking of the chip, HBM background

    def __post_init__(self) -> None:
        validate(self)  # every way of building one (API, preset, TOML, --set, trace) is checked

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.cores * self.array_rows * self.array_cols

    @property
    def hbm_bytes_per_cycle(self) -> float:
        """Aggregate HBM bandwidth in bytes per core-clock cycle."""
        return self.hbm_gbps * 1e9 / (self.clock_mhz * 1e6)

    @property
    def hbm_channel_bytes_per_cycle(self) -> float:
        return self.hbm_bytes_per_cycle / self.hbm_channels

    def cycles_to_seconds(self, cycles: float) -> float:
        return cycles / (self.clock_mhz * 1e6)

    def min_gbuf_bytes(self) -> int:
        """Smallest buffer that can hold one tile with its double buffer.

        Two weight tiles (R x C), two input blocks of R rows by R elements, and the R x C
        accumulator block of the output: anything smaller cannot run a single GEMM tile.
        """
        r, c = self.array_rows, self.array_cols
        return 2 * r * c * self.weight_bytes + 2 * r * r * self.act_bytes + r * c * self.accum_bytes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([KMGTP]i?B|B)?\s*$")
_MAX_SIZE = 2**63  # larger sizes are typos (and would not fit a 64-bit counter)
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": KiB,
    "MiB": MiB,
    "GiB": GiB,
    "TiB": 1024**4,
    "PB": 1000**5,
    "PiB": 1024**5,
}


def parse_size(text: str) -> int:
    """``'10MiB'`` -> 10485760; plain integers pass through. Raises ValueError."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(text)
    # Decimal, not float: exact for large integers, and no OverflowError on '1e400'
    value = Decimal(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if value >= _MAX_SIZE or value != value.to_integral_value():
        raise ValueError(text)
    return int(value)


def _coerce(name: str, ftype: Any, value: Any) -> Any:
    """Convert a TOML or command-line value to the field's type, or explain what is wanted."""
    try:
        if ftype in (bool, "bool"):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes", "on")
            if isinstance(value, bool):
                return value
            raise ValueError(value)
        if ftype in (int, "int"):
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, str):
                return parse_size(value) if name.endswith("bytes") else int(value)
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, int):
                return value
            raise ValueError(value)
        if ftype in (str, "str"):
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        if ftype in (float, "float"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
    except (TypeError, ValueError):
        kind = {
            "bool": "true or false",
            "int": "an integer" + (" or a size like 10MiB" if name.endswith("bytes") else ""),
            "float": "a number",
            "str": "a string",
        }[str(getattr(ftype, "__name__", ftype))]
        raise WavecoreError(f"config field {name!r}: {brief(value)} is not {kind}") from None
    raise WavecoreError(f"config field {name!r} has an unsupported type")


#: Unit of a field from the end of its name, longest suffix first.
_UNIT_SUFFIXES = (
    ("_bytes_per_cycle", "B/cycle"),
    ("_pj_per_bit", "pJ/bit"),
    ("_pj_per_byte", "pJ/B"),
    ("_per_lane_per_cycle", "ops/lane/cycle"),
    ("_bytes", "bytes"),
    ("_mhz", "MHz"),
    ("_gbps", "GB/s"),
    ("_cycles", "cycles"),
    ("_pj", "pJ"),
    ("_watts", "W"),
    ("_ns", "ns"),
)


def unit_of(name: str) -> str:
    """The unit a field's name carries (``''`` for counts and flags)."""
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return ""


#: Valid range of every numeric field, inclusive, in the unit its name carries (see
#: :func:`unit_of`). The one place ranges are enforced: :func:`validate`, which
#: ``HardwareConfig.__post_init__`` runs, so ``--set``, TOML files, presets, traces and the
#: Python API all meet the same check. The bounds are generous for what-if studies but refuse
#: magnitudes that would hang or exhaust memory (a 1e-300 GB/s memory, 1e8 HBM channels,
#: 1e9 buffer banks) or whose compiled programs the verifier cannot check in reasonable time
#: (more than 32 cores). Two cross-field rules follow in :func:`validate`: ``gbuf_bytes``
#: must hold one tile with its double buffer, and ``hbm_trefi_ns`` must exceed ``hbm_trfc_ns``.
_NS_MAX = 1e6  # 1 ms: any DRAM timing beyond it is a typo
FIELD_RANGES: dict[str, tuple[float, float]] = {
    "cores": (1, 32),
    "array_rows": (1, 1024),
    "array_cols": (1, 1024),
    "clock_mhz": (1.0, 100_000.0),
    "gbuf_bytes": (1, 64 * GiB),
    "gbuf_banks": (1, 4096),
    "gbuf_interleave_bytes": (1, 1 * GiB),
    "gbuf_port_bytes_per_cycle": (1, 1 * MiB),
    "vector_lanes": (1, 65_536),
    "vector_ops_per_lane_per_cycle": (1, 1024),
    "vector_startup_cycles": (0, 1_000_000),
    "hbm_channels": (1, 1024),
    "hbm_gbps": (0.1, 100_000.0),
    "hbm_interleave_bytes": (1, 1 * GiB),
    "hbm_latency_cycles": (0, 1_000_000),
    "hbm_bytes": (1, 1024**5),
    "hbm_banks_per_channel": (1, 1024),
    "hbm_bank_interleave_bytes": (1, 1 * GiB),
    "hbm_onchip_latency_cycles": (0, 1_000_000),
    "hbm_tck_ns": (0.0, _NS_MAX),
    "hbm_trcd_ns": (0.0, _NS_MAX),
    "hbm_trp_ns": (0.0, _NS_MAX),
    "hbm_tcl_ns": (0.0, _NS_MAX),
    "hbm_tcwl_ns": (0.0, _NS_MAX),
    "hbm_twr_ns": (0.0, _NS_MAX),
    "hbm_tras_ns": (0.0, _NS_MAX),
    "hbm_trfc_ns": (0.0, _NS_MAX),
    "hbm_trefi_ns": (10.0, 1e9),
    "hbm_write_to_read_ns": (0.0, _NS_MAX),
    "hbm_read_to_write_ns": (0.0, _NS_MAX),
    "hbm_conflict_window_requests": (1, 1_000_000),
    "hbm_request_bytes": (1, 1 * MiB),
    "act_bytes": (1, 16),
    "weight_bytes": (1, 16),
    "grad_bytes": (1, 16),
    "accum_bytes": (1, 16),
    "weight_grad_bytes": (1, 16),
    "master_weight_bytes": (1, 16),
    "optimizer_state_bytes": (1, 16),
    "dram_pj_per_bit": (0.0, 1e6),
    "mac_pj": (0.0, 1e6),
    "gbuf_read_pj_per_byte": (0.0, 1e6),
    "gbuf_write_pj_per_byte": (0.0, 1e6),
    "vector_op_pj": (0.0, 1e6),
    "static_watts": (0.0, 1e6),
}


def _num(value: float) -> str:
    """A bound as people write it: 1024, 0.1, 1e+06."""
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e6):
        return str(int(value))
    return f"{value:g}"


def _size(value: float) -> str:
    """A byte bound as ``--set`` accepts it: 1024**3 -> '1GiB'."""
    for unit, scale in (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", GiB), ("MiB", MiB)):
        if value >= scale and value % scale == 0:
            return f"{int(value // scale)}{unit}"
    return _num(value)


def range_text(name: str) -> str:
    """``'1 to 32'`` plus the unit, e.g. ``'0.1 to 100000 GB/s'``; sizes ``'1B to 1GiB'``."""
    lo, hi = FIELD_RANGES[name]
    unit = unit_of(name)
    if unit == "bytes":
        return " to ".join(t if t.endswith("B") else t + "B" for t in (_size(lo), _size(hi)))
    return f"{_num(lo)} to {_num(hi)}" + (f" {unit}" if unit else "")


def _check_type(cfg: HardwareConfig, name: str, ftype: Any) -> None:
    value = getattr(cfg, name)
    want = str(getattr(ftype, "__name__", ftype))
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[want]
    if not ok:
        kind = {"bool": "true or false", "int": "an integer", "float": "a number"}.get(
            want, "a string"
        )
        within = f" within {range_text(name)}" if name in FIELD_RANGES else ""
        raise WavecoreError(
            f"config field {name!r} must be {kind}{within}, got {value!r} ({type(value).__name__})"
        )
    if want == "float" and not isinstance(value, float):
        object.__setattr__(cfg, name, float(value))  # 600 -> 600.0, as TOML and --set give


def _check_range(cfg: HardwareConfig, name: str) -> None:
    value = getattr(cfg, name)
    lo, hi = FIELD_RANGES[name]
    if lo <= value <= hi:  # False for nan
        return
    default = getattr(_DEFAULTS, name)
    fix = f"; set it within {range_text(name)} (default {default})"
    if isinstance(value, float) and lo > 0 and not (value > 0 and math.isfinite(value)):
        what = "a positive number"
    elif isinstance(value, float) and lo == 0 and not (value >= 0 and math.isfinite(value)):
        what = "a finite number >= 0"
    elif value < lo:
        what = f">= {_num(lo)}"
    else:
        what = f"<= {_num(hi)}"
    raise WavecoreError(f"config field {name!r} must be {what}, got {value}{fix}")


def validate(cfg: HardwareConfig) -> HardwareConfig:
    """Refuse impossible machines with a one-line reason naming the field, range and fix.

    Runs on every ``HardwareConfig`` built (``__post_init__``); returns ``cfg``.
    """
    for f in fields(cfg):
        _check_type(cfg, f.name, f.type)
        if f.name in FIELD_RANGES:
            _check_range(cfg, f.name)
    if cfg.hbm_model not in HBM_MODELS:
        raise WavecoreError(
            f"config field 'hbm_model' must be one of {', '.join(HBM_MODELS)}, "
            f"got {cfg.hbm_model!r}"
        )
    if not cfg.hbm_trefi_ns > cfg.hbm_trfc_ns:
        raise WavecoreError(
            f"config field 'hbm_trefi_ns' = {cfg.hbm_trefi_ns} must exceed "
            f"hbm_trfc_ns = {cfg.hbm_trfc_ns}: memory that only refreshes "
            "serves nothing"
        )
    if cfg.gbuf_bytes < cfg.min_gbuf_bytes():
        raise WavecoreError(
            f"config field 'gbuf_bytes' = {cfg.gbuf_bytes} cannot hold one "
            f"{cfg.array_rows}x{cfg.array_cols} tile with its double buffer; "
            f"raise it to at least {cfg.min_gbuf_bytes()}"
        )
    return cfg


HBM_MODELS = ("calibrated", "ideal")

#: Fields that only change how a compiled program executes, never the program itself: the
#: compiler (schedule, tiling, lowering, DRAM placement) reads none of them. ``simulate`` may
#: override these on a trace; ``explore`` reuses one compiled program across points that
#: differ only in them. tests/test_config.py recompiles with each one changed and checks the
#: program is byte-identical, so a compiler change that starts reading one fails there.
EXECUTION_ONLY_FIELDS: frozenset[str] = frozenset(
    {
        "gbuf_banks",
        "gbuf_interleave_bytes",
        "gbuf_port_bytes_per_cycle",
        "vector_lanes",
        "vector_ops_per_lane_per_cycle",
        "vector_startup_cycles",
        "hbm_latency_cycles",
        "hbm_model",
        "hbm_banks_per_channel",
        "hbm_bank_interleave_bytes",
        "hbm_onchip_latency_cycles",
        "hbm_tck_ns",
        "hbm_trcd_ns",
        "hbm_trp_ns",
        "hbm_tcl_ns",
        "hbm_tcwl_ns",
        "hbm_twr_ns",
        "hbm_tras_ns",
        "hbm_trfc_ns",
        "hbm_trefi_ns",
        "hbm_write_to_read_ns",
        "hbm_read_to_write_ns",
        "hbm_conflict_window_requests",
        "hbm_request_bytes",
        "dram_pj_per_bit",
        "mac_pj",
        "gbuf_read_pj_per_byte",
        "gbuf_write_pj_per_byte",
        "vector_op_pj",
        "static_watts",
    }
)
#: Read by the compiler only through their ratio, HBM bytes per core cycle (the tiling and
#: mbs2-time cost estimates): points with the same ratio compile to the same program.
RATIO_FIELDS: tuple[str, str] = ("hbm_gbps", "clock_mhz")


def program_key(cfg: HardwareConfig) -> dict[str, Any]:
    """What of ``cfg`` the compiled program depends on: every field the compiler reads.

    Two configs with equal keys compile any network and schedule to the same program, so a
    compiled program can be reused (``explore``) or re-executed under the other (``simulate``).
    """
    key = {
        name: value
        for name, value in dataclasses.asdict(cfg).items()
        if name not in EXECUTION_ONLY_FIELDS and name not in RATIO_FIELDS
    }
    key["hbm_bytes_per_cycle"] = cfg.hbm_bytes_per_cycle
    return key


def program_changes(old: HardwareConfig, new: HardwareConfig) -> list[str]:
    """The fields whose change from ``old`` to ``new`` would change the compiled program."""
    changed = [
        name
        for name in _field_types()
        if name not in EXECUTION_ONLY_FIELDS and getattr(old, name) != getattr(new, name)
    ]
    if old.hbm_bytes_per_cycle == new.hbm_bytes_per_cycle:
        changed = [name for name in changed if name not in RATIO_FIELDS]
    return changed


_DEFAULTS = HardwareConfig()  # the defaults the range messages quote

PRESETS: dict[str, HardwareConfig] = {
    "wavecore": HardwareConfig(),
    # half the machine: one core, same buffer and memory; for what-if studies
    "wavecore-1core": HardwareConfig(cores=1),
    # a small machine for quick experiments and tests: 32x32 arrays, 1 MiB buffer, 75 GB/s
    "tiny": HardwareConfig(
        array_rows=32,
        array_cols=32,
        gbuf_bytes=1 * MiB,
        gbuf_banks=16,
        vector_lanes=32,
        hbm_channels=4,
        hbm_gbps=75.0,
    ),
}


def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in fields(HardwareConfig)}


def apply_overrides(cfg: HardwareConfig, overrides: dict[str, Any], origin: str) -> HardwareConfig:
    types = _field_types()
    changes = {}
    for key, value in overrides.items():
        if key not in types:
            close = [n for n in types if key.split("_")[0] in n][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise WavecoreError(
                f"{origin}: unknown config field {key!r}{hint}; "
                "`wavecore-sim config show` lists the fields"
            )
        changes[key] = _coerce(key, types[key], value)
    return dataclasses.replace(cfg, **changes)


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """``['gbuf_bytes=20MiB']`` -> ``{'gbuf_bytes': '20MiB'}``."""
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WavecoreError(
                f"--set {item!r}: write it as FIELD=VALUE, e.g. --set gbuf_bytes=20MiB"
            )
        result[key.strip()] = value.strip()
    return result


def load_config(
    preset: str = "wavecore",
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> HardwareConfig:
    """Preset, then the TOML file's fields, then ``--set`` overrides; validated."""
    if preset not in PRESETS:
        raise WavecoreError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise WavecoreError(f"config file {str(path)!r} not found; give an existing TOML file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise WavecoreError(
                f"config file {path}: not valid TOML ({exc}); fix the syntax"
            ) from None
        except (ValueError, RecursionError):  # a 5,000-digit integer; arrays nested deeply
            raise WavecoreError(
                f"config file {path}: a value has thousands of digits or is nested too "
                "deeply; fix the value"
            ) from None
        except OSError as exc:
            raise WavecoreError(f"config file {path}: cannot be read ({exc.strerror})") from None
        base = data.pop("preset", None)
        if base is not None:
            if not isinstance(base, str) or base not in PRESETS:
                raise WavecoreError(
                    f"config file {path}: preset {base!r} is not known; choose "
                    f"one of {', '.join(PRESETS)}"
                )
            cfg = PRESETS[base]
        cfg = apply_overrides(cfg, data, f"config file {path}")
    cfg = apply_overrides(cfg, overrides or {}, "--set")
    return validate(cfg)
