"""Terminal digest of a compiled plan: groups with footprint, planned DRAM traffic and the
DRAM footprint (also used by the run digest)."""

from __future__ import annotations

from typing import Any


def fmt_binary(n: float) -> str:
    """Bytes in binary multiples with the unit: ``512 B``, ``3.10 KiB``, ``10.46 GiB``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.2f} {unit}"
    return f"{int(n)} B"


def format_footprint(peak: int | None, by_kind: dict[str, int]) -> str | None:
    """``10.46 GiB peak (saved_activations 10.05 GiB, ...)``: kinds live at the peak, largest
    first; None without a footprint."""
    if peak is None:
        return None
    kinds = sorted(((v, k) for k, v in by_kind.items() if v), reverse=True)
    inner = ", ".join(f"{k} {fmt_binary(v)}" for v, k in kinds)
    return f"{fmt_binary(peak)} peak" + (f" ({inner})" if inner else "")


def format_plan(plan: dict[str, Any]) -> str:
    cap = plan["gbuf_bytes"]
    lines = [
        f"{plan['network']} batch {plan['batch']} schedule {plan['schedule']} "
        f"({plan['norm']}): {len(plan['groups'])} groups, {plan['instructions']:,} "
        "instructions",
        "",
        f"{'group':>5}  {'layers':>6}  {'first layer':<28} {'last layer':<28} "
        f"{'sub-batch':>9}  {'footprint':>10}  {'of buffer':>9}  on chip",
    ]
    for g in plan["groups"]:
        keep = (
            ",".join(
                x for x, on in (("W", g["weights_resident"]), ("dW", g["wgrad_resident"])) if on
            )
            or "-"
        )
        lines.append(
            f"{g['index']:>5}  {len(g['layers']):>6}  {g['layers'][0][:28]:<28} "
            f"{g['layers'][-1][:28]:<28} {g['sub_batch']:>9}  "
            f"{g['footprint_bytes']:>10,}  {g['footprint_bytes'] / cap:>9.0%}  {keep}"
        )
    kinds = plan["dram_by_kind"]
    lines += ["", f"planned DRAM traffic (bytes)   {'read':>15} {'write':>15}"]
    for kind in kinds["read"]:
        lines.append(f"  {kind:<28} {kinds['read'][kind]:>15,} {kinds['write'][kind]:>15,}")
    lines.append(f"  {'total':<28} {plan['dram_read_bytes']:>15,} {plan['dram_write_bytes']:>15,}")
    footprint = format_footprint(
        plan.get("dram_peak_bytes"), plan.get("dram_footprint_by_kind", {})
    )
    if footprint:
        lines += ["", f"DRAM footprint  {footprint}"]
    for note in plan.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
