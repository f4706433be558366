"""Make a CPU (fake-tensor) run allocate what the same program allocates on a CUDA GPU.

On a CPU, `scaled_dot_product_attention` dispatches to CPU kernels whose saved tensors differ from
CUDA's. Here it goes to the kernel CUDA's dispatcher picks, in CUDA's priority order
(aten/src/ATen/native/transformers/cuda/sdp_utils.cpp, torch 2.5-2.13: flash, then memory-efficient,
then math; cuDNN attention is not on by default). Fake tensors run each kernel's meta function, so the
outputs and the tensors autograd saves are CUDA's.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

aten = torch.ops.aten

# Head dims the CUDA kernels accept (sdp_utils.cpp: check_head_dim_size_flash / _mem_efficient).
FLASH_MAX_HEAD_DIM = 256
EFFICIENT_MAX_HEAD_DIM = 256  # sm80+; must also be a multiple of 8 (16-byte alignment of fp16 rows)


def sdpa_backend(q, k, v, attn_mask, dropout_p, enable_gqa) -> str:
    """The SDPA backend CUDA's dispatcher picks for these inputs: flash, efficient or math."""
    head_dim = q.shape[-1]
    same_heads = q.shape[-3] == k.shape[-3]
    if (
        q.dtype in (torch.float16, torch.bfloat16)
        and attn_mask is None
        and head_dim <= FLASH_MAX_HEAD_DIM
        and head_dim % 8 == 0
        and (same_heads or enable_gqa)
    ):
        return "flash"
    if head_dim <= EFFICIENT_MAX_HEAD_DIM and head_dim % 8 == 0 and same_heads and not enable_gqa:
        return "efficient"
    return "math"


def cuda_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    backend = sdpa_backend(q, k, v, attn_mask, dropout_p, enable_gqa)
    if backend == "flash":
        return aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False, scale=scale)[0]
    if backend == "efficient":
        needs_lse = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        return aten._scaled_dot_product_efficient_attention(
            q, k, v, attn_mask, needs_lse, dropout_p, is_causal, scale=scale
        )[0]
    return aten._scaled_dot_product_attention_math(
        q, k, v, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa
    )[0]


@contextlib.contextmanager
def cuda_dispatch():
    """Route SDPA to CUDA's kernel choice for the duration."""
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = cuda_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
