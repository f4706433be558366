"""Make a CPU (fake-tensor) run allocate what the same program allocates on a CUDA GPU.

On a CPU, `scaled_dot_product_attention` dispatches to CPU kernels whose saved tensors differ from
CUDA's. Here it goes to the kernel CUDA's dispatcher picks, in CUDA's priority order
(aten/src/ATen/native/transformers/cuda/sdp_utils.cpp, torch 2.5-2.13: flash, then memory-efficient,
then math; cuDNN attention is not on by default), with the mask preprocessing scaled_dot_product_attention
does first (attention.cpp). Fake tensors run each kernel's meta function, so the
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
MEM_EFF_ALIGNMENT = 16  # attention.cpp preprocess_mask: the bias's last dim and strides, in elements


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


def additive_mask(mask, dtype):
    """attention.cpp convert_boolean_attn_mask: a boolean mask becomes zeros_like(mask, dtype) with
    -inf filled where it is False (the efficient and math backends take it in this form)."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    out = torch.zeros_like(mask, dtype=dtype)
    out.masked_fill_(mask.logical_not(), float("-inf"))
    return out


def efficient_bias(mask, q, k):
    """attention.cpp preprocess_mask: expanded to [b, h, q, k]; a last dim that is not a multiple of
    16 is padded (a copy at [b, h, q, k16]) and sliced back; an unaligned stride makes it contiguous."""
    m = mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if m.shape[-1] % MEM_EFF_ALIGNMENT:
        return F.pad(m, (0, MEM_EFF_ALIGNMENT - m.shape[-1] % MEM_EFF_ALIGNMENT))[..., : m.shape[-1]]
    if any(st % MEM_EFF_ALIGNMENT for st in m.stride()[:3]):
        return m.contiguous()
    return m


def cuda_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    backend = sdpa_backend(q, k, v, attn_mask, dropout_p, enable_gqa)
    if backend == "flash":
        return aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False, scale=scale)[0]
    attn_mask = additive_mask(attn_mask, q.dtype)
    if backend == "efficient":
        needs_lse = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        if attn_mask is not None:  # attn_mask.value() = preprocess_mask(...): the unpadded one goes
            attn_mask = efficient_bias(attn_mask, q, k)
        return aten._scaled_dot_product_efficient_attention(
            q, k, v, attn_mask, needs_lse, dropout_p, is_causal, scale=scale
        )[0]
    return aten._scaled_dot_product_attention_math(
        q, k, v, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa
    )[0]


def _unpacked(find_packed):
    """transformers.masking_utils.find_packed_sequence_indices returns its packed-sequence ids
    unchecked when its input is a fake tensor (utils.import_utils.is_tracing counts fake tensors as
    tracing), which makes every mask of a cache-less forward (checkpointed training) explicit. On a
    GPU it checks them and returns None: the step protocols never pack sequences."""

    def find_packed_sequence_indices(position_ids):
        find_packed(position_ids)  # its transient tensors, as on the GPU
        return None

    return find_packed_sequence_indices


@contextlib.contextmanager
def cuda_dispatch():
    """Route SDPA to CUDA's kernel choice, and let masking see unpacked positions, for the duration."""
    from transformers import masking_utils

    original = F.scaled_dot_product_attention
    find_packed = masking_utils.find_packed_sequence_indices
    F.scaled_dot_product_attention = cuda_sdpa
    masking_utils.find_packed_sequence_indices = _unpacked(find_packed)
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        masking_utils.find_packed_sequence_indices = find_packed
