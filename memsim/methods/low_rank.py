"""What the low-rank gradient optimizers (GaLore, APOLLO) share: the projected matrices, the
checks of rank and targets, and their torch side's two parameter groups."""

from __future__ import annotations

from ..errors import InputError
from ..params import PROJECTIONS, Param, linear_shapes
from .optimizer import Optimizer


def valid_targets(v) -> tuple[str, ...]:
    """A method's `targets`: decoder-layer projections by their nn.Linear names."""
    bad = [t for t in v if t not in PROJECTIONS]
    if bad or not v:
        raise ValueError(f"unknown target(s) {list(bad) or '[]'}; valid: {', '.join(PROJECTIONS)}")
    return tuple(v)


def check_projection(method, model, workload, wraps: dict[str, str]) -> None:
    """One-line refusals: another optimizer than those it wraps ({optimizer: its torch class}), a
    target the model does not have as a linear layer, a rank above the smallest projected side."""
    if workload.optimizer.name not in wraps:
        known = ", ".join(f"{name} ({cls})" for name, cls in wraps.items())
        raise InputError(f"methods.{method.name}: wraps optimizer {known}, not {workload.optimizer.name}")
    shapes = linear_shapes(model)
    missing = [t for t in method.targets if t not in shapes]
    if missing:
        raise InputError(f"methods.{method.name}.targets: {', '.join(missing)} are not linear layers of '{model.name}'")
    smallest = min(min(shapes[t]) for t in method.targets)
    if method.rank > smallest:
        raise InputError(f"methods.{method.name}.rank: {method.rank} exceeds the smallest projected side ({smallest})")


class LowRankAdamW(Optimizer):
    """An Adam whose targets' weights keep moments of a rank-r projection of their gradient; every
    other trainable parameter takes the same Python loop unprojected (`step` a Python int)."""

    selectable = False
    impl: str = "for-loop"
    rank: int
    update_gap: int
    scale: float
    targets: tuple[str, ...]
    layerwise: bool = False  # an optimizer per parameter, stepped from its post-accumulate-grad hook

    @property
    def steps_in_backward(self) -> bool:
        return self.layerwise

    def projected(self, p: Param) -> bool:
        return p.is_matrix and p.name in self.targets

    def host_state(self, state: dict) -> list:
        return []

    def param_groups(self, model, **projection) -> list[dict]:
        """The unprojected parameters' group first, then the projected ones' with `projection`'s
        settings, as GaLore's and APOLLO's training scripts (and transformers' Trainer) give them."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        projected = [p for n, p in named if p.dim() == 2 and n.rsplit(".", 2)[-2] in self.targets]
        ids = {id(p) for p in projected}
        return [{"params": [p for _, p in named if id(p) not in ids]},
                {"params": projected, "rank": self.rank, "update_proj_gap": self.update_gap, "scale": self.scale,
                 "proj_type": "std", **projection}]

    def per_parameter(self, model, make):
        """transformers' layerwise optimizers (trainer_optimizer.py): `make(groups)` an optimizer
        per parameter, stepped and zeroed from the parameter's post-accumulate-grad hook; the
        loop's optimizer a LayerWiseDummyOptimizer whose step and zero_grad do nothing."""
        from transformers.trainer_pt_utils import LayerWiseDummyOptimizer

        plain, projected = self.param_groups(model)
        settings = {k: v for k, v in projected.items() if k != "params"}
        per_param = {p: make([{"params": [p]}]) for p in plain["params"]}
        per_param |= {p: make([{"params": [p], **settings}]) for p in projected["params"]}

        def hook(p):
            if p.grad is not None:
                per_param[p].step()
                per_param[p].zero_grad()

        for p in per_param:
            p.register_post_accumulate_grad_hook(hook)
        return LayerWiseDummyOptimizer(optimizer_dict=per_param, lr=1e-4)

    def ordered(self, params) -> list[Param]:
        """Two layer blocks' parameters in the step's order: the unprojected group, then the projected."""
        walk = params.walk(2)
        return [p for p in walk if not self.projected(p)] + [p for p in walk if self.projected(p)]
