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
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

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
    q, k, v = autocast_sdpa_inputs(q, k, v)
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


# -- autocast ----------------------------------------------------------------------------------
# Ops CUDA's autocast runs in fp32 (aten/src/ATen/autocast_mode.h, torch 2.13: AT_FORALL_FP32 and
# AT_FORALL_FP32_SET_OPT_DTYPE), by the names they reach a dispatch mode with (softmax and
# log_softmax as _softmax and _log_softmax). CPU autocast (what a fake-tensor trace runs) leaves
# most of them alone, so a trace is CUDA's program only where none of them gets a 16-bit input.
CUDA_AUTOCAST_FP32_OPS = frozenset({
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal",
    "rsqrt", "sinh", "tan", "pow", "softplus", "native_layer_norm", "native_group_norm", "norm",
    "frobenius_norm", "nuclear_norm", "cosine_similarity", "poisson_nll_loss", "cosine_embedding_loss",
    "nll_loss_forward", "nll_loss2d_forward", "hinge_embedding_loss", "kl_div", "l1_loss",
    "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss_forward",
    "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits",
    "_pdist_forward", "_cdist_forward", "renorm", "logsumexp", "prod", "_softmax", "_log_softmax",
    "cumprod", "cumsum", "linalg_vector_norm", "linalg_matrix_norm", "sum",
})
# The lower-precision list, as far as a decoder uses it (AT_FORALL_LOWER_PRECISION_FP): the same
# ops are on CPU's list (autocast_mode.cpp, AutocastCPU), so CPU autocast casts them alike.
_LOW = (torch.float16, torch.bfloat16)


class CudaAutocastCheck(TorchDispatchMode):
    """Entered inside a CPU autocast region (autocast state is not visible from a dispatch mode):
    fails the trace where CUDA's autocast would differ, an op CUDA runs in fp32 reaching the kernel
    with a 16-bit floating input. Conservative: inside SDPA's math fallback (autocast excluded on
    CUDA too) it would also fail."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in CUDA_AUTOCAST_FP32_OPS:
            low = [t.dtype for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.dtype in _LOW]
            if low:
                raise NotImplementedError(
                    f"trace: {name} gets a {low[0]} input under autocast; CUDA's autocast runs it in fp32, "
                    "CPU's does not, so this trace would not be CUDA's program"
                )
        return func(*args, **(kwargs or {}))


def autocast_sdpa_inputs(q, k, v):
    """What CUDA autocast's scaled_dot_product_attention wrapper does before dispatching
    (lower_precision_fp policy): cast floating q, k, v to the autocast dtype. The patched SDPA
    below calls the kernels directly, past that wrapper, so it casts here."""
    device = q.device.type
    if not torch.is_autocast_enabled(device):
        return q, k, v
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t for t in (q, k, v))
