"""torch.optim.AdamW and Adam (torch/optim/adamw.py, adam.py; torch 2.11-2.13).

Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019 (arXiv:1711.05101);
Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015 (arXiv:1412.6980).
"""

from __future__ import annotations

from typing import Literal

from ..params import Param, Params, cuda_rounded
from .optimizer import STEP_SCALAR_BYTES, Optimizer, StepKernels, StepMemory

# Parameter-sized tensors a step reads or writes per element, and kernels per parameter (or per
# multi_tensor_apply launch), from torch/optim/adamw.py:
#  foreach: mul_ (p r/w), lerp_ (m r/w, g r), mul_ + addcmul_ (v r/w twice, g r), sqrt (v r,
#    t w), div_ (t r/w), add_ (t r/w), addcdiv_ (p r/w, m r, t r): 18 accesses, 8 kernels;
#  fused: one kernel reading p, g, m, v and writing p, m, v: 7;
#  for-loop: the foreach arithmetic one parameter at a time: 18 accesses, 8 kernels each.
TRAFFIC = {"foreach": (18, 8), "fused": (7, 1), "for-loop": (18, 8)}


class AdamW(Optimizer):
    name: Literal["adamw"] = "adamw"
    impl: Literal["foreach", "fused", "for-loop"] = "foreach"
    summary = "torch.optim.AdamW: two moments in the parameters' dtype"
    citation = "Loshchilov & Hutter, Decoupled Weight Decay Regularization, 2019 (arXiv:1711.05101)"

    def state(self, p: Param) -> tuple[int, ...]:
        # exp_avg and exp_avg_sq; `step` lives on the GPU only for fused (or capturable).
        return (p.nbytes, p.nbytes) + ((STEP_SCALAR_BYTES,) if self.impl == "fused" else ())

    def step_memory(self, params: Params) -> StepMemory:
        if self.impl == "foreach":  # _multi_tensor_adamw: exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)
            return StepMemory(params.total(), temp_per_param=True)
        if self.impl == "for-loop":
            return StepMemory(_loop_temp(params))
        return StepMemory(0)  # _fused_adamw_ updates in place

    def step_kernels(self, params: Params) -> list[StepKernels]:
        return self.traffic_step(params, *TRAFFIC[self.impl])

    def torch_optimizer(self, params):
        import torch

        return torch.optim.AdamW(params, lr=1e-4, **self.torch_flags())


class Adam(AdamW):
    name: Literal["adam"] = "adam"
    summary = "torch.optim.Adam: two moments in the parameters' dtype"
    citation = "Kingma & Ba, Adam: A Method for Stochastic Optimization, 2015 (arXiv:1412.6980)"

    def torch_optimizer(self, params):
        import torch

        return torch.optim.Adam(params, lr=1e-4, **self.torch_flags())


def _loop_temp(params: Params) -> int:
    """_single_tensor_adam: `denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)` makes
    the square root and the quotient of parameter i while the loop variable still holds parameter
    i-1's denom (rebinding frees it only after). Two layer blocks hold every adjacent pair."""
    sizes = [cuda_rounded(p.nbytes) for p in params.walk(2)]
    return max((2 * n + (sizes[i - 1] if i else 0) for i, n in enumerate(sizes)), default=0)
