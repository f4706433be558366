"""Fake tensors for `torch._grouped_mm` as CUDA runs it: the mixture-of-experts matmul.

transformers 5.17 runs MoE experts through `grouped_mm` by default (integrations/moe.py,
grouped_mm_experts_forward). On a CUDA GPU, torch 2.13's `_grouped_mm_cuda`
(aten/src/ATen/native/cuda/GroupedBlas.cpp) takes fp32, fp16 and bf16 inputs: bf16 goes to a
CUTLASS kernel on sm90/sm100, anything else to `_grouped_mm_fallback` (GroupedMMUtils.h), a loop of
`mm_out` into slices of one output. Either way the output is one tensor made by
`create_grouped_gemm_output_tensor`, whose last dimension's stride is padded to 16 bytes.

torch's Python meta function (torch/_meta_registrations.py, `_meta_grouped_mm_common`), which
FakeTensorMode runs, admits bf16 only and, on a CPU build, leaves out the padding. Here the fake
implementation makes CUDA's output for any of the three dtypes. Nothing else is changed: routing,
sorting, gathers and the autograd formulas (GroupedMmBackward0 saves both operands and `offs`) are
the real ones, and none of the grouped_mm path's shapes depend on the routing.
"""

from __future__ import annotations

import contextlib

import torch
from torch._subclasses import fake_impls
from torch._subclasses.fake_tensor import FakeTensor, in_kernel_invocation_manager

aten = torch.ops.aten
CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # GroupedMMUtils.h _grouped_mm_validate_inputs
TMA_ALIGN_BYTES = 16  # create_grouped_gemm_output_tensor: strides 1 or 16-byte aligned


def grouped_mm_out_shape(a_shape, b_shape, groups: int) -> list[int]:
    """create_grouped_gemm_output_tensor's sizes: 2d x 3d (the forward), 2d x 2d (a weight's
    gradient, one matrix per group), 3d x 2d, 3d x 3d (bmm)."""
    a2, b2 = len(a_shape) == 2, len(b_shape) == 2
    if a2 and b2:
        return [groups, a_shape[0], b_shape[1]]
    if a2:
        return [a_shape[0], b_shape[-1]]
    if b2:
        return [a_shape[1], b_shape[1]]
    return [a_shape[0], a_shape[1], b_shape[-1]]


def _fake_grouped_mm(fake_mode, func, mat_a, mat_b, offs=None, bias=None, out_dtype=None):
    if mat_a.dtype not in CUDA_DTYPES or mat_b.dtype != mat_a.dtype or bias is not None:
        return NotImplemented  # let the stock meta function raise its error
    dtype = out_dtype or mat_a.dtype
    size = grouped_mm_out_shape(mat_a.shape, mat_b.shape, offs.shape[0] if offs is not None else 0)
    align = TMA_ALIGN_BYTES // dtype.itemsize
    padded = -(-size[-1] // align) * align
    stride = [padded, 1] if len(size) == 2 else [size[1] * padded, padded, 1]
    with in_kernel_invocation_manager(fake_mode):
        out = torch.empty_strided(size, stride, dtype=dtype, device="meta")
    return FakeTensor(fake_mode, out, mat_a.device)


@contextlib.contextmanager
def cuda_grouped_mm():
    """Fake `aten._grouped_mm` with CUDA's dtypes and output layout for the duration."""
    op = aten._grouped_mm.default
    previous = fake_impls.op_implementations_dict.get(op)
    fake_impls.op_implementations_dict[op] = _fake_grouped_mm
    try:
        yield
    finally:
        if previous is None:
            fake_impls.op_implementations_dict.pop(op, None)
        else:
            fake_impls.op_implementations_dict[op] = previous
