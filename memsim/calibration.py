"""A device's measured profile (what `memsim calibrate` writes) and the models read from it.

A datasheet gives peaks; a measured profile gives what a process reaches: matrix-product
throughput per shape and dtype, device copy bandwidth, host-device transfer times (pinned and
pageable, both directions) and disk bandwidth, with the provenance of the run. No torch here: the
profile is data, measured by executors/calibrate.py.
"""

from __future__ import annotations

import bisect
import math
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from .errors import InputError, load_yaml
from .measurement import Provenance
from .methods import host_calibration_steps

# Matrix products x [m, k] @ w[n, k].T (nn.Linear's): a grid over m, n and k, from an adapter's rank to a
# long prefill's tokens, so that forward (tokens, out, in), input-gradient (tokens, in, out) and
# weight-gradient (out, in, tokens) products of any decoder fall inside it.
# The attention calibration's calls: batch 4 x 16 heads (executors/calibrate.py attention).
ATTENTION_BATCH_HEADS = 64
MATMUL_GRID = (16, 256, 1024, 2048, 4096, 8192, 16384)
MATMUL_SHAPES = tuple((m, n, k) for m in MATMUL_GRID for n in MATMUL_GRID for k in MATMUL_GRID)
# Memory-bound kernels by layout (executors/calibrate.py's memory_kernels), each at these sizes of
# its main tensor: L2-resident (4 MiB), past the L2 (32 MiB), HBM-bound (256 MiB).
MEMORY_LAYOUTS = ("contiguous", "broadcast", "broadcast_rows", "strided", "cast", "copy_strided", "reduce", "cat",
                  "cat_strided", "cat_into_empty", "foreach")
MEMORY_SIZES = (2**22, 2**25, 2**28)
# The layouts measured in fp32 as well as in bf16: a general (non-vectorized) kernel's rate is
# more its elements' than its bytes' (the profiler's fp32 broadcast kernels ran about 1.5x the
# bytes a second the bf16-calibrated broadcast layout gives: SmolLM2-360M fp32 on an H200).
FP32_LAYOUTS = ("contiguous", "broadcast", "strided", "copy_strided", "cat", "cat_strided")
TRANSFER_SIZES = tuple(2**20 * 2**i for i in range(13))  # 1 MiB .. 4 GiB: the calibration points


class MatmulPoint(BaseModel):
    dtype: str
    m: int
    n: int
    k: int
    seconds: float = Field(gt=0)
    flops_per_s: float = Field(gt=0)
    # The SM clock NVML reported right after it was timed (0: not read): a GPU held at its power
    # limit clocks down, and a step's products then run slower than a short burst's.
    sm_clock_mhz: float = 0.0


class CopyPoint(BaseModel):
    bytes: int = Field(gt=0)
    seconds: float = Field(gt=0)
    bytes_per_s: float = Field(gt=0)


class TransferPoint(CopyPoint):
    direction: Literal["host_to_device", "device_to_host"]
    pinned: bool


class DiskPoint(CopyPoint):
    op: Literal["read", "write"]


# The host-bound step whose host time per kernel calibrate measures (executors/host_costs.py
# launches): a 4-layer Llama of hidden size 64, batch 2 of 64 tokens, whose kernels take
# microseconds, so its step's wall time is the host's.
HOST_CALIBRATION_MODEL = dict(model_type="llama", hidden_size=64, intermediate_size=172, num_hidden_layers=4,
                              num_attention_heads=4, num_key_value_heads=2, vocab_size=512, max_position_embeddings=512,
                              tie_word_embeddings=False)
HOST_CALIBRATION_BATCH, HOST_CALIBRATION_SEQ = 2, 64
# The same steps at this depth too: a step's host time is a fixed part (the mask, the embedding,
# the loss, the output objects: once a call) plus a part per layer, and at 4 layers the fixed one
# is 16-29% of the step (measured on a CPU at 2 to 16 layers: data/benchmarks/host-depth-cpu.txt),
# which a rate per kernel would spread over every layer of a deep model.
HOST_CALIBRATION_DEEP_LAYERS = 16
# The calibration steps by name: (task, methods), as memsim's Workload names them: a plain prefill,
# train and decode step, and a train step for each method whose host cost has a step of its own.
HOST_CALIBRATION_STEPS = {"forward": ("prefill", []), "train": ("train", []), "decode": ("decode", []),
                          **{step: ("train", methods) for step, methods in host_calibration_steps().items()}}
# The steps every launch section has: the roofline's host cost per kernel where no other is counted.
REQUIRED_HOST_STEPS = ("forward", "train")
# The launch section times its steps in this many rounds, the whole section apart, and keeps each
# step's median round: the host of an H200 machine here ran a bare op at 3.1 or 5.5 us by turns,
# seconds apart (data/validation/host-noise-*-h200.json), so one round is one sample of two speeds.
HOST_CALIBRATION_ROUNDS = 3

# [host seconds per CUDA kernel, kernels the profiler counted] of one calibration step.
StepFigures = Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)]


class LaunchCosts(BaseModel):
    """What a kernel costs beyond its work in eager PyTorch (executors/host_costs.py launches)."""

    gpu_kernel_s: float = Field(gt=0)  # device time of a tiny kernel
    host_op_s: float = Field(gt=0)  # host time to issue a bare op
    # HOST_CALIBRATION_STEPS' steps by name; a step's kernels are 0 where they were not counted,
    # and a step missing was not measured (host_step reads both as unmeasured).
    steps: dict[str, StepFigures] = {}
    # The same steps at HOST_CALIBRATION_DEEP_LAYERS layers: with the steps above, a line through
    # two depths (memsim/host_time.py).
    deep: dict[str, StepFigures] = {}
    # The train steps' parts, {step: {phase: [host seconds, CUDA kernels]}} for forward, backward and
    # optimizer (executors/host_costs.py train_phases): whether autograd's backward and the
    # optimizer cost the host what a module's kernel does. Recorded, not used by the roofline.
    phases: dict[str, dict[str, list[float]]] = {}
    # executors/host_costs.py host_index around the steps above. Recorded, not used to scale: it is
    # not comparable with the index a run measures around its own steps (validate.run_host_launch).
    host_index_s: float = Field(0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _upgrade_step_fields(cls, data):
        """A profile written with a field per step (hf_<step>_host_per_kernel_s, hf_<step>_kernels,
        hf_<step>_phases, hf_deep) read into steps, phases and deep."""
        return _upgraded(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _has_required_steps(self) -> LaunchCosts:
        missing = [step for step in REQUIRED_HOST_STEPS if self.host_step(step)[0] <= 0]
        if missing:
            raise ValueError(f"no host seconds per kernel of the {' and '.join(missing)} calibration step (steps); "
                             "`memsim calibrate --update PROFILE --only launch` measures them")
        return self

    def host_step(self, step: str) -> tuple[float, int]:
        """(host seconds per kernel, kernels) of a HOST_CALIBRATION_STEPS step; (0.0, 0) where the
        profile did not measure it, kernels 0 where it did not count them."""
        per, kernels = self.steps.get(step, (0.0, 0))
        return per, int(kernels)

    def deep_step(self, step: str) -> tuple[float, int]:
        """host_step's figures for the step at HOST_CALIBRATION_DEEP_LAYERS layers."""
        per, kernels = self.deep.get(step, (0.0, 0))
        return per, int(kernels)

    def measured_again(self, fields: dict) -> LaunchCosts:
        """These costs with a run's own host_launch in place of the profile's: its {"steps": ...}
        (whole steps) or an older run's hf_<step>_ fields (each figure it gives); the deep steps
        scaled as their shallow ones moved."""
        if not fields:
            return self
        steps = {step: list(figures) for step, figures in self.steps.items()}
        for step, parts in _step_parts(fields).items():
            before = steps.get(step, [0.0, 0])
            steps[step] = [parts.get(i, before[i]) for i in (0, 1)]
        steps |= {step: list(figures) for step, figures in fields.get("steps", {}).items()}
        deep = {}
        for step, (per, kernels) in self.deep.items():
            before = self.host_step(step)[0]
            deep[step] = [per * steps[step][0] / before if before else per, kernels]
        scalars = {k: fields[k] for k in ("gpu_kernel_s", "host_op_s", "host_index_s") if k in fields}
        return self.model_copy(update=scalars | {"steps": steps, "deep": deep})


# A field per step, as profiles and runs were written before LaunchCosts.steps: the step's name
# (dashes as underscores) in hf_<step>_host_per_kernel_s and hf_<step>_kernels (its figures' index
# 0 and 1), hf_<step>_phases, and hf_deep for LaunchCosts.deep.
_STEP_FIELDS = ((re.compile(r"hf_(\w+)_host_per_kernel_s"), 0), (re.compile(r"hf_(\w+)_kernels"), 1))
_PHASES_FIELD = re.compile(r"hf_(\w+)_phases")


def _step_parts(fields: dict) -> dict[str, dict[int, float]]:
    """{step: {0: host seconds per kernel, 1: kernels}} of the hf_<step>_ fields among `fields`,
    as far as they give each."""
    parts: dict[str, dict[int, float]] = {}
    for key, value in fields.items():
        for pattern, index in _STEP_FIELDS:
            if match := pattern.fullmatch(key):
                parts.setdefault(match[1].replace("_", "-"), {})[index] = value
    return parts


def _upgraded(fields: dict) -> dict:
    """LaunchCosts' fields with the field-per-step ones (_STEP_FIELDS, _PHASES_FIELD, hf_deep)
    moved into steps, phases and deep; what is neither kept as it is."""
    if not any(key.startswith("hf_") for key in fields):
        return fields
    steps = {step: [parts.get(0, 0.0), parts.get(1, 0)] for step, parts in _step_parts(fields).items()}
    phases = {m[1].replace("_", "-"): value for key, value in fields.items() if (m := _PHASES_FIELD.fullmatch(key))}
    out = {k: v for k, v in fields.items() if not k.startswith("hf_")}
    out["steps"] = steps | dict(fields.get("steps", {}))
    out["deep"] = dict(fields.get("hf_deep", {})) | dict(fields.get("deep", {}))
    out["phases"] = phases | dict(fields.get("phases", {}))
    return out


class AttentionPoint(BaseModel):
    head_dim: int
    masked: bool
    direction: Literal["forward", "backward"]
    flops_per_s: float = Field(gt=0)
    seq: int = 4096  # query (and key) tokens; profiles before 2026-12 measured 4096 only
    batch_heads: int = ATTENTION_BATCH_HEADS  # batch x heads of the call

    @property
    def flops(self) -> float:
        """The call's FLOPs as memsim counts them (executors/calibrate.py attention)."""
        forward = 4 * self.batch_heads * self.seq**2 * self.head_dim * (1.0 if self.masked else 0.5)
        return forward * (2.5 if self.direction == "backward" else 1.0)


class LayoutPoint(CopyPoint):
    layout: str
    dtype_bytes: int = 2  # its main tensors' (bf16 in every profile before FP32_LAYOUTS)


class MemoryKernels(BaseModel):
    elementwise_bytes_per_s: float = Field(gt=0)
    cat_bytes_per_s: float = Field(gt=0)
    layouts: list[LayoutPoint] = []  # by layout and size (profiles from 2026-12 on)

    def bandwidth(self, layout: str, nbytes: float, dtype_bytes: int = 2) -> float | None:
        """Bytes/s of a `layout` kernel moving `nbytes` of `dtype_bytes` elements: log-linear
        between the calibrated sizes, the end points' outside them; the bf16 points where the
        layout was not measured in that dtype; None where it was not measured at all."""
        same = [p for p in self.layouts if p.layout == layout]
        of_dtype = [p for p in same if p.dtype_bytes == dtype_bytes] or [p for p in same if p.dtype_bytes == 2]
        pts = sorted((p.bytes, p.bytes_per_s) for p in of_dtype)
        if not pts:
            return None
        if nbytes <= pts[0][0]:
            return pts[0][1]
        for (n0, r0), (n1, r1) in zip(pts, pts[1:]):
            if nbytes <= n1:
                f = math.log(nbytes / n0) / math.log(n1 / n0)
                return r0 + f * (r1 - r0)
        return pts[-1][1]


class MeasuredProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    profile: Literal["measured"] = "measured"
    base: str = ""  # the datasheet profile this one measures (hardware/<base>.yaml)
    provenance: Provenance  # the latest run that measured any of it
    # Sections measured again by `calibrate --update` on another run than the rest: each one's own.
    section_provenance: dict[str, Provenance] = {}
    compute_capability: str = ""
    total_memory_bytes: int = 0
    matmul: list[MatmulPoint] = []
    device_copy: list[CopyPoint] = []
    transfer: list[TransferPoint] = []
    disk: list[DiskPoint] = []
    launch: LaunchCosts | None = None
    attention: list[AttentionPoint] = []
    memory_kernels: MemoryKernels | None = None
    _grids: dict = PrivateAttr(default_factory=dict)  # matmul_rate's grids by dtype, built once

    @classmethod
    def from_path(cls, path: str | Path) -> MeasuredProfile:
        return load_yaml(cls, path, "measured profile")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, width=120)

    def matmul_rate(self, m: int, n: int, k: int, dtype: str) -> float | None:
        """FLOP/s of [m, k] @ [k, n] in `dtype`: interpolated in log space between the calibrated
        grid's points around it (trilinear in log m, log n, log k; the grid's edge outside it), or
        the nearest calibrated product where the points form no grid; None without products of
        that dtype."""
        grid = self._matmul_grid(dtype)
        if grid is None:
            return None
        axes, rates = grid
        if rates is None:  # an older profile's scattered shapes
            lm, ln, lk = (math.log(max(v, 1)) for v in (m, n, k))
            pts = [p for p in self.matmul if p.dtype == dtype]
            return min(pts, key=lambda p: (math.log(p.m) - lm) ** 2 + (math.log(p.n) - ln) ** 2 + (math.log(p.k) - lk) ** 2).flops_per_s
        corners = [_bracket(axis, v) for axis, v in zip(axes, (m, n, k))]
        log_rate = 0.0
        for (i, wi) in corners[0]:
            for (j, wj) in corners[1]:
                for (l, wl) in corners[2]:
                    log_rate += wi * wj * wl * math.log(rates[(axes[0][i], axes[1][j], axes[2][l])])
        return math.exp(log_rate)

    def _matmul_grid(self, dtype: str):
        """((m values, n values, k values), {(m, n, k): FLOP/s}) of this dtype's products, the rates
        None if they are not a full grid; None without products."""
        cache = self._grids
        if dtype not in cache:
            pts = {(p.m, p.n, p.k): p.flops_per_s for p in self.matmul if p.dtype == dtype}
            axes = tuple(sorted({key[i] for key in pts}) for i in range(3))
            full = len(pts) == len(axes[0]) * len(axes[1]) * len(axes[2])
            cache[dtype] = (axes, pts if full else None) if pts else None
        return cache[dtype]

    def attention_rate(self, head_dim: int, masked: bool, backward: bool, flops: float = 0.0) -> float | None:
        """FLOP/s of an SDPA call (bf16) of `flops` at the calibrated head dim nearest this one,
        linear in log FLOPs between the calibrated calls around it (the nearest end outside them).
        By the call's work, not its length alone: a batch of many heads at a short length fills
        the GPU as a long one does (measured: TinyLlama's 32 heads x 4 at 1024 tokens ran at the
        rate of a 16 x 4 call at 2048 to 4096, data/validation/kernel-families-h200.csv)."""
        pts = [p for p in self.attention if p.masked == masked and (p.direction == "backward") == backward]
        if not pts:
            return None
        hd = min({p.head_dim for p in pts}, key=lambda d: abs(math.log(d / max(head_dim, 1))))
        curve = sorted((p.flops, p.flops_per_s) for p in pts if p.head_dim == hd)
        work = [f for f, _ in curve]
        return math.exp(sum(w * math.log(curve[i][1]) for i, w in _bracket(work, flops or work[-1])))

    def peak_rate(self, dtype: str) -> float | None:
        """The best FLOP/s any calibrated product of this dtype reached."""
        rates = [p.flops_per_s for p in self.matmul if p.dtype == dtype]
        return max(rates) if rates else None

    def copy_bandwidth(self) -> float | None:
        """Device memory bandwidth a large copy reaches (bytes read + written per second)."""
        return max((p.bytes_per_s for p in self.device_copy), default=None)

    def transfer_seconds(self, nbytes: int, direction: str, pinned: bool) -> float:
        """Predicted time of one host-device copy of `nbytes` (see transfer_curve)."""
        pts = sorted((p.bytes, p.seconds) for p in self.transfer if p.direction == direction and p.pinned == pinned)
        if len(pts) < 2:
            raise InputError(f"profile '{self.name}': no calibrated {'pinned' if pinned else 'pageable'} {direction} transfers")
        return transfer_curve(pts, nbytes)


def _bracket(axis: list[int], v: float) -> list[tuple[int, float]]:
    """The grid indices around `v` on a sorted axis and their weights, linear in log v (the end
    point alone outside the axis)."""
    if v <= axis[0]:
        return [(0, 1.0)]
    if v >= axis[-1]:
        return [(len(axis) - 1, 1.0)]
    i = bisect.bisect_right(axis, v) - 1
    f = math.log(v / axis[i]) / math.log(axis[i + 1] / axis[i])
    return [(i, 1.0 - f), (i + 1, f)]


def transfer_curve(points: list[tuple[int, float]], nbytes: int) -> float:
    """The measured time-against-size curve: linear between the two calibration points around
    `nbytes` (a copy's time is a fixed cost plus bytes over a bandwidth that settles with size),
    extended along the end segments outside the measured range."""
    sizes = [n for n, _ in points]
    i = min(max(bisect.bisect_left(sizes, nbytes), 1), len(points) - 1)
    (n0, t0), (n1, t1) = points[i - 1], points[i]
    return max(t0 + (nbytes - n0) * (t1 - t0) / (n1 - n0), 0.0)


# Pairs up to here are refined. Above it the copies' bandwidth is flat (H100 and H200), and a
# pageable copy's ±12% between processes made every large pair "miss": refined up to 4 GiB, the
# H200's transfer calibration ran past 280 s (2026-12-01) for points a line already gives.
REFINE_LARGEST = 2**28


def refine_sizes(measured: dict[int, tuple[float, ...]], measure, tolerance: float = 0.05, depth: int = 2,
                 align: int = 4096, largest: int = REFINE_LARGEST) -> dict[int, tuple[float, ...]]:
    """Calibration sizes added where transfer_curve's line through two neighbours (both at most
    `largest` bytes) misses: each pair's geometric midpoint is measured (`measure(n)` -> seconds
    per curve), and where any of its times is more than `tolerance` off the line, both halves
    again, `depth` levels deep. A pageable host-to-device copy's bandwidth halves somewhere between
    32 and 64 MiB (measured on an H100 and an H200; where, varied), which the line through 32 and
    64 MiB missed by 60%."""
    out = dict(measured)
    sizes = sorted(measured)
    pairs = [(a, b) for a, b in zip(sizes, sizes[1:]) if b <= largest]
    for _ in range(depth):
        misses = []
        for a, b in pairs:
            mid = round((a * b) ** 0.5 / align) * align
            if not a < mid < b:
                continue
            out[mid] = got = measure(mid)
            line = [ta + (mid - a) * (tb - ta) / (b - a) for ta, tb in zip(out[a], out[b])]
            if any(abs(t_line - t) > tolerance * t for t_line, t in zip(line, got)):
                misses += [(a, mid), (mid, b)]
        pairs = misses
    return out


def link_fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(latency seconds, bandwidth bytes/s) of the least-squares line t = latency + n / bandwidth,
    weighted by 1/t so small and large copies count alike: a summary for tables."""
    w = [1 / t**2 for _, t in points]
    sw = sum(w)
    mx = sum(wi * n for wi, (n, _) in zip(w, points)) / sw
    my = sum(wi * t for wi, (_, t) in zip(w, points)) / sw
    slope = sum(wi * (n - mx) * (t - my) for wi, (n, t) in zip(w, points)) / sum(wi * (n - mx) ** 2 for wi, (n, _) in zip(w, points))
    return my - slope * mx, 1 / slope
