"""System energy of one simulated training iteration, from the run's event counts.

``energy(result, cfg)`` multiplies what the simulator counted by per-event energies that are
fields of :class:`~wavecore_sim.config.HardwareConfig` (the numbers and their sources live
there, once; this module only names them):

* ``mac = result.macs * cfg.mac_pj``
* ``gbuf = result.gbuf_read_bytes * cfg.gbuf_read_pj_per_byte
  + result.gbuf_write_bytes * cfg.gbuf_write_pj_per_byte``
* ``vector = result.vector_ops * cfg.vector_op_pj``
* ``dram = (result.dram_read_bytes + result.dram_write_bytes) * 8 * cfg.dram_pj_per_bit``
* ``static = cfg.static_watts * cfg.cycles_to_seconds(result.cycles)``

(pJ converted to J.) Where the constants come from:

* ``dram_pj_per_bit`` is the one published number: the 3.9 pJ/bit HBM2 access energy the
  paper uses. Reads and writes cost the same, per bit moved.
* ``mac_pj`` (a bf16 multiply with fp32 accumulate), ``gbuf_read_pj_per_byte`` /
  ``gbuf_write_pj_per_byte`` (a large banked SRAM, per byte through a port), ``vector_op_pj``
  (one fp32 lane operation including its register-file traffic) and ``static_watts`` (chip
  leakage and clocking plus HBM background power, charged for the whole run) are
  assumptions documented beside their fields in ``config.py``.
* PE-internal traffic (weights held in the array, partial sums moving between PEs) is folded
  into ``mac_pj``; DMA engines and the on-chip network are not charged separately.

All components are in joules; ``total`` is their sum. The static term is why a faster
schedule saves energy even when it moves the same bytes: "system energy" in the paper's
sense includes the power that is burnt for as long as the iteration runs.
"""

from __future__ import annotations

from typing import Any

from .config import HardwareConfig

PJ = 1e-12  # joules per picojoule
BITS_PER_BYTE = 8

#: Component names in the order reports list and stack them.
COMPONENTS = ("mac", "gbuf", "vector", "dram", "static")


def energy(result: Any, cfg: HardwareConfig) -> dict[str, float]:
    """Energy of one run in joules: ``{mac, gbuf, vector, dram, static, total}``.

    ``result`` is a :class:`~wavecore_sim.sim.machine.SimResult` (anything with its
    ``macs``, ``gbuf_read_bytes``, ``gbuf_write_bytes``, ``vector_ops``,
    ``dram_read_bytes``, ``dram_write_bytes`` and ``cycles`` attributes will do).
    """
    dram_bits = (result.dram_read_bytes + result.dram_write_bytes) * BITS_PER_BYTE
    parts = {
        "mac": result.macs * cfg.mac_pj * PJ,
        "gbuf": (
            result.gbuf_read_bytes * cfg.gbuf_read_pj_per_byte
            + result.gbuf_write_bytes * cfg.gbuf_write_pj_per_byte
        )
        * PJ,
        "vector": result.vector_ops * cfg.vector_op_pj * PJ,
        "dram": dram_bits * cfg.dram_pj_per_bit * PJ,
        "static": cfg.static_watts * cfg.cycles_to_seconds(result.cycles),
    }
    parts["total"] = sum(parts[name] for name in COMPONENTS)
    return parts
