"""Element formats below 16 bits, and the tensors a block-quantized weight is stored in.

A block-quantized tensor is its packed codes plus its block scales, each a tensor of its own
(so each takes its own allocator block): what bitsandbytes' 4-bit weights hold on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

# Bits an element, by format name (fp8: torch.float8_e4m3fn / float8_e5m2; nf4: QLoRA's NormalFloat).
BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8_e4m3": 8, "fp8_e5m2": 8, "int8": 8, "int4": 4, "nf4": 4, "fp4": 4}
FP32 = 4


def packed_bytes(numel: int, fmt: str) -> int:
    """Bytes of `numel` elements of `fmt`, packed (two 4-bit codes a byte, an odd one padded)."""
    return -(-numel * BITS[fmt] // 8)


@dataclass(frozen=True)
class Blockwise4bit:
    """bitsandbytes 0.50 Params4bit (functional.quantize_4bit) on the GPU: packed codes
    [(n + 1) // 2, 1] uint8, the format's 16-entry fp32 code, and an absmax per `block` elements:
    fp32, or with double quantization (compress_statistics) uint8 codes of (absmax - mean) in
    blocks of 256, with their own fp32 absmax per 256, a 0-d fp32 offset (the mean) and a copy
    of the 256-entry fp32 dynamic map (quantize_blockwise's code.to(device, copy=True))."""

    fmt: str = "nf4"
    double_quant: bool = True
    block: int = 64  # BitsAndBytesConfig's bnb_4bit_blocksize default
    block2: int = 256  # the second level's, fixed in quantize_4bit

    def scales(self, numel: int) -> int:
        return -(-numel // self.block)

    def tensors(self, numel: int) -> tuple[int, ...]:
        """Each tensor one weight of `numel` elements is stored in, in bytes."""
        absmax = self.scales(numel)
        code = 16 * FP32
        if not self.double_quant:
            return (packed_bytes(numel, self.fmt), absmax * FP32, code)
        return (packed_bytes(numel, self.fmt), absmax, code, FP32, -(-absmax // self.block2) * FP32, 256 * FP32)

    def absmax_dequantized(self, numel: int) -> int:
        """The fp32 absmax a dequantization rebuilds first (double quantization only; else 0)."""
        return self.scales(numel) * FP32 if self.double_quant else 0

    # quantize_blockwise caches one dynamic map a device (name2qmap["dynamic"]), once per process.
    SHARED_MAP_BYTES = 256 * FP32
