"""Walk a Program: the peak of live bytes and the breakdown by category at that instant."""

from __future__ import annotations

from dataclasses import dataclass

from .params import cuda_rounded
from .program import Program
from .tape import CATEGORIES, GPU, on_tier


@dataclass
class Peak:
    bytes: int
    breakdown: dict[str, int]
    segment: str  # where it happens
    final_bytes: int  # live at the end


def simulate(program: Program, exclude: tuple[str, ...] = (), rounding=cuda_rounded, tier: str = GPU) -> Peak:
    """Peak live bytes over the program on one memory tier. Categories in `exclude` are left out
    (a fake-tensor trace has no kernel workspaces, so comparisons with it exclude them)."""
    counted = {on_tier(c, tier): c for c in CATEGORIES if c not in exclude}
    live = dict.fromkeys(CATEGORIES, 0)
    total = 0
    rounded: dict[int, int] = {}  # a program repeats few distinct sizes: round each once
    best = (-1, dict(live), "")
    for seg in program.in_step_order():
        # One pass over the segment: its net change and the instant of its internal maximum.
        run = dict.fromkeys(CATEGORIES, 0)
        run_total = 0
        seg_max, seg_at = 0, dict(run)
        for event in seg.events:
            nbytes, event_cat, sign = event[0], event[1], event[2]
            cat = counted.get(event_cat)
            if not sign or cat is None:  # a kernel's work (OpCost), another tier, or left out
                continue
            r = rounded.get(nbytes)
            if r is None:
                r = rounded[nbytes] = rounding(nbytes)
            delta = sign * r
            run[cat] += delta
            run_total += delta
            if sign > 0 and run_total > seg_max:
                seg_max, seg_at = run_total, dict(run)
        # Iteration j starts at total + j * run_total; the highest is the first or the last.
        j = seg.repeat - 1 if run_total > 0 else 0
        candidate = total + j * run_total + seg_max
        if candidate > best[0]:
            at = {c: live[c] + j * run[c] + seg_at[c] for c in CATEGORIES}
            best = (candidate, at, seg.name)
        total += seg.repeat * run_total
        for c in CATEGORIES:
            live[c] += seg.repeat * run[c]
    return Peak(max(best[0], 0), best[1], best[2], total)
