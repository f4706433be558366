"""MeZO: two no-grad forwards a step, no gradients, no optimizer state."""

import pytest

import memsim

W = dict(model="llama-3-8b", hardware="h200", batch=2, seq=2048, optimizer="sgd")


def test_it_holds_weights_and_a_forward_but_no_gradients():
    r = memsim.predict(dict(W, methods=["mezo"]))
    assert r.breakdown_bytes["gradients"] == 0 and r.breakdown_bytes["optimizer_state"] == 0
    assert r.peak["gpu"].allocated_bytes < 0.5 * memsim.predict(W).peak["gpu"].allocated_bytes


def test_the_loss_keeps_every_positions_fp32_log_probabilities():
    r = memsim.predict(dict(W, methods=["mezo"]))
    vocab = memsim.load_model("llama-3-8b").vocab_size
    assert r.breakdown_bytes["activations"] >= 2 * 2048 * vocab * 4  # log_softmax's output, fp32


def test_it_keeps_no_optimizer_state():
    with pytest.raises(memsim.InputError, match="methods.mezo: keeps no optimizer state"):
        memsim.predict(dict(W, optimizer="adamw", methods=["mezo"]))
    with pytest.raises(memsim.InputError, match="cannot be combined"):
        memsim.Workload.parse(dict(W, methods=["mezo", "lora"]))
