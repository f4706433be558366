"""MeZO, the memory-efficient zeroth-order optimizer (the paper's Algorithm 1): a step perturbs
every parameter in place by +eps z, runs a no-grad forward with labels, perturbs by -2 eps z,
runs another, restores, and updates each parameter by -lr g z, with z drawn again from the same
seed for each parameter (torch.normal of the parameter's shape: one parameter-sized temporary at
a time). No gradients, no optimizer state, no saved activations.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import InputError
from .base import Method


class MeZO(Method):
    name: Literal["mezo"] = "mezo"
    eps: float = Field(1e-3, gt=0)
    summary = "zeroth-order training: two no-grad forwards a step, parameters perturbed in place"
    citation = "Malladi et al., Fine-Tuning Language Models with Just Forward Passes, 2023 (arXiv:2305.17333)"
    conflicts = ("lora", "lisa", "galore", "apollo", "apollo-mini", "activation-checkpointing", "activation-offload")

    def check(self, model, workload) -> None:
        if workload.optimizer.name != "sgd":
            raise InputError(f"methods.mezo: keeps no optimizer state (its update is SGD's); use optimizer sgd, "
                             f"not {workload.optimizer.name}")

    def forwards(self) -> int:
        return 2

    def apply_torch(self, model):
        return model

    def torch_train_step(self, model, ids) -> bool:
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())

        def perturb(scale: float) -> None:
            torch.manual_seed(seed)
            for p in params:
                z = torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device, dtype=p.data.dtype)
                p.data.add_(z, alpha=scale * self.eps)

        with torch.no_grad():
            perturb(1)
            loss_plus = model(input_ids=ids, labels=ids).loss
            perturb(-2)
            loss_minus = model(input_ids=ids, labels=ids).loss
            perturb(1)
            grad = float((loss_plus - loss_minus) / (2 * self.eps))
            torch.manual_seed(seed)
            for p in params:
                z = torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device, dtype=p.data.dtype)
                p.data.add_(z, alpha=-1e-6 * grad)
        return True
