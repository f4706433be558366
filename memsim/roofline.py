"""Time on the roofline: every kernel of a Program (the OpCost events its tapes record) timed on a
device, and the step's time with what bounds it.

A kernel takes the longest of: its arithmetic at the rate measured for its kind (a product of the
nearest calibrated shape; SDPA by head dim, mask and direction), its bytes at the bandwidth
measured for its kind (elementwise, cat, copy), and the device time of a tiny kernel (all from
`memsim calibrate`). Eager PyTorch also spends host time per kernel (Python modules, the
dispatcher, autograd), measured on a small transformers decoder for forward, train and decode
steps; the host runs ahead of the GPU, so a step takes the longer of the two sums. Without a
measured profile the datasheet's peaks stand in, and the time is a lower bound.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .calibration import MeasuredProfile
from .hardware import HardwareSpec
from .program import Program
from .tape import COST, OpCost


@dataclass
class KernelTime:
    name: str
    phase: str
    count: int  # launches over the step (a layer's kernel times the layers)
    seconds: float  # all of them
    flops: float
    bytes: float
    bound: str  # compute | memory | launch


@dataclass
class StepTime:
    seconds: float
    gpu_seconds: float
    host_seconds: float
    bound: str  # compute | memory | launch | host
    by_phase: dict[str, float] = field(default_factory=dict)
    kernels: list[KernelTime] = field(default_factory=list)  # slowest first
    assumptions: list[str] = field(default_factory=list)


class Rates:
    """What a device reaches, by kernel kind, and what a kernel costs the GPU and the host."""

    def __init__(self, hw: HardwareSpec, profile: MeasuredProfile | None, dtype: str, mode: str):
        self.hw, self.profile, self.dtype = hw, profile, dtype
        self.assumptions = []
        peak = hw.peak_flops.get(dtype)
        self.peak = (profile.peak_rate(dtype) if profile else None) or (peak.value if peak else None)
        self.bandwidth = (profile.copy_bandwidth() if profile else None) or (
            hw.memory_bandwidth_bytes_per_s.value if hw.memory_bandwidth_bytes_per_s else None)
        kernels = profile.memory_kernels if profile else None
        self.elementwise = kernels.elementwise_bytes_per_s if kernels else self.bandwidth
        self.cat = kernels.cat_bytes_per_s if kernels else self.bandwidth
        if self.peak is None or self.bandwidth is None:
            raise ValueError(f"hardware '{hw.name}' has no {dtype} peak or memory bandwidth")
        launch = profile.launch if profile else None
        self.kernel_floor = launch.gpu_kernel_s if launch else 0.0
        per_kernel = {"train": "hf_train_host_per_kernel_s", "prefill": "hf_forward_host_per_kernel_s",
                      "decode": "hf_decode_host_per_kernel_s"}
        self.host_per_kernel = (getattr(launch, per_kernel[mode]) or launch.hf_forward_host_per_kernel_s) if launch else 0.0
        if profile is None:
            self.assumptions.append(f"no measured profile of {hw.name}: datasheet peaks, no launch costs (a lower bound)")

    def product(self, m: int, n: int, k: int) -> float:
        rate = self.profile.matmul_rate(m, n, k, self.dtype) if self.profile else None
        return rate or self.peak

    def attention(self, cost: OpCost) -> float:
        rate = self.profile.attention_rate(cost.head_dim, cost.masked, cost.name.endswith(".bwd")) if self.profile else None
        return rate or self.peak


def _shape(cost: OpCost, dtype_bytes: int) -> tuple[int, int, int]:
    """m, n, k of x [m, k] @ w [k, n] -> [m, n] from the three operands' bytes."""
    x, w, out = (b / dtype_bytes for b in cost.operands)
    m = max(round((x * out / w) ** 0.5), 1)
    return m, max(round(out / m), 1), max(round(x / m), 1)


def kernel_seconds(cost: OpCost, rates: Rates, dtype_bytes: int) -> tuple[float, float, str]:
    """(seconds, flops, bound) of one kernel."""
    if cost.kind == "matmul" and len(cost.operands) == 3:
        m, n, k = _shape(cost, dtype_bytes)
        flops = 2.0 * m * n * k * cost.passes
        compute = flops / rates.product(m, n, k)
    elif cost.kind == "flops":
        flops = cost.flops
        compute = flops / rates.peak
    elif cost.kind == "attention":
        flops = cost.flops
        compute = flops / rates.attention(cost)
    else:
        flops, compute = 0.0, 0.0
    memory = cost.bytes / (rates.cat if cost.kind == "cat" else rates.elementwise if cost.kind == "memory" else rates.bandwidth)
    floor = rates.kernel_floor * cost.kernels
    seconds = max(compute, memory, floor)
    bound = "compute" if seconds == compute and compute > 0 else "memory" if seconds == memory else "launch"
    return seconds, flops, bound


def step_time(program: Program, hw: HardwareSpec, profile: MeasuredProfile | None, dtype: str,
              dtype_bytes: int, mode: str) -> StepTime:
    """The step's time: every kernel of the program's steady-state step, layers repeated. `dtype`
    (bf16, fp16, fp32) picks the measured products; `dtype_bytes` turns operand bytes into shapes;
    `mode` (train, prefill, decode) the host's cost per kernel."""
    rates = Rates(hw, profile, dtype, mode)
    agg: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, defaultdict(float)])
    gpu = launches = 0.0
    by_phase: dict[str, float] = defaultdict(float)
    for seg in program.in_step_order():
        for cost, cat, sign in seg.events:
            if sign or cat != COST:
                continue
            seconds, flops, bound = kernel_seconds(cost, rates, dtype_bytes)
            n = seg.repeat
            gpu += n * seconds
            launches += n * cost.kernels
            by_phase[seg.name] += n * seconds
            a = agg[(cost.name, seg.name)]
            a[0] += n * cost.kernels
            a[1] += n * seconds
            a[2] += n * flops
            a[3] += n * cost.bytes
            a[4][bound] += n * seconds
    host = launches * rates.host_per_kernel
    kernels = [KernelTime(name, phase, c, s, f, b, max(bd, key=bd.get)) for (name, phase), (c, s, f, b, bd) in agg.items()]
    kernels.sort(key=lambda k: -k.seconds)
    if host > gpu:
        bound = "host"
    else:
        split = defaultdict(float)
        for k in kernels:
            split[k.bound] += k.seconds
        bound = max(split, key=split.get) if split else "memory"
    return StepTime(max(gpu, host), gpu, host, bound, dict(by_phase), kernels, rates.assumptions)


def plot(st: StepTime, rates_peak: float, bandwidth: float, path, title: str = ""):
    """The roofline: each kernel (a layer's, all layers together) at its arithmetic intensity and
    achieved FLOP/s, sized by its share of the step; the device's measured roofs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    knee = rates_peak / bandwidth
    xs = [1e-2, knee, 1e5]
    ax.plot(xs, [min(x * bandwidth, rates_peak) for x in xs], color="black", lw=1.5, label="roof (measured)")
    total = sum(k.seconds for k in st.kernels) or 1.0
    colors = {"compute": "tab:red", "memory": "tab:blue", "launch": "tab:gray"}
    for bound, color in colors.items():
        ks = [k for k in st.kernels if k.bound == bound and k.flops > 0 and k.bytes > 0]
        if ks:
            ax.scatter([k.flops / k.bytes for k in ks], [k.flops / k.seconds for k in ks],
                       s=[2000 * k.seconds / total + 8 for k in ks], color=color, alpha=0.6, label=f"{bound}-bound")
    for k in st.kernels[:6]:
        if k.flops > 0 and k.bytes > 0:
            ax.annotate(k.name, (k.flops / k.bytes, k.flops / k.seconds), fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte)", ylabel="achieved FLOP/s",
           title=title or "roofline")
    mem = sum(k.seconds for k in st.kernels if k.flops == 0)
    ax.text(0.02, 0.95, f"step {st.seconds * 1e3:,.1f} ms ({st.bound}-bound); kernels without arithmetic {mem / total:.0%} of GPU time",
            transform=ax.transAxes, fontsize=8, va="top")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
