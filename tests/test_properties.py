"""Properties every prediction keeps, over generated workloads (Hypothesis): allocated bytes grow
with the batch and the sequence (reserved need not: fragmentation), the breakdown sums to the peak,
the caching allocator reserves at least what is allocated, and every batch up to the largest that
fits does fit."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memsim import Workload, largest_fitting, peak, predict
from memsim.allocator import replay
from memsim.executors.matrix import workloads
from memsim.predict import VERDICT_STEPS, step_config
from memsim.runtimes.hf_steps import build_program
from memsim.simulator import simulate

MODELS = ["smollm2-135m", "qwen2.5-0.5b", "tinyllama-1.1b"]
TRAINING = [
    {"precision": {"weights": "bf16", "compute": "bf16"}},
    {"precision": {"weights": "bf16", "compute": "bf16"}, "methods": ["activation-checkpointing"]},
    {"precision": {"weights": "fp32", "compute": "bf16"}, "methods": ["activation-checkpointing"]},
    {"precision": {"weights": "fp32", "compute": "bf16"}},
    {"precision": {"weights": "bf16", "compute": "bf16"}, "methods": [{"name": "lora", "rank": 8}]},
    {"precision": {"weights": "fp32", "compute": "fp32"}, "optimizer": {"name": "sgd-momentum"}},
]
INFERENCE = [{"task": "prefill"}, {"task": "decode"}, {"task": "generate", "generate": 8}]
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def workloads_of(draw, kinds=TRAINING + INFERENCE, hardware="h200"):
    fields = draw(st.sampled_from(kinds))
    return Workload.parse({"model": draw(st.sampled_from(MODELS)), "hardware": hardware,
                           "batch": draw(st.integers(1, 16)), "seq": draw(st.integers(16, 2048)), **fields})


@FAST
@given(workloads_of(), st.integers(1, 16), st.sampled_from(["batch", "seq"]))
def test_allocated_bytes_grow_with_batch_and_sequence(w, more, field):
    bigger = w.model_copy(update={field: getattr(w, field) + more})
    assert peak(w).bytes <= peak(bigger).bytes


@FAST
@given(workloads_of())
def test_breakdown_sums_to_the_peak(w):
    report = predict(w)
    assert sum(report.breakdown_bytes.values()) == report.peak["gpu"].allocated_bytes


@FAST
@given(workloads_of(kinds=TRAINING + INFERENCE + [{"precision": {"weights": "fp32", "compute": "bf16"},
                                                   "methods": ["activation-checkpointing"], "model": "llama-3-8b"}]),
       st.sampled_from(["h200", "rtx-4090", "2048GiB"]))
def test_reserved_is_never_below_allocated(w, hardware):
    p = predict(w.model_copy(update={"hardware": hardware})).peak["gpu"]
    assert p.allocated_bytes <= p.reserved_bytes <= p.device_bytes


@FAST
@given(workloads_of(kinds=TRAINING))
def test_the_allocator_replay_holds_every_byte_the_walk_counts(w):
    """What reserved >= allocated rests on: the replay's steady step frees no block the walk
    (memsim.simulator) still counts live, whatever the events' frees stand for."""
    program = build_program(step_config(w))
    assert replay(program, steps=VERDICT_STEPS).peak_allocated >= simulate(program).bytes


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(MODELS), st.sampled_from(TRAINING[:3]), st.sampled_from(["4GiB", "6GiB", "8GiB"]),
       st.sampled_from([512, 1024, 2048]))
def test_every_batch_up_to_the_largest_fits(model, fields, hardware, seq):
    w = Workload.parse({"model": model, "hardware": hardware, "seq": seq, **fields})
    largest = largest_fitting(w, "batch")
    assert all(predict(w.model_copy(update={"batch": b})).fits for b in range(1, largest + 1))
    assert not predict(w.model_copy(update={"batch": largest + 1})).fits


MATRIX = workloads()


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(MATRIX), st.sampled_from([1, 4, 16, 64]))
def test_reserved_is_never_below_allocated_over_the_traced_matrix(case, scale):
    """The traced matrix's workloads (memsim.executors.matrix: every family, task, precision,
    optimizer and method), predicted analytically, at their batch and larger ones."""
    _, fields = case
    p = predict({**fields, "batch": fields["batch"] * scale}).peak["gpu"]
    assert p.allocated_bytes <= p.reserved_bytes


@pytest.mark.parametrize("case", MATRIX, ids=[c for c, _ in MATRIX])
def test_every_traced_matrix_workload_reserves_at_least_its_allocated_bytes(case):
    p = predict(case[1]).peak["gpu"]
    assert p.allocated_bytes <= p.reserved_bytes
