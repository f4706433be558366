"""torch.optim optimizers: the state they keep and the temporaries their step allocates.

Read from torch/optim/{adamw,adam,sgd,_adafactor}.py (torch 2.11-2.13); the step is modeled in its
steady state (state already created, as from the second step on).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError
from .simulator import cuda_rounded

OPTIMIZERS = ("adamw", "adam", "sgd", "sgd-momentum", "adafactor")
IMPLS = ("foreach", "fused", "for-loop")
ADAFACTOR_IMPLS = ("foreach", "for-loop")  # torch.optim.Adafactor has no `fused` argument
STEP_SCALAR_BYTES = 4  # state["step"]: a float32 scalar
SCALAR_BYTES = 4  # a 0-dim (or [1, 1]) fp32/bf16 result such as a norm; one CUDA block once rounded


@dataclass(frozen=True)
class Param:
    """A trainable parameter as its optimizer sees it: a [rows, cols] matrix (cols = 0 for a 1-D
    vector of `rows` elements) of `dtype_bytes` elements."""

    rows: int
    cols: int
    dtype_bytes: int

    @property
    def nbytes(self) -> int:
        return self.rows * max(self.cols, 1) * self.dtype_bytes

    @property
    def is_matrix(self) -> bool:
        return self.cols > 0


@dataclass(frozen=True)
class Params:
    """Parameters in model.parameters() order: a prefix, one decoder layer's block repeated
    `layers` times, a suffix. Sums over them are closed forms, so their cost does not grow with depth."""

    prefix: tuple[Param, ...]
    layer: tuple[Param, ...]
    layers: int
    suffix: tuple[Param, ...] = ()

    def walk(self, max_layers: int) -> list[Param]:
        """The order, with at most `max_layers` layer blocks."""
        return [*self.prefix, *self.layer * min(self.layers, max_layers), *self.suffix]

    def total(self, f=lambda p: cuda_rounded(p.nbytes)) -> int:
        """sum(f(p)) over every parameter."""
        ends = sum(f(p) for p in self.prefix) + sum(f(p) for p in self.suffix)
        return ends + self.layers * sum(f(p) for p in self.layer)

    @property
    def count(self) -> int:
        return len(self.prefix) + self.layers * len(self.layer) + len(self.suffix)

    def only(self, keep) -> Params:
        """The parameters for which keep(p) holds, in the same order."""
        pick = lambda ps: tuple(p for p in ps if keep(p))
        return Params(pick(self.prefix), pick(self.layer), self.layers, pick(self.suffix))


@dataclass(frozen=True)
class OptimizerCost:
    state_bytes: int  # resident between steps
    step_temp_bytes: int  # extra, during step()
    temp_per_param: bool = False  # the temporaries are one tensor per parameter (a foreach list)


# Parameter-sized tensors each optimizer step reads or writes, per trainable element, and the
# kernels it launches per parameter (foreach and fused ones batch parameters into a few launches:
# counted per multi_tensor_apply launch, multi_tensor_launches). From torch/optim (2.11-2.13):
#  adamw foreach: mul_ (p r/w), lerp_ (m r/w, g r), mul_ + addcmul_ (v r/w twice, g r), sqrt (v r,
#    t w), div_ (t r/w), add_ (t r/w), addcdiv_ (p r/w, m r, t r): 18 accesses, 8 kernels;
#  adamw fused: one kernel reading p, g, m, v and writing p, m, v: 7;
#  adamw for-loop: the foreach arithmetic one parameter at a time: 18 accesses, 8 kernels each;
#  sgd: add_ (p r/w, g r): 3; sgd-momentum: mul_ + add_ on the buffer, then p: 7;
#  adafactor: see ADAFACTOR_KERNELS (per parameter kind).
STEP_TRAFFIC = {  # name -> impl -> (accesses per element, kernels per parameter)
    "adamw": {"foreach": (18, 8), "fused": (7, 1), "for-loop": (18, 8)},
    "sgd": {"foreach": (3, 1), "fused": (3, 1), "for-loop": (3, 1)},
    "sgd-momentum": {"foreach": (7, 3), "fused": (7, 1), "for-loop": (7, 3)},
}
STEP_TRAFFIC["adam"] = STEP_TRAFFIC["adamw"]
# One multi_tensor_apply launch (ATen/native/cuda/MultiTensorApply.cuh, torch 2.11) covers at most
# 320 blocks of 65536 elements, and at most 48 tensors a list at depth 3 (depth_to_max_tensors
# {110, 64, 48, 36, 30}): a foreach op over a billion parameters launches about 50 kernels.
MULTI_TENSOR_CHUNK, MULTI_TENSOR_BLOCKS, MULTI_TENSOR_TENSORS = 65536, 320, 48


def multi_tensor_launches(params: Params) -> int:
    """Kernels one foreach op launches over `params`."""
    chunks = params.total(lambda p: -(-(p.nbytes // p.dtype_bytes) // MULTI_TENSOR_CHUNK))
    return max(-(-chunks // MULTI_TENSOR_BLOCKS), -(-params.count // MULTI_TENSOR_TENSORS))


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
ADAFACTOR_KERNELS = {  # impl -> parameter kind -> (accesses one at a time, kernels one at a time,
    #                                           foreach accesses, foreach ops over small lists, over full-size)
    "for-loop": {"matrix": (17, 22, 0, 0, 0), "vector": (20, 11, 0, 0, 0)},
    "foreach": {"matrix": (5, 10, 14, 6, 7), "vector": (4, 5, 18, 0, 7)},
}


@dataclass(frozen=True)
class StepKernels:
    """Part of an optimizer step for the roofline: the bytes it moves and the kernels it launches,
    and whether Python issues them one parameter at a time (a bare torch op each)."""

    bytes: int
    kernels: int
    one_at_a_time: bool


def step_cost(name: str, impl: str, params: Params) -> list[StepKernels]:
    """The optimizer step's parts for the trainable `params`."""
    if name == "adafactor":
        return _adafactor_cost(impl, params)
    accesses, kernels = STEP_TRAFFIC[name][impl]
    loop = impl == "for-loop"
    launches = kernels * (params.count if loop else multi_tensor_launches(params))
    return [StepKernels(accesses * params.total(), launches, loop)]


def _adafactor_cost(impl: str, params: Params) -> list[StepKernels]:
    parts = []
    for kind, group in (("matrix", params.only(lambda p: p.is_matrix)), ("vector", params.only(lambda p: not p.is_matrix))):
        if not group.count:
            continue
        one, kernels, foreach, small_ops, full_ops = ADAFACTOR_KERNELS[impl][kind]
        parts.append(StepKernels(one * group.total(), kernels * group.count, True))
        if full_ops:
            # The factors' lists hold a row or column a parameter: as many launches as tensors allow.
            launches = full_ops * multi_tensor_launches(group) + small_ops * -(-group.count // MULTI_TENSOR_TENSORS)
            parts.append(StepKernels(foreach * group.total(), launches, False))
    return parts


def state_tensors(name: str, impl: str, p: Param) -> tuple[int, ...]:
    """The bytes of each state tensor the optimizer creates for parameter `p` at its first step."""
    if name in ("adamw", "adam"):
        # exp_avg and exp_avg_sq; `step` lives on the GPU only for fused (or capturable).
        return (p.nbytes, p.nbytes) + ((STEP_SCALAR_BYTES,) if impl == "fused" else ())
    if name == "sgd-momentum":
        return (p.nbytes,)  # momentum_buffer
    if name == "adafactor":
        return _factors(p) if p.is_matrix else (p.nbytes,)  # `step` stays on the host
    return ()


def optimizer_cost(name: str, impl: str, params: Params) -> OptimizerCost:
    """`params`: the trainable parameters; states are zeros_like(param) except Adafactor's factored ones."""
    if name not in OPTIMIZERS:
        raise InputError(f"optimizer.name: '{name}' is not one of {', '.join(OPTIMIZERS)}")
    if impl not in IMPLS:
        raise InputError(f"optimizer.impl: '{impl}' is not one of {', '.join(IMPLS)}")
    if name == "adafactor" and impl not in ADAFACTOR_IMPLS:
        raise InputError(f"optimizer.impl: adafactor has no '{impl}' implementation; use {' or '.join(ADAFACTOR_IMPLS)}")
    state = params.total(lambda p: sum(cuda_rounded(n) for n in state_tensors(name, impl, p)))
    if name in ("adamw", "adam"):
        if impl == "foreach":  # _multi_tensor_adamw: exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)
            return OptimizerCost(state, params.total(), temp_per_param=True)
        if impl == "for-loop":
            return OptimizerCost(state, _adam_loop_temp(params))
        return OptimizerCost(state, 0)  # _fused_adamw_ updates in place
    if name == "adafactor":
        temp = _adafactor_foreach_temp(params) if impl == "foreach" else _adafactor_loop_temp(params)
        return OptimizerCost(state, temp)
    return OptimizerCost(state, 0)  # SGD updates in place


def _adam_loop_temp(params: Params) -> int:
    """_single_tensor_adam: `denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)` makes
    the square root and the quotient of parameter i while the loop variable still holds parameter
    i-1's denom (rebinding frees it only after). Two layer blocks hold every adjacent pair."""
    sizes = [cuda_rounded(p.nbytes) for p in params.walk(2)]
    return max((2 * n + (sizes[i - 1] if i else 0) for i, n in enumerate(sizes)), default=0)


# -- Adafactor (torch/optim/_adafactor.py; Shazeer & Stern 2018, arXiv:1804.04235) -------------
def _factors(p: Param) -> tuple[int, int]:
    """Bytes of row_var ([..., rows, 1]) and col_var ([..., 1, cols]), each one allocation."""
    return cuda_rounded(p.rows * p.dtype_bytes), cuda_rounded(p.cols * p.dtype_bytes)


def _adafactor_loop_temp(params: Params) -> int:
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


def _adafactor_foreach_temp(params: Params) -> int:
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
