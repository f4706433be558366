"""torch.optim.SGD, plain and with momentum (torch/optim/sgd.py; torch 2.11-2.13)."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..params import Param, Params
from .optimizer import Optimizer, StepKernels

# Parameter-sized accesses per element and kernels per parameter: add_ (p r/w, g r): 3, one
# kernel; with momentum mul_ + add_ on the buffer, then p: 7, three (fused: one).
TRAFFIC = {"foreach": (3, 1), "fused": (3, 1), "for-loop": (3, 1)}
MOMENTUM_TRAFFIC = {"foreach": (7, 3), "fused": (7, 1), "for-loop": (7, 3)}
CITATION = "Robbins & Monro, A Stochastic Approximation Method, 1951; torch.optim.SGD"


class SGD(Optimizer):
    name: Literal["sgd"] = "sgd"
    impl: Literal["foreach", "fused", "for-loop"] = "foreach"
    summary = "torch.optim.SGD: no state, an in-place update"
    citation = CITATION
    momentum: ClassVar[float] = 0.0

    def step_kernels(self, params: Params) -> list[StepKernels]:
        return self.traffic_step(params, *TRAFFIC[self.impl])

    def torch_optimizer(self, params):
        import torch

        return torch.optim.SGD(params, lr=1e-3, momentum=self.momentum, **self.torch_flags())


class SGDMomentum(SGD):
    name: Literal["sgd-momentum"] = "sgd-momentum"
    summary = "torch.optim.SGD(momentum=0.9): one momentum buffer per parameter"
    momentum = 0.9

    def state(self, p: Param) -> tuple[int, ...]:
        return (p.nbytes,)  # momentum_buffer

    def step_kernels(self, params: Params) -> list[StepKernels]:
        return self.traffic_step(params, *MOMENTUM_TRAFFIC[self.impl])
