"""The allocator model against torch's own recorded histories (H200, torch 2.11, at an emulated
capacity; benchmarks/allocator_trace.py record): every request and free of a build, a warm-up and
the timed steps, each free returning its own block. The model must make torch's segments, in
order, reach torch's peak reserved and run out of memory exactly where torch did."""

import gzip
import json
from pathlib import Path

import pytest

from memsim.allocator import emulated_limit
from memsim.allocator_history import replay_history

TRACES = sorted((Path(__file__).parent.parent / "data/validation/allocator-traces-h200").glob("*.json.gz"))


def _torch_peak_reserved(events) -> int:
    reserved = peak = 0
    for action, _, size in events:
        reserved += size if action == "segment_alloc" else -size if action == "segment_free" else 0
        peak = max(peak, reserved)
    return peak


@pytest.mark.parametrize("path", TRACES, ids=[p.name.split(".json")[0] for p in TRACES])
def test_torch_history_replays_to_torchs_segments_peak_and_verdict(path):
    with gzip.open(path, "rt") as f:
        body = json.load(f)
    limit = emulated_limit(body["emulate_capacity_bytes"], body["context_bytes"])  # as the executor sets it
    got = replay_history([tuple(e) for e in body["events"]], limit)
    assert got.torch_fits == body["fits"]
    assert got.agrees, (got.fits, got.torch_fits, len(got.segments), len(got.torch_segments))
    if got.fits:
        assert got.peak_reserved == _torch_peak_reserved(body["events"])


def test_the_histories_include_a_fit_and_an_out_of_memory():
    verdicts = {json.load(gzip.open(p, "rt"))["fits"] for p in TRACES}
    assert verdicts == {True, False}
