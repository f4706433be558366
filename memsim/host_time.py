"""What a step costs the host, from a measured profile's calibration steps.

The profile times small host-bound steps (calibration.HOST_CALIBRATION_STEPS) and counts the CUDA
kernels the profiler saw in each. The tape of the same step names fewer kernels than run (a
backward's fills and reductions, cuDNN's helpers), and the host's time is what a step pays: so a
step's host cost is its calibration step's host seconds over the kernels the tape names for it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from .methods import METHODS, Methods


class HostCosts(NamedTuple):
    """What a step costs the host (host_costs): seconds per kernel the tape names (None: no counted
    calibration step, the roofline's own), once a call, and per Python call that issues no kernel
    (OpCost.host_calls: saved-tensor hooks)."""

    per_kernel: float | None
    per_call: float = 0.0
    per_hook: float = 0.0


def host_costs(profile, mode: str, methods=()) -> HostCosts:
    """The host's costs of a `mode` (train, prefill, decode) step with `methods` (Method
    instances), from its calibration step (_calibration_step): where the profile measured it at a
    second depth (HOST_CALIBRATION_DEEP_LAYERS), a line through both, a fixed part a call and a
    part per tape kernel; else all of it per kernel. A training step's hooks (per_hook) cost what
    a hook-measuring calibration step took beyond the plain train step's line, per hook its tape
    counts. HostCosts(None) where the profile counted no kernels of the step."""
    launch = profile.launch if profile else None
    if launch is None:
        return HostCosts(None)
    step = _calibration_step(launch, mode, methods)
    line = _host_line(launch, step)
    if line is None:
        return HostCosts(None)
    plain = line if step == "train" else _host_line(launch, "train") if mode == "train" else None
    return HostCosts(*line, _per_hook(launch, *plain) if plain else 0.0)


def _calibration_step(launch, mode: str, methods) -> str:
    """The calibration step a `mode` step is costed by: for training, the first of the methods'
    own steps (Methods.host_steps) the profile counted, else the plain train step; for decode, the
    decode step where the profile counted its kernels (one that counted none timed it against a
    cache that grew each call, a cuDNN graph built every time), else the prefill's."""
    if mode == "train":
        counted = [step for step in Methods(tuple(methods)).host_steps() if launch.host_step(step)[1]]
        return counted[0] if counted else "train"
    return "decode" if mode == "decode" and launch.host_step("decode")[1] else "forward"


def _calibration_points(launch, step: str) -> list[tuple[float, int, int]]:
    """(host seconds, tape kernels, tape host calls) of a calibration step as the profile measured
    it: its own depth, then HOST_CALIBRATION_DEEP_LAYERS where measured; [] where not counted."""
    from .calibration import HOST_CALIBRATION_DEEP_LAYERS

    points = []
    for (per_kernel, kernels), layers in ((launch.host_step(step), 0), (launch.deep_step(step), HOST_CALIBRATION_DEEP_LAYERS)):
        if not kernels:
            break
        points.append((per_kernel * kernels, *_calibration_tape_counts(step, layers)))
    return points


def _host_line(launch, step: str) -> tuple[float, float] | None:
    """(seconds per tape kernel, fixed seconds a call) of a calibration step: a line through its
    two depths where both were measured and agree with one, else all of it per kernel."""
    points = _calibration_points(launch, step)
    if not points:
        return None
    (shallow_s, shallow_k, _), *deep = points
    if deep:
        deep_s, deep_k, _ = deep[0]
        rate = (deep_s - shallow_s) / (deep_k - shallow_k)
        fixed = shallow_s - rate * shallow_k
        if rate > 0 and fixed >= 0:  # else the two disagree with a line (noise): per kernel alone
            return rate, fixed
    return shallow_s / shallow_k, 0.0


def _hook_steps() -> list[str]:
    """The calibration steps that measure a cost per hook (Method.host_cost "hook"), in the
    registry's order."""
    return [cls.host_step for cls in METHODS.values() if cls.host_step and cls.host_cost == "hook"]


def _per_hook(launch, rate: float, fixed: float) -> float:
    """Host seconds per hook (OpCost.host_calls), from the first hook step the profile measured:
    its time beyond what the plain step's line (`rate` per tape kernel, `fixed` a call) gives its
    kernels, over its hooks; between its two depths where both were measured (the excess that does
    not grow with depth is not the hooks'). 0 where the profile measured none."""
    for step in _hook_steps():
        excess = [(seconds - fixed - rate * tape, hooks) for seconds, tape, hooks in _calibration_points(launch, step)]
        if not excess:
            continue
        if len(excess) == 2 and excess[1][0] > excess[0][0]:
            return (excess[1][0] - excess[0][0]) / (excess[1][1] - excess[0][1])
        return max(excess[0][0], 0.0) / excess[0][1]
    return 0.0


@lru_cache(maxsize=16)
def _calibration_tape_counts(step: str, layers: int = 0) -> tuple[int, int]:
    """(kernels, host calls) the tape names for a calibration step (at `layers` layers: 0 for the
    model's own)."""
    from .calibration import HOST_CALIBRATION_BATCH, HOST_CALIBRATION_MODEL, HOST_CALIBRATION_SEQ, HOST_CALIBRATION_STEPS
    from .predict import step_config
    from .runtimes.hf_inference import decode_program, prefill_program
    from .runtimes.hf_steps import build_program
    from .tape import recording_costs
    from .workload import Workload

    task, methods = HOST_CALIBRATION_STEPS[step]
    model = dict(HOST_CALIBRATION_MODEL, num_hidden_layers=layers or HOST_CALIBRATION_MODEL["num_hidden_layers"])
    w = Workload.parse(dict(model=model, hardware="h100-sxm-80gb", task=task, methods=methods,
                            batch=HOST_CALIBRATION_BATCH, seq=HOST_CALIBRATION_SEQ))
    cfg = step_config(w)
    with recording_costs():
        program = {"train": build_program, "prefill": prefill_program,
                   "decode": lambda c: decode_program(c, c.seq)}[task](cfg)
    costs = [(seg.repeat, c) for seg in program.segments for c in seg.costs()]
    return sum(n * c.kernels for n, c in costs), sum(n * c.host_calls for n, c in costs)
