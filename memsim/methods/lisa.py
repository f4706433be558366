"""LISA, layerwise importance sampling (LMFlow's implementation, as in the paper's Algorithm 1):
the embeddings, the final norm and the head always train; of the decoder layers only
`active_layers` train at a time, the others frozen, the active set drawn again every K steps.

memsim models one sampling period's step, the first `active_layers` layers active (which layers
are active changes when their gradients are made in backward, not how much a step holds). The
torch side freezes the same layers. A layer that becomes frozen at a resample keeps no optimizer
state in LMFlow's callback, which rebuilds the optimizer: that is the steady state modeled.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import InputError
from .base import LayerPlan, Method, replace


class Lisa(Method):
    name: Literal["lisa"] = "lisa"
    active_layers: int = Field(2, ge=1)
    summary = "train the embeddings, head and a few sampled decoder layers; freeze the rest"
    citation = ("Pan et al., LISA: Layerwise Importance Sampling for Memory-Efficient Large Language Model "
                "Fine-Tuning, 2024 (arXiv:2403.17919)")
    conflicts = ("lora",)

    def check(self, model, workload) -> None:
        if self.active_layers > model.num_layers:
            raise InputError(f"methods.lisa.active_layers: {self.active_layers} exceeds the model's "
                             f"{model.num_layers} decoder layers; use 1 to {model.num_layers}")

    def layer(self, index: int, layers: int, plan: LayerPlan) -> LayerPlan:
        return replace(plan, trainable=plan.trainable and index < self.active_layers)

    def apply_torch(self, model):
        layers = model.model.layers
        for index, layer in enumerate(layers):
            layer.requires_grad_(index < self.active_layers)
        return model
