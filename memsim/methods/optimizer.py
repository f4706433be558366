"""What an optimizer is to memsim: the state it keeps, the temporaries its step allocates, and
the kernels its step launches. Each optimizer is a module of memsim/methods/ holding a subclass.

The step is modeled in its steady state (state already created, as from the second step on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from ..params import Params, Param, cuda_rounded
from ..tape import GPU
from .base import strict_scalars

STEP_SCALAR_BYTES = 4  # state["step"]: a float32 scalar
SCALAR_BYTES = 4  # a 0-dim (or [1, 1]) fp32/bf16 result such as a norm; one CUDA block once rounded
# One multi_tensor_apply launch (ATen/native/cuda/MultiTensorApply.cuh, torch 2.11) covers at most
# 320 blocks of 65536 elements, and at most 48 tensors a list at depth 3 (depth_to_max_tensors
# {110, 64, 48, 36, 30}): a foreach op over a billion parameters launches about 50 kernels.
MULTI_TENSOR_CHUNK, MULTI_TENSOR_BLOCKS, MULTI_TENSOR_TENSORS = 65536, 320, 48


@dataclass(frozen=True)
class StepMemory:
    temp_bytes: int  # extra, during step()
    temp_per_param: bool = False  # the temporaries are one tensor per parameter (a foreach list)


@dataclass(frozen=True)
class StepKernels:
    """Part of an optimizer step for the roofline: the bytes it moves and the kernels it launches,
    and whether Python issues them one parameter at a time (a bare torch op each)."""

    bytes: int
    kernels: int
    one_at_a_time: bool


class LoopLocals:
    """The temporaries of an optimizer step that loops over parameters in Python: its locals live
    on into the next parameter's iteration until rebound, so a new value is allocated while the
    old one is still held. `peak` is the most they hold at once."""

    def __init__(self):
        self.live: dict[str, int] = {}
        self.peak = 0

    def alloc(self, extra: int = 0) -> None:
        """Something of `extra` bytes allocated beside what the locals hold."""
        self.peak = max(self.peak, sum(self.live.values()) + extra)

    def bind(self, name: str, nbytes: int) -> None:
        """`name = <a new tensor of nbytes>`: allocated, then the old value let go (0: a tensor
        that is not a temporary, such as p.grad)."""
        self.alloc(nbytes)
        self.live[name] = nbytes


def multi_tensor_launches(params: Params) -> int:
    """Kernels one foreach op launches over `params`."""
    chunks = params.total(lambda p: -(-p.numel // MULTI_TENSOR_CHUNK))
    return max(-(-chunks // MULTI_TENSOR_BLOCKS), -(-params.count // MULTI_TENSOR_TENSORS))


class Optimizer(BaseModel):
    """An optimizer: `name` and `impl` (foreach, fused, for-loop, as torch.optim names them)
    and whatever parameters its module adds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    _strict = model_validator(mode="before")(classmethod(strict_scalars))
    impl: str = "foreach"
    kind: ClassVar[str] = "optimizer"
    citation: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    selectable: ClassVar[bool] = True  # False: made by a method (GaLore wraps the workload's), not named by a workload
    tasks: ClassVar[tuple[str, ...]] = ("train",)
    untraceable: ClassVar[str] = ""  # why the traced verifier cannot run it ("": it can)

    def state(self, p: Param) -> tuple[int, ...]:
        """The bytes of each state tensor the optimizer creates for parameter `p` at its first step."""
        return ()

    def state_tiers(self, p: Param) -> tuple[str, ...]:
        """The memory tier of each of state(p)'s tensors."""
        return (GPU,) * len(self.state(p))

    def tiers(self) -> set[str]:
        """Tiers besides the GPU's that the state lives on."""
        return set()

    def shared_state(self, params: Params) -> tuple[int, ...]:
        """State held once per optimizer (a quantization map), created before the first parameter's."""
        return ()

    def state_bytes(self, params: Params) -> int:
        return params.total(lambda p: sum(cuda_rounded(n) for n in self.state(p)))

    def step_memory(self, params: Params) -> StepMemory:
        """The step's temporaries over the trainable `params`."""
        return StepMemory(0)

    def step_kernels(self, params: Params) -> list[StepKernels]:
        """The step's parts for the roofline."""
        return []

    @property
    def steps_in_backward(self) -> bool:
        """Each parameter stepped and its gradient freed as backward accumulates it (an optimizer
        per parameter, from register_post_accumulate_grad_hook); the step itself does nothing."""
        return False

    def param_step_bytes(self, p: Param) -> int:
        """Temporaries of a step over parameter `p` alone (an optimizer of its own)."""
        step = self.step_memory(Params((p,), (), 0))
        return p.nbytes if step.temp_per_param else step.temp_bytes

    def traffic_step(self, params: Params, accesses: int, kernels: int) -> list[StepKernels]:
        """A step moving `accesses` parameter-sized tensors with `kernels` kernels a parameter (a
        for-loop) or a multi_tensor_apply launch (foreach, fused)."""
        loop = self.impl == "for-loop"
        launches = kernels * (params.count if loop else multi_tensor_launches(params))
        return [StepKernels(accesses * params.total(), launches, loop)]

    # -- torch side ----------------------------------------------------------------------------
    def torch_optimizer(self, params):
        """The optimizer over a real model's trainable `params` (imports torch inside)."""
        raise NotImplementedError

    def torch_optimizer_for(self, model):
        """The optimizer over a real model's trainable parameters (one that groups them by name
        overrides this)."""
        return self.torch_optimizer([p for p in model.parameters() if p.requires_grad])

    def host_state(self, state: dict) -> list:
        """State tensors that stay on the host (torch.optim's `step` counters unless fused): not
        GPU memory, so the executors' trackers leave them out."""
        return [state["step"]] if "step" in state and self.impl != "fused" else []

    def torch_flags(self) -> dict:
        """torch.optim's foreach/fused keywords for `impl`."""
        if self.impl == "for-loop":
            return {"foreach": False}
        return {"foreach": self.impl == "foreach", "fused": self.impl == "fused"}

    @classmethod
    def describe(cls) -> dict:
        from .base import Method

        return Method.describe.__func__(cls)
