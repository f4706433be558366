"""Workload: what to run, where, and how. The field names are a contract (docs/workload.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError, suggest
from .methods.lora import DEFAULT_TARGETS
from .optimizers import IMPLS, OPTIMIZERS

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TASKS = ("train", "prefill", "decode", "generate")
ATTENTIONS = ("sdpa", "eager", "flash")
RUNTIMES = ("hf-transformers",)
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Precision(BaseModel):
    """The parameters' dtype and the matmuls' dtype. Equal: the model runs in that dtype. weights
    fp32 with compute bf16/fp16: torch.autocast mixed precision (the forward under
    torch.autocast(dtype=compute), backward and optimizer outside it; memsim/runtimes/autocast.py)."""

    model_config = ConfigDict(extra="forbid")
    weights: Literal["fp32", "bf16", "fp16"] = "bf16"
    compute: Literal["fp32", "bf16", "fp16"] = "bf16"


class Optimizer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "adamw"
    impl: str = "foreach"

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if v not in OPTIMIZERS:
            raise ValueError(f"'{v}' is not one of {', '.join(OPTIMIZERS)}{suggest(v, OPTIMIZERS)}")
        return v

    @field_validator("impl")
    @classmethod
    def _impl(cls, v):
        if v not in IMPLS:
            raise ValueError(f"'{v}' is not one of {', '.join(IMPLS)}{suggest(v, IMPLS)}")
        return v


class ActivationCheckpointing(BaseModel):
    """torch.utils.checkpoint around decoder layers (transformers' gradient_checkpointing_enable):
    every layer, or every k-th one. Chen et al., "Training Deep Nets with Sublinear Memory Cost",
    2016 (arXiv:1604.06174)."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["activation-checkpointing"] = "activation-checkpointing"
    every: int = Field(1, ge=1)


class Lora(BaseModel):
    """PEFT LoRA adapters on the named linear layers, base frozen (memsim/methods/lora.py)."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["lora"] = "lora"
    rank: int = Field(8, ge=1)
    targets: list[str] = list(DEFAULT_TARGETS)

    @field_validator("targets")
    @classmethod
    def _targets(cls, v):
        bad = [t for t in v if t not in LINEAR_NAMES]
        if bad or not v:
            raise ValueError(f"unknown target(s) {bad or '[]'}; valid: {', '.join(LINEAR_NAMES)}")
        return v


METHODS = {"activation-checkpointing": ActivationCheckpointing, "lora": Lora}


def parse_method(item) -> BaseModel:
    if isinstance(item, BaseModel):
        return item
    spec = {"name": item} if isinstance(item, str) else dict(item) if isinstance(item, dict) else None
    if spec is None or "name" not in spec:
        raise ValueError("each method is a kebab-case name or a mapping with 'name' and its parameters")
    name = spec["name"]
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'{suggest(name, METHODS)}; known: {', '.join(METHODS)}")
    return METHODS[name](**spec)


class Workload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | dict[str, Any] = "tinyllama-1.1b"
    hardware: str = "rtx-4090"
    task: Literal["train", "prefill", "decode", "generate"] = "train"
    batch: int = Field(1, ge=1)
    seq: int = Field(1024, ge=1)
    generate: int = Field(0, ge=0, description="new tokens, for task=generate")
    precision: Precision = Precision()
    optimizer: Optimizer = Optimizer()
    attention: Literal["sdpa", "eager", "flash"] = "sdpa"
    methods: list[Any] = []
    runtime: Literal["hf-transformers"] = "hf-transformers"

    @field_validator("methods")
    @classmethod
    def _methods(cls, v):
        parsed = [parse_method(m) for m in v]
        names = [m.name for m in parsed]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"method(s) {', '.join(sorted(dup))} given twice")
        return parsed

    @model_validator(mode="after")
    def _consistent(self):
        p = self.precision
        if p.weights != p.compute and p.weights != "fp32":
            raise ValueError(
                f"precision: weights={p.weights} with compute={p.compute} is not a mode torch runs (autocast lowers "
                "fp32 weights' matmuls to 16 bits); use weights fp32 with compute bf16 or fp16 (autocast), or one dtype for both"
            )
        if self.task == "generate" and self.generate < 1:
            raise ValueError("generate: task=generate needs generate >= 1 (new tokens)")
        if self.task != "train" and self.methods:
            raise ValueError(f"methods: {', '.join(m.name for m in self.methods)} apply to task=train only")
        return self

    def method(self, name: str):
        return next((m for m in self.methods if m.name == name), None)

    @classmethod
    def parse(cls, data: dict) -> Workload:
        """Validate, turning pydantic's report into one line that names the field."""
        try:
            return cls(**data)
        except ValidationError as e:
            raise InputError(describe(e)) from None
        except TypeError as e:
            raise InputError(f"workload: {e}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> Workload:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise InputError(f"workload: cannot read '{path}': {e.strerror}") from None
        try:
            data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise InputError(f"workload: '{path}' is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
        if not isinstance(data, dict):
            raise InputError(f"workload: '{path}' must hold a mapping of fields (model, hardware, task, ...)")
        return cls.parse(data)


def describe(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"] if not isinstance(x, int)) or "workload"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        field = str(err["loc"][-1])
        return f"{loc}: unknown field{suggest(field, _fields_at(err['loc']))}"
    if err["type"] == "literal_error":
        return f"{loc}: {err.get('input')!r} is not valid; {msg.lower()}"
    return f"{loc}: {msg}"


def _fields_at(loc) -> list[str]:
    models = {"precision": Precision, "optimizer": Optimizer}
    model = models.get(str(loc[0]), Workload) if len(loc) > 1 else Workload
    return list(model.model_fields)
