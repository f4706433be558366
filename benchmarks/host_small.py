"""The host's side of suite cases' steps, apart from their GPU work: each case's step at batch 1
and 32 tokens (its kernels take microseconds, so the step's wall time is the host's), with the
kernels the profiler counts in it, and the step at its own shape with the moment the host returned
from it beside the step's end (a host-bound step's host returns as the GPU ends). A generate case
runs as its prefill. Steps are timed in ROUNDS rounds, the host's speed (host_index) after each:
the H200 hosts here ran at two speeds by turns. The predictions for the same small workloads are
made where this is read (benchmarks/host_small_compare.py), against the profile measured on the
same machine.

    python benchmarks/host_small.py data/suites/h100.yaml CASE_ID [CASE_ID ...] --out FILE.json
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from memsim.executors.host_costs import host_index
from memsim.executors.run import build_steps, provenance

import suite_cases  # benchmarks/suite_cases.py: the shared command line

SMALL = dict(batch=1, seq=32)
ROUNDS, STEPS = 3, 5


def small_workload(w):
    """The case's workload at SMALL's shape (a generate case's prefill)."""
    task = "prefill" if w.task == "generate" else w.task
    return w.model_copy(update=dict(SMALL, task=task, generate=0))


def _kernels(run) -> int:
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    run.between()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def timed_rounds(run) -> dict:
    """{"step_s": [[s, ...] per round], "returned_s": the same steps' host return, "index_s": per
    round}: wall seconds to the step's end (synchronized) and to the host's return from the call."""
    for _ in range(2):
        run()
        run.between()
    torch.cuda.synchronize()
    steps, returned, index = [], [], []
    for _ in range(ROUNDS):
        s, r = [], []
        for _ in range(STEPS):
            t0 = time.perf_counter()
            run()
            r.append(time.perf_counter() - t0)
            torch.cuda.synchronize()
            s.append(time.perf_counter() - t0)
            run.between()
        steps.append(s)
        returned.append(r)
        index.append(host_index())
    return dict(step_s=steps, returned_s=returned, index_s=index)


def case_result(case) -> dict:
    out = dict(case=case.id, task=case.workload.task)
    small = build_steps(small_workload(case.workload))
    out["small"] = dict(timed_rounds(small), kernels=_kernels(small), workload=small.w.model_dump(mode="json"))
    del small
    torch.cuda.empty_cache()
    if case.workload.task != "generate":  # a generate's own shape is the suite's
        run = build_steps(case.workload)
        out["own"] = timed_rounds(run)
        del run
        torch.cuda.empty_cache()
    return out


def main() -> int:
    args, by_id = suite_cases.parse()
    path = Path(args.out)
    results = json.loads(path.read_text()) if path.exists() else dict(provenance=provenance(True).model_dump(), cases=[])
    done = {r["case"] for r in results["cases"]}
    for cid in args.cases:
        if cid in done:  # resumed: a killed run keeps what it finished
            continue
        r = case_result(by_id[cid])
        results["cases"].append(r)
        path.write_text(json.dumps(results, indent=1))
        med = lambda rounds: statistics.median(x for rd in rounds for x in rd) * 1e3
        own = f", own shape {med(r['own']['step_s']):.1f} ms (host returned at {med(r['own']['returned_s']):.1f})" if "own" in r else ""
        print(f"{cid}: small {med(r['small']['step_s']):.2f} ms, {r['small']['kernels']} kernels{own}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
