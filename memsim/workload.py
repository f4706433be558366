"""Workload: what to run, where, and how. The field names are a contract (docs/workload.md)."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from .catalog import load_hardware, load_model
from .errors import InputError, read_mapping, shown, suggest
from .methods import DEFAULT_OPTIMIZER, METHODS, OPTIMIZERS, Method, Optimizer, parse_method, parse_optimizer

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TASKS = ("train", "prefill", "decode", "generate")
ATTENTIONS = ("sdpa", "eager", "flash")
RUNTIMES = ("hf-transformers",)
# The largest batch, sequence or new-token count a workload may give: the search limit of
# fit.largest_fitting, 16,777,216 (a 16M-token context is past any model's published length).
MAX_COUNT = 1 << 24


def _whole(v):
    """A count: an integer (numpy's too), never a boolean, a string or a float, which pydantic
    would read as 1, or 4 for '4'."""
    if isinstance(v, bool) or not hasattr(type(v), "__index__"):
        raise ValueError(f"must be a whole number (an integer); got {shown(v)}")
    return operator.index(v)


Count = Annotated[int, BeforeValidator(_whole)]


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
    batch: Count = Field(1, ge=1, le=MAX_COUNT)
    seq: Count = Field(1024, ge=1, le=MAX_COUNT)
    generate: Count = Field(0, ge=0, le=MAX_COUNT, description="new tokens, for task=generate")
    precision: Precision = Precision()
    optimizer: SerializeAsAny[Optimizer] = Field(default_factory=lambda: parse_optimizer(DEFAULT_OPTIMIZER))
    attention: Literal["sdpa", "eager", "flash"] = "sdpa"
    # prefill: the logits of the last position only (generate's prefill, logits_to_keep=1), or of
    # every position (model(input_ids) for scoring or evaluation).
    logits: Literal["last", "all"] = "last"
    methods: list[SerializeAsAny[Method]] = []
    runtime: Literal["hf-transformers"] = "hf-transformers"

    def __init__(self, /, **data: Any):
        """Validated as given; bad input is one InputError naming the field (pydantic's
        ValidationError, with every error, is its `detail`)."""
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise InputError(describe(e), detail=e) from None

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer(cls, v):
        return parse_optimizer(_named(v, "optimizer"))

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, v):
        if not isinstance(v, (list, tuple)):
            raise ValueError("a list of methods (names or mappings with 'name')")
        parsed = [parse_method(_named(m, "method")) for m in v]
        names = [m.name for m in parsed]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"method(s) {', '.join(sorted(dup))} given twice")
        return parsed

    @model_validator(mode="after")
    def _consistent(self):
        for resolve, ref in ((load_model, self.model), (load_hardware, self.hardware)):  # cached: cheap to repeat
            try:
                resolve(ref)
            except InputError as e:
                raise ValueError(str(e)) from None
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
        """A mapping of fields validated (bad input: one InputError that names the field)."""
        if isinstance(data, Workload):
            return data
        if not isinstance(data, dict):
            raise InputError(f"workload: give a Workload or a mapping of its fields ({', '.join(cls.model_fields)}), "
                             f"not {type(data).__name__}; Workload.from_file reads a file")
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise InputError(f"workload: field names are text ({', '.join(cls.model_fields)}); got {shown(bad[0])}")
        try:
            return cls(**data)
        except TypeError as e:
            raise InputError(f"workload: {e}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> Workload:
        return cls.parse(read_mapping(path, "workload"))


def _named(item, what: str):
    """A method or optimizer as given, refused where its name is not text (a list, a number)."""
    name = item.get("name") if isinstance(item, dict) else item
    if isinstance(item, (str, dict)) and not isinstance(name, (str, type(None))):
        raise ValueError(f"each {what}'s name is text (memsim list methods); got {shown(name)}")
    return item


def describe(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"] if not isinstance(x, int)) or "workload"
    msg = err["msg"].removeprefix("Value error, ")
    head, _, rest = msg.partition(": ")
    if loc in ("methods", "optimizer") and rest and " " not in head:  # a method's own parameter
        return f"{loc}.{head}: {rest}"
    if loc == "workload" and head.split(".")[0].split(" ")[0] in Workload.model_fields:  # a check across fields names its own
        return msg
    if err["type"] == "extra_forbidden":
        field = str(err["loc"][-1])
        return f"{loc}: unknown field{suggest(field, _fields_at(err['loc']))}"
    if err["type"] == "literal_error":
        return f"{loc}: {shown(err.get('input'))} is not valid; {msg.lower()}"
    if err["loc"][:1] == ("model",) and len(err["loc"]) > 1:  # neither member of str | dict
        return f"model: give a catalog name (memsim list models), a config.json path or a mapping of its keys; got {shown(err.get('input'))}"
    return f"{loc}: {msg}"


def _fields_at(loc) -> list[str]:
    """The fields valid where an unknown one was given (a method's or optimizer's own)."""
    if len(loc) > 1 and loc[0] == "precision":
        return list(Precision.model_fields)
    if len(loc) > 1 and loc[0] in ("optimizer", "methods"):
        return sorted({f for cls in (*METHODS.values(), *OPTIMIZERS.values()) for f in cls.model_fields})
    return list(Workload.model_fields)
