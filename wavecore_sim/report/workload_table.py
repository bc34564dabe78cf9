"""The ``workloads show`` report: per-layer table and totals of a network at a batch size."""

from __future__ import annotations

from typing import Any

from ..training import DGRAD, FWD, WGRAD, TrainingGraph


def network_summary(graph: TrainingGraph) -> dict[str, Any]:
    """Everything ``workloads show`` prints, as plain data (the ``--json`` output)."""
    net, batch = graph.network, graph.batch
    per_layer_macs: dict[str, dict[str, int]] = {}
    for op in graph.ops:
        for g in graph.gemms(op, 1):
            per_layer_macs.setdefault(op.layer, {})[g.role] = g.macs
    act_bytes = {
        name: t.bytes_per_sample for name, t in graph.tensors.items() if t.kind == "activation"
    }
    layers = []
    for layer in net.layers:
        macs = per_layer_macs.get(layer.name, {})
        layers.append(
            {
                "name": layer.name,
                "kind": layer.kind + (f"/{layer.norm}" if layer.norm else ""),
                "inputs": list(layer.inputs),
                "in_shapes": [list(s) for s in layer.in_shapes],
                "out_shape": list(layer.out_shape),
                "params": layer.params,
                "fwd_macs_per_sample": macs.get(FWD, 0),
                "dgrad_macs_per_sample": macs.get(DGRAD, 0),
                "wgrad_macs_per_sample": macs.get(WGRAD, 0),
                "activation_bytes": act_bytes.get(f"A:{layer.name}", 0) * batch,
            }
        )
    totals = graph.macs_per_sample()
    fwd, bwd = totals[FWD], totals[DGRAD] + totals[WGRAD]
    return {
        "name": net.name,
        "source": net.source,
        "norm": net.norm,
        "batch": batch,
        "input_shape": list(net.input_shape),
        "params": net.params,
        "fwd_macs_per_sample": net.fwd_macs_per_sample,
        "bwd_macs_per_sample": bwd,
        "dgrad_macs_per_sample": totals[DGRAD],
        "wgrad_macs_per_sample": totals[WGRAD],
        "train_macs_per_sample": fwd + bwd,
        "fwd_macs_per_batch": fwd * batch,
        "bwd_macs_per_batch": bwd * batch,
        "activation_bytes": sum(act_bytes.values()) * batch,
        "saved_activation_bytes": graph.saved_bytes_per_sample() * batch,
        "layer_count": len(layers),
        "layers": layers,
    }


def _shape(s: list[int]) -> str:
    return "x".join(map(str, s))


def format_network_table(summary: dict[str, Any]) -> str:
    """Fixed-width per-layer table followed by totals."""
    rows = [
        (
            "layer",
            "kind",
            "input",
            "output",
            "params",
            "fwd MACs",
            "dgrad MACs",
            "wgrad MACs",
            "act bytes",
        )
    ]
    for ly in summary["layers"]:
        rows.append(
            (
                ly["name"],
                ly["kind"],
                ",".join(_shape(s) for s in ly["in_shapes"]),
                _shape(ly["out_shape"]),
                f"{ly['params']:,}",
                f"{ly['fwd_macs_per_sample']:,}",
                f"{ly['dgrad_macs_per_sample']:,}",
                f"{ly['wgrad_macs_per_sample']:,}",
                f"{ly['activation_bytes']:,}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 4 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    b = summary["batch"]
    fwd = summary["fwd_macs_per_sample"]
    ratio = f"{summary['train_macs_per_sample'] / fwd:.3f} x forward" if fwd else "no conv or fc"
    lines += [
        "",
        f"network {summary['name']} ({summary['norm']}), input "
        f"{_shape(summary['input_shape'])}, batch {b}, {summary['layer_count']} layers",
        f"parameters                 {summary['params']:,}",
        f"forward MACs               {summary['fwd_macs_per_sample']:,} per sample, "
        f"{summary['fwd_macs_per_batch']:,} per batch",
        f"backward MACs              {summary['bwd_macs_per_sample']:,} per sample "
        f"(dgrad {summary['dgrad_macs_per_sample']:,} + wgrad {summary['wgrad_macs_per_sample']:,})"
        f", {summary['bwd_macs_per_batch']:,} per batch",
        f"training MACs              {summary['train_macs_per_sample']:,} per sample ({ratio})",
        f"activation footprint       {summary['activation_bytes']:,} bytes "
        f"(all layer outputs, batch {b})",
        f"saved for backward         {summary['saved_activation_bytes']:,} bytes",
    ]
    return "\n".join(lines)
