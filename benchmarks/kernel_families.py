"""The roofline's kernels beside the profiler's, by family: for each committed kernel-level profile
(benchmarks/profile_kernels.py), the CUDA kernels torch.profiler saw and the kernels the tape names
for the same step, grouped into families (products, attention, elementwise vectorized or general,
copies and casts, cat, reductions, softmax, foreach optimizer kernels, other), with their counts
and GPU milliseconds. It shows where the predicted GPU time is short or long, family by family.

    python benchmarks/kernel_families.py [PROFILE_DIR] [--hardware h200] [--out CSV]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from memsim.catalog import load_hardware, load_measured
from memsim.host_time import host_costs
from memsim.predict import step_config
from memsim.roofline import Rates, kernel_seconds
from memsim.runtimes.hf_inference import decode_program, prefill_program
from memsim.runtimes.hf_steps import build_program
from memsim.tape import OpCost, recording_costs
from memsim.workload import Workload

FAMILIES = ("gemm", "gemm-fp32", "attention", "elementwise", "elementwise-general", "copy", "cat", "reduce",
            "softmax", "foreach", "other")


def real_family(kernel: str) -> str:
    k = kernel.lower()
    if "f32f32" in k or "sgemm" in k:
        return "gemm-fp32"
    if any(s in k for s in ("nvjet", "gemm", "cutlass", "xmma")):
        return "gemm"
    if any(s in k for s in ("sdpa", "flash", "fmha", "cudnn", "attention")):
        return "attention"
    for needle, fam in (("multi_tensor", "foreach"), ("cat", "cat"), ("reduce", "reduce"), ("softmax", "softmax"),
                        ("copy", "copy"), ("vectorized_elementwise", "elementwise"), ("elementwise", "elementwise-general")):
        if needle in k:
            return fam
    return "other"


def tape_family(c: OpCost, step_dtype_bytes: int) -> str:
    if c.kind in ("matmul", "grouped", "flops"):  # flops: eager and math attention's batched products
        return "gemm-fp32" if (c.dtype_bytes or step_dtype_bytes) == 4 else "gemm"
    if c.kind == "attention":
        return "attention"
    if c.layout == "foreach":
        return "foreach"
    if c.kind == "cat":
        return "cat"
    if "softmax" in c.name:
        return "softmax"
    return {"reduce": "reduce", "cast": "copy", "copy_strided": "copy", "contiguous": "elementwise"}.get(c.layout,
                                                                                                    "elementwise-general")


def tape_kernels(w: Workload) -> dict[str, list[float]]:
    cfg = step_config(w)
    mode = "train" if w.task == "train" else "decode" if w.task == "decode" else "prefill"
    with recording_costs():
        prog = {"train": lambda: build_program(cfg), "prefill": lambda: prefill_program(cfg),
                "decode": lambda: decode_program(cfg, cfg.seq)}[mode]()
    profile = load_measured(w.hardware)
    rates = Rates(load_hardware(w.hardware), profile, w.precision.compute, mode, host_costs(profile, mode))
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for seg in prog.segments:
        for c in seg.costs():
            a = out[tape_family(c, cfg.dtype_bytes)]
            a[0] += seg.repeat * c.kernels
            a[1] += seg.repeat * kernel_seconds(c, rates, cfg.dtype_bytes)[0]
    return out


def main() -> int:
    import pandas as pd

    ap = argparse.ArgumentParser()
    ap.add_argument("profiles", nargs="?", default="data/validation/profiles-h200")
    ap.add_argument("--hardware", default="h200")
    ap.add_argument("--out", default="data/validation/kernel-families-h200.csv")
    args = ap.parse_args()
    rows = []
    for path in sorted(Path(args.profiles).glob("*.json")):
        prof = json.loads(path.read_text())
        w = Workload.parse({**prof["workload"], "hardware": args.hardware})
        real: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for k in prof["kernels"]:
            a = real[real_family(k["kernel"])]
            a[0] += k["count"]
            a[1] += k["seconds"]
        tape = tape_kernels(w)
        for fam in FAMILIES:
            r, t = real.get(fam, [0, 0.0]), tape.get(fam, [0, 0.0])
            if r[0] or t[0]:
                rows.append(dict(case=prof["case"], family=fam, measured_kernels=r[0], measured_ms=r[1] * 1e3,
                                 predicted_kernels=t[0], predicted_ms=t[1] * 1e3))
    df = pd.DataFrame(rows)
    df.to_csv(args.out, index=False, float_format="%.3f")
    total = df.groupby("case")[["measured_ms", "predicted_ms", "measured_kernels", "predicted_kernels"]].sum()
    fam = df.groupby("family")[["measured_ms", "predicted_ms", "measured_kernels", "predicted_kernels"]].sum()
    pd.set_option("display.width", 200)
    print(total.round(1).to_string(), "\n")
    print(fam.sort_values("measured_ms", ascending=False).round(1).to_string())
    print(f"\ntable: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
