"""LoRA as PEFT runs it (peft/tuners/lora/layer.py, Linear.forward, peft 0.21):

    result = base_layer(x)                       # frozen: saves nothing for its weight
    x = x.to(lora_A.weight.dtype)                # adapters are fp32 (autocast_adapter_dtype=True)
    result = result + lora_B(lora_A(dropout(x))) * scaling   # dropout 0: nn.Identity
    result = result.to(torch_result_dtype)

The base model is frozen (embeddings, norms and head included); each targeted projection gets an
A [rank, in] and a B [out, rank] adapter.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .. import ops
from ..errors import InputError
from ..params import ATTENTION_PROJECTIONS, Param, linear_shapes
from ..tape import WEIGHTS, T, Tape
from .base import LayerPlan, LinearSite, Method, replace
from .low_rank import valid_targets

ADAPTER_BYTES = 4  # fp32 adapters: peft's default autocast_adapter_dtype=True
DEFAULT_TARGETS = ("q_proj", "v_proj")  # peft's default for Llama-family models


class Lora(Method):
    name: Literal["lora"] = "lora"
    rank: int = Field(8, ge=1)
    targets: tuple[str, ...] = DEFAULT_TARGETS
    summary = "PEFT LoRA adapters (fp32) on the named projections, the base frozen"
    citation = "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, 2021 (arXiv:2106.09685)"
    host_step = "lora-train"  # peft's Python per adapter costs the host more per kernel
    host_methods = ({"name": "lora", "rank": 8, "targets": ["q_proj", "v_proj"]},)
    conflicts = ("lisa",)

    _targets = field_validator("targets")(lambda cls, v: valid_targets(v))

    def check(self, model, workload) -> None:
        # PEFT's target_modules match nn.Linear names; a mixture of experts keeps its MLP in 3-D
        # parameters of one module (MixtralExperts / Qwen2MoeExperts), which they do not reach.
        missing = [t for t in self.targets if t not in linear_shapes(model)]
        if missing:
            raise InputError(
                f"methods.lora.targets: {', '.join(missing)} on the mixture of experts '{model.name}' is not modeled (PEFT's "
                f"target_modules do not reach its 3-D expert weights); use {', '.join(ATTENTION_PROJECTIONS)}")
        for t in self.targets:
            fan_in, fan_out = linear_shapes(model)[t]
            if self.rank > min(fan_in, fan_out):
                raise InputError(f"methods.lora.rank: {self.rank} exceeds {t}'s smaller side ({min(fan_in, fan_out)}); "
                                 f"use a rank of at most {min(fan_in, fan_out)}")

    def trains(self, part: str, trains: bool) -> bool:
        return False

    def layer(self, index: int, layers: int, plan: LayerPlan) -> LayerPlan:
        return replace(plan, trainable=False)

    def extra_params(self, model) -> tuple[Param, ...]:
        shapes = linear_shapes(model)
        return tuple(p for t in self.targets for p in (Param(self.rank, shapes[t][0], ADAPTER_BYTES, f"{t}.lora_A"),
                                                        Param(shapes[t][1], self.rank, ADAPTER_BYTES, f"{t}.lora_B")))

    def wrap_linear(self, tape: Tape, site: LinearSite, weight):
        if site.name not in self.targets:
            return weight
        return LoraWeight(weight, site.fan_in, site.fan_out, self.rank, site.dtype_bytes, tape)

    def apply_torch(self, model):
        from peft import LoraConfig

        return _peft_model(model, LoraConfig(r=self.rank, lora_alpha=2 * self.rank, lora_dropout=0.0,
                                             target_modules=list(self.targets)))


class LoraWeight(T):
    """A frozen weight carrying its adapter; ops.linear hands it to `forward`."""

    def __init__(self, base: T, fan_in: int, fan_out: int, rank: int, dtype_bytes: int, tp: Tape):
        super().__init__(base.name, base.storage, requires_grad=False, leaf=True)
        self.fan_in, self.fan_out, self.rank, self.dtype_bytes = fan_in, fan_out, rank, dtype_bytes
        self.a = tp.external(f"{base.name}.lora_A", rank * fan_in * ADAPTER_BYTES, WEIGHTS, True, leaf=True)
        self.b = tp.external(f"{base.name}.lora_B", fan_out * rank * ADAPTER_BYTES, WEIGHTS, True, leaf=True)
        self.base = T(base.name, base.storage, requires_grad=False, leaf=True)
        self.compute_bytes = ADAPTER_BYTES  # the adapter matmuls' output dtype (16-bit under autocast)

    def map_parts(self, wrap, compute_bytes: int) -> list:
        """Each weight it runs, wrapped by `wrap(part, fan_in, fan_out)` (autocast), the adapter
        products then in `compute_bytes`; returns the wrapped parts."""
        self.base = wrap(self.base, self.fan_in, self.fan_out)
        self.a = wrap(self.a, self.fan_in, self.rank)
        self.b = wrap(self.b, self.rank, self.fan_out)
        self.compute_bytes = compute_bytes
        return [self.base, self.a, self.b]

    def forward(self, tp: Tape, name: str, x: T, out_nbytes: int, bias: T | None) -> T:
        result = ops.linear(tp, name, x, self.base, out_nbytes, bias)
        scaled = self.adapter(tp, name, x, out_nbytes // (self.fan_out * self.dtype_bytes))
        summed = ops.add(tp, f"{name}.lora_add", result, scaled, scaled.nbytes)  # promoted to fp32
        tp.drop(result, scaled)
        out = ops.cast(tp, f"{name}.lora_out", summed, out_nbytes)
        tp.drop(summed)
        return out


    def adapter(self, tp: Tape, name: str, x: T, tokens: int) -> T:
        """lora_B(lora_A(x.to(fp32))) * scaling, in the adapters' output dtype."""
        xa = ops.cast(tp, f"{name}.lora_x", x, tokens * self.fan_in * ADAPTER_BYTES)
        h = ops.linear(tp, f"{name}.lora_A", xa, self.a, tokens * self.rank * self.compute_bytes, dtype_bytes=self.compute_bytes)
        tp.drop(xa)
        y = ops.linear(tp, f"{name}.lora_B", h, self.b, tokens * self.fan_out * self.compute_bytes, dtype_bytes=self.compute_bytes)
        tp.drop(h)
        scaled = ops.scale(tp, f"{name}.lora_scaling", y)
        tp.drop(y)
        return scaled


def _peft_model(model, config):
    """get_peft_model; under FakeTensorMode, with Module.to() as an identity while it runs: PEFT
    only moves the new adapters to the base layer's device there (keeping them fp32, its default
    autocast_adapter_dtype=True), which on one fake device changes nothing, and module.to() on
    fake parameters swaps tensors, which FakeTensorMode's weakrefs forbid."""
    import torch
    from peft import get_peft_model

    if not isinstance(next(model.parameters()), torch._subclasses.fake_tensor.FakeTensor):
        return get_peft_model(model, config)
    original = torch.nn.Module.to
    torch.nn.Module.to = lambda self, *a, **k: self
    try:
        return get_peft_model(model, config)
    finally:
        torch.nn.Module.to = original
