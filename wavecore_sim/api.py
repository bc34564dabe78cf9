"""The Python API. The CLI calls exactly these functions; so can users and notebooks."""

from __future__ import annotations

from typing import Any

from .config import HardwareConfig, load_config, parse_set_options
from .report.workload_table import network_summary
from .training import TrainingGraph, expand_training
from .workload import Network, list_networks, load_network

__all__ = ["describe_network", "expand", "list_networks", "load_network", "make_config"]


def make_config(preset: str = "wavecore", config_file: str | None = None,
                set_options: list[str] | dict[str, Any] | None = None) -> HardwareConfig:
    """A validated hardware config from a preset, a TOML file and FIELD=VALUE overrides."""
    overrides = set_options if isinstance(set_options, dict) else parse_set_options(set_options)
    return load_config(preset, config_file, overrides)


def expand(network: str | Network, batch: int, norm: str = "bn",
           cfg: HardwareConfig | None = None) -> TrainingGraph:
    """Load (if given a name) and expand a network into one training iteration."""
    net = network if isinstance(network, Network) else load_network(network, norm=norm)
    return expand_training(net, batch, cfg or make_config())


def describe_network(name: str, batch: int = 32, norm: str = "bn") -> dict[str, Any]:
    """The ``workloads show`` summary of a network as plain data."""
    return network_summary(expand(name, batch, norm))
