"""torch.optim.Adafactor (torch/optim/_adafactor.py, torch 2.11-2.13): factored second moments
for matrices, a full one for vectors, no first moment; no fused implementation.

Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", 2018
(arXiv:1804.04235).
"""

from __future__ import annotations

from typing import Literal

from ..params import Param, Params, cuda_rounded
from .optimizer import MULTI_TENSOR_TENSORS, SCALAR_BYTES, Optimizer, StepKernels, StepMemory, multi_tensor_launches

# Adafactor (torch/optim/_adafactor.py, 2.11-2.13) issues ops one parameter at a time from Python
# in both implementations: the parameter's and its update's full norms (a matrix's in two kernels,
# a multi-block reduction and its last pass; a vector's in one), each read back with .item() (a
# device-to-host copy), and in the for-loop one everything else too. Per kind of parameter, the
# accesses per element of its full-size tensors and the kernels, (one at a time, foreach ops):
#   for-loop matrix: p.norm, row and col norms of g (r: 3), the factors' product (w: 1), div_,
#     clamp_, rsqrt_ (r/w: 6), mul_ by g (3), update.norm (1), add_ to p (3): 17; kernels: norms
#     4 + items 2 + row and col norm, square_, div_, lerp_ 8 + product, mean, clamp_, div_ 4 +
#     clamp_, rsqrt_, mul_, add_ 4: 22;
#   for-loop vector: g*g (3), lerp_ (3), clone (2), clamp_, rsqrt_ (4), mul_ (3), the norms (2),
#     add_ (3): 20; kernels: norms 2 + items 2 + g*g, lerp_, clone, clamp_, rsqrt_, mul_, add_: 11;
#   foreach matrix: the norms, items, row and col norms, product and mean one at a time (5
#     accesses, 10 kernels), then 13 foreach ops: 6 over the factors' small lists, 7 over
#     full-size ones (div_, clamp_min_, rsqrt_, mul_ by g, mul_ by alphas, add_: 14 accesses);
#   foreach vector: norms, items, clone one at a time (4 accesses, 5 kernels), 7 foreach ops (g*g,
#     lerp_, clamp_min_, rsqrt_, mul_, mul_, add_: 18).
# Measured (H200, torch 2.11, 2026-12-01, benchmarks/host_small.py, data/validation/
# host-small-h200.json): TinyLlama's step launched about 3,990 (for-loop) and 2,300 (foreach)
# kernels beyond its forward and backward; counted so, 3,927 and 2,138.
KERNELS = {  # impl -> parameter kind -> (accesses one at a time, kernels one at a time,
    #                                           foreach accesses, foreach ops over small lists, over full-size)
    "for-loop": {"matrix": (17, 22, 0, 0, 0), "vector": (20, 11, 0, 0, 0)},
    "foreach": {"matrix": (5, 10, 14, 6, 7), "vector": (4, 5, 18, 0, 7)},
}


class Adafactor(Optimizer):
    name: Literal["adafactor"] = "adafactor"
    impl: Literal["foreach", "for-loop"] = "foreach"  # torch.optim.Adafactor has no `fused` argument
    summary = "torch.optim.Adafactor: factored second moments (a row and a column per matrix)"
    citation = "Shazeer & Stern, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost, 2018 (arXiv:1804.04235)"

    def state(self, p: Param) -> tuple[int, ...]:
        return _factors(p) if p.is_matrix else (p.nbytes,)  # `step` stays on the host

    def step_memory(self, params: Params) -> StepMemory:
        return StepMemory(_foreach_temp(params) if self.impl == "foreach" else _loop_temp(params))

    def step_kernels(self, params: Params) -> list[StepKernels]:
        parts = []
        for kind, group in (("matrix", params.only(lambda p: p.is_matrix)), ("vector", params.only(lambda p: not p.is_matrix))):
            if not group.count:
                continue
            one, kernels, foreach, small_ops, full_ops = KERNELS[self.impl][kind]
            parts.append(StepKernels(one * group.total(), kernels * group.count, True))
            if full_ops:
                # The factors' lists hold a row or column a parameter: as many launches as tensors allow.
                launches = full_ops * multi_tensor_launches(group) + small_ops * -(-group.count // MULTI_TENSOR_TENSORS)
                parts.append(StepKernels(foreach * group.total(), launches, False))
        return parts

    def torch_optimizer(self, params):
        import torch

        return torch.optim.Adafactor(params, foreach=self.impl == "foreach")  # foreach=None would be the for-loop


def _factors(p: Param) -> tuple[int, int]:
    """Bytes of row_var ([..., rows, 1]) and col_var ([..., 1, cols]), each one allocation."""
    return cuda_rounded(p.rows * p.dtype_bytes), cuda_rounded(p.cols * p.dtype_bytes)


def _loop_temp(params: Params) -> int:
    """_single_tensor_adafactor's peak of temporaries. Its locals outlive an iteration: each of
    row_mean, col_mean, var_estimate (the update) and grad_squared is freed only when the next
    iteration rebinds it, after the new one is allocated. What is live entering a parameter
    depends only on the parameters before it, the same for every layer after the first: two
    layer blocks hold every transition."""
    scalar = cuda_rounded(SCALAR_BYTES)
    live = {"row": 0, "col": 0, "var": 0, "sq": 0}
    peak = 0

    def rebind(key: str, nbytes: int) -> None:
        nonlocal peak
        peak = max(peak, sum(live.values()) + nbytes)
        live[key] = nbytes

    for p in params.walk(2):
        peak = max(peak, sum(live.values()) + scalar)  # param.norm(2).item()
        if p.is_matrix:
            row, col = _factors(p)
            rebind("row", row)  # torch.norm(grad, dim=-1, keepdim=True)
            rebind("col", col)  # torch.norm(grad, dim=-2, keepdim=True)
            rebind("var", cuda_rounded(p.nbytes))  # row_var @ col_var: a full-size estimate
        else:
            rebind("sq", cuda_rounded(p.nbytes))  # grad * grad
            rebind("var", cuda_rounded(p.nbytes))  # variance.clone()
        peak = max(peak, sum(live.values()) + scalar)  # row_var.mean(...), update.norm(2)
    return peak


def _foreach_temp(params: Params) -> int:
    """_multi_tensor_adafactor's peak: per group of (dtype, matrix or vector), in order of first
    appearance (_group_tensors_by_device_dtype_and_is_multidim), the lists of row and column
    means, then a full-size var_estimates list; the previous group's var_estimates lives on until
    this group rebinds the name."""
    scalar = cuda_rounded(SCALAR_BYTES)
    order = params.walk(1)
    keys = [(d, m) for d in dict.fromkeys(p.dtype_bytes for p in order) for m in dict.fromkeys(p.is_matrix for p in order if p.dtype_bytes == d)]
    carried = peak = 0
    for dtype, is_matrix in keys:

        def over(f, d=dtype, m=is_matrix):  # a sum over this group's parameters
            return params.total(lambda p: f(p) if (p.dtype_bytes, p.is_matrix) == (d, m) else 0)

        full = over(lambda p: cuda_rounded(p.nbytes))
        peak = max(peak, carried + scalar)  # alphas: p.norm(2).item()
        if is_matrix:
            rows = over(lambda p: _factors(p)[0])
            cols = over(lambda p: _factors(p)[1])
            means = over(lambda p: scalar)  # row_var_means, alive with var_estimates
            peak = max(peak, carried + rows, carried + cols, carried + full + means)
        else:
            peak = max(peak, carried + full)  # grads_squared (deleted), then the clones
        peak = max(peak, full + scalar)  # update.norm(2), after the old list is released
        carried = full
    return peak
