"""Activation offload to the host: the training forward under torch.autograd.graph.save_on_cpu(
pin_memory=True). Every tensor autograd saves (activations, and the weights a product saves for its
input's gradient) is packed as a copy in pinned host memory and the GPU's let go unless something
else holds it; backward unpacks each to a new GPU copy as it reaches the node that saved it. The
copies run on the compute stream (non_blocking, but ordered with the kernels around them).
"""

from __future__ import annotations

from typing import Literal

from ..tape import CPU
from .base import Method


class ActivationOffload(Method):
    name: Literal["activation-offload"] = "activation-offload"
    summary = "keep the tensors autograd saves in pinned host memory (torch.autograd.graph.save_on_cpu)"
    untraceable = "the trace's fake tensors live on the CPU, where save_on_cpu pins and copies nothing"
    citation = ("Rhu et al., vDNN: Virtualized Deep Neural Networks for Scalable, Memory-Efficient Neural Network "
                "Design, 2016 (arXiv:1602.08124); torch.autograd.graph.save_on_cpu")
    tiers = (CPU,)
    # save_on_cpu's hooks and checkpoint's own saved-tensor hooks nest; their interplay is not modeled.
    conflicts = ("activation-checkpointing",)

    def saved_tensors_tier(self) -> str:
        return CPU

    def apply_torch(self, model):
        return model

    def torch_forward_context(self):
        import torch

        return torch.autograd.graph.save_on_cpu(pin_memory=True)
