"""What eager PyTorch costs the host (memsim calibrate's launch section, and each measured run's
record of its own host): a bare op's issue, the host seconds per CUDA kernel of a small
transformers decoder's calibration steps (calibration.HOST_CALIBRATION_STEPS: a prefill, train
and decode step, and a train step for each method with a host step of its own; at two depths; the
train steps' parts apart), and the host's speed right now (host_index)."""

from __future__ import annotations

import statistics

import torch

from .timing import cuda_median, host_median


def launches(progress=lambda msg: None) -> dict:
    """What a kernel costs beyond its work, in eager PyTorch: the GPU time of a tiny kernel (1000
    adds replayed from a CUDA graph, so the host does not starve the GPU), the host time to issue a
    bare op, and the host time per kernel of a small transformers decoder's calibration steps
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
                steps=step_figures(steps), deep=step_figures(deep),
                phases={step: train_phases(steps, step) for step in phase_steps()})


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


def step_figures(steps: dict[str, tuple[float, int]]) -> dict[str, list[float]]:
    """LaunchCosts.steps (or deep) from _hf_host_per_kernel's steps: the calibration steps', not
    their parts'."""
    from memsim.calibration import HOST_CALIBRATION_STEPS

    return {step: list(steps[step]) for step in HOST_CALIBRATION_STEPS}


def phase_steps() -> list[str]:
    """The train steps whose parts are measured apart (train_phases): the plain one and each
    method's whose host cost is its step's per kernel (Method.host_cost "kernel")."""
    from memsim.methods import METHODS

    return ["train", *(cls.host_step for cls in METHODS.values() if cls.host_step and cls.host_cost == "kernel")]


def train_phases(steps: dict, prefix: str) -> dict[str, list[float]]:
    """LaunchCosts.phases[prefix] from _hf_host_per_kernel's parts of the `prefix` step:
    {phase: [host seconds, kernels]}, the backward's as forward-backward less forward."""
    total = {which: (per * kernels, kernels) for which in ("forward", "forward-backward", "optimizer")
             for per, kernels in [steps[f"{prefix}:{which}"]]}
    (fwd_s, fwd_k), (fb_s, fb_k), (opt_s, opt_k) = total["forward"], total["forward-backward"], total["optimizer"]
    return {"forward": [fwd_s, fwd_k], "backward": [fb_s - fwd_s, fb_k - fwd_k], "optimizer": [opt_s, opt_k]}


def host_launch_costs() -> dict:
    """This process's host cost per kernel of the calibration steps (LaunchCosts.steps, as
    {"steps": ...}): what a measurement records of the host it ran on."""
    return {"steps": step_figures(_hf_host_per_kernel(quiet=True, parts=False))}


def _hf_host_per_kernel(quiet: bool = False, parts: bool = True, layers: int = 0,
                        device: str = "cuda") -> dict[str, tuple[float, int]]:
    """{step: (host seconds per CUDA kernel, kernels)} of HOST_CALIBRATION_MODEL's calibration
    steps (HOST_CALIBRATION_STEPS, as the executor's protocols run them), whose kernels take
    microseconds, so that a step's wall time is the host's; with `parts`, the phase_steps' parts
    (train_phases) as well; `layers`: the model at that depth instead of its own. (`device` cpu:
    the steps run, for a test, and their kernels count 0.)"""
    from memsim.calibration import HOST_CALIBRATION_BATCH, HOST_CALIBRATION_MODEL, HOST_CALIBRATION_SEQ, HOST_CALIBRATION_STEPS

    from .protocol import input_ids

    config = dict(HOST_CALIBRATION_MODEL, num_hidden_layers=layers or HOST_CALIBRATION_MODEL["num_hidden_layers"])
    models = _calibration_models(config, device)
    ids = input_ids(HOST_CALIBRATION_BATCH, HOST_CALIBRATION_SEQ, config["vocab_size"]).to(device)
    calls = [(step, _step_call(task, *models[step], ids), None) for step, (task, _) in HOST_CALIBRATION_STEPS.items()]
    if parts:
        calls += [call for step in phase_steps() for call in _part_calls(step, *models[step], ids)]
    out = {}
    for name, fn, before in calls:
        seconds, kernels = _host_seconds_and_kernels(fn, before, device)
        if not quiet:
            print(f"host per kernel, {name}{f' at {layers} layers' if layers else ''}: {seconds * 1e3:.3f} ms a call, "
                  f"{kernels:.0f} kernels", flush=True)
        out[name] = (seconds / max(kernels, 1), round(kernels))
    return out


def _calibration_models(config: dict, device: str) -> dict:
    """{step: (model, AdamW foreach over its trainable parameters)} for HOST_CALIBRATION_STEPS, one
    model for each methods list (the plain steps share theirs)."""
    from memsim.calibration import HOST_CALIBRATION_STEPS
    from memsim.methods import AdamW, parse_method

    from .trace import build_model

    built, out = {}, {}
    with torch.device(device):
        for step, (_, methods) in HOST_CALIBRATION_STEPS.items():
            key = repr(methods)
            if key not in built:
                model = build_model(config, "sdpa", "bf16", [parse_method(m) for m in methods])
                built[key] = model, AdamW().torch_optimizer([p for p in model.parameters() if p.requires_grad])
            out[step] = built[key]
    return out


def _step_call(task: str, model, opt, ids):
    """One calibration step of `task` (train, prefill, decode) as the executor's protocol runs it."""
    from memsim.calibration import HOST_CALIBRATION_SEQ

    from .protocol import decode_step, new_cache, prefill, reset_cache, train_step

    if task == "train":
        return lambda: train_step(model, ids, opt)
    if task == "prefill":
        return lambda: prefill(model, ids, new_cache(model))
    cache = new_cache(model)
    prefill(model, ids, cache)
    next_ids = ids[:, -1:]

    def decode():
        # The cache back to its 64 tokens first, as the executor's decode steps are (protocol.
        # reset_cache). Left to grow, every call meets a new key length, for which cuDNN's
        # attention builds a new graph: 40-65 ms a call on an H200 (benchmarks/host_profile.py),
        # 10x the step itself. Cropped alone (a strided view), the calls took 4 or 7 ms by turns
        # where the forward took 4.4 (measured on an H200).
        reset_cache(cache, HOST_CALIBRATION_SEQ)
        decode_step(model, cache, next_ids)

    return decode


def _part_calls(step: str, model, opt, ids) -> list:
    """A train step's parts apart (train_phases), as (name, call, what runs before its warm-up):
    its forward and loss as autograd records them, forward and backward (gradients dropped after,
    as zero_grad does), an optimizer step alone over gradients, as in a step."""

    def train_forward():
        model(input_ids=ids, labels=ids).loss  # its graph dies with it

    def forward_backward():
        model(input_ids=ids, labels=ids).loss.backward()
        model.zero_grad(set_to_none=True)

    def with_grads():
        model(input_ids=ids, labels=ids).loss.backward()

    return [(f"{step}:forward", train_forward, None), (f"{step}:forward-backward", forward_backward, None),
            (f"{step}:optimizer", opt.step, with_grads)]


def _host_seconds_and_kernels(fn, before, device: str, calls: int = 3) -> tuple[float, float]:
    """(median host seconds of a call of `fn`, CUDA kernels a call) after `before` and 3 warm-up
    calls: the kernels as torch.profiler counts them over `calls` calls."""
    from torch.profiler import ProfilerActivity, profile

    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    if before:
        before()
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

    return host_median(timed, reps=10), kernels
