"""A forward that keeps every position's logits (model(input_ids)) against generate's prefill."""

import pytest

import memsim

W = dict(model="qwen2.5-0.5b", hardware="80GiB", task="prefill", batch=4, seq=2048)


def test_every_positions_logits_are_held():
    last, every = memsim.predict(W), memsim.predict(dict(W, logits="all"))
    vocab = memsim.load_model("qwen2.5-0.5b").vocab_size
    logits = W["batch"] * W["seq"] * vocab * 2  # bf16, no upcast without labels
    assert every.breakdown_bytes["activations"] >= logits > last.breakdown_bytes["activations"]
    assert every.peak["gpu"].allocated_bytes - last.peak["gpu"].allocated_bytes > 0.8 * logits


def test_logits_all_is_for_a_forward_only():
    with pytest.raises(memsim.InputError, match="logits: all applies to task=prefill"):
        memsim.Workload.parse(dict(W, task="train", logits="all"))
