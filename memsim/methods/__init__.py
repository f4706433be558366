"""The registry: every method and optimizer memsim models, by the name a workload gives it.

Discovered: each module of this package is imported, and every Method or Optimizer class it
defines with a name of its own is registered. Adding a method is adding its module.
"""

from __future__ import annotations

import importlib
import pkgutil

from pydantic import ValidationError

from ..errors import suggest
from .base import LayerPlan, LinearSite, Method, Methods
from .optimizer import Optimizer


def _discover() -> tuple[dict[str, type[Method]], dict[str, type[Optimizer]]]:
    methods, optimizers = {}, {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for cls in vars(module).values():
            if not (isinstance(cls, type) and cls.__module__ == module.__name__ and issubclass(cls, (Method, Optimizer))):
                continue
            name = cls.model_fields["name"].default
            if isinstance(name, str) and name and getattr(cls, "selectable", True):
                (optimizers if issubclass(cls, Optimizer) else methods)[name] = cls
                globals()[cls.__name__] = cls
    return methods, optimizers


METHODS, OPTIMIZERS = _discover()


def _spec(item, what: str) -> dict:
    if isinstance(item, str):
        return {"name": item}
    if isinstance(item, dict) and "name" in item:
        return dict(item)
    raise ValueError(f"each {what} is a kebab-case name or a mapping with 'name' and its parameters")


def parse_method(item) -> Method:
    if isinstance(item, Method):
        return item
    spec = _spec(item, "method")
    name = spec["name"]
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'{suggest(str(name), METHODS)}; known: {', '.join(METHODS)}")
    return _build(METHODS[name], spec, f"{name}.")


DEFAULT_OPTIMIZER = "adamw"


def parse_optimizer(item) -> Optimizer:
    """An optimizer by name or mapping; a mapping without a name is the default's (adamw)."""
    if isinstance(item, Optimizer):
        return item
    spec = _spec({"name": DEFAULT_OPTIMIZER, **item} if isinstance(item, dict) else item, "optimizer")
    name = spec["name"]
    if name not in OPTIMIZERS:
        raise ValueError(f"name: '{name}' is not one of {', '.join(OPTIMIZERS)}{suggest(str(name), OPTIMIZERS)}")
    return _build(OPTIMIZERS[name], spec, "")


def _build(cls, spec: dict, prefix: str):
    """The method or optimizer `cls` with `spec`'s parameters; a bad one is a ValueError whose
    message starts with '{prefix}PARAMETER: ' (the workload's error adds the field's path)."""
    name = spec["name"]
    try:
        return cls(**spec)
    except ValidationError as e:
        err = e.errors()[0]
        field = prefix + ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            valid = [f for f in cls.model_fields if f != "name"]
            raise ValueError(f"{field}: unknown parameter{suggest(str(err['loc'][-1]), valid)}; "
                             f"{name} takes {', '.join(valid) or 'no parameters'}") from None
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            msg = f"{name} has no {err.get('input')!r}; use {err.get('ctx', {}).get('expected', '')}"
        raise ValueError(f"{field}: {msg}" if err["loc"] else f"{prefix}{msg}") from None


def catalog() -> list[dict]:
    """Every method and optimizer described (memsim list methods --json)."""
    return [cls.describe() for cls in (*METHODS.values(), *OPTIMIZERS.values())]


def host_calibration_steps() -> dict[str, list]:
    """{step name: the methods its calibration step runs with} for the methods whose host cost
    is measured by a step of their own."""
    return {cls.host_step: list(cls.host_methods) for cls in METHODS.values() if cls.host_step}


__all__ = ["METHODS", "OPTIMIZERS", "LayerPlan", "LinearSite", "Method", "Methods", "Optimizer", "catalog", "host_calibration_steps",
           "parse_method", "parse_optimizer", *(cls.__name__ for cls in (*METHODS.values(), *OPTIMIZERS.values()))]
