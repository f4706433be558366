"""Where a host-bound step's time goes: suite cases' steps (and the calibration model's decode
step, as case "calibration-decode") timed as the executor times them, again with the cache left to
grow a token a step (as generate() runs), again with cuDNN attention off, and one step under
torch.profiler with the host's side recorded: the aten ops and CUDA runtime calls by host time.

    python benchmarks/host_profile.py data/suites/h100.yaml CASE_ID [CASE_ID ...] --out FILE.json
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from memsim.executors.protocol import decode_step, input_ids, new_cache, prefill, reset_cache
from memsim.executors.run import build_steps, provenance
from memsim.executors.host_costs import host_index

import suite_cases  # benchmarks/suite_cases.py: the shared command line

TOP = 40


def _calibration_decode():
    """The launch calibration's decode step (host_costs._hf_host_per_kernel) and its reset."""
    from memsim.executors.trace import build_model
    from memsim.calibration import HOST_CALIBRATION_BATCH, HOST_CALIBRATION_MODEL, HOST_CALIBRATION_SEQ

    with torch.device("cuda"):
        model = build_model(dict(HOST_CALIBRATION_MODEL), "sdpa", "bf16")
    ids = input_ids(HOST_CALIBRATION_BATCH, HOST_CALIBRATION_SEQ, HOST_CALIBRATION_MODEL["vocab_size"]).cuda()
    cache = new_cache(model)
    prefill(model, ids, cache)
    return (lambda: decode_step(model, cache, ids[:, -1:])), (lambda: reset_cache(cache, HOST_CALIBRATION_SEQ))


def _timed(step, between, reps: int = 7) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
        between()
    return out


def _profiled(step) -> dict:
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kernels, gpu = 0, 0.0
    runtime: dict[str, list] = defaultdict(lambda: [0, 0.0])  # CUDA runtime and driver calls
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kernels += 1
            gpu += e.device_time_total / 1e6
        elif e.name.startswith("cu"):
            runtime[e.name][0] += 1
            runtime[e.name][1] += e.cpu_time_total / 1e6
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:TOP]
    return dict(kernels=kernels, gpu_s=gpu,
                runtime={n: {"count": c, "seconds": s} for n, (c, s) in sorted(runtime.items(), key=lambda kv: -kv[1][1])},
                ops=[{"op": e.key[:120], "count": e.count, "self_s": e.self_cpu_time_total / 1e6,
                      "total_s": e.cpu_time_total / 1e6} for e in ops])


def measure(step, between) -> dict:
    for _ in range(3):
        step()
        between()
    torch.cuda.synchronize()
    r = dict(fixed_s=_timed(step, between), growing_s=_timed(step, lambda: None))
    between()
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        step()
        between()
        r["fixed_no_cudnn_s"] = _timed(step, between)
        between()
        r["growing_no_cudnn_s"] = _timed(step, lambda: None)
        between()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)
    step()
    between()
    r["profile"] = _profiled(step)
    # The executor's host index (data/validation/host-profile-h200.json predates it: its host_op_s
    # is a torch.zeros(16).add_(1) pair's seconds).
    r["host_index_s"] = host_index()
    return r


def case_result(case) -> dict:
    run = build_steps(case.workload)
    return dict(case=case.id, task=case.workload.task, **measure(run, run.between))


def main() -> int:
    args, by_id = suite_cases.parse(("calibration-decode",))
    results = dict(provenance=provenance(True).model_dump(), cases=[])
    for cid in args.cases:
        if cid == "calibration-decode":
            step, between = _calibration_decode()
            r = dict(case=cid, task="decode", **measure(step, between))
        else:
            r = case_result(by_id[cid])
        results["cases"].append(r)
        with open(args.out, "w") as f:  # after every case: a killed run keeps what it finished
            json.dump(results, f, indent=1)
        med = lambda xs: sorted(xs)[len(xs) // 2] * 1e3
        p = r["profile"]
        print(f"{cid}: fixed {med(r['fixed_s']):.1f} ms, growing {med(r['growing_s']):.1f}, no cuDNN "
              f"{med(r['fixed_no_cudnn_s']):.1f} / {med(r['growing_no_cudnn_s']):.1f}; {p['kernels']} kernels, "
              f"GPU {p['gpu_s'] * 1e3:.1f} ms; top runtime {list(p['runtime'].items())[:4]}", flush=True)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
