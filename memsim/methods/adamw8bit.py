"""AdamW with 8-bit block-quantized moments: bitsandbytes' AdamW8bit (the default) or torchao's.

bitsandbytes 0.50 (bitsandbytes/optim/optimizer.py, Optimizer2State): parameters with at least
4096 elements keep uint8 moments with an fp32 absmax per 256; smaller ones fp32 moments. Two
256-entry fp32 maps (signed and unsigned) are held once per optimizer. The update runs in place,
one CUDA kernel per parameter, each followed by torch.cuda.synchronize(). Paged (PagedAdamW8bit,
`paged: true`): the two moment tensors of a parameter of at least 1e5 elements live in CUDA managed
memory (F.get_paged: cudaMallocManaged), outside torch's allocator; their absmax stays on the GPU.

torchao 0.18 (torchao/optim/adam.py, subclass_8bit.py): OptimState8bit codes (uint8) with an fp32
scale per 256 and a 256-entry map per moment, for tensors of at least 4096 elements divisible by
256; others keep moments in the parameter's dtype. The update is one torch.compile'd call per
parameter; for a quantized parameter it holds each new moment in fp32 before requantizing it;
`step` and `lr` are CPU scalar tensors.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from ..params import Param, Params
from ..tape import GPU, MANAGED
from .blockwise_state import QMAP_BYTES, BlockwiseAdamW, bitsandbytes_moments, torchao_moments, torchao_quantizes, torchao_step_temporaries
from .optimizer import StepMemory


PAGED_MIN_ELEMENTS = 100_000  # bitsandbytes/optim/optimizer.py get_state_buffer: p.numel() < 1e5 is not paged


class AdamW8bit(BlockwiseAdamW):
    name: Literal["adamw8bit"] = "adamw8bit"
    impl: Literal["bitsandbytes", "torchao"] = "bitsandbytes"
    paged: bool = False
    summary = "AdamW with 8-bit block-quantized moments (bitsandbytes, or torchao)"
    citation = "Dettmers et al., 8-bit Optimizers via Block-wise Quantization, 2022 (arXiv:2110.02861)"

    def state(self, p: Param) -> tuple[int, ...]:
        if self.impl == "torchao":
            return torchao_moments(p, block=256, code_bits=8, qmap_entries=256)
        return bitsandbytes_moments(p)

    @model_validator(mode="after")
    def _paged_is_bitsandbytes(self):
        if self.paged and self.impl != "bitsandbytes":
            raise ValueError("paged: only bitsandbytes' AdamW8bit is paged (impl: bitsandbytes)")
        return self

    def state_tiers(self, p: Param) -> tuple[str, ...]:
        moments = MANAGED if self.paged and p.numel >= PAGED_MIN_ELEMENTS else GPU
        return (moments, moments) + (GPU,) * (len(self.state(p)) - 2)

    def tiers(self) -> set[str]:
        return {MANAGED} if self.paged else set()

    def shared_state(self, params: Params) -> tuple[int, ...]:
        quantized = self.impl == "bitsandbytes" and any(p.numel >= 4096 for p in params.walk(1))
        return (QMAP_BYTES, QMAP_BYTES) if quantized else ()

    def step_memory(self, params: Params) -> StepMemory:
        if self.impl == "torchao":  # the new moments in fp32 before they are requantized
            return StepMemory(torchao_step_temporaries(params, 256, 4, lambda p: torchao_quantizes(p, 256)))
        return StepMemory(0)  # bitsandbytes updates in place

    def host_state(self, state: dict) -> list:
        # bitsandbytes keeps `step` as a Python int; torchao's is a CPU tensor.
        return [state["step"]] if self.impl == "torchao" else []

    def torch_optimizer(self, params):
        if self.impl == "torchao":
            from torchao.optim import AdamW8bit as TorchaoAdamW8bit

            return TorchaoAdamW8bit(params, lr=1e-4)
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=1e-4, is_paged=self.paged)
