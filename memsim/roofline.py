"""Time on the roofline: every kernel of a Program (the OpCost events its tapes record) timed on a
device, and the step's time with what bounds it.

A kernel takes the longest of: its arithmetic at the rate measured for its kind (a product at its
shape, interpolated over the calibrated grid; SDPA by head dim, mask, the call's FLOPs and direction), its
bytes at the bandwidth measured for its memory layout and size (contiguous, broadcast, strided,
cast, cat ...), and the device time of a tiny kernel (all from `memsim calibrate`). Eager PyTorch
also spends host time per kernel (Python modules, the dispatcher, autograd), measured on a small
transformers decoder's steps; the kernels go through the host's launch queue (_LaunchQueue), so a
step takes between the longer and the sum of the GPU's and the host's totals. Without a measured
profile the datasheet's peaks stand in, and the time is a lower bound.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .calibration import MeasuredProfile
from .errors import InputError
from .hardware import HardwareSpec
from .program import Program
from .tape import OpCost
from .workload import DTYPE_BYTES


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

    def __init__(self, hw: HardwareSpec, profile: MeasuredProfile | None, dtype: str, mode: str, host=None):
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
        # `host`: host_time.HostCosts. Where it gives no cost per tape kernel, the profiler's
        # kernels' host cost of the train step, or of the forward for prefill and decode.
        host_per_kernel = host.per_kernel if host else None
        if host_per_kernel is None:
            host_per_kernel = launch.host_step("train" if mode == "train" else "forward")[0] if launch else 0.0
        self.host_per_kernel = host_per_kernel
        self.host_per_call = host.per_call if host else 0.0  # once a step: the model call's own Python
        self.host_per_hook = host.per_hook if host else 0.0
        self.host_per_op = launch.host_op_s if launch else 0.0
        if profile is None:
            self.assumptions.append(f"no measured profile of {hw.name}: datasheet peaks, no launch costs (a lower bound)")

    def product(self, m: int, n: int, k: int, dtype: str | None = None) -> float:
        """FLOP/s of [m, k] @ [k, n]: the calibrated grid's at the output padded to whole tiles
        (which the GPU computes), over the FLOPs asked for."""
        if not self.profile:
            return self.peak
        mp, np_ = _whole_tiles(m), _whole_tiles(n)
        rate = self.profile.matmul_rate(mp, np_, k, dtype or self.dtype)
        return rate * (m * n) / (mp * np_) if rate else self.peak

    def memory(self, cost: OpCost) -> float:
        """Bytes/s of a memory-bound kernel: measured for its layout and size where the profile
        has layouts, else the contiguous elementwise (or cat) bandwidth."""
        kernels = self.profile.memory_kernels if self.profile else None
        rate = kernels.bandwidth(cost.layout, cost.bytes, cost.dtype_bytes or DTYPE_BYTES[self.dtype]) if kernels else None
        if rate:
            return rate
        if cost.kind == "cat":
            return self.cat
        return self.elementwise if cost.kind == "memory" else self.bandwidth

    def host(self, cost: OpCost) -> float:
        """Host seconds of the cost: its kernels' issue (OpCost.issued_by) and its Python calls
        that issue none (OpCost.host_calls)."""
        per_kernel = self.host_per_op if cost.issued_by == "op" else self.host_per_kernel
        return cost.kernels * per_kernel + cost.host_calls * self.host_per_hook

    def transfer(self, cost: OpCost) -> float:
        """Seconds of a host-device copy into or out of pinned memory: the profile's measured
        transfers where it has them, else the GPU's host link at its datasheet bandwidth."""
        if self.profile and self.profile.transfer:
            return self.profile.transfer_seconds(cost.bytes, cost.layout, pinned=True)
        if self.hw.host_link is None:
            raise InputError(f"hardware '{self.hw.name}': no host link or measured transfers to time a host-device copy; "
                             "use a catalog GPU with a host_link")
        return cost.bytes / self.hw.host_link.bandwidth_bytes_per_s.value

    def attention(self, cost: OpCost) -> float:
        rate = self.profile.attention_rate(cost.head_dim, cost.masked, cost.name.endswith(".bwd"), cost.flops) if self.profile else None
        return rate or self.peak


# cuBLAS tiles a product's output in blocks of 128 rows or columns or more (the profiled H200
# kernels' names: tilesize128x128, 256x128, 128x256, 64x64 for small ones;
# data/validation/profiles-h200/): an output of 960 columns costs 1024's. The calibrated grid
# (calibration.MATMUL_GRID) is at whole tiles from 256 up.
TILE = 128


def _whole_tiles(n: int) -> int:
    """n rounded up to whole tiles from one tile up; below that the grid's own small sizes hold."""
    return n if n <= TILE else -(-n // TILE) * TILE


_DTYPE_OF_BYTES = {4: "fp32", 2: "bf16"}


def _shape(cost: OpCost, dtype_bytes: int) -> tuple[int, int, int]:
    """m, n, k of x [m, k] @ w [k, n] -> [m, n] from the three operands' bytes."""
    x, w, out = (b / dtype_bytes for b in cost.operands)
    m = max(round((x * out / w) ** 0.5), 1)
    return m, max(round(out / m), 1), max(round(x / m), 1)


def kernel_seconds(cost: OpCost, rates: Rates, dtype_bytes: int) -> tuple[float, float, str]:
    """(seconds, flops, bound) of one kernel."""
    if cost.kind == "matmul" and len(cost.operands) == 3:
        own = cost.dtype_bytes and cost.dtype_bytes != dtype_bytes  # fp32 adapters in a 16-bit step
        m, n, k = _shape(cost, cost.dtype_bytes if own else dtype_bytes)
        dtype = _DTYPE_OF_BYTES[cost.dtype_bytes] if own else None
        # Forward [m, k] @ [k, n]; backward's input gradient [m, n] @ [n, k] and weight gradient
        # [n, m] @ [m, k], each at its own shape's rate.
        shapes = [(m, k, n) if g == "x" else (n, k, m) for g in cost.grads] if cost.grads else [(m, n, k)] * cost.passes
        flops = 2.0 * m * n * k * len(shapes)
        compute = sum(2.0 * m * n * k / rates.product(*shape, dtype) for shape in shapes)
    elif cost.kind == "flops":
        flops = cost.flops
        compute = flops / rates.peak
    elif cost.kind == "grouped":
        flops = cost.flops
        compute = flops / rates.product(*cost.group)
    elif cost.kind == "attention":
        flops = cost.flops
        compute = flops / rates.attention(cost)
    elif cost.kind == "transfer":
        return rates.transfer(cost), 0.0, "transfer"
    else:
        flops, compute = 0.0, 0.0
    memory = cost.bytes / (rates.memory(cost) if cost.kind in ("memory", "cat") else rates.bandwidth)
    floor = rates.kernel_floor * cost.kernels
    seconds = max(compute, memory, floor)
    bound = "compute" if seconds == compute and compute > 0 else "memory" if seconds == memory else "launch"
    return seconds, flops, bound


class _LaunchQueue:
    """The host issues kernels into the stream and runs ahead of the GPU; the GPU runs each kernel
    once the kernel is issued and the one before it is done. A stretch of tiny kernels leaves the
    GPU waiting on the host while a stretch of large ones lets the host run ahead, so the step
    takes between the longer and the sum of the two totals."""

    def __init__(self, host_start: float = 0.0):
        self.host, self.gpu = host_start, 0.0  # host_start: the call's own Python before its first kernel

    def run(self, launches: int, gpu_seconds: float, host_seconds: float) -> None:
        """`launches` kernels of `gpu_seconds` in all, which take the host `host_seconds` to issue
        (none: Python alone, which the GPU's work of the kernels before it may hide)."""
        first_issued = self.host + host_seconds / max(launches, 1)
        self.host += host_seconds
        self.gpu = max(max(self.gpu, first_issued) + gpu_seconds, self.host)


def step_time(program: Program, hw: HardwareSpec, profile: MeasuredProfile | None, dtype: str,
              dtype_bytes: int, mode: str, host=None) -> StepTime:
    """The step's time: every kernel of the program's steady-state step, layers repeated, through
    the host's launch queue (_LaunchQueue). `dtype` (bf16, fp16, fp32) picks the measured
    products; `dtype_bytes` turns operand bytes into shapes; `mode` (train, prefill, decode) the
    host's cost per kernel, unless `host` (host_time.HostCosts: per kernel the tape names, once a
    step before them, per hook) gives it."""
    rates = Rates(hw, profile, dtype, mode, host)
    agg: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, defaultdict(float)])
    gpu = 0.0
    queue = _LaunchQueue(rates.host_per_call)
    by_phase: dict[str, float] = defaultdict(float)
    hooks = 0
    for seg in program.in_step_order():
        timed = [(cost, *kernel_seconds(cost, rates, dtype_bytes)) for cost in seg.costs()]
        n = seg.repeat
        for _ in range(n):
            for cost, seconds, _, _ in timed:
                queue.run(cost.kernels, seconds, rates.host(cost))
        for cost, seconds, flops, bound in timed:
            hooks += n * cost.host_calls
            if cost.kind == "host":  # no kernel: the host's alone
                continue
            gpu += n * seconds
            by_phase[seg.name] += n * seconds
            a = agg[(cost.name, seg.name)]
            a[0] += n * cost.kernels
            a[1] += n * seconds
            a[2] += n * flops
            a[3] += n * cost.bytes
            a[4][bound] += n * seconds
    kernels = [KernelTime(name, phase, c, s, f, b, max(bd, key=bd.get)) for (name, phase), (c, s, f, b, bd) in agg.items()]
    kernels.sort(key=lambda k: -k.seconds)
    split = defaultdict(float)
    for k in kernels:
        split[k.bound] += k.seconds
    # The host sets the pace where issuing the kernels takes longer than running them.
    bound = "host" if queue.host >= gpu else max(split, key=split.get) if split else "memory"
    notes = list(rates.assumptions)
    if bound == "host" and profile is not None:
        # Measured: 12 host-bound suite steps on two H200 machines ran 0.66x-1.73x as long as each
        # other (data/validation/repeatability-h200.csv); on one, a bare op took 3.1 or 5.5 us by
        # turns, whichever CPU it ran on (data/validation/host-noise-*-h200.json).
        hooked = f" and runs {hooks:,} saved-tensor hooks" if hooks else ""
        notes.append(f"host-bound: the host issues {sum(k.count for k in kernels):,} kernels{hooked} at the speed measured with "
                     f"the {profile.name} profile, and the step scales with the host's speed (the same steps on two "
                     f"H200 machines here ran 0.66x-1.73x as long as each other)")
    return StepTime(queue.gpu, gpu, queue.host, bound, dict(by_phase), kernels, notes)


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
