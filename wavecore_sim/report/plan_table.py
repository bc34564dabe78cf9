"""Terminal digest of a compiled plan: groups with footprint, and planned DRAM traffic."""

from __future__ import annotations

from typing import Any


def format_plan(plan: dict[str, Any]) -> str:
    cap = plan["gbuf_bytes"]
    lines = [f"{plan['network']} batch {plan['batch']} schedule {plan['schedule']} "
             f"({plan['norm']}): {len(plan['groups'])} groups, {plan['instructions']:,} "
             "instructions", "",
             f"{'group':>5}  {'layers':>6}  {'first layer':<28} {'last layer':<28} "
             f"{'sub-batch':>9}  {'footprint':>10}  {'of buffer':>9}  on chip"]
    for g in plan["groups"]:
        keep = ",".join(x for x, on in (("W", g["weights_resident"]), ("dW", g["wgrad_resident"]))
                        if on) or "-"
        lines.append(f"{g['index']:>5}  {len(g['layers']):>6}  {g['layers'][0][:28]:<28} "
                     f"{g['layers'][-1][:28]:<28} {g['sub_batch']:>9}  "
                     f"{g['footprint_bytes']:>10,}  {g['footprint_bytes'] / cap:>9.0%}  {keep}")
    kinds = plan["dram_by_kind"]
    lines += ["", f"planned DRAM traffic (bytes)   {'read':>15} {'write':>15}"]
    for kind in kinds["read"]:
        lines.append(f"  {kind:<28} {kinds['read'][kind]:>15,} {kinds['write'][kind]:>15,}")
    lines.append(f"  {'total':<28} {plan['dram_read_bytes']:>15,} {plan['dram_write_bytes']:>15,}")
    for note in plan.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
