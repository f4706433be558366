"""APOLLO and APOLLO-Mini: Adam's moments for a random projection of each projected matrix's
gradient, used only to scale the full gradient by channel (or as a whole) (apollo-torch 1.0.3,
apollo_torch/apollo.py and random_projector.py, proj "random", proj_type "std").

The projector is drawn in fp32 (an fp32 copy of the gradient is made for its dtype) and stored
in the gradient's dtype, r x min(m, n); the moments are r x max(m, n). A step scales the full
gradient (p.grad * factor, m x n) and, with the norm-growth limiter on (the default), divides it
by the limiter (a second m x n while the first lives). The scaled gradient's norm is kept in the
state. The projector is drawn again every `update_gap` steps (the first included): memsim models
such a step, the run's largest.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ..params import PROJECTIONS, Param, Params, cuda_rounded
from .base import Method
from .low_rank import LowRankAdamW, check_projection, valid_targets
from .optimizer import LoopLocals, StepKernels, StepMemory

FP32 = 4


class Apollo(Method):
    name: Literal["apollo"] = "apollo"
    rank: int = Field(256, ge=1)
    update_gap: int = Field(200, ge=1)
    scale: float = Field(1.0, gt=0)
    scale_type: Literal["channel", "tensor"] = "channel"
    targets: tuple[str, ...] = PROJECTIONS
    summary = "Adam's moments for a random projection, used to scale each channel of the full gradient"
    citation = ("Zhu et al., APOLLO: SGD-like Memory, AdamW-level Performance, 2024 (arXiv:2412.05270)")
    conflicts: ClassVar[tuple[str, ...]] = ("lora", "galore")

    _targets = field_validator("targets")(lambda cls, v: valid_targets(v))

    def check(self, model, workload) -> None:
        check_projection(self, model, workload, {"adamw": "APOLLOAdamW"})

    def wrap_optimizer(self, optimizer):
        return ApolloAdamW(rank=self.rank, update_gap=self.update_gap, scale=self.scale, scale_type=self.scale_type,
                           targets=self.targets)

    def apply_torch(self, model):
        return model  # the projection is the optimizer's (ApolloAdamW.torch_optimizer_for)


class ApolloMini(Apollo):
    """APOLLO-Mini: rank 1, one scaling factor for the whole tensor (the paper's and the APOLLO
    repository's setting: --rank 1 --scale_type tensor --scale 128)."""

    name: Literal["apollo-mini"] = "apollo-mini"
    rank: int = Field(1, ge=1)
    scale: float = Field(128.0, gt=0)
    scale_type: Literal["channel", "tensor"] = "tensor"
    summary = "APOLLO at rank 1 with one scaling factor a tensor"
    conflicts = ("lora", "galore", "apollo")


class ApolloAdamW(LowRankAdamW):
    """apollo_torch.APOLLOAdamW over every trainable parameter, the targets' weights projected."""

    name: Literal["apollo-adamw"] = "apollo-adamw"
    scale_type: str
    summary = Apollo.summary
    citation = Apollo.citation

    def state(self, p: Param) -> tuple[int, ...]:
        if not self.projected(p):
            return (p.nbytes, p.nbytes)
        low = self.rank * max(p.rows, p.cols) * p.dtype_bytes
        # the moments, the stored projector, the scaled gradient's norm (a 0-dim tensor)
        return (low, low, self.rank * min(p.rows, p.cols) * p.dtype_bytes, p.dtype_bytes)

    def step_memory(self, params: Params) -> StepMemory:
        return StepMemory(_loop_peak(self, params))

    def step_kernels(self, params: Params) -> list[StepKernels]:
        # Per parameter about 12 kernels over moment-sized tensors, and for a projected one the
        # product, the norms and two full-size passes (approximate; the draws are not counted).
        return [StepKernels(12 * params.total(), 12 * params.count, True)]

    def torch_optimizer_for(self, model):
        from apollo_torch import APOLLOAdamW

        return APOLLOAdamW(self.param_groups(model, proj="random", scale_type=self.scale_type), lr=1e-4)


def _draw_bytes(p: Param, rank: int) -> int:
    """get_orthogonal_matrix at an update step: the fp32 copy of the gradient (unless fp32), the
    fp32 draw and its division by sqrt(r), and the cast to the gradient's dtype."""
    m, n = p.rows, p.cols
    side = rank * min(m, n)
    copy = cuda_rounded(m * n * FP32) if p.dtype_bytes != FP32 else 0
    cast = cuda_rounded(side * p.dtype_bytes) if p.dtype_bytes != FP32 else 0
    return copy + 2 * cuda_rounded(side * FP32) + cast


def _loop_peak(opt: ApolloAdamW, params: Params) -> int:
    """The step's peak of temporaries (LoopLocals): as GaLore's loop, with the scaling factor and
    the full-size scaled gradient carried to the next projected parameter, which holds both its
    own and the previous one's as it computes it. Unprojected group first, then the projected."""
    loop = LoopLocals()
    scalar = cuda_rounded(1)
    for p in opt.ordered(params):
        loop.bind("grad", 0)
        size = cuda_rounded(opt.state(p)[0])
        if opt.projected(p):
            loop.alloc(_draw_bytes(p, opt.rank))
            loop.bind("grad", size)
        loop.bind("denom", size)
        loop.bind("norm", size)
        if not opt.projected(p):
            continue
        rows = cuda_rounded(max(p.rows, p.cols) * p.dtype_bytes) if opt.scale_type == "channel" else scalar
        loop.alloc(3 * rows)  # the two norms and the epsilon's sum, then their quotient
        loop.bind("factor", rows)
        full = cuda_rounded(p.nbytes)
        loop.bind("scaled", full)  # p.grad * factor, the previous parameter's still held
        loop.alloc(full)  # scaled_grad / limiter, beside it
        loop.live["norm"] = 0  # norm_grad = scaled_grad: the same tensor
    return loop.peak
