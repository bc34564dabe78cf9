"""Simulator stage: the SimPy model of the WaveCore machine."""

from .machine import STALL_CAUSES, ChannelLog, SimResult, UnitStats, simulate

__all__ = ["STALL_CAUSES", "ChannelLog", "SimResult", "UnitStats", "simulate"]
