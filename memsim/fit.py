"""The largest batch and the longest sequence that fit, and the values the caching allocator's
fragmentation fails between two that fit.

Allocated bytes grow monotonically with batch and with sequence length, so the largest value whose
allocated bytes fit in the allocator's room (the bound) is found by doubling, then bisecting, on
the analytic peak (about a millisecond each). The allocator replay's verdict is not monotone: near
the limit a value can run out of memory by fragmentation where a larger one fits. So the replay is
run from the bound downward until SCAN_RUN values in a row fit; the answer is the largest value
below every failure met, with the values above it that fit and those that do not.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError, shown, suggest
from .predict import allocator_room, peak, predict
from .report import Report
from .workload import Workload

SEARCH_LIMIT = 1 << 24


FIELDS = ("batch", "seq")

# Values in a row the replay must find fitting, from the bound down, before the ones below are
# taken to fit: twice the longest such run above a failure over the grid of benchmarks/fit_grid.py
# (4, data/validation/fit-grid.csv: 204 model/GPU/sequence combinations, 14 not monotone).
SCAN_RUN = 8
# Failures in a row after which the scan stops stepping and bisects below them, taking the verdict
# there to be monotone: a long range of failures (a sequence length's, or the host's memory under
# offloading) costs a few predictions, not one each. On the grid, the longest run of failures over
# the largest batch was 19 (TinyLlama, autocast and checkpointing, H200, 2,048 tokens), and the
# bisection below it found the batch a full scan does.
SCAN_FAILURES = 8


@dataclass(frozen=True)
class Boundary:
    """Where a field's values stop fitting: every value from 1 to `largest` fits (0: not even 1);
    `fits_above` fit over it and `fails` do not (each over `largest`, up to `bound`, the largest
    value whose allocated bytes fit; values between the ones listed were not replayed)."""

    field: str
    largest: int
    bound: int
    fits_above: tuple[int, ...] = ()
    fails: tuple[int, ...] = ()
    # Why the failures fail: their allocated bytes fit, and the cached segments do not
    # ("fragmentation"), or a tier besides the GPU's is over its capacity ("the host's memory").
    cause: str = "fragmentation"

    def sentence(self) -> str:
        """'fits at 6 and 8; 7 runs out of memory by fragmentation': the values over the largest
        that fit and the failures between them; '' where nothing over the largest fits."""
        if not self.fits_above:
            return ""
        holes = [v for v in self.fails if v < self.fits_above[-1]]
        verb = "runs" if len(holes) == 1 else "run"
        return f"fits at {_listed((self.largest,) * (self.largest > 0) + self.fits_above)}; {_listed(holes)} {verb} out of memory by {self.cause}"


def largest_fitting(workload: Workload, field: str, limit: int = SEARCH_LIMIT) -> int:
    """The largest value of `field` (batch or seq) such that the workload fits with it and with
    every smaller value; 0 if none."""
    workload = Workload.parse(workload)
    if not isinstance(field, str) or field not in FIELDS:
        raise InputError(f"largest_fitting: field {shown(field)} is not one of {', '.join(FIELDS)}{suggest(str(field), FIELDS)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= SEARCH_LIMIT:
        raise InputError(f"largest_fitting: limit must be an integer from 1 to {SEARCH_LIMIT:,}; got {shown(limit)}")
    return boundary(workload, field, limit).largest


def boundary(workload: Workload, field: str, limit: int = SEARCH_LIMIT, known: dict[int, Report] | None = None) -> Boundary:
    """largest_fitting's answer with the values over it that fit and those that fail (arguments as
    largest_fitting checks them). `known`: reports already had (the workload's own value's); a
    known value that fails lowers the answer under it wherever the scan stopped."""
    room = allocator_room(workload.hardware)
    reports = dict(known or {})

    def allocated_fits(value: int) -> bool:
        return peak(workload.model_copy(update={field: value})).bytes <= room

    def fits(value: int) -> bool:
        if value not in reports:
            reports[value] = predict(workload.model_copy(update={field: value}))
        return reports[value].fits

    bound = _largest_true(allocated_fits, limit)
    largest = _scan_down(fits, bound)
    while failing := [v for v in reports if v <= largest and not reports[v].fits]:
        largest = _scan_down(fits, min(failing) - 1)
    above = sorted(v for v in reports if largest < v <= bound)
    fails = tuple(v for v in above if not reports[v].fits)
    host = any(h < 0 for v in fails for tier, h in reports[v].headroom_bytes.items() if tier != "gpu")
    return Boundary(field, largest, bound, tuple(v for v in above if reports[v].fits), fails, "the host's memory" if host else "fragmentation")


def _largest_true(pred, limit: int) -> int:
    """The largest value from 1 to `limit` where a monotone `pred` holds (true, then false), 0 if
    none: doubling, then bisecting."""
    if limit < 1 or not pred(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and pred(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:  # invariant: pred(lo); hi fails or is past the limit
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if pred(mid) else (lo, mid)
    return lo


def _scan_down(fits, top: int) -> int:
    """From `top` down, the replay's verdicts until SCAN_RUN values in a row fit: the largest
    value below every failure met. After SCAN_FAILURES failures in a row, bisect below them and
    scan on from the value found."""
    lowest_failure, run, failures = top + 1, 0, 0
    value = top
    while value >= 1 and run < SCAN_RUN:
        if fits(value):
            run, failures = run + 1, 0
        else:
            lowest_failure, run, failures = value, 0, failures + 1
            if failures >= SCAN_FAILURES:  # bisect below them, then scan down from what it finds
                return _scan_down(fits, _largest_true(fits, value - 1))
        value -= 1
    return lowest_failure - 1


def _listed(values) -> str:
    """(6,) -> '6'; (6, 8) -> '6 and 8'; (3, 4, 5, 9) -> '3-5 and 9'."""
    runs: list[list[int]] = []
    for v in sorted(set(values)):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    parts = [str(a) if a == b else f"{a}-{b}" if b > a + 1 else f"{a}, {b}" for a, b in runs]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
