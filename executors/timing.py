"""Timing primitives of the calibration and the executor: GPU time between CUDA events, in CUDA
graphs (a small kernel launched from Python would time the host), host time with perf_counter, and
the SM clock NVML reports."""

from __future__ import annotations

import statistics
import time

import torch


def cuda_median(fn, reps: int, warmup: int = 2, inner: int = 1) -> float:
    """Median seconds of fn() over `reps` runs between CUDA events, each of `inner` calls back to
    back (as a step issues its kernels: a short kernel timed alone would count its launch)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / inner)
    return statistics.median(times)


def graph_median(fn, reps: int, inner: int) -> float:
    """Device seconds of one fn() call: `inner` calls captured in a CUDA graph, its replays timed
    (a small kernel launched from Python would time the host's issue rate, not the GPU)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    seconds = cuda_median(graph.replay, reps) / inner
    del graph
    return seconds


def device_median(fn, reps: int, inner: int) -> float:
    """graph_median, or where fn cannot be captured in a CUDA graph, cuda_median of `inner`
    calls back to back (which counts the host's issue time if it exceeds the kernels')."""
    try:
        return graph_median(fn, reps, inner)
    except RuntimeError as e:
        print(f"calibrate: timed without a CUDA graph ({str(e).splitlines()[0][:120]})", flush=True)
        torch.cuda.synchronize()
        return cuda_median(fn, reps, inner=inner)


def sm_clock_mhz() -> float:
    """The SM clock over NVML's last sample period (1/6 s to 1 s), or 0 where NVML cannot be read."""
    try:
        return float(torch.cuda.clock_rate())
    except Exception:  # no pynvml, or no NVML on this machine
        return 0.0


def host_median(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
