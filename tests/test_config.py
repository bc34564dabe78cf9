"""Hardware config: presets, TOML files, --set parsing, validation."""

from __future__ import annotations

import dataclasses
import math

import pytest

from wavecore_sim.api import make_config
from wavecore_sim.config import (
    PRESETS,
    HardwareConfig,
    load_config,
    parse_set_options,
    parse_size,
)
from wavecore_sim.errors import WavecoreError


def refused(**overrides) -> str:
    with pytest.raises(WavecoreError) as info:
        load_config(overrides=overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- presets


def test_default_preset_is_the_published_wavecore_machine():
    cfg = load_config()
    assert cfg == PRESETS["wavecore"] == HardwareConfig()
    # 2 cores of 128x128: 2 * 128 * 128 = 32,768 MACs per cycle
    assert cfg.peak_macs_per_cycle == 32_768
    # 10 MiB = 10 * 1024 * 1024 = 10,485,760 bytes
    assert cfg.gbuf_bytes == 10_485_760
    # 300 GB/s at 700 MHz: 300e9 / 700e6 = 428.571... bytes per cycle, / 8 channels = 53.57
    assert cfg.hbm_bytes_per_cycle == pytest.approx(3000 / 7)
    assert cfg.hbm_channel_bytes_per_cycle == pytest.approx(3000 / 56)
    # 700e6 cycles at 700 MHz take one second
    assert cfg.cycles_to_seconds(700e6) == pytest.approx(1.0)


def test_small_presets():
    one, tiny = load_config("wavecore-1core"), load_config("tiny")
    assert one.cores == 1 and one.peak_macs_per_cycle == 128 * 128
    assert (tiny.array_rows, tiny.array_cols, tiny.gbuf_bytes) == (32, 32, 1024 * 1024)
    # 2 cores * 32 * 32 = 2048 MACs per cycle; 75e9 / 700e6 = 107.14 bytes per cycle
    assert tiny.peak_macs_per_cycle == 2048
    assert tiny.hbm_bytes_per_cycle == pytest.approx(750 / 7)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(WavecoreError, match="unknown preset 'huge'; choose one of wavecore"):
        load_config("huge")


def test_config_is_frozen_and_round_trips_through_a_dict():
    cfg = load_config("tiny")
    assert HardwareConfig(**cfg.to_dict()) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.cores = 3  # type: ignore[misc]


# ----------------------------------------------------------------------------- min_gbuf_bytes


def test_min_gbuf_bytes_matches_hand_count():
    # 2 weight tiles 2*128*128*2 B = 65,536; 2 input blocks 2*128*128*2 B = 65,536;
    # accumulators 128*128*4 B = 65,536; total 196,608
    assert load_config().min_gbuf_bytes() == 196_608
    # tiny: the same with 32x32: 4096 + 4096 + 4096 = 12,288
    assert load_config("tiny").min_gbuf_bytes() == 12_288
    # 64x32 array, 1-byte data, 4-byte accumulators:
    # 2*64*32*1 = 4096 + 2*64*64*1 = 8192 + 64*32*4 = 8192 -> 20,480
    cfg = load_config(
        overrides={"array_rows": "64", "array_cols": "32", "weight_bytes": "1", "act_bytes": "1"}
    )
    assert cfg.min_gbuf_bytes() == 20_480


def test_gbuf_of_exactly_the_minimum_is_accepted_and_one_byte_less_refused():
    assert load_config(overrides={"gbuf_bytes": "196608"}).gbuf_bytes == 196_608
    message = refused(gbuf_bytes="196607")
    assert "'gbuf_bytes' = 196607" in message and "at least 196608" in message


def test_min_gbuf_boundary_follows_the_array_size():
    # 32x32 arrays need 12,288 bytes (above); the "12KiB" spelling is exactly that
    assert (
        load_config(
            overrides={"array_rows": "32", "array_cols": "32", "gbuf_bytes": "12KiB"}
        ).gbuf_bytes
        == 12_288
    )
    with pytest.raises(WavecoreError, match="at least 12288"):
        load_config(overrides={"array_rows": "32", "array_cols": "32", "gbuf_bytes": "12287"})


# ----------------------------------------------------------------------------- --set parsing


def test_parse_set_options_splits_on_the_first_equals_sign():
    assert parse_set_options(["gbuf_bytes=20MiB", " cores = 1 ", "x=a=b"]) == {
        "gbuf_bytes": "20MiB",
        "cores": "1",
        "x": "a=b",
    }
    assert parse_set_options(None) == {}


@pytest.mark.parametrize("item", ["cores", "=3", " =3"])
def test_set_without_field_or_equals_is_refused(item):
    with pytest.raises(WavecoreError, match="write it as FIELD=VALUE"):
        parse_set_options([item])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10MiB", 10 * 1024**2),  # 10,485,760
        ("20MiB", 20_971_520),  # 20 * 1,048,576
        ("1.5KiB", 1536),  # 1.5 * 1024
        ("2GB", 2_000_000_000),  # decimal units are powers of 1000
        ("32GiB", 34_359_738_368),  # 32 * 2**30
        (" 4 KiB ", 4096),
        ("512", 512),
        ("512B", 512),
        ("1e3", 1000),
        ("0.3KB", 300),  # 0.3 * 1000 exactly, not 300.00000000000006
        ("9007199254740993", 2**53 + 1),  # exact: no detour through float
    ],
)
def test_parse_size_accepts_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["1.5", "1.1KiB", "ten", "-1", "10 MB/s", "10mib", "1e400", "", "MiB"]
)
def test_parse_size_refuses_fractions_and_junk(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_set_overrides_sizes_and_numbers():
    cfg = load_config(
        overrides={"gbuf_bytes": "20MiB", "hbm_bytes": "16GiB", "clock_mhz": "1e3", "cores": "4"}
    )
    # 20 * 2**20 = 20,971,520; 16 * 2**30 = 17,179,869,184
    assert (cfg.gbuf_bytes, cfg.hbm_bytes) == (20_971_520, 17_179_869_184)
    assert cfg.clock_mhz == 1000.0 and isinstance(cfg.clock_mhz, float)
    assert cfg.cores == 4


@pytest.mark.parametrize(
    "text, expected",
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_set_parses_booleans(text, expected):
    assert load_config(overrides={"weight_double_buffer": text}).weight_double_buffer is expected


def test_api_make_config_takes_set_strings_or_a_dict():
    assert make_config("tiny", None, ["cores=1", "gbuf_bytes=2MiB"]) == dataclasses.replace(
        PRESETS["tiny"], cores=1, gbuf_bytes=2 * 1024**2
    )
    assert make_config(set_options={"cores": 1}).cores == 1


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"cores": "0"}, "config field 'cores' must be >= 1, got 0"),
        ({"array_rows": "-4"}, "config field 'array_rows' must be >= 1"),
        ({"act_bytes": "0"}, "config field 'act_bytes' must be >= 1"),
        ({"hbm_gbps": "-5"}, "config field 'hbm_gbps' must be a positive number, got -5.0"),
        ({"hbm_gbps": "0"}, "config field 'hbm_gbps' must be a positive number"),
        ({"clock_mhz": "nan"}, "config field 'clock_mhz' must be a positive number"),
        ({"clock_mhz": "inf"}, "config field 'clock_mhz'"),
        ({"vector_startup_cycles": "-1"}, "config field 'vector_startup_cycles' must be >= 0"),
        ({"mac_pj": "-0.1"}, "config field 'mac_pj' must be a finite number >= 0"),
        ({"mac_pj": "nan"}, "config field 'mac_pj'"),  # nan < 0 is False: used to be accepted
        ({"static_watts": "inf"}, "config field 'static_watts'"),  # used to be accepted
        ({"cores": "two"}, "config field 'cores': 'two' is not an integer"),
        ({"cores": "2.5"}, "config field 'cores'"),
        ({"gbuf_bytes": "lots"}, "config field 'gbuf_bytes': 'lots' is not an integer or a size"),
        ({"gbuf_bytes": "1e400"}, "config field 'gbuf_bytes'"),  # used to raise OverflowError
        ({"weight_double_buffer": "maybe"}, "'weight_double_buffer': 'maybe' is not true or false"),
        ({"clock_mhz": "fast"}, "config field 'clock_mhz': 'fast' is not a number"),
        ({"cpus": "4"}, "--set: unknown config field 'cpus'"),
        ({"gbuf_size": "4MiB"}, "unknown config field 'gbuf_size' (did you mean gbuf_bytes"),
    ],
)
def test_impossible_configs_are_refused_naming_the_field(overrides, expected):
    assert expected in refused(**overrides)


def test_every_preset_validates():
    for name in PRESETS:
        assert load_config(name) == PRESETS[name]


def test_defaults_are_finite():
    for value in load_config().to_dict().values():
        assert not isinstance(value, float) or math.isfinite(value)


# ----------------------------------------------------------------------------- TOML files


def test_toml_file_with_preset_key_then_set_overrides(tmp_path):
    path = tmp_path / "machine.toml"
    path.write_text(
        'preset = "tiny"\n'
        "cores = 4\n"
        'gbuf_bytes = "2MiB"\n'
        "hbm_bytes = 8589934592\n"
        "weight_double_buffer = false\n"
        "clock_mhz = 1000\n"
        "hbm_gbps = 150.5\n"
        "array_rows = 32.0\n"
    )
    cfg = load_config("wavecore", path)
    # the file's preset wins over the argument: tiny's 32x32 arrays and 16 banks
    assert (cfg.array_cols, cfg.gbuf_banks) == (32, 16)
    assert cfg.cores == 4 and cfg.gbuf_bytes == 2 * 1024**2 and cfg.hbm_bytes == 8 * 1024**3
    assert cfg.weight_double_buffer is False
    assert cfg.clock_mhz == 1000.0 and isinstance(cfg.clock_mhz, float)
    assert cfg.hbm_gbps == 150.5
    assert cfg.array_rows == 32 and isinstance(cfg.array_rows, int)  # TOML 32.0 -> 32
    # --set is applied after the file
    assert load_config("wavecore", path, {"cores": "1"}).cores == 1


def test_toml_file_without_preset_starts_from_the_given_preset(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('gbuf_bytes = "20MiB"\n')
    cfg = load_config("wavecore-1core", str(path))
    assert (cfg.cores, cfg.gbuf_bytes) == (1, 20 * 1024**2)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("cores = ", "not valid TOML"),
        ('preset = "huge"', "preset 'huge' is not known"),
        ('preset = ["tiny"]', "preset ['tiny'] is not known"),  # used to raise TypeError
        ("cpus = 4", "unknown config field 'cpus'"),
        ("cores = 2.5", "config field 'cores': 2.5 is not an integer"),
        ("cores = true", "config field 'cores': True is not an integer"),
        ("weight_double_buffer = 1", "'weight_double_buffer': 1 is not true or false"),
        ("cores = 0", "config field 'cores' must be >= 1"),
        ("[cores]\nx = 1", "config field 'cores'"),
    ],
)
def test_bad_toml_files_are_refused_naming_the_problem(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(WavecoreError) as info:
        load_config(config_file=path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_binary_toml_file_is_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe\x00cores = 1")
    with pytest.raises(WavecoreError, match="not valid TOML"):
        load_config(config_file=path)


def test_missing_toml_file_is_refused(tmp_path):
    with pytest.raises(WavecoreError, match="not found"):
        load_config(config_file=tmp_path / "nope.toml")


# ------------------------------------------------------------ program vs execution fields


def _program_content(cfg: HardwareConfig, schedule: str) -> tuple:
    """Everything of a compiled program except its meta (which records the whole config)."""
    from tests.conftest import TINYNET
    from wavecore_sim.api import compile_network

    program = compile_network(str(TINYNET), 4, schedule, cfg=cfg).program
    columns = tuple((name, program.cols[name].tobytes()) for name in sorted(program.cols))
    return columns, tuple(program.strings), repr(program.planned), repr(program.dram_footprint)


def _other_value(name: str, value):
    """A different valid value for a field: another model name, or about twice the number."""
    from wavecore_sim.config import HBM_MODELS

    if name == "hbm_model":
        return next(m for m in HBM_MODELS if m != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 + 1
    return value * 2 + 1.0


@pytest.mark.parametrize("schedule", ["baseline", "mbs2", "mbs2-time"])
def test_execution_only_fields_leave_the_compiled_program_unchanged(schedule):
    # The declaration EXECUTION_ONLY_FIELDS is what simulate and explore rely on to reuse a
    # program: change every one of them (and hbm_gbps with clock_mhz at a constant ratio) at
    # once and the program must be byte-identical; change a program field and it must not be.
    from wavecore_sim.config import EXECUTION_ONLY_FIELDS, program_changes

    base = load_config(preset="tiny")
    changed = dataclasses.replace(
        base,
        **{name: _other_value(name, getattr(base, name)) for name in EXECUTION_ONLY_FIELDS},
        hbm_gbps=base.hbm_gbps * 3,
        clock_mhz=base.clock_mhz * 3,
    )
    assert program_changes(base, changed) == []
    assert _program_content(base, schedule) == _program_content(changed, schedule)
    slower_memory = dataclasses.replace(base, hbm_gbps=base.hbm_gbps / 8, gbuf_bytes=128 * 1024)
    assert program_changes(base, slower_memory) == ["gbuf_bytes", "hbm_gbps"]
    assert _program_content(base, schedule) != _program_content(slower_memory, schedule)
