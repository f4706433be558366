"""Workload: what to run, where, and how. The field names are a contract (docs/workload.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from .errors import InputError, suggest
from .methods import DEFAULT_OPTIMIZER, METHODS, OPTIMIZERS, Method, Optimizer, parse_method, parse_optimizer

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TASKS = ("train", "prefill", "decode", "generate")
ATTENTIONS = ("sdpa", "eager", "flash")
RUNTIMES = ("hf-transformers",)


class Precision(BaseModel):
    """The parameters' dtype and the matmuls' dtype. Equal: the model runs in that dtype. weights
    fp32 with compute bf16/fp16: torch.autocast mixed precision (the forward under
    torch.autocast(dtype=compute), backward and optimizer outside it; memsim/runtimes/autocast.py)."""

    model_config = ConfigDict(extra="forbid")
    weights: Literal["fp32", "bf16", "fp16"] = "bf16"
    compute: Literal["fp32", "bf16", "fp16"] = "bf16"


class Workload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | dict[str, Any] = "tinyllama-1.1b"
    hardware: str = "rtx-4090"
    host: str | None = Field(None, description="the host's memory: a CPU host (memsim list cpu) or a capacity such as 512GiB")
    task: Literal["train", "prefill", "decode", "generate"] = "train"
    batch: int = Field(1, ge=1)
    seq: int = Field(1024, ge=1)
    generate: int = Field(0, ge=0, description="new tokens, for task=generate")
    precision: Precision = Precision()
    optimizer: SerializeAsAny[Optimizer] = Field(default_factory=lambda: parse_optimizer(DEFAULT_OPTIMIZER))
    attention: Literal["sdpa", "eager", "flash"] = "sdpa"
    # prefill: the logits of the last position only (generate's prefill, logits_to_keep=1), or of
    # every position (model(input_ids) for scoring or evaluation).
    logits: Literal["last", "all"] = "last"
    methods: list[SerializeAsAny[Method]] = []
    runtime: Literal["hf-transformers"] = "hf-transformers"

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer(cls, v):
        return parse_optimizer(v)

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, v):
        if not isinstance(v, (list, tuple)):
            raise ValueError("a list of methods (names or mappings with 'name')")
        parsed = [parse_method(m) for m in v]
        names = [m.name for m in parsed]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"method(s) {', '.join(sorted(dup))} given twice")
        return parsed

    @model_validator(mode="after")
    def _consistent(self):
        if self.host is not None:
            from .tiers import load_host_capacity

            try:
                load_host_capacity(self.host, None)
            except InputError as e:
                raise ValueError(f"host: {str(e).split(': ', 1)[-1]}") from None
        p = self.precision
        if p.weights != p.compute and p.weights != "fp32":
            raise ValueError(
                f"precision: weights={p.weights} with compute={p.compute} is not a mode torch runs (autocast lowers "
                "fp32 weights' matmuls to 16 bits); use weights fp32 with compute bf16 or fp16 (autocast), or one dtype for both"
            )
        if self.logits == "all" and self.task != "prefill":
            raise ValueError(f"logits: all applies to task=prefill (a forward keeping every position's logits), not {self.task}")
        if self.task == "generate" and self.generate < 1:
            raise ValueError("generate: task=generate needs generate >= 1 (new tokens)")
        for m in self.methods:
            if self.task not in m.tasks:
                raise ValueError(f"methods: {m.name} applies to task={' or '.join(m.tasks)} only, not {self.task}")
            clash = [o.name for o in self.methods if o.name in m.conflicts]
            if clash:
                raise ValueError(f"methods: {m.name} cannot be combined with {', '.join(clash)}")
        return self

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
    head, _, rest = msg.partition(": ")
    if loc in ("methods", "optimizer") and rest and " " not in head:  # a method's own parameter
        return f"{loc}.{head}: {rest}"
    if loc == "workload" and head.split(".")[0] in Workload.model_fields:  # a check across fields names its own
        return msg
    if err["type"] == "extra_forbidden":
        field = str(err["loc"][-1])
        return f"{loc}: unknown field{suggest(field, _fields_at(err['loc']))}"
    if err["type"] == "literal_error":
        return f"{loc}: {err.get('input')!r} is not valid; {msg.lower()}"
    return f"{loc}: {msg}"


def _fields_at(loc) -> list[str]:
    """The fields valid where an unknown one was given (a method's or optimizer's own)."""
    if len(loc) > 1 and loc[0] == "precision":
        return list(Precision.model_fields)
    if len(loc) > 1 and loc[0] in ("optimizer", "methods"):
        return sorted({f for cls in (*METHODS.values(), *OPTIMIZERS.values()) for f in cls.model_fields})
    return list(Workload.model_fields)
