"""Kernel-level ground truth for the roofline: one warmed-up step of suite cases under
torch.profiler, every CUDA kernel's count and device time, with the step's wall time. The roofline
(memsim/roofline.py) predicts per kernel; this says what each really took.

    python benchmarks/profile_kernels.py data/suites/h100.yaml CASE_ID [CASE_ID ...] --out DIR
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from memsim.executors.run import build_steps, provenance

import suite_cases  # benchmarks/suite_cases.py: the shared command line


def profile_case(case) -> dict:
    w = case.workload
    run = build_steps(w)
    for _ in range(2):
        run()
        run.between()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    run()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    run.between()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    kernels: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            k = kernels[e.name[:160]]
            k[0] += 1
            k[1] += e.device_time_total / 1e6 if hasattr(e, "device_time_total") else e.cuda_time_total / 1e6
    rows = sorted(({"kernel": n, "count": c, "seconds": s} for n, (c, s) in kernels.items()), key=lambda r: -r["seconds"])
    return dict(case=case.id, workload=w.model_dump(mode="json"), wall_s=wall, kernel_count=sum(r["count"] for r in rows),
                gpu_s=sum(r["seconds"] for r in rows), kernels=rows, provenance=provenance(True).model_dump())


def main() -> int:
    args, by_id = suite_cases.parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for cid in args.cases:
        r = profile_case(by_id[cid])
        (out / f"{cid}.json").write_text(json.dumps(r, indent=1))
        print(f"{cid}: wall {r['wall_s'] * 1e3:,.1f} ms, GPU busy {r['gpu_s'] * 1e3:,.1f} ms, {r['kernel_count']} kernels", flush=True)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
