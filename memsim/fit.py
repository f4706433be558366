"""The largest batch and the longest sequence that fit: an integer root-find on `fits`.

Peak memory grows monotonically with batch and with sequence length, so the boundary is found by
doubling until it no longer fits, then bisecting: about 2 log2(answer) predictions.
"""

from __future__ import annotations

from .allocator import CUDA_CONTEXT_BYTES
from .catalog import load_hardware
from .predict import peak, predict
from .workload import Workload

SEARCH_LIMIT = 1 << 24


def largest_fitting(workload: Workload, field: str, limit: int = SEARCH_LIMIT) -> int:
    """The largest value of `field` (batch or seq) with which the workload fits; 0 if none."""

    room = load_hardware(workload.hardware).usable_bytes - CUDA_CONTEXT_BYTES

    def fits(value: int) -> bool:
        w = workload.model_copy(update={field: value})
        # Allocated bytes under the allocator's room are necessary; only then replay the allocator.
        return peak(w).bytes <= room and predict(w).fits

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    if hi > limit:
        return lo
    while hi - lo > 1:  # invariant: fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo
