"""Where does the allocator replay's verdict near the limit part from torch's? Two halves:

- on a GPU, `record`: runs a suite case exactly as `memsim validate` does (memsim.executors.run.
  measure: its emulated capacity, warm-up and timed steps) with the caching allocator's history
  recorded (torch.cuda.memory._record_memory_history, no stacks), and writes every allocation, free
  and segment event with its address and size, the step boundaries and the limit;
- on a CPU, `compare`: replays that real sequence, each free returning its own block, through
  memsim's CachingAllocator under the same limit (is the allocator model torch's?), and sets the
  real step's large requests beside the Program's (is the Program's order torch's?).

    python benchmarks/allocator_trace.py record SUITE CASE_ID --out DIR   (one case a process, as validate runs them)
    python benchmarks/allocator_trace.py compare SUITE DIR/CASE_ID.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from memsim.allocator import emulated_limit
from memsim.allocator_history import ACTIONS, LARGE, large_requests, program_requests, replay_history


def record(suite: str, ids: list[str], out: Path) -> None:
    import torch

    from memsim.executors import run as executor
    from memsim.validate import load_suite

    _, cases = load_suite(suite)
    by_id = {c.id: c for c in cases}
    out.mkdir(parents=True, exist_ok=True)
    for case_id in ids:
        case = by_id[case_id]
        marks: list[int] = []
        step = executor._Steps.__call__

        def marked(self, step=step):  # the trace's length where each step (warm-up included) begins
            marks.append(len(torch.cuda.memory._snapshot()["device_traces"][0]))
            step(self)

        executor._Steps.__call__ = marked
        torch.cuda.memory._record_memory_history(context=None, stacks="python", max_entries=2_000_000)
        try:
            m = executor.measure(case.workload, case.id, warmup=1, steps=3, emulate_capacity_bytes=case.emulate_capacity_bytes)
            trace = torch.cuda.memory._snapshot()["device_traces"][0]
        finally:
            torch.cuda.memory._record_memory_history(enabled=None)
            executor._Steps.__call__ = step
        total = torch.cuda.get_device_properties(0).total_memory
        events = [(e["action"], e.get("addr", 0), e["size"]) for e in trace if e["action"] in ACTIONS]
        marks = [sum(1 for e in trace[:i] if e["action"] in ACTIONS) for i in marks]
        body = dict(case=case.id, fits=m.fits, requested_bytes=m.requested_bytes, peak_reserved=m.peak_reserved_bytes,
                    context_bytes=m.context_bytes, total_memory=total, emulate_capacity_bytes=case.emulate_capacity_bytes,
                    step_marks=marks, events=events, provenance=m.provenance.model_dump() if m.provenance else {})
        path = out / f"{case.id}.json.gz"
        with gzip.open(path, "wt") as f:
            json.dump(body, f)
        print(f"{case.id}: fits {m.fits}, {len(events)} events, steps at {marks} -> {path}")
        torch.cuda.empty_cache()


def compare(suite: str, path: Path) -> None:
    from memsim.predict import predict
    from memsim.validate import load_suite

    with gzip.open(path, "rt") as f:
        body = json.load(f)
    _, cases = load_suite(suite)
    case = next(c for c in cases if c.id == body["case"])
    cap = body["emulate_capacity_bytes"]
    limit = emulated_limit(cap, body["context_bytes"]) if cap else None
    got = replay_history(body["events"], limit)
    report = predict(case.workload)
    print(f"{body['case']}: torch fits {got.torch_fits} (failed request {body['requested_bytes']}); memsim predicts {report.fits}; "
          f"torch's own history through memsim's allocator: fits {got.fits}, same segments {got.segments == got.torch_segments}")
    marks = body["step_marks"] + [len(body["events"])]
    real = large_requests(body["events"], marks[1], marks[2])
    ours = program_requests(case.workload)
    print(f"  large requests (>= {LARGE >> 20} MiB) in the first timed step: torch {len(real)}, Program {len(ours)}")
    for i, (a, b) in enumerate(zip(real, ours)):
        if a != b:
            print(f"  first that differs: #{i}: torch {a}, Program {b}; torch around it: {real[max(0, i - 3):i + 4]}; Program: {ours[max(0, i - 3):i + 4]}")
            break


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["record", "compare"])
    ap.add_argument("suite")
    ap.add_argument("rest", nargs="+")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.mode == "record":
        if not args.out:
            ap.error("record: --out DIR is required")
        record(args.suite, args.rest, Path(args.out))
    else:
        for p in args.rest:
            compare(args.suite, Path(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
