"""What each hardware config field means: unit, meaning, valid range and source.

``wavecore-sim config show`` prints this beside each value. The unit follows from the field's
name (units are in the names: ``clock_mhz``, ``gbuf_bytes``, ``hbm_gbps``); the valid ranges
restate what :func:`wavecore_sim.config.validate` enforces. "paper" marks the published
WaveCore facts (Lym et al., MLSys 2019); every other default is an assumption, explained in
the comment beside the field in ``config.py``. The ``valid`` strings below are superseded by
the enforced ranges in ``config.FIELD_RANGES`` where a field has one (:func:`describe`
combines them); what they keep is the cross-field rule (``gbuf_bytes``, ``hbm_trefi_ns``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import FIELD_RANGES, range_text, unit_of

__all__ = ["FIELD_DOCS", "FieldDoc", "describe", "unit_of"]  # unit_of lives in config


@dataclass(frozen=True)
class FieldDoc:
    meaning: str
    valid: str
    source: str


_POS, _NONNEG, _BOOL = ">= 1", ">= 0", "true/false"

FIELD_DOCS: dict[str, FieldDoc] = {
    "cores": FieldDoc("systolic-array cores", _POS, "paper (2)"),
    "array_rows": FieldDoc("PE rows per array (K of a weight tile)", _POS, "paper (128)"),
    "array_cols": FieldDoc("PE columns per array (N of a weight tile)", _POS, "paper (128)"),
    "clock_mhz": FieldDoc("core clock", "> 0", "assumption: TPUv2-class"),
    "weight_double_buffer": FieldDoc(
        "next weight tile loads while this one streams", _BOOL, "assumption"
    ),
    "gbuf_bytes": FieldDoc(
        "global buffer capacity, shared by the cores",
        ">= one tile and its double buffer",
        "paper (10 MB class)",
    ),
    "gbuf_banks": FieldDoc("global buffer banks", _POS, "assumption"),
    "gbuf_interleave_bytes": FieldDoc("bank interleave granule", _POS, "assumption"),
    "gbuf_port_bytes_per_cycle": FieldDoc(
        "bytes per cycle of each bank's read and write port", _POS, "assumption"
    ),
    "vector_lanes": FieldDoc(
        "lanes of each core's vector unit", _POS, "assumption: TPUv2-class VPU"
    ),
    "vector_ops_per_lane_per_cycle": FieldDoc(
        "vector ops per lane per cycle", _POS, "assumption: 8 sublanes"
    ),
    "vector_startup_cycles": FieldDoc(
        "pipeline start-up per pass over the data", _NONNEG, "assumption"
    ),
    "hbm_channels": FieldDoc(
        "HBM channels (addresses interleaved across them)", _POS, "assumption"
    ),
    "hbm_gbps": FieldDoc("HBM bandwidth, all channels", "> 0", "paper (300 GB/s)"),
    "hbm_interleave_bytes": FieldDoc("channel interleave granule", _POS, "assumption"),
    "hbm_latency_cycles": FieldDoc(
        "ideal HBM model only: latency from the last channel's data to the buffer",
        _NONNEG,
        "assumption",
    ),
    "hbm_model": FieldDoc(
        "HBM model: calibrated (banks, rows, refresh, turnaround) or "
        "ideal (per-channel FIFO + fixed latency)",
        "calibrated/ideal",
        "calibrated against DRAMsim3 (docs/validation.md)",
    ),
    "hbm_banks_per_channel": FieldDoc("banks per HBM channel", _POS, "JEDEC HBM2 (16)"),
    "hbm_bank_interleave_bytes": FieldDoc(
        "bank interleave granule (one row per channel)", _POS, "DRAMsim3 reference address map"
    ),
    "hbm_onchip_latency_cycles": FieldDoc(
        "PHY + on-chip network latency on top of the DRAM core's", _NONNEG, "assumption"
    ),
    "hbm_tck_ns": FieldDoc(
        "DRAM clock period (a command issues one tCK after it arrives)",
        _NONNEG,
        "JEDEC HBM2 (DRAMsim3 HBM2 at 300 GB/s)",
    ),
    "hbm_trcd_ns": FieldDoc("activate to read/write (tRCD)", _NONNEG, "JEDEC HBM2 (17 tCK)"),
    "hbm_trp_ns": FieldDoc("precharge (tRP)", _NONNEG, "JEDEC HBM2 (17 tCK)"),
    "hbm_tcl_ns": FieldDoc("read command to data (CL)", _NONNEG, "JEDEC HBM2 (17 tCK)"),
    "hbm_tcwl_ns": FieldDoc("write command to data (CWL)", _NONNEG, "JEDEC HBM2 (5 tCK)"),
    "hbm_twr_ns": FieldDoc("write recovery (tWR)", _NONNEG, "JEDEC HBM2 (19 tCK)"),
    "hbm_tras_ns": FieldDoc("activate to precharge (tRAS)", _NONNEG, "JEDEC HBM2 (40 tCK)"),
    "hbm_trfc_ns": FieldDoc(
        "all-bank refresh blackout (tRFC)", _NONNEG, "JEDEC HBM2 8Gb (305 tCK)"
    ),
    "hbm_trefi_ns": FieldDoc("refresh interval (tREFI)", "> hbm_trfc_ns", "JEDEC HBM2 (3.9 us)"),
    "hbm_write_to_read_ns": FieldDoc(
        "bus turnaround, write to read", _NONNEG, "JEDEC HBM2 (CWL + BL/2 + tWTR_L)"
    ),
    "hbm_read_to_write_ns": FieldDoc(
        "bus turnaround, read to write", _NONNEG, "JEDEC HBM2 (CL + BL/2 + 2 - CWL)"
    ),
    "hbm_conflict_window_requests": FieldDoc(
        "requests a controller reorders over, shared by streams colliding on one bank",
        _POS,
        "calibrated on DRAMsim3 pattern c",
    ),
    "hbm_request_bytes": FieldDoc("bytes of one HBM access", _POS, "JEDEC HBM2 (BL4 x 128 bit)"),
    "hbm_bytes": FieldDoc(
        "HBM capacity (the iteration's DRAM footprint must fit)", _POS, "assumption: 32 GiB"
    ),
    "act_bytes": FieldDoc("bytes per activation element", _POS, "assumption: bf16"),
    "weight_bytes": FieldDoc("bytes per weight element", _POS, "assumption: bf16"),
    "grad_bytes": FieldDoc("bytes per activation-gradient element", _POS, "assumption: bf16"),
    "accum_bytes": FieldDoc("bytes per accumulator (partial sum)", _POS, "assumption: fp32"),
    "weight_grad_bytes": FieldDoc("bytes per weight-gradient element", _POS, "assumption: fp32"),
    "master_weight_bytes": FieldDoc("bytes per master weight", _POS, "assumption: fp32"),
    "optimizer_state_bytes": FieldDoc(
        "bytes of SGD momentum per parameter", _POS, "assumption: fp32"
    ),
    "dram_pj_per_bit": FieldDoc("DRAM access energy", _NONNEG, "paper (3.9 pJ/bit)"),
    "mac_pj": FieldDoc(
        "energy of one bf16 MAC with fp32 add", _NONNEG, "assumption: 16 nm-class, Horowitz-scaled"
    ),
    "gbuf_read_pj_per_byte": FieldDoc("global buffer read energy", _NONNEG, "assumption"),
    "gbuf_write_pj_per_byte": FieldDoc("global buffer write energy", _NONNEG, "assumption"),
    "vector_op_pj": FieldDoc("energy of one fp32 vector lane op", _NONNEG, "assumption"),
    "static_watts": FieldDoc(
        "static power: leakage, clocking, HBM background", _NONNEG, "assumption"
    ),
}


def describe(name: str) -> FieldDoc:
    """The field's doc; a field added without one says so instead of failing.

    ``valid`` is the enforced range (``config.FIELD_RANGES``, with its unit), followed by the
    cross-field rule the ``valid`` string above states where there is one.
    """
    doc = FIELD_DOCS.get(name, FieldDoc("(not yet described in config_docs.py)", "", ""))
    if name not in FIELD_RANGES:
        return doc
    extra = doc.valid if doc.valid not in (_POS, _NONNEG, "> 0") else ""
    valid = range_text(name) + (f", {extra}" if extra else "")
    return FieldDoc(doc.meaning, valid, doc.source)
