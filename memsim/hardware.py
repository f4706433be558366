"""HardwareSpec: a device profile from hardware/<name>.yaml, every figure with its source."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError, first_error


class Figure(BaseModel):
    """A number and where it comes from (a datasheet page, a measurement with its date)."""

    model_config = ConfigDict(extra="forbid")
    value: float = Field(gt=0)
    source: str = Field(min_length=3)


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    bandwidth_bytes_per_s: Figure


class HardwareSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    kind: str = "gpu"
    display_name: str = ""
    vendor: str = ""
    profile: str = "datasheet"  # datasheet | measured
    memory_capacity_bytes: Figure
    # What CUDA reports as the device's total (cudaMemGetInfo), a little under nvidia-smi's
    # memory.total: the part a process can ever have. Measured per device; absent, the capacity.
    cuda_visible_bytes: Figure | None = None
    memory_bandwidth_bytes_per_s: Figure | None = None
    peak_flops: dict[str, Figure] = {}
    host_link: Link | None = None
    # CUDA compute capability (9.0 for an H100): which attention kernel SDPA picks depends on it.
    compute_capability: Figure | None = None

    @property
    def sm(self) -> int:
        """The compute capability as sm_XY (90); DEFAULT_SM where the profile has none."""
        from .runtimes.torch_cuda import DEFAULT_SM

        return round(self.compute_capability.value * 10) if self.compute_capability else DEFAULT_SM

    @property
    def capacity_bytes(self) -> int:
        return int(self.memory_capacity_bytes.value)

    @property
    def usable_bytes(self) -> int:
        """The capacity a will-it-fit answer compares against: CUDA's total where measured."""
        return int(self.cuda_visible_bytes.value) if self.cuda_visible_bytes else self.capacity_bytes

    @classmethod
    def from_path(cls, path: Path) -> HardwareSpec:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"hardware: cannot read profile '{path}': {e}") from None
        try:
            return cls(**raw)
        except (TypeError, ValidationError) as e:
            raise InputError(f"hardware profile '{path}': {first_error(e)}") from None

    @classmethod
    def with_capacity(cls, capacity_bytes: int) -> HardwareSpec:
        """An anonymous device of a given capacity (e.g. `--hardware 24GiB`)."""
        return cls(
            name=f"{capacity_bytes / 2**30:g}GiB",
            display_name=f"a {capacity_bytes / 2**30:g} GiB device",
            memory_capacity_bytes=Figure(value=capacity_bytes, source="given on the command line"),
        )

