"""torch.optim optimizers: the state they keep and the temporaries their step allocates.

Read from torch/optim/{adamw,adam,sgd,adafactor}.py (torch 2.11-2.13); the step is modeled in its
steady state (state already created, as from the second step on).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError
from .simulator import cuda_rounded

OPTIMIZERS = ("adamw", "adam", "sgd", "sgd-momentum", "adafactor")
IMPLS = ("foreach", "fused", "for-loop")
STEP_SCALAR_BYTES = 4  # state["step"]: a float32 scalar


@dataclass(frozen=True)
class OptimizerCost:
    state_bytes: int  # resident between steps
    step_temp_bytes: int  # extra, during step()


def optimizer_cost(name: str, impl: str, param_bytes: list[int]) -> OptimizerCost:
    """`param_bytes`: each trainable parameter's size; states are zeros_like(param)."""
    total = sum(cuda_rounded(n) for n in param_bytes)
    largest = max((cuda_rounded(n) for n in param_bytes), default=0)
    count = len(param_bytes)
    if impl not in IMPLS:
        raise InputError(f"optimizer.impl: '{impl}' is not one of {', '.join(IMPLS)}")
    if name in ("adamw", "adam"):
        # exp_avg and exp_avg_sq. `step` lives on the GPU only for fused (or capturable).
        state = 2 * total + (count * cuda_rounded(STEP_SCALAR_BYTES) if impl == "fused" else 0)
        if impl == "foreach":
            temp = total  # _multi_tensor_adamw: exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)
        elif impl == "for-loop":
            temp = 2 * largest  # _single_tensor_adamw: exp_avg_sq.sqrt() then / bias_correction2_sqrt
        else:
            temp = 0  # _fused_adamw_ updates in place
        return OptimizerCost(state, temp)
    if name == "sgd":
        return OptimizerCost(0, 0)
    if name == "sgd-momentum":
        return OptimizerCost(total, 0)  # momentum_buffer; updates in place
    if name == "adafactor":
        raise InputError("optimizer.name: 'adafactor' is not modeled yet; use adamw, adam, sgd or sgd-momentum")
    raise InputError(f"optimizer.name: '{name}' is not one of {', '.join(OPTIMIZERS)}")
