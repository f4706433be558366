"""Make a CPU (fake-tensor) run allocate what the same program allocates on a CUDA GPU.

On a CPU, `scaled_dot_product_attention` dispatches to CPU kernels whose saved tensors differ from
CUDA's. Here it goes to the kernel CUDA's dispatcher picks on the emulated GPU
(memsim.runtimes.torch_cuda: cuDNN first on an H100, else flash, memory-efficient, math), with
the mask and head-dim preprocessing scaled_dot_product_attention does first (attention.cpp). Fake tensors run each kernel's meta function, so the
outputs and the tensors autograd saves are CUDA's.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from memsim.runtimes.torch_cuda import DEFAULT_SM, padded_head_dim
from memsim.runtimes.torch_cuda import sdpa_backend as select_backend

aten = torch.ops.aten

MEM_EFF_ALIGNMENT = 16  # attention.cpp preprocess_mask: the bias's last dim and strides, in elements
_sm = DEFAULT_SM  # the compute capability cuda_dispatch emulates


def sdpa_backend(q, k, v, attn_mask, dropout_p, enable_gqa) -> str:
    """The SDPA backend CUDA's dispatcher picks for these inputs (memsim.runtimes.torch_cuda)."""
    half = q.dtype in (torch.float16, torch.bfloat16)
    gqa = q.shape[-3] != k.shape[-3]
    if gqa and not enable_gqa:
        raise ValueError("scaled_dot_product_attention: K/V heads differ from Q's without enable_gqa")
    return select_backend(_sm, half, q.shape[-1], attn_mask is not None, gqa)


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
    q, k, v = autocast_sdpa_inputs(q, k, v)
    backend = sdpa_backend(q, k, v, attn_mask, dropout_p, enable_gqa)
    if backend == "flash":
        return _flash(q, k, v, dropout_p, is_causal, scale)
    attn_mask = additive_mask(attn_mask, q.dtype)
    needs_lse = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if backend == "cudnn":
        return aten._scaled_dot_product_cudnn_attention(
            q, k, v, attn_mask, needs_lse, dropout_p, is_causal, False, scale=scale
        )[0]
    if backend == "efficient":
        if attn_mask is not None:  # attn_mask.value() = preprocess_mask(...): the unpadded one goes
            attn_mask = efficient_bias(attn_mask, q, k)
        return aten._scaled_dot_product_efficient_attention(
            q, k, v, attn_mask, needs_lse, dropout_p, is_causal, scale=scale
        )[0]
    return aten._scaled_dot_product_attention_math(
        q, k, v, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa
    )[0]


def _flash(q, k, v, dropout_p, is_causal, scale):
    """attention.cpp's flash case: a head dim that is not a multiple of 8 is padded (copies of q,
    k and v, which the kernel saves), with the scale of the original head dim; the output is sliced
    back, so transformers' transpose(1, 2).contiguous() copies it."""
    head_dim = q.shape[-1]
    padded = padded_head_dim(head_dim)
    if padded != head_dim:
        q, k, v = (F.pad(x, (0, padded - head_dim)) for x in (q, k, v))
        scale = scale if scale is not None else head_dim ** -0.5
    out = aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False, scale=scale)[0]
    return out[..., :head_dim] if padded != head_dim else out


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
def cuda_dispatch(sm: int = DEFAULT_SM):
    """Route SDPA to the kernel CUDA picks on a GPU of compute capability `sm` (90: H100), and let
    masking see unpacked positions, for the duration."""
    global _sm
    from transformers import masking_utils

    previous_sm, _sm = _sm, sm

    original = F.scaled_dot_product_attention
    find_packed = masking_utils.find_packed_sequence_indices
    F.scaled_dot_product_attention = cuda_sdpa
    masking_utils.find_packed_sequence_indices = _unpacked(find_packed)
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        _sm = previous_sm
        masking_utils.find_packed_sequence_indices = find_packed


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
