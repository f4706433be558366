"""Memory beyond the GPU's caching allocator: each tier's peak, and the host's capacity.

- managed: CUDA managed memory (cudaMallocManaged, as bitsandbytes' paged optimizers allocate):
  outside torch's allocator, on the device while the step uses it, evicted to the host under
  pressure, so it adds to the device's bytes but never makes a step run out of memory.
- cpu: pinned host memory from torch's CachingHostAllocator, which rounds each request up to a
  power of two and caches freed blocks for requests of the same size class
  (aten/src/ATen/core/CachingHostAllocator.h, torch 2.11), so its pool is, per size class, the most
  blocks of that class alive at once.
- nvme: files on the machine's SSD (a swap of optimizer state or parameters): their bytes, as
  written, checked against the SSD's capacity.
"""

from __future__ import annotations

from .catalog import component_names, load_component, load_machine, parse_size
from .program import Program
from .report import TierPeak
from .simulator import simulate
from .tape import CPU, MANAGED, NVME


def power_of_two(nbytes: int) -> int:
    """A pinned host block: the request rounded up to a power of two."""
    return 1 << (nbytes - 1).bit_length() if nbytes > 0 else 0


def tier_peaks(program: Program, tiers: set[str]) -> dict[str, TierPeak]:
    """Each tier's peak: allocated (live tensors' blocks), reserved (what its allocator holds) and
    device bytes (what the tier shows in use)."""
    out = {}
    for tier in (MANAGED, NVME):  # no allocator rounds or caches these: their live bytes are all
        if tier in tiers:
            live = simulate(program, tier=tier, rounding=lambda n: n).bytes
            out[tier] = TierPeak(allocated_bytes=live, reserved_bytes=live, device_bytes=live)
    if CPU in tiers:
        blocks = simulate(program, tier=CPU, rounding=power_of_two).bytes
        pool = _pinned_pool_bytes(program)
        out[CPU] = TierPeak(allocated_bytes=blocks, reserved_bytes=pool, device_bytes=pool)
    return out


def _pinned_pool_bytes(program: Program) -> int:
    """The CachingHostAllocator's pool: per power-of-two size class, its peak of live blocks."""
    sizes = {power_of_two(n) for seg in program.segments for n, cat, sign, *_ in seg.events if sign > 0 and cat.startswith(CPU + ":")}
    return sum(simulate(program, tier=CPU, rounding=lambda n, c=c: c if power_of_two(n) == c else 0).bytes for c in sizes)


def load_host_capacity(host: str | None, hw) -> int | None:
    """The host's memory: a CPU host of the catalog or a capacity ('512GiB'), else that of the
    catalog machine the GPU sits in (hardware/machines/), else None (not known)."""
    if host:
        size = parse_size(host)
        return size if size is not None else int(load_component("cpu", host).dram_capacity_bytes.value)
    machine = _machine_of(hw)
    return int(machine.host.dram_capacity_bytes.value) if machine else None


def load_ssd_capacity(hw) -> int | None:
    """The SSD of the catalog machine the GPU sits in, else None (not known)."""
    machine = _machine_of(hw)
    return int(machine.ssd.capacity_bytes.value) if machine and machine.ssd else None


def tier_capacities(others: dict, host: str | None, hw) -> tuple[dict[str, int], list[str]]:
    """The capacity of each tier beyond the GPU's that the step uses, and a note for each unknown."""
    capacities, notes = {}, []
    if CPU in others:
        capacities[CPU] = load_host_capacity(host, hw)
        if capacities[CPU] is None:
            notes.append("cpu: no host named (host: a CPU host of memsim list cpu, or a capacity): its capacity is not checked")
    if NVME in others:
        capacities[NVME] = load_ssd_capacity(hw)
        if capacities[NVME] is None:
            notes.append(f"nvme: no catalog machine gives {hw.name} an SSD (hardware/machines/): its capacity is not checked")
    return {t: c for t, c in capacities.items() if c is not None}, notes


def _machine_of(hw):
    for name in component_names("machine"):
        machine = load_machine(name)
        if machine.gpu.name == hw.name:
            return machine
    return None

