"""Activation checkpointing as transformers runs it (gradient_checkpointing_enable: torch.utils.
checkpoint, non-reentrant, around each decoder layer): the layer's forward saves only its input,
and backward runs it again with grad before backpropagating through it. Every layer, or every
k-th one (layers i with i % k == 0).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import InputError
from .base import LayerPlan, Method, replace


class ActivationCheckpointing(Method):
    name: Literal["activation-checkpointing"] = "activation-checkpointing"
    every: int = Field(1, ge=1)
    summary = "recompute each decoder layer's forward in backward instead of saving its activations"
    citation = "Chen et al., Training Deep Nets with Sublinear Memory Cost, 2016 (arXiv:1604.06174)"
    # Each tensor autograd saves in a recomputed layer goes through Python hooks (OpCost.host_calls).
    host_step = "ckpt-train"
    host_methods = ("activation-checkpointing",)
    host_cost = "hook"
    conflicts = ("activation-offload",)

    def layer(self, index: int, layers: int, plan: LayerPlan) -> LayerPlan:
        return replace(plan, recompute=index % self.every == 0)

    def layer_period(self) -> int:
        return self.every

    def marks_embedding_output(self) -> bool:
        # PEFT users call enable_input_require_grads() with a frozen embedding, so that the
        # recomputed layers have an input that requires grad (the executors do the same).
        return True

    def check_torch(self) -> None:
        if self.every > 1:
            raise InputError("methods.activation-checkpointing.every: the executors checkpoint every layer "
                             "(gradient_checkpointing_enable); every > 1 is analytic-only")

    def apply_torch(self, model):
        self.check_torch()
        model.gradient_checkpointing_enable()
        # A no-op where the embedding trains; with it frozen (in whichever order the methods were
        # applied) the recomputed layers' input must require grad.
        model.enable_input_require_grads()
        return model
