"""What eager PyTorch costs the host (memsim calibrate's launch section, and each measured run's
record of its own host): a bare op's issue, a small transformers decoder's prefill, train step
(plain and with LoRA; at two depths; its parts apart) and decode step per CUDA kernel, and the
host's speed right now (host_index)."""

from __future__ import annotations

import statistics

import torch

from .timing import cuda_median, host_median


def launches(progress=lambda msg: None) -> dict:
    """What a kernel costs beyond its work, in eager PyTorch: the GPU time of a tiny kernel (1000
    adds replayed from a CUDA graph, so the host does not starve the GPU), the host time to issue a
    bare op, and the host time per kernel of a small transformers decoder's forward and train step
    (Python modules and autograd included), where a small model's step is bound by the host."""
    progress("kernel launches")
    x = torch.ones(256, device="cuda")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(1000):
            x.add_(1)
    gpu = cuda_median(graph.replay, reps=10) / 1000
    host_op = host_median(lambda: [x.add_(1) for _ in range(1000)], reps=5) / 1000
    torch.cuda.synchronize()
    from memsim.calibration import HOST_CALIBRATION_DEEP_LAYERS, HOST_CALIBRATION_ROUNDS

    index, rounds, deep_rounds = [host_index()], [], []
    for r in range(HOST_CALIBRATION_ROUNDS):
        progress(f"host steps, round {r + 1} of {HOST_CALIBRATION_ROUNDS}")
        rounds.append(_hf_host_per_kernel())
        deep_rounds.append(_hf_host_per_kernel(parts=False, layers=HOST_CALIBRATION_DEEP_LAYERS))
        index.append(host_index())
    steps, deep = median_round(rounds), median_round(deep_rounds)
    return dict(gpu_kernel_s=gpu, host_op_s=host_op, host_index_s=statistics.median(index),
                hf_train_phases=train_phases(steps, "train"), hf_lora_train_phases=train_phases(steps, "lora-train"),
                hf_deep={step: list(deep[step]) for step in ("forward", "train", "lora-train", "decode", "ckpt-train")}, **_host_fields(steps))


def median_round(rounds: list[dict[str, tuple[float, int]]]) -> dict[str, tuple[float, int]]:
    """Each step's median host seconds per kernel over _hf_host_per_kernel's rounds (its kernels
    are the same in every round)."""
    return {step: (statistics.median(r[step][0] for r in rounds), rounds[0][step][1]) for step in rounds[0]}


HOST_INDEX_OPS = 200


def host_index(reps: int = 3) -> float:
    """Seconds per bare torch op on a tiny CPU tensor: how fast the host's Python and dispatcher
    run right now, in about a millisecond, with no GPU work and no device memory, so that it can
    be measured around every timed step (a host-bound step's time moved by up to 1.5x between
    the 5 steps of one run on an H200) and a profile's host costs scaled to it."""
    t = torch.zeros(16)

    def ops():
        for _ in range(HOST_INDEX_OPS):
            t.add_(1)

    return host_median(ops, reps) / HOST_INDEX_OPS


def _host_fields(steps: dict) -> dict:
    """LaunchCosts' hf_ per-kernel fields from _hf_host_per_kernel's steps."""
    out = {}
    for step, field in (("forward", "forward"), ("train", "train"), ("lora-train", "lora_train"), ("decode", "decode"),
                        ("ckpt-train", "ckpt_train")):
        out[f"hf_{field}_host_per_kernel_s"], out[f"hf_{field}_kernels"] = steps[step]
    return out


def train_phases(steps: dict, prefix: str) -> dict[str, list[float]]:
    """LaunchCosts.hf_train_phases (or hf_lora_train_phases) from _hf_host_per_kernel's parts of
    the `prefix` step: {phase: [host seconds, kernels]}, the backward's as forward-backward less
    forward."""
    total = {which: (per * kernels, kernels) for which in ("forward", "forward-backward", "optimizer")
             for per, kernels in [steps[f"{prefix}:{which}"]]}
    (fwd_s, fwd_k), (fb_s, fb_k), (opt_s, opt_k) = total["forward"], total["forward-backward"], total["optimizer"]
    return {"forward": [fwd_s, fwd_k], "backward": [fb_s - fwd_s, fb_k - fwd_k], "optimizer": [opt_s, opt_k]}


def host_launch_costs() -> dict[str, float]:
    """This process's host cost per kernel of the calibration steps (LaunchCosts' hf_ fields): what
    a measurement records of the host it ran on."""
    return _host_fields(_hf_host_per_kernel(quiet=True, parts=False))


def _hf_host_per_kernel(quiet: bool = False, parts: bool = True, layers: int = 0,
                        device: str = "cuda") -> dict[str, tuple[float, int]]:
    """{step: (host seconds per CUDA kernel, kernels)} of HOST_CALIBRATION_MODEL's prefill
    ("forward"), train step, train step with LoRA ("lora-train") and decode step (the executor's
    protocols), whose kernels take microseconds, so that the step's wall time is the host's; with
    `parts`, the train steps' parts (train_phases) as well; `layers`: the
    model at that depth instead of its own. (`device` cpu: the steps run, for a test, and their
    kernels count 0.)"""
    from torch.profiler import ProfilerActivity, profile

    from memsim.calibration import HOST_CALIBRATION_BATCH, HOST_CALIBRATION_LORA, HOST_CALIBRATION_MODEL, HOST_CALIBRATION_SEQ

    from .protocol import decode_step, input_ids, new_cache, prefill, reset_cache, train_step
    from .trace import build_model, make_optimizer

    config = dict(HOST_CALIBRATION_MODEL, num_hidden_layers=layers or HOST_CALIBRATION_MODEL["num_hidden_layers"])
    with torch.device(device):
        model = build_model(config, "sdpa", "bf16")
        opt = make_optimizer(list(model.parameters()), "adamw", "foreach")
        lora = build_model(config, "sdpa", "bf16", HOST_CALIBRATION_LORA["rank"], tuple(HOST_CALIBRATION_LORA["targets"]))
        lora_opt = make_optimizer([p for p in lora.parameters() if p.requires_grad], "adamw", "foreach")
        ckpt = build_model(config, "sdpa", "bf16", checkpoint=True)
        ckpt_opt = make_optimizer(list(ckpt.parameters()), "adamw", "foreach")
    ids = input_ids(HOST_CALIBRATION_BATCH, HOST_CALIBRATION_SEQ, config["vocab_size"]).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None

    def forward():
        prefill(model, ids, new_cache(model))

    def step():
        train_step(model, ids, opt)

    def lora_step():
        train_step(lora, ids, lora_opt)

    def ckpt_step():
        train_step(ckpt, ids, ckpt_opt)

    cache = new_cache(model)
    prefill(model, ids, cache)
    next_ids = ids[:, -1:]

    def decode():
        # The cache back to its 64 tokens first, as the executor's decode steps are (protocol.
        # reset_cache). Left to grow, every call meets a new key length, for which cuDNN's
        # attention builds a new graph: 40-65 ms a call on an H200 (benchmarks/host_profile.py),
        # 10x the step itself. Cropped alone (a strided view), the calls took 4 or 7 ms by turns
        # where the forward took 4.4 (an H200, 2026-12-01, session 8).
        reset_cache(cache, HOST_CALIBRATION_SEQ)
        decode_step(model, cache, next_ids)

    # A train step's parts apart (train_phases): its forward and loss as autograd records them,
    # forward and backward (gradients dropped after, as zero_grad does), an optimizer step alone.
    def part(m, o, which):
        def train_forward():
            m(input_ids=ids, labels=ids).loss  # its graph dies with it

        def forward_backward():
            m(input_ids=ids, labels=ids).loss.backward()
            m.zero_grad(set_to_none=True)

        def optimizer_step():
            o.step()

        return {"forward": train_forward, "forward-backward": forward_backward, "optimizer": optimizer_step}[which]

    def with_grads(m):
        m(input_ids=ids, labels=ids).loss.backward()  # the optimizer steps over gradients, as in a step

    steps = [("forward", forward), ("train", step), ("lora-train", lora_step), ("decode", decode), ("ckpt-train", ckpt_step)]
    if parts:
        for prefix, m, o in (("train", model, opt), ("lora-train", lora, lora_opt)):
            steps += [(f"{prefix}:{which}", part(m, o, which)) for which in ("forward", "forward-backward", "optimizer")]
    out = {}
    calls = 3
    for name, fn in steps:
        if name.endswith(":optimizer"):
            with_grads(model if name.startswith("train") else lora)
        for _ in range(3):
            fn()
        sync()
        with profile(activities=[ProfilerActivity.CUDA if device == "cuda" else ProfilerActivity.CPU], acc_events=True) as prof:
            for _ in range(calls):
                fn()
            sync()
        kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA) / calls

        def timed():
            fn()
            sync()

        seconds = host_median(timed, reps=10)
        if not quiet:
            print(f"host per kernel, {name}{f' at {layers} layers' if layers else ''}: {seconds * 1e3:.3f} ms a call, "
                  f"{kernels:.0f} kernels", flush=True)
        out[name] = (seconds / max(kernels, 1), round(kernels))
    return out
