"""`memsim validate`: run a suite of workloads for real, each in a fresh process, and put the
measurements beside the predictions.

A suite (YAML) is a list of workloads with ids, sharing defaults:

    name: h100-core
    hardware: h100-sxm-80gb        # the device the measurements are made on (predictions use it)
    warmup: 1                      # steps before the peak statistics are reset
    steps: 3                       # timed steps
    defaults: {precision: {weights: bf16, compute: bf16}}
    cases:
      - {id: tiny-train, model: tinyllama-1.1b, batch: 4, seq: 1024}
      - {id: tiny-4090-edge, model: tinyllama-1.1b, seq: 2048, emulate: rtx-4090, boundary: batch}

`emulate` runs the case on a capacity-limited allocator (a catalog GPU's or a size like 24GiB) and
predicts for the suite's device limited to that capacity (hardware 'h100-sxm-80gb@rtx-4090': the
kernels the run really uses, the capacity it emulates); `boundary: batch` expands the case into the largest batch that
memsim says fits there and one more. Results append to a JSONL file as they land: a killed run
loses nothing it finished, and the next run resumes where it stopped. No torch in this module: the
measuring happens in `python -m memsim.executors.worker`.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .catalog import load_hardware, parse_size
from .errors import InputError, first_error, read_mapping
from .fit import largest_fitting
from .measurement import Measurement
from .predict import predict, step_config
from .results_file import append_result, drop_torn_tail, read_results
from .worker_process import run_worker, torch_device
from .workload import Workload

# The suite sized for the CPU executor (small models, a capacity rather than a GPU): what CI runs.
CPU_SUITE = "data/suites/cpu-smoke.yaml"


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    hardware: str = "h100-sxm-80gb"
    warmup: int = Field(1, ge=1)
    steps: int = Field(3, ge=1)
    defaults: dict[str, Any] = {}
    cases: list[dict[str, Any]] = Field(min_length=1)


class Case(BaseModel):
    """One run: its id, the workload (predicted on `hardware`) and the capacity the run emulates."""

    id: str
    workload: Workload
    emulate_capacity_bytes: int = 0


class CaseSpec(BaseModel):
    model_config = ConfigDict(extra="allow")  # the rest are Workload fields
    id: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    emulate: str | None = None
    boundary: Literal["batch"] | None = None


def load_suite(path: str | Path, hardware: str | None = None) -> tuple[Suite, list[Case]]:
    """The suite's cases; `hardware` runs them on another device (its name then names the suite)."""
    raw = read_mapping(path, "suite")  # unreadable, not UTF-8, not YAML, not a mapping: one line
    try:
        suite = Suite(**raw)
    except ValidationError as e:
        raise InputError(f"suite '{path}': {first_error(e)}") from None
    if hardware:
        try:
            load_hardware(hardware)
        except InputError as e:
            raise InputError(f"--hardware: {e}") from None
        suite = suite.model_copy(update={"hardware": hardware, "name": hardware})
    cases: list[Case] = []
    for i, item in enumerate(suite.cases):
        try:
            spec = CaseSpec(**item)
        except ValidationError as e:
            raise InputError(f"suite '{path}': cases[{i}].{first_error(e)}") from None
        fields = {**suite.defaults, **(spec.model_extra or {})}
        hardware = f"{suite.hardware}@{spec.emulate}" if spec.emulate else suite.hardware
        try:
            w = Workload.parse({**fields, "hardware": hardware})
            step_config(w)  # the model resolves and is modeled: fail here, not in a worker
            load_hardware(hardware)
        except InputError as e:
            raise InputError(f"suite '{path}': case '{spec.id}': {e}") from None
        cap = load_hardware(spec.emulate).usable_bytes if spec.emulate else 0
        if spec.boundary == "batch":
            largest = largest_fitting(w, "batch")
            if largest < 1:
                raise InputError(f"suite '{path}': case '{spec.id}': no batch fits on {hardware}")
            for b, tag in ((largest, "fits"), (largest + 1, "over")):
                cases.append(Case(id=f"{spec.id}-b{b}-{tag}", workload=w.model_copy(update={"batch": b}),
                                  emulate_capacity_bytes=cap))
        else:
            cases.append(Case(id=spec.id, workload=w, emulate_capacity_bytes=cap))
    ids = [c.id for c in cases]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"suite '{path}': case id(s) {', '.join(dup)} used twice")
    return suite, cases


def check_device(suite: Suite, path: str | Path, device: str) -> None:
    """Refuse, in one line, a run that cannot measure what the suite is for: a suite measured on a
    named GPU where torch sees none (it runs with --device cpu, on purpose), --device cuda without
    a GPU, and any run without torch."""
    if device == "cpu":
        return
    found = torch_device()
    if not found:
        raise InputError("validate: running cases needs torch (pip install 'memsim[torch]'); --no-run compares results already measured")
    if device == "cuda" and found != "cuda":
        raise InputError("--device cuda: torch sees no CUDA GPU here; --device cpu runs the cases on the CPU (live tensor bytes counted)")
    if found != "cuda" and parse_size(suite.hardware) is None:
        raise InputError(f"suite '{path}' is measured on {suite.hardware} and torch sees no CUDA GPU here: run it with --device cpu "
                         f"(each case on real CPU tensors, live bytes counted: a GPU-sized case needs that much RAM and time), "
                         f"or run the CPU suite, {CPU_SUITE}")


def run_case(case: Case, suite: Suite, device: str = "auto", timeout_s: float = 1800) -> Measurement | str:
    """One case in a fresh Python process (memsim.worker_process: it dies with this one); returns
    its Measurement, or the error it ended with."""
    request = dict(case=case.id, workload=case.workload.model_dump(mode="json"), warmup=suite.warmup,
                   steps=suite.steps, device=device, emulate_capacity_bytes=case.emulate_capacity_bytes,
                   parent_pid=os.getpid())
    r = run_worker([json.dumps(request)], timeout_s)
    if r is None:
        return f"timed out after {timeout_s:.0f} s"
    lines = r.stdout.strip().splitlines()
    if r.returncode == 0 and lines:
        return Measurement.model_validate_json(lines[-1])
    tail = (r.stderr.strip().splitlines() or ["exited with code %d" % r.returncode])[-1]
    return tail


def run_suite(suite: Suite, cases: list[Case], out: Path, device: str = "auto", on_result=None,
              on_note=print) -> dict[str, Measurement]:
    """Run the cases not yet in `out`, appending each result as it lands (memsim.results_file); a
    torn last line left by a killed run is cut off first, with a note."""
    out.parent.mkdir(parents=True, exist_ok=True)
    note = drop_torn_tail(out)
    if note and on_note:
        on_note(note)
    done = read_results(out)
    for case in cases:
        if case.id in done:
            if on_result:
                on_result(case, done[case.id], resumed=True)
            continue
        result = run_case(case, suite, device)
        if isinstance(result, Measurement):
            append_result(out, result)
            done[case.id] = result
        if on_result:
            on_result(case, result, resumed=False)
    return done


def comparison(cases: list[Case], results: dict[str, Measurement]):
    """Predicted beside measured, one row a case, as a pandas DataFrame."""
    import pandas as pd

    rows = []
    for case in cases:
        m = results.get(case.id)
        if m is None:
            continue
        rep = predict(case.workload)
        p = rep.peak["gpu"]
        # The CPU tracker counts live tensors: no kernel workspace (cuBLAS's, resident) on a CPU.
        cpu = m.provenance.backend == "cpu-tracker"
        allocated = p.allocated_bytes - (rep.breakdown_bytes.get("workspace", 0) if cpu else 0)
        step_s, bound, phases = _predicted_step(case.workload)
        own_host = run_host_launch(m)
        own_host_s = _predicted_step(case.workload, own_host)[0] if own_host else float("nan")
        measured_phases = m.phase_times_s if m.fits else {}
        row = dict(case=case.id, task=case.workload.task, predicted_fits=rep.fits, measured_fits=m.fits,
                   predicted_allocated=allocated, measured_allocated=m.peak_allocated_bytes,
                   predicted_reserved=p.reserved_bytes, measured_reserved=m.peak_reserved_bytes,
                   predicted_device=p.device_bytes, measured_device=m.device_bytes,
                   step_time_s=m.step_time_s, tokens_per_s=m.tokens_per_s,
                   predicted_step_s=step_s, measured_step_s=m.step_time_s, predicted_bound=bound,
                   predicted_step_run_host_s=own_host_s)
        if "cpu" in rep.peak:  # the host tier: pinned memory's pool (active and cached blocks)
            row.update(predicted_host_pinned=rep.peak["cpu"].reserved_bytes, measured_host_pinned=m.host_pinned_peak_bytes)
        # Prefill and decode apart (a generate's time to first token and the rest): their tokens/s.
        for phase in ("prefill", "decode"):
            pred, meas = phases.get(phase, float("nan")), measured_phases.get(phase, float("nan"))
            row[f"predicted_{phase}_s"], row[f"measured_{phase}_s"] = pred, meas
            row[f"error_{phase}_tokens_per_s"] = meas / pred - 1 if pred == pred and meas == meas and pred > 0 else float("nan")
        for k in ("allocated", "reserved", "device", "step", "step_run_host") + (("host_pinned",) if "cpu" in rep.peak else ()):
            meas = row[f"measured_{k}"] if not k.startswith("step") else row["measured_step_s"]
            pred = row[f"predicted_{k}"] if not k.startswith("step") else row[f"predicted_{k}_s"]
            row[f"error_{k}"] = (pred - meas) / meas if m.fits and meas and pred == pred else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def run_host_launch(m: Measurement) -> dict:
    """The host costs of the host a run ran on, for calibration.LaunchCosts.measured_again: the
    calibration steps the run timed after its steps (host_launch), as `memsim calibrate` times
    them; empty where it measured none. The bare-op host index around each step (Measurement.
    host_index_s) does not scale the profile: measured on H200s it read 8-12 µs an op around the
    suite's steps and 3.9 µs in calibrate's launch section, while the same runs' calibration steps
    cost the host what the profile's did (forward 20-40 against 26 µs a kernel); scaled by it, the
    training steps came out 124% (median) too long. Within one run it follows the steps' spread
    (a TinyLlama generate's steps 1.71x apart, its index 1.57x, correlation 0.77)."""
    return m.host_launch


def _predicted_step(w: Workload, host_launch: dict | None = None) -> tuple[float, str, dict[str, float]]:
    """The roofline's step time, what bounds its longest phase, and the seconds of each phase in
    the step (memsim.predict.phase_times, phase_seconds); NaN where the device has no rates."""
    from .predict import phase_seconds, phase_times

    try:
        phases = phase_times(w, host_launch)
    except ValueError:
        return float("nan"), "", {}
    spent = phase_seconds(w, phases)
    return sum(spent.values()), phases[max(spent, key=spent.get)].bound, spent


def summary(df) -> dict[str, dict[str, float]]:
    """Median and max |error| per figure over the cases that ran to the end; step time also for
    training and inference apart, for the steps the roofline predicts bound by the GPU (where the
    host's speed, which varies between machines, does not set the time), and predicted with the
    host speed each run measured of itself (run_host_launch), where runs did."""
    out = {}
    groups = {k: df[f"error_{k}"] for k in ("allocated", "reserved", "device", "step")} if len(df) else {}
    if len(df):
        train = df["task"] == "train"
        groups["step, train"] = df["error_step"][train]
        groups["step, inference"] = df["error_step"][~train]
        gpu = df["predicted_bound"] != "host"
        groups["step, train, GPU-bound"] = df["error_step"][train & gpu]
        groups["step, inference, GPU-bound"] = df["error_step"][~train & gpu]
        groups["step, train, the run's host"] = df["error_step_run_host"][train]  # where runs measured it
        groups["step, inference, the run's host"] = df["error_step_run_host"][~train]
        # The inference figures: prefill and decode tokens/s, over the prefill and decode
        # cases and each generate's two phases.
        groups["prefill tokens/s"] = df["error_prefill_tokens_per_s"]
        groups["decode tokens/s"] = df["error_decode_tokens_per_s"]
    for k, col in groups.items():
        errs = [abs(e) for e in col if e == e]
        out[k] = {"median": statistics.median(errs) if errs else float("nan"), "max": max(errs) if errs else float("nan"),
                  "cases": len(errs)}
    return out


def plot(df, path: Path, title: str = "") -> Path:
    """Predicted against measured: peak memory (left), step time (middle, where runs were timed,
    with the ±20% band), and each case's errors (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = df[df["measured_fits"]]
    fig, (a, t, b) = plt.subplots(1, 3, figsize=(19, max(4.5, 0.22 * len(ran) + 1.5)))
    gib = 2**30
    hi = 0.0
    for k, marker in (("allocated", "o"), ("reserved", "s"), ("device", "^")):
        got = ran[ran[f"measured_{k}"] > 0]  # the CPU tracker measures allocated bytes only
        if len(got):
            a.scatter(got[f"measured_{k}"] / gib, got[f"predicted_{k}"] / gib, marker=marker, label=k, alpha=0.75)
            hi = max(hi, float(got[[f"measured_{k}", f"predicted_{k}"]].max().max()) / gib)
    a.plot([0, hi * 1.05], [0, hi * 1.05], color="grey", lw=0.8)
    a.set(xlabel="measured GiB", ylabel="predicted GiB", title="peak memory, predicted vs measured")
    a.legend()
    timed = ran[(ran["measured_step_s"] > 0) & (ran["predicted_step_s"] > 0)]
    if len(timed):
        ms = timed[["measured_step_s", "predicted_step_s"]] * 1e3
        for task, group in ms.groupby(timed["task"]):
            t.scatter(group["measured_step_s"], group["predicted_step_s"], label=task, alpha=0.75)
        lo, top = float(ms.min().min()) * 0.8, float(ms.max().max()) * 1.25
        t.plot([lo, top], [lo, top], color="grey", lw=0.8)
        t.fill_between([lo, top], [lo * 0.8, top * 0.8], [lo * 1.2, top * 1.2], color="grey", alpha=0.12, label="±20%")
        t.set(xscale="log", yscale="log", xlabel="measured step ms", ylabel="predicted step ms", title="step time, predicted vs measured")
        t.legend(fontsize=8)
    else:
        t.set_axis_off()
    y = list(range(len(ran)))
    b.barh([v + 0.2 for v in y], list(ran["error_allocated"] * 100), height=0.4, color="tab:blue", label="peak allocated")
    b.barh([v - 0.2 for v in y], list(ran["error_step"].fillna(0) * 100), height=0.4, color="tab:orange", label="step time")
    b.set_yticks(y, list(ran["case"]), fontsize=7)
    b.axvline(0, color="grey", lw=0.8)
    b.set(xlabel="error of the prediction (%)", title="error per case")
    b.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
