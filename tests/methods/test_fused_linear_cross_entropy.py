"""Fused linear cross-entropy (Liger, cut-cross-entropy): the loss without the logits."""

import pytest

import memsim
from memsim.methods.fused_linear_cross_entropy import liger_chunk
from memsim.predict import step_config
from memsim.runtimes.hf_steps import build_program

QWEN = dict(model="qwen2.5-0.5b", hardware="h200", batch=4, seq=1024, optimizer="sgd")


def _largest_allocation(workload: dict) -> int:
    program = build_program(step_config(memsim.Workload.parse(workload)))
    return max(n for seg in program.segments if not seg.resident for n, _, sign, *_ in seg.events if sign > 0)


@pytest.mark.parametrize("impl", ["liger", "cce"])
def test_no_tensor_the_size_of_the_logits(impl):
    m = memsim.load_model(QWEN["model"])
    logits = QWEN["batch"] * QWEN["seq"] * m.vocab_size * 2
    assert _largest_allocation(QWEN) >= logits  # transformers' loss holds them
    fused = dict(QWEN, methods=[{"name": "fused-linear-cross-entropy", "impl": impl}])
    assert _largest_allocation(fused) < logits / 4


@pytest.mark.parametrize("impl", ["liger", "cce"])
def test_a_large_vocabulary_model_saves_its_logits_and_their_upcast(impl):
    plain = memsim.peak(dict(QWEN, methods=["activation-checkpointing"])).bytes
    fused = memsim.peak(dict(QWEN, methods=["activation-checkpointing", {"name": "fused-linear-cross-entropy", "impl": impl}])).bytes
    m = memsim.load_model(QWEN["model"])
    assert plain - fused > QWEN["batch"] * QWEN["seq"] * m.vocab_size * (2 + 4)  # bf16 logits and their fp32 copy


def test_liger_chunk_follows_its_rule():
    # 8,192 tokens, H 896, V 151,936: inc_factor ceil(V / H) = 170, ceil(8192 / 170) = 49 -> 64 rows.
    assert liger_chunk(8192, 896, 151936) == 64
    assert liger_chunk(3, 4096, 32000) == 1 and liger_chunk(100, 4096, 4096) == 100  # never above the tokens


def test_a_trained_head_gets_its_gradient_from_the_forward():
    """With the head trained (full fine-tuning), Liger's forward allocates the head's gradient:
    the peak of the loss's forward holds it; with LoRA (head frozen) it does not exist."""
    full = memsim.predict(dict(QWEN, methods=[{"name": "fused-linear-cross-entropy"}]))
    lora = memsim.predict(dict(QWEN, methods=[{"name": "fused-linear-cross-entropy"}, "lora"]))
    assert full.peak["gpu"].allocated_bytes > lora.peak["gpu"].allocated_bytes


@pytest.mark.parametrize("workload, expected", [
    (dict(precision={"weights": "fp32", "compute": "bf16"}), "autocast"),
    (dict(precision={"weights": "fp32", "compute": "fp32"}, methods=[{"name": "fused-linear-cross-entropy", "impl": "cce"}]),
     "methods.fused-linear-cross-entropy.impl: cce's backward needs 16-bit"),
    (dict(model="gemma-2-2b"), "final_logit_softcapping"),
    (dict(optimizer="sgd", methods=["fused-linear-cross-entropy", "mezo"]), "cannot be combined with"),
    (dict(methods=[{"name": "fused-linear-cross-entropy", "impl": "torch"}]), "methods.fused-linear-cross-entropy.impl"),
    (dict(task="prefill"), "applies to task=train"),
])
def test_what_it_refuses(workload, expected):
    w = dict(model="smollm2-135m", methods=["fused-linear-cross-entropy"]) | workload
    with pytest.raises(memsim.InputError, match=expected):
        memsim.predict(w)
