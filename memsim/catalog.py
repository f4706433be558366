"""Built-in models (data/models/*.json) and hardware (hardware/*.yaml, and the parts of a machine in
hardware/cpu, links, ssd, mcu, machines), found by name."""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import InputError, read_data, shown, suggest
from .hardware import CpuHostSpec, Figure, HardwareSpec, LinkSpec, Machine, MachineSpec, McuSpec, SsdSpec
from .model import ModelSpec

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(GiB|GB|MiB|MB)\s*$", re.IGNORECASE)
_UNITS = {"gib": 2**30, "gb": 10**9, "mib": 2**20, "mb": 10**6}
# The largest capacity a size may give: 1 EiB, past any machine's memory (the largest single
# systems have tens of TiB) by far, and a bound that keeps every figure derived from it a float.
MAX_CAPACITY_BYTES = 1 << 60


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


def existing_file(ref: str, suffixes: tuple[str, ...], inside: str | None = None) -> Path | None:
    """`ref` as a path to a file that exists and ends in one of `suffixes` (a folder: the file
    `inside` it), or None where it names none: no such file, a name too long for the system, a
    null byte, an unknown ~user."""
    try:
        path = Path(ref).expanduser()
        if inside and path.is_dir():
            path = path / inside
        return path if path.suffix.lower() in suffixes and path.is_file() else None
    except (OSError, ValueError, RuntimeError):
        return None


def _unknown(field: str, ref: str, names: list[str], hint: str) -> InputError:
    what = "model" if field == "model" else "device"
    return InputError(f"{field}: unknown {what} {shown(ref)}{suggest(ref.strip().lower(), names)} ({hint})")


def load_model(ref) -> ModelSpec:
    """A catalog name, a path to a config.json, or an inline mapping of config.json keys."""
    if isinstance(ref, ModelSpec):
        return ref
    if isinstance(ref, dict):
        name = ref.get("_name_or_path", "inline")
        return ModelSpec.from_config(ref, name=name if isinstance(name, str) and name else "inline")
    if not isinstance(ref, str) or not ref.strip():
        raise InputError("model: give a catalog name (memsim list models), a path to a config.json, or a mapping")
    key = ref.strip().lower()
    if key in model_names():
        return _model_by_name(key)
    path = existing_file(ref, (".json",), inside="config.json")
    if path is not None:
        return ModelSpec.from_path(path)
    raise _unknown("model", ref, model_names(), "memsim list models shows all; a config.json path works too")


def raw_config(ref) -> dict:
    """The config.json mapping behind a model reference (what the executors build from)."""
    if isinstance(ref, dict):
        return dict(ref)
    load_model(ref)  # validates, with the same one-line errors
    key = ref.strip().lower()
    path = models_dir() / f"{key}.json" if key in model_names() else existing_file(ref, (".json",), inside="config.json")
    return read_data(path, "model config.json", as_json=True)


@lru_cache(maxsize=64)
def _hardware_by_name(name: str) -> HardwareSpec:
    return HardwareSpec.from_path(hardware_dir() / f"{name}.yaml")


def parse_size(text: str) -> int | None:
    """Bytes of a capacity such as '24GiB' or '512 GB' (exact: '1.5GiB' is 1,610,612,736); None
    where the text is not one; a size of no bytes or past MAX_CAPACITY_BYTES is an InputError."""
    m = _SIZE.match(text) if isinstance(text, str) and len(text) < 64 else None
    if m is None:
        return None
    nbytes = int(Fraction(m.group(1)) * _UNITS[m.group(2).lower()])
    if not 0 < nbytes <= MAX_CAPACITY_BYTES:
        raise InputError(f"capacity '{text.strip()}' must be at least a byte and at most 1 EiB (2**60 bytes)")
    return nbytes


def load_hardware(ref) -> HardwareSpec:
    """A catalog name, a path to a profile YAML, or a capacity such as '24GiB'; `DEVICE@CAPACITY`
    is a device limited to a capacity (a size, or another device's), as `memsim validate`
    emulates a smaller card on a larger one: 'h100-sxm-80gb@rtx-4090'."""
    if isinstance(ref, HardwareSpec):
        return ref
    if not isinstance(ref, str) or not ref.strip():
        raise InputError("hardware: give a catalog name (memsim list hardware), a profile path, or a capacity like 24GiB")
    if ref.count("@") > 1:
        raise InputError(f"hardware: {shown(ref)} limits a device twice; give DEVICE@CAPACITY, e.g. h100-sxm-80gb@rtx-4090")
    if "@" in ref:
        return _limited(ref)
    key = ref.strip().lower()
    if key in hardware_names():
        return _hardware_by_name(key)
    try:
        nbytes = parse_size(ref)
    except InputError as e:
        raise InputError(f"hardware: {e}") from None
    if nbytes is not None:
        return HardwareSpec.with_capacity(nbytes)
    path = existing_file(ref, (".yaml", ".yml"))
    if path is not None:
        return HardwareSpec.from_path(path)
    raise _unknown("hardware", ref, hardware_names(), "memsim list hardware shows all; a capacity like 24GiB works too")


# --- Components beyond GPUs: hardware/cpu, links, ssd, mcu, machines (one YAML per part, named by file stem).

_FOLDERS = {"cpu": "cpu", "link": "links", "ssd": "ssd", "mcu": "mcu", "machine": "machines"}
_MODELS = {"cpu": CpuHostSpec, "link": LinkSpec, "ssd": SsdSpec, "mcu": McuSpec, "machine": MachineSpec}
KINDS = ("gpu", *_FOLDERS)
_ALIASES = {"gpus": "gpu", "hardware": "gpu", "cpus": "cpu", "host": "cpu", "hosts": "cpu", "links": "link",
            "ssds": "ssd", "mcus": "mcu", "machines": "machine"}


def _kind(kind: str) -> str:
    k = str(kind).strip().lower()
    k = _ALIASES.get(k, k)
    if k not in KINDS:
        raise InputError(f"hardware kind '{kind}' is not one of {', '.join(KINDS)}")
    return k


def component_names(kind: str) -> list[str]:
    """The catalog names of one kind ('gpu' is the flat hardware/*.yaml of hardware_names())."""
    k = _kind(kind)
    return hardware_names() if k == "gpu" else list(_names("memsim.hardware_profiles", f"{_FOLDERS[k]}/*.yaml"))


@lru_cache(maxsize=256)
def _component_by_name(kind: str, name: str):
    spec = _MODELS[kind].from_path(hardware_dir() / _FOLDERS[kind] / f"{name}.yaml")
    if spec.name != name:  # the name is how machines refer to parts: it must be the one the file is found by
        raise InputError(f"{kind} profile '{name}.yaml': name '{spec.name}' must equal the file name '{name}'")
    return spec


def load_component(kind: str, ref):
    """A catalog name or a profile YAML path of one kind: cpu, link, ssd, mcu, machine (unresolved), or gpu."""
    k = _kind(kind)
    if k == "gpu":
        return load_hardware(ref)
    if isinstance(ref, _MODELS[k]):
        return ref
    names = component_names(k)
    if not isinstance(ref, str) or not ref.strip():
        raise InputError(f"{k}: give a catalog name ({', '.join(names)}) or a profile path")
    key = ref.strip().lower()
    if key in names:
        return _component_by_name(k, key)
    path = existing_file(ref, (".yaml", ".yml"))
    if path is not None:
        return _MODELS[k].from_path(path)
    raise InputError(f"{k}: unknown {k} {shown(ref)}{suggest(key, names)} (known: {', '.join(names)})")


def _part(machine: str, field: str, kind: str, name: str | None):
    if name is None:
        return None
    names = component_names(kind)
    key = name.strip().lower()
    if key not in names:
        raise InputError(
            f"machine '{machine}': {field} '{name}' is not a {kind} profile{suggest(key, names)} (valid: {', '.join(names)})"
        )
    return load_component(kind, key)


def load_machine(ref) -> Machine:
    """A machine (catalog name or YAML path) with its GPU, host, links and SSD loaded by name."""
    spec = load_component("machine", ref)
    ssd = _part(spec.name, "ssd", "ssd", spec.ssd)
    return Machine(
        spec=spec,
        gpu=_part(spec.name, "gpu", "gpu", spec.gpu),
        host=_part(spec.name, "host", "cpu", spec.host),
        link=_part(spec.name, "link", "link", spec.link),
        gpu_link=_part(spec.name, "gpu_link", "link", spec.gpu_link),
        ssd=ssd,
        ssd_link=_part(spec.name, "ssd interface", "link", ssd.interface) if ssd else None,
    )


def _v(fig: Figure | None):
    """A figure's value for a table: whole numbers (bytes, cores) as int."""
    if fig is None:
        return None
    return int(fig.value) if float(fig.value).is_integer() else fig.value


_ROWS = {
    "gpu": lambda h: {"memory_bytes": h.capacity_bytes, "bandwidth_bytes_per_s": _v(h.memory_bandwidth_bytes_per_s),
                      "bf16_flops": _v(h.peak_flops.get("bf16")), "vendor": h.vendor, "profile": h.profile},
    "cpu": lambda c: {"dram_bytes": _v(c.dram_capacity_bytes), "dram_bandwidth_bytes_per_s": _v(c.dram_bandwidth_bytes_per_s),
                      "cores": _v(c.cores), "fp32_flops": _v(c.vector_flops.get("fp32"))},
    "link": lambda l: {"bandwidth_bytes_per_s": _v(l.bandwidth_bytes_per_s), "latency_s": _v(l.latency_s)},
    "ssd": lambda s: {"capacity_bytes": _v(s.capacity_bytes), "seq_read_bytes_per_s": _v(s.seq_read_bytes_per_s),
                      "seq_write_bytes_per_s": _v(s.seq_write_bytes_per_s), "interface": s.interface},
    "mcu": lambda m: {"core": m.core, "clock_hz": _v(m.clock_hz), "sram_bytes": _v(m.sram_bytes),
                      "flash_bytes": _v(m.flash_bytes), "peak_macs_per_s": m.peak_macs_per_s},
    "machine": lambda m: {"gpu": m.gpu.name, "gpu_count": m.gpu_count, "gpu_memory_bytes": m.gpu_count * m.gpu.capacity_bytes,
                          "host": m.host.name, "dram_bytes": _v(m.host.dram_capacity_bytes), "link": m.link.name,
                          "ssd": m.ssd.name if m.ssd else None},
}


def catalog_table(kind: str) -> list[dict]:
    """One row per catalog entry of a kind: name, display_name and the key figures (raw numbers, for `memsim list`)."""
    k = _kind(kind)
    load = load_machine if k == "machine" else (lambda n: load_component(k, n))
    rows = []
    for name in component_names(k):
        spec = load(name)
        rows.append({"name": name, "display_name": spec.display_name, **_ROWS[k](spec)})
    return rows


def check_roofline(ref, dtype: str) -> None:
    """Refuse, in one line, a device the roofline cannot time kernels on: it needs a peak FLOP/s
    in the compute dtype and a memory bandwidth, from its measured profile or its datasheet."""
    hw = load_hardware(ref)
    measured = load_measured(ref) if isinstance(ref, str) else None
    peak, bandwidth = hw.roofs(dtype)
    if measured is not None:
        peak, bandwidth = measured.peak_rate(dtype) or peak, measured.copy_bandwidth() or bandwidth
    if peak and bandwidth:
        return
    if not hw.peak_flops and not bandwidth:
        raise InputError(f"roofline: '{hw.name}' is a bare capacity, with no peak FLOP/s or memory bandwidth to time "
                         "kernels on; give a catalog GPU (memsim list hardware) or a profile YAML")
    able = [n for n in hardware_names() if all(load_hardware(n).roofs(dtype))]
    if not peak and hw.peak_flops:
        usable = [d for d in hw.peak_flops if d in ("fp32", "bf16", "fp16")]
        use = usable[-1] if usable else "fp32"
        raise InputError(f"roofline: {hw.name} has no {dtype} peak (its profile has {', '.join(hw.peak_flops)}); compute in "
                         f"one it has (precision: {{weights: {use}, compute: {use}}}), or use a GPU with a {dtype} peak: {', '.join(able)}")
    lacks = "peak FLOP/s" if not peak else "memory bandwidth"
    raise InputError(f"roofline: {hw.name}'s profile has no {lacks} to time kernels on; GPUs with {dtype} "
                     f"roofs: {', '.join(able)}; with measured profiles: {', '.join(measured_names())}")


def measured_names() -> list[str]:
    """The devices with a measured profile (hardware/measured/, what `memsim calibrate` writes)."""
    return list(_names("memsim.hardware_profiles", "measured/*.yaml"))


@lru_cache(maxsize=32)
def load_measured(hardware: str):
    """The measured profile of a catalog device (hardware/measured/<name>.yaml, what `memsim
    calibrate` writes), or None; a limited device ('h100-sxm-80gb@rtx-4090') is its base's."""
    from .calibration import MeasuredProfile

    name = str(hardware).partition("@")[0].strip().lower()
    path = hardware_dir() / "measured" / f"{name}.yaml"
    return MeasuredProfile.from_path(path) if path.exists() else None
