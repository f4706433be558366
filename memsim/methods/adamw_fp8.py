"""torchao's AdamWFp8 (torchao 0.18, torchao/optim/adam.py, subclass_fp8.py): moments as
OptimStateFp8, float8_e4m3fn codes of the parameter's shape with an fp32 scale per 256, for
tensors of at least 4096 elements divisible by 256; others keep moments in the parameter's dtype.
One torch.compile'd update per parameter."""

from __future__ import annotations

from typing import Literal

from ..params import Param, Params
from .blockwise_state import BlockwiseAdamW, torchao_moments, torchao_quantizes, torchao_step_temporaries
from .optimizer import StepMemory


class AdamWFp8(BlockwiseAdamW):
    name: Literal["adamw-fp8"] = "adamw-fp8"
    impl: Literal["torchao"] = "torchao"
    summary = "AdamW with fp8 (e4m3) block-scaled moments (torchao)"
    untraceable = "its update is torch.compile'd, which refuses to trace under FakeTensorMode"
    citation = "Peng et al., FP8-LM: Training FP8 Large Language Models, 2023 (arXiv:2310.18313); torchao AdamWFp8"

    def state(self, p: Param) -> tuple[int, ...]:
        return torchao_moments(p, block=256, code_bits=8, qmap_entries=0)

    def step_memory(self, params: Params) -> StepMemory:
        return StepMemory(torchao_step_temporaries(params, 256, 1, lambda p: torchao_quantizes(p, 256)))  # new e4m3 codes

    def torch_optimizer(self, params):
        from torchao.optim import AdamWFp8 as TorchaoAdamWFp8

        return TorchaoAdamWFp8(params, lr=1e-4)
