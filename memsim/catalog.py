"""Built-in models (data/models/*.json) and hardware (hardware/*.yaml), found by name."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import InputError, suggest
from .hardware import Figure, HardwareSpec
from .model import ModelSpec

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(GiB|GB|MiB|MB)\s*$", re.IGNORECASE)
_UNITS = {"gib": 2**30, "gb": 10**9, "mib": 2**20, "mb": 10**6}


def _folder(package: str) -> Path:
    return Path(str(resources.files(package)))


def models_dir() -> Path:
    return _folder("memsim.data") / "models"


def hardware_dir() -> Path:
    return _folder("memsim.hardware_profiles")


def model_names() -> list[str]:
    return list(_names("memsim.data", "models/*.json"))


def hardware_names() -> list[str]:
    return list(_names("memsim.hardware_profiles", "*.yaml"))


@lru_cache(maxsize=None)
def _names(package: str, pattern: str) -> tuple[str, ...]:
    """The installed catalog does not change while memsim runs: glob it once."""
    return tuple(sorted(p.stem for p in _folder(package).glob(pattern)))


@lru_cache(maxsize=64)
def _limited(ref: str) -> HardwareSpec:
    base_ref, _, cap_ref = ref.partition("@")
    base, cap = load_hardware(base_ref), load_hardware(cap_ref).usable_bytes
    if cap > base.usable_bytes:
        raise InputError(f"hardware: '{ref}' asks for more than {base.name} has ({base.usable_bytes} bytes)")
    visible = Figure(value=cap, source=f"{base.name} limited to {cap_ref.strip()}'s capacity (emulated)")
    return base.model_copy(update={"name": ref.strip(), "cuda_visible_bytes": visible})


@lru_cache(maxsize=256)
def _model_by_name(name: str) -> ModelSpec:
    return ModelSpec.from_path(models_dir() / f"{name}.json")


def load_model(ref) -> ModelSpec:
    """A catalog name, a path to a config.json, or an inline mapping of config.json keys."""
    if isinstance(ref, ModelSpec):
        return ref
    if isinstance(ref, dict):
        return ModelSpec.from_config(ref, name=str(ref.get("_name_or_path", "inline")))
    if not isinstance(ref, str) or not ref.strip():
        raise InputError("model: give a catalog name (memsim list models), a path to a config.json, or a mapping")
    key = ref.strip().lower()
    if key in model_names():
        return _model_by_name(key)
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" and path.exists():
        return ModelSpec.from_path(path)
    raise InputError(f"model: unknown model '{ref}'{suggest(key, model_names())} (memsim list models shows all; a config.json path works too)")


def raw_config(ref) -> dict:
    """The config.json mapping behind a model reference (what the executors build from)."""
    if isinstance(ref, dict):
        return dict(ref)
    load_model(ref)  # validates, with the same one-line errors
    key = ref.strip().lower()
    path = models_dir() / f"{key}.json" if key in model_names() else Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
    return json.loads(path.read_text())


@lru_cache(maxsize=64)
def _hardware_by_name(name: str) -> HardwareSpec:
    return HardwareSpec.from_path(hardware_dir() / f"{name}.yaml")


def load_hardware(ref) -> HardwareSpec:
    """A catalog name, a path to a profile YAML, or a capacity such as '24GiB'; `DEVICE@CAPACITY`
    is a device limited to a capacity (a size, or another device's), as `memsim validate`
    emulates a smaller card on a larger one: 'h100-sxm-80gb@rtx-4090'."""
    if isinstance(ref, HardwareSpec):
        return ref
    if not isinstance(ref, str) or not ref.strip():
        raise InputError("hardware: give a catalog name (memsim list hardware), a profile path, or a capacity like 24GiB")
    if "@" in ref:
        return _limited(ref)
    key = ref.strip().lower()
    if key in hardware_names():
        return _hardware_by_name(key)
    m = _SIZE.match(ref)
    if m:
        nbytes = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
        if nbytes <= 0:
            raise InputError(f"hardware: capacity '{ref}' must be positive")
        return HardwareSpec.with_capacity(nbytes)
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml") and path.exists():
        return HardwareSpec.from_path(path)
    raise InputError(
        f"hardware: unknown device '{ref}'{suggest(key, hardware_names())} (memsim list hardware shows all; a capacity like 24GiB works too)"
    )
