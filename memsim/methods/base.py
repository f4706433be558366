"""The seam between memsim's program builder and the memory-saving methods.

A method is a pydantic model (its fields are its parameters: the workload's contract) whose hooks
the builder calls at fixed places: which parameters train, how a projection's weight is wrapped,
what each decoder layer keeps or recomputes, which extra parameters it adds. Its torch side
(`apply_torch`) sets the same method up on a real model for the executors, importing torch and
its library inside. The builder and the simulator know methods only through these hooks.

An optimizer is the same kind of object with its own hooks (memsim/methods/optimizer.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import InputError
from ..params import Param
from ..tape import GPU

# Parts of the model outside the decoder layers whose parameters a method may freeze.
ENDS = ("embed_tokens", "norm", "lm_head")


def strict_scalars(cls, data):
    """A method's or optimizer's numbers are numbers and its switches booleans: pydantic alone reads
    `true` as rank 1 and "no" as False, answers to a question the user did not ask."""
    if not isinstance(data, dict):
        return data
    for key, value in data.items():
        field = cls.model_fields.get(key)
        kind = getattr(field, "annotation", None)
        if kind in (int, float) and (isinstance(value, (bool, str)) or (kind is int and isinstance(value, float))):
            raise ValueError(f"{key}: {value!r} is not {'a whole number' if kind is int else 'a number'}")
        if kind is bool and not isinstance(value, bool):
            raise ValueError(f"{key}: {value!r} is not true or false")
    return data


@dataclass(frozen=True)
class LayerPlan:
    """What one decoder layer of a training step does: whether its own weights train, and whether
    its forward is recomputed in backward (torch.utils.checkpoint) instead of saving activations."""

    trainable: bool = True
    recompute: bool = False


@dataclass(frozen=True)
class LinearSite:
    """One projection of a decoder layer, as a method wrapping its weight sees it."""

    name: str  # the nn.Linear's name in the layer (q_proj, ..., down_proj)
    fan_in: int
    fan_out: int
    dtype_bytes: int  # the compute dtype's


class Method(BaseModel):
    """A memory-saving method: parameters as fields, hooks as methods (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    _strict = model_validator(mode="before")(classmethod(strict_scalars))
    citation: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    kind: ClassVar[str] = "method"
    tasks: ClassVar[tuple[str, ...]] = ("train",)
    conflicts: ClassVar[tuple[str, ...]] = ()  # methods it cannot be combined with
    # Its host cost, measured by a calibration step of its own (memsim.calibration): the step's
    # name, the methods that step runs with, and what it measures: "kernel" (the step's host
    # time per kernel, in place of the plain train step's) or "hook" (a host call per
    # OpCost.host_calls, beyond the plain step's line).
    host_step: ClassVar[str] = ""
    host_methods: ClassVar[tuple[Any, ...]] = ()
    host_cost: ClassVar[str] = "kernel"
    # Memory tiers besides the GPU's that the method puts tensors on (memsim.tape.TIERS).
    tiers: ClassVar[tuple[str, ...]] = ()
    # Why the traced verifier (fake tensors on the CPU) cannot run it ("": it can).
    untraceable: ClassVar[str] = ""

    def check(self, model, workload) -> None:
        """Refuse a model or workload the method cannot apply to (one-line InputError)."""

    def trains(self, part: str, trains: bool) -> bool:
        """Whether a part outside the layers (ENDS) trains, given what earlier methods said."""
        return trains

    def layer(self, index: int, layers: int, plan: LayerPlan) -> LayerPlan:
        """Decoder layer `index`'s plan, given what earlier methods made of it."""
        return plan

    def layer_period(self) -> int:
        """The period of the pattern `layer` makes over the layers (1: every layer alike)."""
        return 1

    def extra_params(self, model) -> tuple[Param, ...]:
        """Trainable parameters the method adds to each decoder layer (adapters)."""
        return ()

    def precision(self, weights: str, compute: str) -> tuple[str, str]:
        """The dtypes the model's parameters and activations end up in, given the workload's
        (a quantizing method may cast the rest of the model to fp32)."""
        return weights, compute

    def stored(self, p: Param, sizes: tuple[int, ...]) -> tuple[int, ...]:
        """The tensors parameter `p` is resident in, in bytes, given what earlier methods made of it
        (a quantized weight's codes and block scales)."""
        return sizes

    def resident(self) -> tuple[int, ...]:
        """Tensors the method keeps on the GPU besides the parameters (a shared quantization map)."""
        return ()

    def wrap_linear(self, tape, site: LinearSite, weight):
        """A projection's weight as the method runs it (ops.linear hands a weight with a
        `forward` to it); the weight itself where the method leaves the projection alone."""
        return weight

    def marks_embedding_output(self) -> bool:
        """The embedding's output requires grad even with the embedding frozen
        (enable_input_require_grads, as checkpointing a frozen model needs)."""
        return False

    def saved_tensors_tier(self) -> str:
        """The tier autograd's saved tensors of the training forward go to (saved-tensor hooks)."""
        return GPU

    def wrap_optimizer(self, optimizer):
        """The optimizer the step runs, given the workload's (a projection of its gradients)."""
        return optimizer

    def loss(self, tape, shapes, hidden, head_weight):
        """The training loss from the final hidden states and lm_head's weight, as (loss, tensors
        the caller drops with it); None: transformers' own (every logit, upcast, cross_entropy)."""
        return None

    def forwards(self) -> int:
        """No-grad forwards with labels a step runs in place of forward and backward (0: it
        backpropagates)."""
        return 0

    # -- torch side ----------------------------------------------------------------------------
    def check_torch(self) -> None:
        """Refuse, before any device work, what the executors cannot run (one-line InputError)."""

    def apply_torch(self, model):
        """The method set up on a real transformers model; returns the model to run."""
        raise InputError(f"methods.{self.name}: the executors cannot run it yet (analytic only)")

    def torch_forward_context(self):
        """A context the executors run the training forward in (None: none)."""
        return None

    def torch_loss(self, model, ids):
        """The training step's loss computed the method's own way; None: model(ids, labels=ids).loss."""
        return None

    def torch_train_step(self, model, ids) -> bool:
        """Run the training step the method's own way (True), or leave it to the protocol (False)."""
        return False

    @classmethod
    def describe(cls) -> dict:
        """Name, kind, parameters with defaults and bounds, citation and tasks (list methods --json)."""
        params = {}
        for field, info in cls.model_fields.items():
            if field == "name":
                continue
            entry = {"default": info.default if not callable(info.default_factory) else info.default_factory(),
                     "type": getattr(info.annotation, "__name__", str(info.annotation))}
            for meta in info.metadata:
                for bound in ("ge", "gt", "le", "lt"):
                    if getattr(meta, bound, None) is not None:
                        entry[bound] = getattr(meta, bound)
            params[field] = entry
        name = cls.model_fields["name"].default
        return dict(name=name, kind=cls.kind, summary=cls.summary, parameters=params, citation=cls.citation,
                    tasks=list(cls.tasks))


@dataclass(frozen=True)
class Methods:
    """A workload's methods, composed in the order it lists them: each hook folds over them."""

    items: tuple[Method, ...] = ()

    def __iter__(self):
        return iter(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def trains(self, part: str) -> bool:
        trains = True
        for m in self.items:
            trains = m.trains(part, trains)
        return trains

    def layer(self, index: int, layers: int) -> LayerPlan:
        plan = LayerPlan()
        for m in self.items:
            plan = m.layer(index, layers, plan)
        return plan

    def plans(self, layers: int) -> list[LayerPlan]:
        return [self.layer(i, layers) for i in range(layers)]

    def layer_periods(self) -> set[int]:
        return {m.layer_period() for m in self.items} | {1}

    def extra_params(self, model) -> tuple[Param, ...]:
        return tuple(p for m in self.items for p in m.extra_params(model))

    def precision(self, weights: str, compute: str) -> tuple[str, str]:
        for m in self.items:
            weights, compute = m.precision(weights, compute)
        return weights, compute

    def stored(self, p: Param) -> tuple[int, ...]:
        sizes = (p.nbytes,)
        for m in self.items:
            sizes = m.stored(p, sizes)
        return sizes

    def resident(self) -> tuple[int, ...]:
        return tuple(n for m in self.items for n in m.resident())

    def wrap_linear(self, tape, site: LinearSite, weight):
        for m in self.items:
            weight = m.wrap_linear(tape, site, weight)
        return weight

    def marks_embedding_output(self) -> bool:
        return any(m.marks_embedding_output() for m in self.items)

    def saved_tensors_tier(self) -> str:
        return next((t for m in self.items if (t := m.saved_tensors_tier()) != GPU), GPU)

    def tiers(self) -> set[str]:
        return {t for m in self.items for t in m.tiers}

    def loss(self, tape, shapes, hidden, head_weight):
        return next((out for m in self.items if (out := m.loss(tape, shapes, hidden, head_weight)) is not None), None)

    def backward(self) -> bool:
        return not any(m.forwards() for m in self.items)

    def forwards(self) -> int:
        return max((m.forwards() for m in self.items), default=0)

    def wrap_optimizer(self, optimizer):
        for m in self.items:
            optimizer = m.wrap_optimizer(optimizer)
        return optimizer

    def host_steps(self) -> list[str]:
        """The calibration steps of these methods that measure a step's host time per kernel."""
        return [m.host_step for m in self.items if m.host_step and m.host_cost == "kernel"]


__all__ = ["ENDS", "LayerPlan", "LinearSite", "Method", "Methods", "replace"]
