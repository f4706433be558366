"""Is `fit`'s verdict monotone in the batch, and does its largest batch agree with the verdicts?

Over a grid of catalog models (1.1B to 70B), GPUs (24 GB to 141 GB) and sequence lengths, training
bf16 with AdamW (foreach), and some with activation checkpointing or autocast (fp32 weights, bf16
compute): the verdict (memsim.predict(...).fits, the caching-allocator replay under the card's
limit) for every batch from 1 to the largest whose allocated bytes fit, and the three after it
(which cannot fit). Reported per combination: whether the verdicts are monotone, the batches that
fail between two that fit (fragmentation), the largest batch below every failure, and whether
memsim.largest_fitting (which replays only near the boundary) agrees.

    python benchmarks/fit_grid.py [--out data/validation/fit-grid.csv] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path

from memsim import Workload, largest_fitting, peak, predict
from memsim.predict import allocator_room

MODELS = ["tinyllama-1.1b", "qwen2.5-1.5b", "open-llama-3b", "llama-3-8b", "qwen2.5-7b", "llama-2-13b", "llama-3-70b"]
GPUS = ["rtx-4090", "l40s", "a100-40gb", "a100-80gb", "h100-sxm-80gb", "h200"]
SEQS = [512, 1024, 2048, 4096]
BF16 = {"precision": {"weights": "bf16", "compute": "bf16"}}
CKPT = {**BF16, "methods": ["activation-checkpointing"]}
AMP_CKPT = {"precision": {"weights": "fp32", "compute": "bf16"}, "methods": ["activation-checkpointing"]}
# (name, workload fields, models, GPUs, sequence lengths)
CONFIGS = [
    ("bf16 adamw", BF16, MODELS, GPUS, SEQS),
    ("bf16 adamw ckpt", CKPT, ["llama-3-8b", "qwen2.5-7b", "llama-2-13b"], ["a100-80gb", "h100-sxm-80gb", "h200"], [2048, 4096]),
    ("amp fp32+bf16 ckpt", AMP_CKPT, ["tinyllama-1.1b", "open-llama-3b", "llama-3-8b"], ["a100-80gb", "h100-sxm-80gb", "h200"],
     [2048, 4096]),
]
PAST = 3  # batches past the allocated bound, each predicted (none can fit)


def allocated_bound(w: Workload) -> int:
    """The largest batch whose allocated bytes fit in the allocator's room (monotone: bisection)."""
    room = allocator_room(w.hardware)
    ok = lambda b: peak(w.model_copy(update={"batch": b})).bytes <= room  # noqa: E731
    if not ok(1):
        return 0
    lo, hi = 1, 2
    while ok(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def combination(config: str, fields: dict, model: str, gpu: str, seq: int) -> dict:
    w = Workload.parse({**fields, "model": model, "hardware": gpu, "seq": seq, "batch": 1})
    bound = allocated_bound(w)
    verdicts = {b: predict(w.model_copy(update={"batch": b})).fits for b in range(1, bound + PAST + 1)}
    fails = [b for b, ok in verdicts.items() if not ok and b <= bound]
    largest = (min(fails) - 1) if fails else bound
    above = [b for b in range(largest + 1, bound + 1) if verdicts[b]]
    # The longest run of fitting batches, scanning down from the bound, above the lowest failure:
    # how many in a row the solver must see before it stops (memsim.fit.SCAN_RUN).
    # And the longest run of failures over the largest (memsim.fit.SCAN_FAILURES).
    run = longest = failing = longest_failing = 0
    for b in range(bound, largest, -1):
        run, failing = (run + 1, 0) if verdicts[b] else (0, failing + 1)
        longest, longest_failing = max(longest, run), max(longest_failing, failing)
    t0 = time.perf_counter()
    solved = largest_fitting(w, "batch")
    solve_s = time.perf_counter() - t0
    # The verdict for a workload's own batch never contradicts the largest batch solved with it.
    contradictions = [b for b, ok in verdicts.items() if (b <= solved and not ok)]
    return dict(config=config, model=model, gpu=gpu, seq=seq, allocated_bound=bound, largest=largest,
                monotone=not above, fails_between=" ".join(map(str, [b for b in fails if b < max(above, default=0)])),
                fits_above_largest=" ".join(map(str, above)), longest_fitting_run_above_a_failure=longest if above else 0,
                longest_failing_run=longest_failing,
                solved_largest=solved, agrees=solved == largest, contradictions=" ".join(map(str, contradictions)),
                solve_seconds=round(solve_s, 3), batches_predicted=len(verdicts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="data/validation/fit-grid.csv")
    ap.add_argument("--quick", action="store_true", help="the first configuration's first two models only")
    args = ap.parse_args()
    rows, t0 = [], time.perf_counter()
    for config, fields, models, gpus, seqs in CONFIGS[:1] if args.quick else CONFIGS:
        for model, gpu, seq in itertools.product(models[:2] if args.quick else models, gpus, seqs):
            rows.append(combination(config, fields, model, gpu, seq))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'config':19} {'model':15} {'gpu':14} {'seq':>5} {'bound':>5} {'largest':>7} {'solved':>6}  fails between / fits above")
    for r in rows:
        if not r["monotone"] or not r["agrees"]:
            print(f"{r['config']:19} {r['model']:15} {r['gpu']:14} {r['seq']:5} {r['allocated_bound']:5} {r['largest']:7} "
                  f"{r['solved_largest']:6}  {r['fails_between']} / {r['fits_above_largest']}")
    fitting = [r for r in rows if r["allocated_bound"] > 0]
    bad = [r for r in rows if not r["monotone"]]
    print(f"{len(rows)} combinations ({len(fitting)} where batch 1's allocated bytes fit), "
          f"{sum(r['batches_predicted'] for r in rows)} batches predicted in {time.perf_counter() - t0:.0f} s")
    print(f"verdict not monotone in the batch: {len(bad)}; largest_fitting disagrees with the verdicts: "
          f"{sum(not r['agrees'] for r in rows)}; a verdict contradicting the largest batch: "
          f"{sum(bool(r['contradictions']) for r in rows)}; longest fitting run above a failure: "
          f"{max((r['longest_fitting_run_above_a_failure'] for r in rows), default=0)}; longest run of failures over the largest: "
          f"{max((r['longest_failing_run'] for r in rows), default=0)}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
