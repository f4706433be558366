"""GaLore: Adam's moments kept for a low-rank projection of each projected matrix's gradient
(galore-torch 1.0, galore_torch/adamw.py and galore_projector.py, proj_type "std").

For a gradient of m x n with m >= n the projector is Vh[:r] of its SVD (r x n, "right") and the
low-rank gradient G P^T (m x r); otherwise U[:, :r] (m x r, "left") and P^T G (r x n). The moments
are zeros_like(low-rank gradient): 2 r max(m, n) elements. The projector is cast back to a 16-bit
gradient's dtype (a copy of r x min(m, n)); an fp32 gradient's is a view that keeps the whole
Vh or U, min(m, n)^2 elements. Every `update_gap` steps (the first included) the SVD runs on an fp32
copy of the gradient. Every other trainable parameter takes the same loop unprojected.

memsim models an update step: the run's largest (a step without the SVD holds less).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..errors import InputError
from ..params import PROJECTIONS, Param, Params, cuda_rounded
from .base import Method
from .low_rank import LowRankAdamW, check_projection, valid_targets
from .blockwise_state import QMAP_BYTES, bitsandbytes_moments
from .optimizer import LoopLocals, StepKernels, StepMemory

FP32 = 4


class GaLore(Method):
    name: Literal["galore"] = "galore"
    rank: int = Field(128, ge=1)
    update_gap: int = Field(200, ge=1)
    scale: float = Field(0.25, gt=0)
    targets: tuple[str, ...] = PROJECTIONS
    layerwise: bool = False
    summary = "Adam's moments for a low-rank (SVD) projection of each projected matrix's gradient"
    citation = "Zhao et al., GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection, 2024 (arXiv:2403.03507)"
    conflicts = ("lora", "apollo", "apollo-mini")

    _targets = field_validator("targets")(lambda cls, v: valid_targets(v))

    def check(self, model, workload) -> None:
        check_projection(self, model, workload, {"adamw": "GaLoreAdamW", "adamw8bit": "GaLoreAdamW8bit"})
        opt = workload.optimizer
        if opt.name == "adamw8bit" and (opt.impl != "bitsandbytes" or opt.paged):
            raise InputError("methods.galore: GaLoreAdamW8bit is bitsandbytes' unpaged 8-bit Adam; use optimizer "
                             "{name: adamw8bit} (impl bitsandbytes, paged false)")

    def wrap_optimizer(self, optimizer):
        settings = dict(rank=self.rank, update_gap=self.update_gap, scale=self.scale, targets=self.targets, layerwise=self.layerwise)
        return GaLoreAdamW8bit(**settings) if optimizer.name == "adamw8bit" else GaLoreAdamW(**settings)

    def apply_torch(self, model):
        return model  # the projection is the optimizer's (GaLoreAdamW.torch_optimizer_for)


class GaLoreAdamW(LowRankAdamW):
    """galore_torch.GaLoreAdamW over every trainable parameter, the targets' weights projected."""

    name: Literal["galore-adamw"] = "galore-adamw"
    summary = GaLore.summary
    citation = GaLore.citation

    def state(self, p: Param) -> tuple[int, ...]:
        if not self.projected(p):
            return (p.nbytes, p.nbytes)  # exp_avg, exp_avg_sq: zeros_like(grad)
        low = self.rank * max(p.rows, p.cols) * p.dtype_bytes
        side = min(p.rows, p.cols)
        projector = side * side * FP32 if p.dtype_bytes == FP32 else self.rank * side * p.dtype_bytes
        return (low, low, projector)

    def step_memory(self, params: Params) -> StepMemory:
        return StepMemory(_loop_peak(self, params))

    def step_kernels(self, params: Params) -> list[StepKernels]:
        # Per parameter: the moments' four updates, the square root, the quotient and the update
        # (about 12 accesses of the moment-sized tensors), and for a projected one the two
        # products and the full-size scaling (approximate: the SVD's kernels are not counted).
        return [StepKernels(12 * params.total(), 9 * params.count, True)]

    def torch_optimizer_for(self, model):
        from galore_torch import GaLoreAdamW as Torch

        make = lambda groups: Torch(groups, lr=1e-4, no_deprecation_warning=True)  # noqa: E731
        return self.per_parameter(model, make) if self.layerwise else make(self.param_groups(model))


class GaLoreAdamW8bit(GaLoreAdamW):
    """galore_torch.GaLoreAdamW8bit (adamw8bit.py), a bitsandbytes Optimizer2State: each projected
    parameter's data swapped for its low-rank gradient while bitsandbytes updates it, so the 8-bit
    moments take the low-rank shape. galore-torch 1.0 passes percentile_clipping=100 where
    bitsandbytes 0.50 now takes max_unorm, so every parameter also gets a 1-element fp32 unorm_vec."""

    name: Literal["galore-adamw8bit"] = "galore-adamw8bit"
    untraceable = "its step calls torch.cuda.synchronize() unconditionally"

    def state(self, p: Param) -> tuple[int, ...]:
        if not self.projected(p):
            return (*bitsandbytes_moments(p), FP32)
        low = _low_rank(p, self.rank)
        return (*bitsandbytes_moments(low), FP32, super().state(p)[2])

    def shared_state(self, params: Params) -> tuple[int, ...]:
        return (QMAP_BYTES, QMAP_BYTES)

    def step_memory(self, params: Params) -> StepMemory:
        return StepMemory(_loop_peak_8bit(self, params))

    def step_kernels(self, params: Params) -> list[StepKernels]:
        # The 8-bit update (reads p and g, both moments' codes and scales, writes p and the state),
        # and a projected parameter's clone, products and full-size add.
        return [StepKernels(5 * params.total(), 6 * params.count, True)]

    def torch_optimizer_for(self, model):
        from galore_torch import GaLoreAdamW8bit as Torch

        make = lambda groups: Torch(groups, lr=1e-4)  # noqa: E731
        return self.per_parameter(model, make) if self.layerwise else make(self.param_groups(model))


def _low_rank(p: Param, rank: int) -> Param:
    """The projected gradient's shape: [m, r] for m >= n (right projector), else [r, n]."""
    return Param(p.rows, rank, p.dtype_bytes) if p.rows >= p.cols else Param(rank, p.cols, p.dtype_bytes)


def _loop_peak_8bit(opt: GaLoreAdamW8bit, params: Params) -> int:
    """GaLoreAdamW8bit.step per projected parameter: the low-rank gradient (kept as p.grad), a
    clone of the weight (saved_data), the low-rank gradient's clone as p.data (the weight's storage
    let go), the full gradient let go, bitsandbytes' in-place update, then project_back's product
    and its * scale added into the clone. Each parameter done leaves its low-rank gradient for its
    full one, so the peak is at the first projected parameter's project_back (at an update step,
    or at its SVD)."""
    freed = 0  # the full gradients already swapped for low-rank ones
    peak = 0
    for p in opt.ordered(params):
        if not opt.projected(p):
            continue  # bitsandbytes updates in place
        full, low = cuda_rounded(p.nbytes), cuda_rounded(_low_rank(p, opt.rank).nbytes)
        peak = max(peak, _svd_bytes(p, opt.rank) - freed, 2 * low + full - freed)
        freed += full - low
    return peak


def _svd_bytes(p: Param, rank: int) -> int:
    """get_orthogonal_matrix at an update step: an fp32 copy of the gradient (unless fp32), U, S
    and Vh of the thin SVD, then the factor its branch forms and drops and the cast projector,
    all alive at once before it returns."""
    m, n, k = p.rows, p.cols, min(p.rows, p.cols)
    copy = cuda_rounded(m * n * FP32) if p.dtype_bytes != FP32 else 0
    svd = cuda_rounded(m * k * FP32) + cuda_rounded(k * FP32) + cuda_rounded(k * n * FP32)
    # Both branches form the factor they drop: U[:, :r] @ diag (m x r) or diag @ Vh[:r] (r x n).
    dropped = cuda_rounded(rank * rank * FP32) + cuda_rounded((m if m >= n else n) * rank * FP32)
    cast = cuda_rounded(rank * k * p.dtype_bytes) if p.dtype_bytes != FP32 else 0  # fp32: a view
    return copy + svd + dropped + cast


def _loop_peak(opt: GaLoreAdamW, params: Params) -> int:
    """The step's peak of temporaries (LoopLocals: the low-rank gradient, denom and norm_grad
    carried into the next iteration). What is live entering a parameter depends on the one
    before, so two layer blocks hold every case. The loop runs the unprojected group first, then
    the projected one (as the groups are given)."""
    loop = LoopLocals()
    for p in opt.ordered(params):
        loop.bind("grad", 0)  # grad = p.grad
        size = cuda_rounded(opt.state(p)[0])  # the moment's: low-rank where projected
        if opt.projected(p):
            loop.alloc(_svd_bytes(p, opt.rank))
            loop.bind("grad", size)  # the projected gradient
        loop.bind("denom", size)  # exp_avg_sq.sqrt().add_(eps)
        loop.bind("norm", size)  # exp_avg / denom
        if opt.projected(p):
            full = cuda_rounded(p.nbytes)
            loop.alloc(2 * full)  # project_back's product, then its * scale
            loop.live["norm"] = full
    return loop.peak
