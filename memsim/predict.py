"""predict(workload) -> Report: build the Program, walk it, compare with the device."""

from __future__ import annotations

from .allocator import CUDA_CONTEXT_BYTES, device_estimate, replay
from .catalog import load_hardware, load_model
from .errors import InputError
from .methods import Methods
from .report import Report, TierPeak
from .tape import MANAGED
from .tiers import tier_capacities, tier_peaks
from .runtimes.hf_steps import StepConfig, build_program
from .simulator import Peak, simulate
from .workload import DTYPE_BYTES, Workload


def step_config(w: Workload) -> StepConfig:
    model = load_model(w.model)
    for m in w.methods:
        m.check(model, w)
    attention = w.attention
    if attention == "flash":
        if w.precision.compute == "fp32":
            raise InputError("attention: flash needs 16-bit compute (precision.compute bf16 or fp16); use sdpa or eager for fp32")
        attention = "sdpa"  # SDPA dispatches 16-bit causal attention to its flash kernel
    p = w.precision
    methods = Methods(tuple(w.methods))
    weights, compute = methods.precision(p.weights, p.compute) if w.task == "train" else (p.weights, p.compute)
    if p.weights != p.compute:
        _check_autocast(w)
        if model.is_moe:
            raise InputError(f"precision: autocast (weights {p.weights}, compute {p.compute}) on a mixture of experts is not modeled yet; "
                             "use the same dtype for both")
        if model.model_type == "gemma2":
            raise InputError(f"precision: autocast (weights {p.weights}, compute {p.compute}) on gemma2 is not modeled yet; "
                             "use the same dtype for both")
    return StepConfig(
        model=model,
        task=w.task,
        batch=w.batch,
        seq=w.seq,
        dtype_bytes=DTYPE_BYTES[compute],
        attention=attention,
        optimizer=w.optimizer,
        methods=methods,
        new_tokens=w.generate,
        all_logits=w.logits == "all",
        weights_dtype_bytes=DTYPE_BYTES[weights] if weights != compute else 0,
        sm=load_hardware(w.hardware).sm,
    )


def _check_autocast(w: Workload) -> None:
    """What of autocast mixed precision (fp32 weights, 16-bit compute) is modeled: training and
    prefill with SDPA; bf16 for training (fp16 training needs a GradScaler, not modeled yet)."""
    p = w.precision
    if w.task not in ("train", "prefill"):
        raise InputError(f"task: {w.task} with autocast (weights {p.weights}, compute {p.compute}) is not modeled yet; train and prefill are")
    if w.attention == "eager":
        raise InputError(f"attention: eager with autocast (weights {p.weights}, compute {p.compute}) is not modeled yet; use sdpa or flash")
    if w.task == "train" and p.compute == "fp16":
        raise InputError("precision.compute: fp16 autocast training (with a GradScaler) is not modeled yet; use compute bf16, or fp16 for prefill")


# Steps the allocator replay runs for a verdict under a capacity: a first step (optimizer state
# created inside the freed activations' segments), then steady steps; fragmentation can first bite
# in the third (measured: TinyLlama b7 on an emulated RTX 4090 ran out in a timed step, as the
# replay does in its third). The executor runs one warm-up and three timed steps: as many.
VERDICT_STEPS = 4


def peak(workload: Workload | dict) -> Peak:
    """The analytic peak alone: allocated bytes and their breakdown at the peak instant, without
    the allocator replay (what a search over shapes needs first, in about a millisecond)."""
    w = workload if isinstance(workload, Workload) else Workload.parse(workload)
    return simulate(build_program(step_config(w)))


def allocator_room(hardware) -> int:
    """The bytes the caching allocator may hold on a card (a catalog name or spec): its usable
    memory less the CUDA context."""
    return load_hardware(hardware).usable_bytes - CUDA_CONTEXT_BYTES


def predict(workload: Workload | dict) -> Report:
    w = workload if isinstance(workload, Workload) else Workload.parse(workload)
    cfg = step_config(w)
    hw = load_hardware(w.hardware)
    program = build_program(cfg)
    peak = simulate(program)
    capacity = hw.usable_bytes
    room = allocator_room(hw)
    # The caching allocator's segments (allocator.py), under the device's limit: near it, the
    # allocator releases what it caches and retries, and the verdict is whether that suffices.
    # Where it does not fit, the figures are what the step would need (a replay without limit).
    limited = replay(program, limit=room, steps=VERDICT_STEPS) if peak.bytes <= room else None
    fits = limited is not None and limited.fits
    reserved = limited.peak_reserved if fits else replay(program).peak_reserved
    others = tier_peaks(program, _tiers(cfg))
    # CUDA managed memory (a paged optimizer's state) is on the device while the step uses it.
    device = device_estimate(reserved) + (others[MANAGED].device_bytes if MANAGED in others else 0)
    beyond, tier_notes = tier_capacities(others, w.host, hw)
    capacities, notes = {"gpu": capacity, **beyond}, list(cfg.model.notes) + tier_notes  # notes: defaults filled, capacities unknown
    notes += _window_notes(w, cfg.model)
    fits = fits and all(others[t].reserved_bytes <= c for t, c in beyond.items())
    return Report(
        fits=fits,
        peak={"gpu": TierPeak(allocated_bytes=peak.bytes, reserved_bytes=reserved, device_bytes=device), **others},
        breakdown_bytes=peak.breakdown,
        capacity_bytes=capacities,
        headroom_bytes={"gpu": capacity - device} | {t: c - others[t].reserved_bytes for t, c in capacities.items() if t != "gpu"},
        notes=notes,
        phase_at_peak=peak.segment,
        model=cfg.model.name,
        hardware=hw.name,
        task=w.task,
        batch=w.batch,
        seq=w.seq,
        parameters=cfg.model.param_count(),
    )


def _window_notes(w: Workload, model) -> list[str]:
    """A sliding window memsim models as full attention, where the step's keys reach past it."""
    window = model.full_attention_window
    keys = w.seq + (w.generate if w.task == "generate" else 1 if w.task == "decode" else 0)
    if not window or keys <= window:
        return []
    return [f"sliding_window {window}: transformers slides every layer over the last {window} tokens (a sliding mask, "
            f"a cache of the window); memsim models full attention, so at {keys} tokens these are full attention's figures"]


def _tiers(cfg: StepConfig) -> set[str]:
    """The memory tiers besides the GPU's that the step's methods and optimizer use."""
    if cfg.task != "train":
        return set()
    return cfg.methods.tiers() | (cfg.step_optimizer.tiers() if cfg.optimizer else set())


def phase_times(workload: Workload | dict, host_launch: dict | None = None) -> dict:
    """Each phase's step on the roofline (memsim/roofline.py), with the device's measured profile
    where one is committed: {"train": ...}, {"prefill": ...}, {"decode": one step against `seq`
    cached tokens}; generate: {"prefill": ..., "decode": one step at the mean cache length}.
    `host_launch` (LaunchCosts fields: validate.run_host_launch) puts a run's host costs in place of
    the profile's."""
    from .catalog import load_measured
    from .host_time import host_costs
    from .roofline import step_time
    from .runtimes.hf_inference import decode_program, prefill_program
    from .tape import recording_costs

    w = workload if isinstance(workload, Workload) else Workload.parse(workload)
    cfg = step_config(w)
    hw, profile = load_hardware(w.hardware), load_measured(w.hardware)
    if host_launch and profile is not None and profile.launch is not None:
        profile = profile.model_copy(update={"launch": profile.launch.measured_again(host_launch)})

    def timed(build, mode):
        with recording_costs():
            program = build()
        return step_time(program, hw, profile, w.precision.compute, cfg.dtype_bytes, mode,
                         host_costs(profile, mode, cfg.methods))

    if cfg.task == "train":
        return {"train": timed(lambda: build_program(cfg), "train")}
    if cfg.task == "decode":
        return {"decode": _noted_cudnn_graphs(timed(lambda: decode_program(cfg, cfg.seq), "decode"))}
    phases = {"prefill": timed(lambda: prefill_program(cfg), "prefill")}
    if cfg.task == "generate" and cfg.new_tokens > 1:
        phases["decode"] = _noted_cudnn_graphs(timed(lambda: decode_program(cfg, cfg.seq + (cfg.new_tokens - 1) // 2), "decode"))
    return phases


# Measured on an H200 (torch 2.11, cuDNN SDPA; benchmarks/host_profile.py, data/validation/
# host-profile-h200.json): decode steps whose cache grew a token each, 37-80 ms longer than the
# same step at a length met before.
CUDNN_NEW_LENGTH_S = (0.037, 0.080)


def _noted_cudnn_graphs(st):
    """A decode step whose attention is cuDNN's: PyTorch builds (and caches) a cuDNN graph for each
    new key length, so the step as predicted is one at a length met before."""
    if any(k.name == "sdpa.cudnn" for k in st.kernels):
        lo, hi = (round(x * 1e3) for x in CUDNN_NEW_LENGTH_S)
        st.assumptions.append(f"cuDNN attention: a key length met for the first time costs a graph build, {lo}-{hi} ms "
                              "a step on an H200; this is the step at a length met before (a generate() repeated at one "
                              "prompt length), and a first call pays it for every new token")
    return st


def predict_time(workload: Workload | dict, host_launch: dict | None = None):
    """(seconds, tokens, StepTime of the phase that takes longest) of one step of the task; for
    generate, the prefill and its new_tokens - 1 decode steps (`host_launch`: see phase_times)."""
    w = workload if isinstance(workload, Workload) else Workload.parse(workload)
    phases = phase_times(w, host_launch)
    spent = phase_seconds(w, phases)
    tokens = {"train": w.batch * w.seq, "prefill": w.batch * w.seq, "decode": w.batch,
              "generate": w.batch * w.generate}[w.task]
    longest = max(spent, key=spent.get)
    return sum(spent.values()), tokens, phases[longest]


def phase_seconds(w: Workload, phases: dict) -> dict[str, float]:
    """Seconds each phase of phase_times takes in one step of the task: a generate's prefill once
    and its decode step new_tokens - 1 times."""
    steps = {"train": 1, "prefill": 1, "decode": max(w.generate - 1, 1) if w.task == "generate" else 1}
    return {name: st.seconds * steps[name] for name, st in phases.items()}
