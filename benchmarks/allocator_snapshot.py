"""The caching allocator's segments after a suite case's warm-up and one step, as the executor runs
it (memsim.executors.run), beside the replay's prediction: what a reserved-bytes error is made of.
Decode steps come out with 0.4 of a cache generation cached on an H200 where the replay, fed the
executor's own sequence of cache allocations, keeps a whole one; this shows which blocks torch kept.

    python benchmarks/allocator_snapshot.py data/suites/h100.yaml CASE_ID [--hardware h200] --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

from memsim.executors.run import build_steps, provenance
from memsim.predict import predict
from memsim.validate import load_suite

MIB = 2**20


def segments() -> list[dict]:
    """Each segment's size and its blocks (size in MiB, allocated or free), largest first."""
    out = []
    for seg in torch.cuda.memory_snapshot():
        blocks = [(round(b["size"] / MIB, 3), b["state"]) for b in seg["blocks"]]
        out.append(dict(mib=round(seg["total_size"] / MIB, 3), allocated_mib=round(seg["allocated_size"] / MIB, 3),
                        pool="small" if seg["segment_type"] == "small" else "large", blocks=blocks))
    return sorted(out, key=lambda s: -s["mib"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("suite")
    ap.add_argument("case")
    ap.add_argument("--hardware", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    _, cases = load_suite(args.suite, args.hardware)
    case = next((c for c in cases if c.id == args.case), None)
    if case is None:
        print(f"case: '{args.case}' is not in {args.suite}", file=sys.stderr)
        return 2
    w = case.workload
    run = build_steps(w)
    torch.cuda.empty_cache()
    run()
    run.between()
    before = segments()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    after = segments()
    rep = predict(w).peak["gpu"]
    shape = Counter((s["mib"], s["pool"]) for s in after)
    summary = dict(case=case.id, measured_reserved_gib=torch.cuda.max_memory_reserved() / 2**30,
                   measured_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
                   predicted_reserved_gib=rep.reserved_bytes / 2**30, predicted_allocated_gib=rep.allocated_bytes / 2**30,
                   segments_by_size={f"{mib} MiB {pool}": n for (mib, pool), n in sorted(shape.items(), key=lambda kv: -kv[0][0])},
                   before_step=before, after_step=after, provenance=provenance(True).model_dump())
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("before_step", "after_step", "provenance")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
