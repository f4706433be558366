"""Hardware profiles, every figure with its source: HardwareSpec (a GPU or other accelerator,
hardware/<name>.yaml) and the rest of a machine (CPU host, link, SSD, microcontroller, machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from .errors import load_yaml


class Figure(BaseModel):
    """A number and where it comes from (a datasheet page, a measurement with its date)."""

    model_config = ConfigDict(extra="forbid")
    # A number, finite and positive: not text, nor a boolean (which a lax float reads as 1.0).
    value: float = Field(gt=0, strict=True, allow_inf_nan=False)
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
        return load_yaml(cls, path, "hardware profile")

    def roofs(self, dtype: str) -> tuple[float | None, float | None]:
        """The datasheet's peak FLOP/s in `dtype` and memory bandwidth (None where it has none)."""
        peak, bandwidth = self.peak_flops.get(dtype), self.memory_bandwidth_bytes_per_s
        return (peak.value if peak else None), (bandwidth.value if bandwidth else None)

    @classmethod
    def with_capacity(cls, capacity_bytes: int) -> HardwareSpec:
        """An anonymous device of a given capacity (e.g. `--hardware 24GiB`)."""
        return cls(
            name=f"{capacity_bytes / 2**30:g}GiB",
            display_name=f"a {capacity_bytes / 2**30:g} GiB device",
            memory_capacity_bytes=Figure(value=capacity_bytes, source="given on the command line"),
        )


# --- The rest of a machine: CPU hosts, links, SSDs, microcontrollers, and machines that compose them.
# Each lives in its own folder of hardware/ (cpu/, links/, ssd/, mcu/, machines/); see hardware/README.md.


class Component(BaseModel):
    """What every non-GPU profile shares; a subclass pins `kind`, so a file in the wrong folder fails."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    display_name: str = ""
    vendor: str = ""
    profile: Literal["datasheet", "measured"] = "datasheet"
    notes: str = ""

    @classmethod
    def from_path(cls, path: Path):
        return load_yaml(cls, path, f"{get_args(cls.model_fields['kind'].annotation)[0]} profile")


class CpuHostSpec(Component):
    """The host a GPU sits in: DRAM (where offloaded state lives) and the cores that run CPU-side optimizers."""

    kind: Literal["cpu"]
    dram_capacity_bytes: Figure
    dram_bandwidth_bytes_per_s: Figure  # peak, all sockets together
    cores: Figure  # physical cores, all sockets
    vector_flops: dict[str, Figure] = {}  # per dtype, all cores: cores x clock x FLOP/cycle of the vector/matrix units
    pcie_lanes: Figure | None = None
    pcie_generation: Figure | None = None


class LinkSpec(Component):
    """A wire between two memories. Bandwidth is per direction (datasheets often quote both added)."""

    kind: Literal["link"]
    bandwidth_bytes_per_s: Figure
    latency_s: Figure | None = None


class SsdSpec(Component):
    kind: Literal["ssd"]
    capacity_bytes: Figure
    seq_read_bytes_per_s: Figure
    seq_write_bytes_per_s: Figure
    interface: str = Field(pattern=r"^pcie-gen[3-6]-x(1|2|4|8|16)$")  # a name in hardware/links/


class McuSpec(Component):
    kind: Literal["mcu"]
    core: str
    cores: Figure | None = None  # absent: one core
    clock_hz: Figure
    sram_bytes: Figure  # on-chip data RAM a model's tensors can use
    flash_bytes: Figure | None = None  # on-chip flash (weights live here); absent where the flash is external
    macs_per_cycle: Figure  # int8 multiply-accumulates per cycle per core, with the core's SIMD extension

    @property
    def peak_macs_per_s(self) -> float:
        return (self.cores.value if self.cores else 1) * self.clock_hz.value * self.macs_per_cycle.value


class MachineSpec(Component):
    """A machine by name: which GPU (and how many), in which host, over which link, with which SSD."""

    kind: Literal["machine"]
    gpu: str
    gpu_count: int = Field(default=1, ge=1, strict=True)
    host: str
    link: str  # host <-> GPU
    gpu_link: str | None = None  # GPU <-> GPU (NVLink), where there is one
    ssd: str | None = None


class Machine(BaseModel):
    """A MachineSpec with its parts loaded (catalog.load_machine builds it)."""

    spec: MachineSpec
    gpu: HardwareSpec
    host: CpuHostSpec
    link: LinkSpec
    gpu_link: LinkSpec | None = None
    ssd: SsdSpec | None = None
    ssd_link: LinkSpec | None = None  # the SSD's own interface

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def display_name(self) -> str:
        return self.spec.display_name

    @property
    def gpu_count(self) -> int:
        return self.spec.gpu_count
