"""The GPU-dependent choices torch makes (memsim.runtimes.torch_cuda), and that predictions follow the
hardware's compute capability. The analytic-vs-traced matrix (test_traced.py) checks both sides of
each choice on sm80 and sm90; these pin the rule itself."""

import pytest

from memsim import predict
from memsim.runtimes.torch_cuda import cublas_workspace_bytes, padded_head_dim, sdpa_backend

MiB = 2**20


@pytest.mark.parametrize("sm, half, head_dim, masked, gqa, expected", [
    (90, True, 128, False, True, "cudnn"),      # H100: cuDNN first, GQA passed through
    (90, True, 256, True, False, "cudnn"),      # Gemma-2's masked sliding layers on an H100 (measured)
    (90, True, 100, False, False, "flash"),     # OpenLLaMA: cuDNN refuses head dim 100, flash pads it (measured)
    (80, True, 128, False, True, "flash"),      # A100: flash takes GQA
    (80, True, 256, True, False, "efficient"),  # a mask rules flash out
    (89, True, 100, True, False, "math"),       # a mask and an unaligned head dim
    (90, False, 128, False, False, "efficient"),  # fp32: no flash, no cuDNN
    (90, False, 128, False, True, "math"),      # fp32 with grouped KV heads
    (75, True, 128, False, False, "efficient"),  # T4: no flash before sm80
])
def test_sdpa_backend(sm, half, head_dim, masked, gqa, expected):
    assert sdpa_backend(sm, half, head_dim, masked, gqa) == expected


def test_padded_head_dim():
    assert [padded_head_dim(d) for d in (64, 100, 104, 120, 250)] == [64, 104, 104, 120, 256]


def test_cublas_workspace_per_thread_and_generation():
    assert cublas_workspace_bytes(90) == 32 * MiB
    assert cublas_workspace_bytes(80) == 8 * MiB + 128 * 1024

    def ws(hardware, task):
        return predict(dict(model="tinyllama-1.1b", hardware=hardware, task=task, batch=1, seq=128)).breakdown_bytes["workspace"]

    # training has two cuBLAS handles (the caller's thread and autograd's), inference one
    assert ws("h100-sxm-80gb", "prefill") == 32 * MiB
    assert ws("a100-80gb", "prefill") == 8 * MiB + 128 * 1024
    assert ws("h100-sxm-80gb", "train") - ws("h100-sxm-80gb", "prefill") >= 32 * MiB


def test_masked_attention_depends_on_the_gpu():
    """Gemma-2 past its window: cuDNN on an H100 keeps the [b, 1, q, kv] bias; the memory-efficient
    kernel on an A100 keeps a padded [b, h, q, kv16] copy, so the A100 predicts more."""
    w = dict(model="gemma-2-2b", batch=1, seq=6008)
    h100 = predict(dict(w, hardware="h100-sxm-80gb")).breakdown_bytes["activations"]
    a100 = predict(dict(w, hardware="a100-80gb")).breakdown_bytes["activations"]
    # 13 sliding layers each keep a padded [1, 8, 6008, 6016] bias instead of a [1, 1, 6008, 6008] one
    assert a100 - h100 == pytest.approx(13 * (8 * 6008 * 6016 - 6008 * 6008) * 2, rel=0.01)


@pytest.mark.parametrize("model, batch, seq, block", [
    ("qwen2.5-1.5b", 26, 1024, 328_433_920),  # torch's allocator history on an H200, once a layer
    ("llama-3-8b", 5, 512, 84_214_016),
])
def test_cudnn_attention_backward_holds_one_workspace_block(model, batch, seq, block):
    """cuDNN's backward (sm90) takes softmax_d, the fp32 dq accumulator and, with GQA, the per-head
    dk and dv in one block of their sum and 256 B (data/validation/allocator-traces-h200/); flash
    (sm80) allocates them one by one."""
    from memsim import Workload
    from memsim.predict import build_program, step_config
    from memsim.tape import WORKSPACE

    def workspace_sizes(hardware):
        w = Workload(model=model, hardware=hardware, batch=batch, seq=seq)
        return {e[0] for seg in build_program(step_config(w)).segments for e in seg.events if e[1] == WORKSPACE and e[2] > 0}

    assert block in workspace_sizes("h200")
    assert block not in workspace_sizes("a100-80gb")
