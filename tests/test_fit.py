"""`fit`'s largest batch: every batch up to it fits, the ones over it that fit are named, and the
workload's own verdict never contradicts it."""

import json

from typer.testing import CliRunner

from memsim import Workload, largest_fitting, predict
from memsim.cli import app
from memsim.fit import SCAN_FAILURES, SCAN_RUN, _largest_true, _listed, _scan_down, boundary

runner = CliRunner()

# Measured on an H200 capped to an A100-80GB's allocator limit (issue 15's runs): Llama-3-8B
# training at 512 tokens ran at batch 6 and 8 and ran out of memory at 7, in its second step.
A100_FRAGMENTED = dict(model="llama-3-8b", hardware="h200@a100-80gb", seq=512)


def test_a_batch_failing_between_two_that_fit_is_named():
    b = boundary(Workload.parse(A100_FRAGMENTED), "batch")
    assert (b.largest, b.fits_above, b.fails, b.cause) == (6, (8,), (7,), "fragmentation")
    assert b.sentence() == "fits at 6 and 8; 7 runs out of memory by fragmentation"
    assert largest_fitting(Workload.parse(A100_FRAGMENTED), "batch") == 6


def test_the_workloads_own_verdict_and_the_largest_batch_agree():
    w = Workload.parse(A100_FRAGMENTED)
    for batch in range(1, boundary(w, "batch").bound + 2):
        own = w.model_copy(update={"batch": batch})
        report = predict(own)
        b = boundary(own, "batch", known={batch: report})
        if report.fits:
            assert batch <= b.largest or batch in b.fits_above
        else:
            assert batch > b.largest and (batch in b.fails or batch > b.bound)


def test_fit_says_the_batch_fails_by_fragmentation():
    r = runner.invoke(app, ["fit", "llama-3-8b", "-H", "h200@a100-80gb", "-s", "512", "-b", "7"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "does not fit (its tensors fit; the allocator runs out of memory by fragmentation)" in text
    assert "largest batch that fits: 6 (fits at 6 and 8; 7 runs out of memory by fragmentation)" in text


def test_fit_json_names_the_batches_over_the_largest():
    r = runner.invoke(app, ["fit", "llama-3-8b", "-H", "h200@a100-80gb", "-s", "512", "-b", "8", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["fits"] and data["largest"]["batch"] == 6
    assert data["fits_above_largest"]["batch"] == [8] and data["fails_above_largest"]["batch"] == [7]


def test_monotone_search_is_exact_at_any_limit():
    for limit in (1, 7, 10, 11, 1000):
        assert _largest_true(lambda v: v <= 10, limit) == min(10, limit)
    assert _largest_true(lambda v: False, 100) == 0


def test_scan_stops_after_a_run_of_fits_and_bisects_a_long_failure():
    holes = {7}
    assert _scan_down(lambda v: v <= 9 and v not in holes, 9) == 6
    # a failure under SCAN_RUN fits in a row is below where the scan stops: not seen
    deep = 9 - SCAN_RUN - 2
    assert _scan_down(lambda v: v <= 9 and v != deep, 9) == 9
    # a long run of failures (a monotone limit other than the allocator's): bisected, not stepped
    calls = []
    assert _scan_down(lambda v: calls.append(v) or v <= 20, 4000) == 20
    assert len(calls) < SCAN_FAILURES + 30


def test_values_are_listed_in_runs():
    assert _listed([7]) == "7"
    assert _listed([6, 8]) == "6 and 8"
    assert _listed([3, 4, 5, 9, 10]) == "3-5 and 9, 10"
