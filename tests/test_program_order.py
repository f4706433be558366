"""The Program's order of large requests against torch's recorded allocator histories (H200, torch
2.11; data/validation/allocator-traces-h200, recorded by benchmarks/allocator_trace.py, listed by
memsim.allocator_history): where the requests come in another order, the caching allocator's blocks
land elsewhere and the verdict near the limit follows. Checked over a window from the final norm's backward through the last checkpointed layer's
recompute to its first weight gradient: SDPA's casts and output, autocast's weight and input
casts, and the recompute's early stop (no down_proj output, the residual branch's gradient cast
before the rerun)."""

import gzip
import json
from pathlib import Path

import pytest

from memsim.allocator import rounded
from memsim.allocator_history import large_requests, program_requests
from memsim.validate import load_suite

ROOT = Path(__file__).parent.parent

SUITE = ROOT / "data/suites/fit-boundary-h200.yaml"
TRACES = ROOT / "data/validation/allocator-traces-h200"
# (history, the first weight gradient's bytes that ends the window, allocations before it)
WINDOWS = [
    ("openllama3b-amp-ckpt-h200cap-b60s2048", 8640 * 3200 * 4, 45),  # fp32 down_proj.weight's gradient
    ("qwen7b-ckpt-h200cap-b18s2048", 18944 * 3584 * 2, 28),  # bf16 down_proj.weight's gradient
]


def _window(allocations: list[int], end_bytes: int, before: int) -> list[int]:
    end = next(i for i, n in enumerate(allocations) if n == rounded(end_bytes))
    return allocations[end - before:end + 1]


@pytest.mark.parametrize("case_id,end_bytes,before", WINDOWS, ids=[w[0] for w in WINDOWS])
def test_program_allocates_in_torchs_order_through_loss_and_last_recompute(case_id, end_bytes, before):
    with gzip.open(TRACES / f"{case_id}.json.gz", "rt") as f:
        body = json.load(f)
    _, cases = load_suite(str(SUITE))
    workload = next(c for c in cases if c.id == case_id).workload
    marks = body["step_marks"]
    torch_step = [rounded(n) for sign, n in large_requests(body["events"], marks[1], marks[2]) if sign == "+"]
    program_step = [n for sign, n in program_requests(workload) if sign == "+"]
    assert _window(program_step, end_bytes, before) == _window(torch_step, end_bytes, before)
