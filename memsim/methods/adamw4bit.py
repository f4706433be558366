"""torchao's AdamW4bit (torchao 0.18, torchao/optim/adam.py, subclass_4bit.py): moments as
OptimState4bit, two 4-bit codes packed per uint8 with an fp32 scale per 128 and a 16-entry fp32
map per moment, for tensors of at least 4096 elements divisible by 128; others keep moments in
the parameter's dtype. One torch.compile'd update per parameter."""

from __future__ import annotations

from typing import Literal

from ..params import Param, Params
from .blockwise_state import BlockwiseAdamW, torchao_moments, torchao_quantizes, torchao_step_temporaries
from .optimizer import StepMemory


class AdamW4bit(BlockwiseAdamW):
    name: Literal["adamw4bit"] = "adamw4bit"
    impl: Literal["torchao"] = "torchao"
    summary = "AdamW with 4-bit block-quantized moments (torchao)"
    untraceable = "its update is torch.compile'd, which refuses to trace under FakeTensorMode"
    citation = "Li et al., Memory Efficient Optimizers with 4-bit States, 2023 (arXiv:2309.01507)"

    def state(self, p: Param) -> tuple[int, ...]:
        return torchao_moments(p, block=128, code_bits=4, qmap_entries=16)

    def step_memory(self, params: Params) -> StepMemory:
        # Per moment: the scaled fp32 values and the int64 codes of the branchless search
        # (quant_utils.quantize_4bit_with_qmap's torch.where on Python ints) before packing.
        return StepMemory(torchao_step_temporaries(params, 128, 4 + 8, lambda p: torchao_quantizes(p, 128)))

    def torch_optimizer(self, params):
        from torchao.optim import AdamW4bit as TorchaoAdamW4bit

        return TorchaoAdamW4bit(params, lr=1e-4)
