"""Optimizer moments stored as block-quantized codes: what bitsandbytes and torchao allocate per
moment tensor, shared by the 8-bit, 4-bit and fp8 optimizers' modules."""

from __future__ import annotations

from ..params import Param, Params, cuda_rounded
from .optimizer import Optimizer, StepKernels

FP32 = 4
QMAP_BYTES = 256 * FP32  # a 256-entry fp32 dynamic quantization map (8-bit codes)


def bitsandbytes_moments(p: Param, min_8bit_size: int = 4096, block: int = 256) -> tuple[int, ...]:
    """bitsandbytes 0.50 Optimizer2State.init_state: under min_8bit_size elements, two fp32
    moments (whatever the parameter's dtype); else two uint8 code tensors of the parameter's shape
    and two fp32 absmax vectors of ceil(n / 256) (the block size is fixed at 256)."""
    n = p.numel
    if n < min_8bit_size:
        return (n * FP32, n * FP32)
    absmax = -(-n // block) * FP32
    return (n, n, absmax, absmax)


def torchao_moments(p: Param, block: int, code_bits: int, qmap_entries: int) -> tuple[int, ...]:
    """torchao 0.18 _AdamBase._new_buffer, per moment (exp_avg, exp_avg_sq): quantized only with
    at least 4096 elements and a whole number of blocks, as codes (`code_bits` an element, packed),
    an fp32 scale per block and, for the 8- and 4-bit states, the moment's own fp32 map of
    `qmap_entries`; else zeros_like(p), in the parameter's dtype."""
    n = p.numel
    if not torchao_quantizes(p, block):
        return (p.nbytes, p.nbytes)
    one = (n * code_bits // 8, n // block * FP32) + ((qmap_entries * FP32,) if qmap_entries else ())
    return one + one


def torchao_step_temporaries(params: Params, block: int, temp_bytes_per_element: int, quantized) -> int:
    """torchao's update is one torch.compile'd call per parameter; for a quantized parameter the
    compiled graph materializes, per moment, the new codes' working copy (`temp_bytes_per_element`
    an element) and the new fp32 scales before copying them into the state. Measured linear in the
    parameter's size on an H200 (benchmarks/optimizer_step_temps.py, data/validation/
    optimizer-step-temps-h200.json: 8.03125, 24.0625 and 2.03125 bytes an element for the 8-bit,
    4-bit and fp8 states); an unquantized parameter's update is fused whole (nothing beyond).
    The step's peak holds the largest parameter's."""
    def one(p: Param) -> int:
        if not quantized(p):
            return 0
        return 2 * (cuda_rounded(p.numel * temp_bytes_per_element) + cuda_rounded(p.numel // block * FP32))

    return max((one(p) for p in params.walk(1)), default=0)


def torchao_quantizes(p: Param, block: int) -> bool:
    """torchao keeps a moment quantized with at least 4096 elements in whole blocks (_new_buffer)."""
    return p.numel >= 4096 and p.numel % block == 0


class BlockwiseAdamW(Optimizer):
    """An AdamW with block-quantized moments: its update is one kernel a parameter, reading p and
    g and writing p (3 parameter-sized accesses), reading and writing both moments' codes and
    scales (the state, twice)."""

    def step_kernels(self, params: Params) -> list[StepKernels]:
        return [StepKernels(3 * params.total() + 2 * self.state_bytes(params), params.count, True)]
