"""Terminal digest of a compiled plan: groups with footprint, planned DRAM traffic and the
DRAM footprint (also used by the run digest)."""

from __future__ import annotations

from typing import Any

from ..schedule import RECOMPUTING


def plan_choices(meta: dict[str, Any], recompute_flags: list[bool | None]) -> dict[str, Any]:
    """A plan's ``recompute`` mode (on the schedules that can recompute), ``objective``
    (``mbs-opt``) and ``recomputed_groups`` (how many groups recompute their forward in the
    backward pass), each None where it does not apply; ``recomputed_groups`` also when a trace
    written before groups recorded it does not say (``recompute_flags``: per group, None when
    unknown). A program compiled before ``--recompute`` existed recomputed nothing."""
    schedule = meta.get("schedule")
    objective = meta.get("objective") if schedule == "mbs-opt" else None
    # --referee (mbs-opt): the plan chosen and every simulated candidate, else None
    refereed = {"refereed": meta.get("refereed"), "referee": meta.get("referee")}
    if schedule not in RECOMPUTING:
        return {"recompute": None, "objective": objective, "recomputed_groups": None, **refereed}
    known = None not in recompute_flags
    return {
        "recompute": meta.get("recompute", "none"),
        "objective": objective,
        "recomputed_groups": sum(map(bool, recompute_flags)) if known else None,
        **refereed,
    }


def format_choices(choices: dict[str, Any], groups: int) -> str:
    """``objective time, recompute auto: 3 of 17 groups recompute``: what applies of
    :func:`plan_choices`, or ``""``."""
    parts = []
    if choices.get("objective"):
        parts.append(f"objective {choices['objective']}")
    mode = choices.get("recompute")
    if mode:
        count = choices.get("recomputed_groups")
        if mode == "none":
            parts.append("recompute none")
        elif count is None:
            parts.append(f"recompute {mode} (groups recomputing not recorded in this trace)")
        else:
            parts.append(f"recompute {mode}: {count} of {groups} groups recompute")
    if choices.get("refereed"):
        ran = sum(1 for row in choices.get("referee") or [] if row.get("error") is None)
        parts.append(f"refereed: {choices['refereed']!r}, best of {ran} simulated plans")
    return ", ".join(parts)


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
    choices = plan_choices(plan, [g.get("recompute", False) for g in plan["groups"]])
    said = format_choices(choices, len(plan["groups"]))
    recomputing = choices["recompute"] is not None
    lines = [
        f"{plan['network']} batch {plan['batch']} schedule {plan['schedule']} "
        f"({plan['norm']}): {len(plan['groups'])} groups, {plan['instructions']:,} "
        "instructions",
        *([said] if said else []),
        "",
        f"{'group':>5}  {'layers':>6}  {'first layer':<28} {'last layer':<28} "
        f"{'sub-batch':>9}  {'footprint':>10}  {'of buffer':>9}  on chip"
        + ("  recompute" if recomputing else ""),
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
            f"{g['footprint_bytes']:>10,}  {g['footprint_bytes'] / cap:>9.0%}  "
            + (f"{keep:<7}  {_yes_no(g.get('recompute'))}" if recomputing else keep)
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


def _yes_no(flag: bool | None) -> str:
    return "?" if flag is None else "yes" if flag else "-"
