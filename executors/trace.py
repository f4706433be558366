"""Traced verifier: run the real transformers model on fake tensors and count live storages.

Gives exact tensor-level allocated bytes for any model size on a CPU, in seconds. Attention is
dispatched to the kernel CUDA would pick (cuda_semantics), so the trace is of the CUDA program;
kernel-internal workspaces (flash-attention's backward buffers, cuBLAS) are not tensors and are
absent here, so comparisons leave the 'workspace' category out.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from .cuda_grouped_mm import cuda_grouped_mm
from . import protocol
from .cuda_semantics import CudaAutocastCheck, cuda_dispatch
from .storage_tracker import StorageTracker
from memsim.errors import InputError
from memsim.runtimes.torch_cuda import DEFAULT_SM

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TraceResult:
    peak_bytes: int
    phase_at_peak: str
    seconds: float
    events: int


def hf_config(config: dict, attention: str):
    from transformers import AutoConfig

    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        c = AutoConfig.for_model(**cfg)
    except Exception as e:  # a key memsim does not read that transformers refuses (its config classes raise their own kinds)
        detail = " ".join(str(e).split())
        raise InputError(f"model config: transformers refuses it: {detail}") from None
    c._attn_implementation = attention
    return c


def build_model(config: dict, attention: str, dtype: str, methods=()):
    """The transformers model for `config` (random weights), each method then set up on it in
    the order given (Method.apply_torch)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(hf_config(config, attention), dtype=DTYPES[dtype])
    for m in methods:
        model = m.apply_torch(model)
    return model


def make_optimizer(model, optimizer):
    """The memsim optimizer's torch one over the model's trainable parameters. On fake tensors the
    values an optimizer reads back to Python (Adafactor's norms, bitsandbytes' quantization maps)
    are answered by _ScalarValues: what it allocates does not depend on them."""
    if not isinstance(next(model.parameters()), torch._subclasses.fake_tensor.FakeTensor):
        return optimizer.torch_optimizer_for(model)
    with _ScalarValues():
        opt = optimizer.torch_optimizer_for(model)
    opt.step = _with_scalar_values(opt.step)
    return opt


class _ScalarValues(TorchDispatchMode):
    """Answers Tensor.item() on fake tensors with 1.0: Adafactor's step reads step counts and
    norms back to Python, which a fake tensor has no value for; the memory it allocates does not
    depend on them."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            return 1.0 if args[0].is_floating_point() else 1  # an integer stays one (a seed)
        return func(*args, **(kwargs or {}))


def _with_scalar_values(step):
    def run(*args, **kwargs):
        with _ScalarValues():
            return step(*args, **kwargs)

    return run


def run_task(model, tr: StorageTracker, task: str, batch: int, seq: int, vocab: int, new_tokens: int = 0, opt=None,
             autocast: str | None = None, logits_to_keep: int = 1, methods=()):
    """The step protocols (protocol.py) as the tracer runs them, with phase labels. `autocast`
    (bf16): the forward runs under torch.autocast on the model's device, backward and the optimizer
    outside it, as an fp32-weights mixed-precision loop does."""
    device = next(model.parameters()).device
    ids = protocol.input_ids(batch, seq, vocab)
    forward_ctx = lambda: autocast_ctx(device, autocast)  # noqa: E731
    if task == "train":
        model.train()
        for step in range(2):  # the second step is the steady state (optimizer state exists)
            tr.phase = f"forward{step}"
            with _ScalarValues():  # a method's own step may read values back (MeZO's seed and losses)
                ran = any(m.torch_train_step(model, ids) for m in methods)
            if not ran:
                protocol.train_step(model, ids, opt, forward_ctx, phase=lambda name: setattr(tr, "phase", f"{name}{step}"), methods=methods)
        return
    model.eval()
    tr.phase = "prefill"
    if task == "prefill":
        with forward_ctx():
            out = protocol.prefill(model, ids, logits_to_keep=logits_to_keep)
        del out
        return

    def before_decode(_):
        tr.phase = "decode"
        if task == "decode":
            tr.reset_peak()  # decode: the peak of the steady-state step alone

    if task == "generate":
        protocol.generate(model, ids, new_tokens, before_decode)
    else:
        protocol.generate(model, ids, 1, before_decode, sample_after_last=False)


@contextlib.contextmanager
def forward_ctx(device: torch.device, autocast: str | None, methods=()):
    """The training forward's context: autocast where on, then each method's own (Method.
    torch_forward_context: save_on_cpu for activation offload)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(autocast_ctx(device, autocast))
        for m in methods:
            ctx = m.torch_forward_context()
            if ctx is not None:
                stack.enter_context(ctx)
        yield


@contextlib.contextmanager
def autocast_ctx(device: torch.device, dtype: str | None):
    """torch.autocast on the model's device. On a CPU (a fake-tensor trace) autocast's op lists are
    CPU's: CudaAutocastCheck fails the trace wherever CUDA's would make it differ."""
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=DTYPES[dtype]):
        if device.type == "cpu":
            with CudaAutocastCheck():
                yield
        else:
            yield


def trace(config: dict, task: str, batch: int, seq: int, dtype: str = "bf16", attention: str = "sdpa",
          optimizer=None, methods=(), new_tokens: int = 0, compute: str | None = None, sm: int = DEFAULT_SM,
          logits_to_keep: int = 1) -> TraceResult:
    """`dtype`: the weights'; `compute`: the autocast dtype when it differs (fp32 weights, bf16
    compute). Fake tensors live on the CPU, so autocast is CPU's (see _autocast). `optimizer` and
    `methods`: memsim's (memsim.methods), set up by their torch side. `sm`: the compute capability
    of the GPU whose attention kernels the trace runs (90: H100)."""
    t0 = time.perf_counter()
    autocast = compute if compute not in (None, dtype) else None
    with (FakeTensorMode(allow_non_fake_inputs=False), StorageTracker() as tr, cuda_dispatch(sm), cuda_grouped_mm()):
        model = build_model(config, attention, dtype, methods)
        opt = None
        if task == "train":
            opt = make_optimizer(model, optimizer)
        else:
            for p in model.parameters():
                p.requires_grad_(False)
        tr.reset_peak()  # the step's peak, not model construction's (as reset_peak_memory_stats after loading)
        run_task(model, tr, task, batch, seq, config["vocab_size"], new_tokens, opt, autocast, logits_to_keep, methods)
        # Optimizer state that stays on the host (`step` of non-fused Adam) is not GPU memory.
        if opt is not None:
            tr.exclude_host([t for s in opt.state.values() for t in optimizer.host_state(s)])
    return TraceResult(tr.peak_bytes, tr.events[tr.peak_index].phase if tr.peak_index >= 0 else "", time.perf_counter() - t0, len(tr.events))


def trace_workload(w) -> TraceResult:
    """Trace a memsim Workload (see memsim.workload)."""
    from memsim.catalog import raw_config
    from memsim.predict import step_config

    cfg = step_config(w)
    for m in cfg.methods:
        m.check_torch()
    return trace(raw_config(w.model), cfg.task, cfg.batch, cfg.seq, w.precision.weights, cfg.attention,
                 cfg.step_optimizer, cfg.methods, cfg.new_tokens, w.precision.compute, cfg.sm, 0 if cfg.all_logits else 1)
