"""Simulator stage: the SimPy model of the WaveCore machine."""

from .machine import SimResult, UnitStats, simulate

__all__ = ["SimResult", "UnitStats", "simulate"]
