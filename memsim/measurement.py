"""Measurement: what a real run of a workload showed, with where and when it was measured.

The executors (memsim.executors.run) produce it; `memsim validate` puts it beside the Report.
No torch here: the contract is read where torch is absent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class Provenance(BaseModel):
    """Where a figure comes from: every measured number carries one."""

    device: str  # torch.cuda.get_device_name(), or the CPU's name for the tracker backend
    backend: Literal["cuda", "cpu-tracker"]
    driver: str = ""  # NVIDIA driver version (NVML), empty on CPU
    cuda: str = ""  # CUDA runtime torch was built with
    torch: str
    transformers: str
    peft: str = ""
    python: str
    date: str  # ISO date of the run
    total_memory_bytes: int = 0  # torch.cuda.get_device_properties(0).total_memory
    emulated_capacity_bytes: int = 0  # set_per_process_memory_fraction emulating a smaller card; 0: off
    libraries: dict[str, str] = {}  # the methods' libraries importable in the run: {distribution: version}


class Measurement(BaseModel):
    case: str  # the suite's case id
    workload: dict[str, Any]  # the Workload's fields, as run
    fits: bool  # False: the run ran out of memory
    peak_allocated_bytes: int = 0  # torch.cuda.max_memory_allocated() over the timed steps
    peak_reserved_bytes: int = 0  # torch.cuda.max_memory_reserved(); 0 on the CPU (no caching allocator)
    device_bytes: int = 0  # device memory in use after the steps (cudaMemGetInfo: context included)
    context_bytes: int = 0  # device memory in use before anything was allocated: CUDA context, modules
    resident_bytes: int = 0  # allocated before the timed steps: weights, optimizer state (and the cache for decode)
    step_times_s: list[float] = []  # one per timed step (CUDA events on a GPU)
    tokens_per_step: int = 0  # tokens a step processes (train, prefill) or generates (decode, generate)
    requested_bytes: int = 0  # when it did not fit: the allocation that failed
    error: str = ""  # a failure that is not out-of-memory (then no figure above is meaningful)
    # The host's speed in this run's process (it varies: host-bound steps ran 0.66x-1.73x as long on two H200s),
    # measured after the steps as `memsim calibrate` measures it: calibration.LaunchCosts' steps,
    # {"steps": {step: [host seconds per kernel, kernels]}}, or in older runs a field per figure,
    # hf_<step>_host_per_kernel_s and hf_<step>_kernels (LaunchCosts.measured_again reads both).
    host_launch: dict[str, Any] = {}
    # Seconds per bare CPU op (executors/host_costs.py host_index) around each timed step, the mean
    # of one before and one after it: the host's speed while the steps ran (empty before 2026-12).
    host_index_s: list[float] = []
    # The SM clock NVML reported after each timed step (0 where it could not be read; empty before
    # 2026-12), beside the clocks the profile's products were timed at (MatmulPoint.sm_clock_mhz).
    sm_clock_mhz: list[float] = []
    # generate: each timed step's seconds to its first token (the prefill and its sampling); the
    # rest of the step is its decode steps (empty before 2026-12).
    first_token_s: list[float] = []
    # Pinned host memory over the timed steps (torch.cuda.host_memory_stats, reset before each):
    # the pool's bytes (allocated_bytes.peak: active and cached blocks) and the active blocks'.
    host_pinned_peak_bytes: int = 0
    host_pinned_active_peak_bytes: int = 0
    provenance: Provenance

    @property
    def step_time_s(self) -> float:
        """Median of the timed steps."""
        return _median(self.step_times_s)

    @property
    def phase_times_s(self) -> dict[str, float]:
        """Median seconds of each phase of a step: a prefill's or decode's whole step, a generate's
        time to first token ("prefill") and the rest ("decode", its new_tokens - 1 decode steps)."""
        task = self.workload.get("task", "train")
        if task in ("prefill", "decode"):
            return {task: self.step_time_s}
        if task == "generate" and self.first_token_s:
            pairs = list(zip(self.step_times_s, self.first_token_s))
            return {"prefill": _median([f for _, f in pairs]), "decode": _median([t - f for t, f in pairs])}
        return {}

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_time_s if self.step_time_s else 0.0


def _median(values: list[float]) -> float:
    """The middle value (the upper one of an even count, as a step time has always been taken)."""
    t = sorted(values)
    return t[len(t) // 2] if t else 0.0
