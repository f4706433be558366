"""From live tensor bytes to what the CUDA caching allocator reserves and the device shows.

Allocated bytes are exact by construction (the simulator rounds each request to 512 bytes, as
c10/cuda/CUDACachingAllocator.cpp does). Reserved bytes depend on the order of frees and reuses;
here they are estimated from the allocator's segment rules: requests over 1 MiB come from
segments rounded to 2 MiB (kRoundLarge), smaller ones from 2 MiB small-pool segments (kSmallBuffer).
Device bytes add the CUDA context that the driver, cuBLAS and the kernels' modules take.
"""

from __future__ import annotations

MIB = 2**20
SEGMENT_ROUND_BYTES = 2 * MIB  # CUDACachingAllocator.cpp: kRoundLarge / kSmallBuffer

# CUDA context + loaded kernel modules + cuBLAS/cuBLASLt handles of a PyTorch process: device
# used memory (cudaMemGetInfo) minus the allocator's reserved bytes after a step. Median of 16
# workloads (range 687-767 MiB) on an H100 80GB HBM3, driver 580.159.04, torch 2.11.0+cu130,
# 2026-11-23: data/validation/h100-measured.jsonl (device_used_bytes - peak_reserved_bytes).
CUDA_CONTEXT_BYTES = 795_672_576


def reserved_estimate(allocated_bytes: int, small_segments: int = 1) -> int:
    """Lower-bound estimate: the peak rounded to whole large segments, plus the small pool."""
    if allocated_bytes <= 0:
        return 0
    large = -(-allocated_bytes // SEGMENT_ROUND_BYTES) * SEGMENT_ROUND_BYTES
    return large + small_segments * SEGMENT_ROUND_BYTES


def device_estimate(reserved_bytes: int, context_bytes: int = CUDA_CONTEXT_BYTES) -> int:
    return reserved_bytes + context_bytes
