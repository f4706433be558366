"""Run a Workload for real and measure it: peak allocated and reserved bytes, device bytes, step time.

On a CUDA GPU: the Hugging Face model built from its config (random weights, nothing downloaded),
warm-up steps, then timed steps with CUDA events; the peak statistics are reset after the warm-up,
so they are the steady state's (the optimizer's state exists). An out-of-memory error is a result:
`fits=False` and the size of the allocation that failed.

On a CPU (no CUDA, or device="cpu"): the same code on real CPU tensors, with live storages counted
by the tracker (storage_tracker.py), so CI exercises the executor. CPU kernels are not CUDA's: use
eager attention or fp32 there when comparing with CUDA predictions.
"""

from __future__ import annotations

import datetime
import platform
import re
import time

import torch

from memsim.allocator import emulated_limit
from memsim.catalog import raw_config
from memsim.measurement import Measurement, Provenance

from .host_costs import host_index, host_launch_costs
from .timing import sm_clock_mhz
from memsim.predict import step_config
from memsim.workload import Workload

from . import protocol
from .storage_tracker import StorageTracker
from .trace import build_model, forward_ctx, make_optimizer

SETUP_PREFILL_CHUNK = 1024  # tokens per forward when a decode case fills its cache
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def provenance(cuda: bool, emulated_capacity_bytes: int = 0) -> Provenance:
    import transformers

    try:
        import peft

        peft_version = peft.__version__
    except ImportError:
        peft_version = ""
    common = dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft_version,
                  python=platform.python_version(), date=datetime.date.today().isoformat(),
                  emulated_capacity_bytes=emulated_capacity_bytes, libraries=_library_versions())
    if not cuda:
        return Provenance(device=platform.processor() or platform.machine(), backend="cpu-tracker", **common)
    return Provenance(device=torch.cuda.get_device_name(), backend="cuda", driver=_driver_version(),
                      cuda=torch.version.cuda or "", total_memory_bytes=torch.cuda.get_device_properties(0).total_memory,
                      **common)


# The extras that name the methods' libraries (pyproject.toml), and the fused losses' compiler.
METHOD_EXTRAS = ("methods", "fused-loss")


def _library_versions() -> dict[str, str]:
    """{distribution: version} of each methods' library importable here, as memsim's extras list them."""
    from importlib import metadata

    names = ["triton"]
    for requirement in metadata.requires("memsim") or ():
        spec, _, marker = requirement.partition(";")
        if any(f'extra == "{extra}"' in marker for extra in METHOD_EXTRAS):
            names.insert(-1, re.split(r"[<>=!~;\[ ]", spec.strip(), maxsplit=1)[0])
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _driver_version() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlSystemGetDriverVersion()
    except Exception:  # NVML absent: the driver is unknown, not an error
        return ""


def requested_bytes(message: str) -> int:
    """'Tried to allocate 2.00 GiB' in torch's OutOfMemoryError message, in bytes."""
    m = re.search(r"Tried to allocate ([\d.]+) (B|KiB|MiB|GiB|TiB)", message)
    return int(float(m.group(1)) * _UNITS[m.group(2)]) if m else 0


class _Steps:
    """One task's warm-up and timed step, and how many tokens a step handles."""

    def __init__(self, model, w: Workload, vocab: int, opt, methods=()):
        self.model, self.w, self.opt, self.methods = model, w, opt, methods
        p = w.precision
        device = next(model.parameters()).device
        # Autocast mixed precision: fp32 weights, the forward under torch.autocast (as users run it).
        autocast = p.compute if p.weights != p.compute else None
        self.forward_ctx = lambda: forward_ctx(device, autocast, self.methods)
        self.ids = protocol.input_ids(w.batch, w.seq, vocab)
        self.cache = None
        self.on_first_token = None  # generate: called once a step, as its first token is sampled
        self.tokens = {"train": w.batch * w.seq, "prefill": w.batch * w.seq, "decode": w.batch,
                       "generate": w.batch * w.generate}[w.task]

    def setup(self) -> None:
        """Allocations that precede the measured step: for decode, the cache of `seq` tokens."""
        if self.w.task == "decode":
            # Chunked, so that filling a large cache does not need a whole-prompt prefill's memory.
            self.cache = protocol.new_cache(self.model)
            for start in range(0, self.w.seq, SETUP_PREFILL_CHUNK):
                out = protocol.prefill(self.model, self.ids[:, start:start + SETUP_PREFILL_CHUNK], self.cache)
            self.next_ids = out.logits[:, -1, :].argmax(-1)[:, None]
            del out

    def between(self) -> None:
        """Outside the timed and measured step: a decode step's cache back to `seq` tokens."""
        if self.cache is not None:
            protocol.reset_cache(self.cache, self.w.seq)

    def __call__(self) -> None:
        task = self.w.task
        if task == "train":
            if not any(m.torch_train_step(self.model, self.ids) for m in self.methods):
                protocol.train_step(self.model, self.ids, self.opt, self.forward_ctx, methods=self.methods)
        elif task == "prefill":
            with self.forward_ctx():
                out = protocol.prefill(self.model, self.ids, logits_to_keep=0 if self.w.logits == "all" else 1)
            del out
        elif task == "decode":
            protocol.decode_step(self.model, self.cache, self.next_ids)
        else:
            mark = self.on_first_token
            protocol.generate(self.model, self.ids, self.w.generate, (lambda i: mark() if i == 0 else None) if mark else None)


def measure(w: Workload, case: str = "", warmup: int = 1, steps: int = 3, device: str = "auto",
            emulate_capacity_bytes: int = 0) -> Measurement:
    """Build, warm up, then time `steps` steps of the workload; see the module's docstring."""
    cfg = step_config(w)  # the same validation and refusals as predict
    for m in cfg.methods:
        m.check_torch()
    cuda = torch.cuda.is_available() and device != "cpu"
    config = raw_config(w.model)
    meta = dict(case=case or "workload", workload=w.model_dump(mode="json"))
    if cuda:
        torch.cuda.init()
        torch.zeros(1, device="cuda")
        free, total = torch.cuda.mem_get_info()
        context = total - free - torch.cuda.memory_reserved()
        if emulate_capacity_bytes:
            # The allocator's limit is a fraction of the total: the card's capacity less the
            # context, as predictions assume (allocator.emulated_limit).
            torch.cuda.set_per_process_memory_fraction(emulated_limit(emulate_capacity_bytes, context) / total)
        meta["provenance"] = provenance(True, emulate_capacity_bytes)
        meta["context_bytes"] = context
        return _measure_cuda(w, cfg, config, warmup, steps, meta)
    meta["provenance"] = provenance(False)
    return _measure_cpu(w, cfg, config, warmup, steps, meta)


def build_steps(w: Workload, cfg=None, config=None, device: str = "cuda") -> "_Steps":
    """The workload's model, optimizer and steps, built on `device` and set up (a decode case's
    cache filled). Only the building runs under `torch.device(device)`: that context is a
    TorchFunctionMode, which puts every torch call of a step through Python (a bare op 1.6x, a
    small decoder's prefill 1.3x as long on a CPU), and users' loops do not run in one."""
    cfg = cfg or step_config(w)
    config = config or raw_config(w.model)
    with torch.device(device):
        model, opt = _build(w, cfg, config)
        run = _Steps(model, w, config["vocab_size"], opt, cfg.methods if w.task == "train" else ())
    run.setup()
    return run


def _build(w: Workload, cfg, config):
    model = build_model(config, cfg.attention, w.precision.weights, cfg.methods)
    opt = None
    if w.task == "train":
        opt = make_optimizer(model, cfg.step_optimizer)
    else:
        for p in model.parameters():
            p.requires_grad_(False)
    return model, opt


def _measure_cuda(w, cfg, config, warmup, steps, meta) -> Measurement:
    model = opt = run = None
    try:
        run = build_steps(w, cfg, config)
        model, opt = run.model, run.opt
        torch.cuda.empty_cache()  # the setup's cached segments are not the step's
        for _ in range(warmup):
            run()
            run.between()
        torch.cuda.synchronize()
        resident = torch.cuda.memory_allocated()
        # Peaks per step (reset before each), so that what runs between steps is not counted.
        times, index, clocks, first, allocated, reserved = [], [], [], [], 0, 0
        marks = []  # a generate step's first token: an event on the stream, as the step's own

        def first_token():
            marks.append(torch.cuda.Event(enable_timing=True))
            marks[-1].record()

        run.on_first_token = first_token
        pinned, pinned_active = 0, 0
        for _ in range(steps):
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.reset_peak_host_memory_stats()
            before = host_index()  # the host's speed around this step (CPU only: no device memory)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
            if marks:
                first.append(start.elapsed_time(marks.pop()) / 1e3)
                marks.clear()
            clocks.append(sm_clock_mhz())  # NVML's last sample period: this step's end
            index.append((before + host_index()) / 2)
            allocated = max(allocated, torch.cuda.max_memory_allocated())
            reserved = max(reserved, torch.cuda.max_memory_reserved())
            host = torch.cuda.host_memory_stats()
            pinned = max(pinned, host.get("allocated_bytes.peak", 0))
            pinned_active = max(pinned_active, host.get("active_bytes.peak", 0))
            run.between()
    except torch.OutOfMemoryError as e:
        del model, opt, run
        return Measurement(fits=False, requested_bytes=requested_bytes(str(e)),
                           peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                           peak_reserved_bytes=torch.cuda.max_memory_reserved(), **meta)
    free, total = torch.cuda.mem_get_info()
    tokens = run.tokens
    del model, opt, run
    torch.cuda.empty_cache()
    return Measurement(fits=True, peak_allocated_bytes=allocated, peak_reserved_bytes=reserved, device_bytes=total - free,
                       resident_bytes=resident, step_times_s=times, tokens_per_step=tokens, first_token_s=first,
                       host_index_s=index, sm_clock_mhz=clocks, host_launch=_host_launch(),
                       host_pinned_peak_bytes=pinned, host_pinned_active_peak_bytes=pinned_active, **meta)


def _host_launch() -> dict[str, float]:
    """The host's speed in this process, after the measured steps (host_costs.host_launch_costs);
    empty if it cannot be measured here, which leaves the measurement as it was."""
    try:
        return host_launch_costs()
    except Exception:  # the profiler or the small model failed: the step times stand without it
        return {}


def _measure_cpu(w, cfg, config, warmup, steps, meta) -> Measurement:
    # Real CPU tensors run CPU kernels (SDPA's CUDA kernel choice needs fake tensors).
    with StorageTracker() as tr:
        run = build_steps(w, cfg, config, device="cpu")
        opt = run.opt
        for _ in range(warmup):
            run()
            run.between()
        tr.reset_peak()  # a decode step's reset_cache copies a layer at a time: below the step's own peak
        resident = tr.live_bytes
        times, first, marks = [], [], []
        run.on_first_token = lambda: marks.append(time.perf_counter())
        for _ in range(steps):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
            if marks:
                first.append(marks.pop() - t0)
                marks.clear()
            run.between()
        if opt is not None:
            tr.exclude_host([t for s in opt.state.values() for t in cfg.step_optimizer.host_state(s)])
    return Measurement(fits=True, peak_allocated_bytes=tr.peak_bytes,  # no caching allocator on the CPU
                       resident_bytes=resident, step_times_s=times, tokens_per_step=run.tokens, first_token_s=first, **meta)
