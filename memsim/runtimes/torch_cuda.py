"""What torch does differently by GPU generation, for the analytic model (hf_transformers, hf_steps)
and the fake-tensor trace (executors/cuda_semantics) alike: which kernel scaled_dot_product_attention
runs, and how big cuBLAS's workspace is.

SDPA's kernel (torch 2.11-2.13, aten/src/ATen/native/transformers/cuda/sdp_utils.cpp select_sdp_backend):
- check_prefer_cudnn_attention puts cuDNN first on compute capability 9.0 and 10.0 (H100, H200,
  B200) with a recent cuDNN; elsewhere the order is flash, memory-efficient, math.
- cuDNN: 16-bit, head dim a multiple of 8 and at most 256; takes a mask (as an additive bias) and
  grouped KV heads. Measured on an H100 (benchmarks/probe_attention.py, 2026-11-23): Gemma-2's
  masked sliding layers and its GQA global layers both ran cudnn_generated_fort_native_sdpa_sm90.
- flash: 16-bit, sm80+, no mask, head dim at most 256; attention.cpp pads a head dim that is not a
  multiple of 8 (pad_last_dim) and slices the output back. Measured: OpenLLaMA-3B's head dim 100
  ran pytorch_flash::flash_fwd_kernel on saved [b, h, s, 104] copies of q, k and v.
- memory-efficient: head dim a multiple of 8 (16-byte rows) and at most 256; in torch 2.11 not
  with enable_gqa (transformers passes enable_gqa only without a mask).
- math: everything else.
"""

from __future__ import annotations

# sdp_utils.cpp check_prefer_cudnn_attention: major 9 or 10 with minor 0.
CUDNN_FIRST_SM = (90, 100)
FLASH_MIN_SM = 80  # check_flash_attention_hardware_support: sm80 and up
MAX_HEAD_DIM = 256  # check_head_dim_size_flash / _mem_efficient / _cudnn
HEAD_DIM_ALIGNMENT = 8  # elements: 16-byte rows of a 16-bit tensor
# Without a measured compute capability (an anonymous `--hardware 24GiB`), the order most GPUs have.
DEFAULT_SM = 80


def sdpa_backend(sm: int, half: bool, head_dim: int, masked: bool, gqa: bool) -> str:
    """'cudnn', 'flash', 'efficient' or 'math'. `half`: fp16/bf16 inputs; `gqa`: K and V have fewer
    heads than Q and enable_gqa is passed."""
    fits = head_dim <= MAX_HEAD_DIM
    aligned = fits and head_dim % HEAD_DIM_ALIGNMENT == 0
    if sm in CUDNN_FIRST_SM and half and aligned:
        return "cudnn"
    if half and not masked and fits and sm >= FLASH_MIN_SM:
        return "flash"
    if aligned and not gqa:
        return "efficient"
    return "math"


def padded_head_dim(head_dim: int) -> int:
    """The head dim the flash kernel is given (attention.cpp pad_last_dim<8>)."""
    return -(-head_dim // HEAD_DIM_ALIGNMENT) * HEAD_DIM_ALIGNMENT


# aten/src/ATen/cuda/CublasHandlePool.cpp (torch 2.11) parseChosenWorkspaceSize: without
# CUBLAS_WORKSPACE_CONFIG, ":4096:8" (32 MiB) on compute capability 9.0, else ":4096:2:16:8"
# (8 MiB + 128 KiB). getNewWorkspace takes it from the caching allocator (counted as allocated),
# once per (cuBLAS handle, stream): handles are per thread, so a training step has two, the main
# thread's (forward) and autograd's device thread's (backward); cuBLASLt shares it (unified
# workspace, the default). Measured on an H100 (data/validation/h100.jsonl, 2026-11-23): every
# prefill/generate case sat 32 MiB above the prediction that lacked it, every training case 64 MiB.
def cublas_workspace_bytes(sm: int) -> int:
    return 4096 * 8 * 1024 if sm == 90 else 4096 * 1024 * 2 + 16 * 1024 * 8
