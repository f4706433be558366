"""Does the allocator replay's verdict near the limit hang on which tensor each free returns?

memsim's Program names sizes, not tensors: the replay hands a free the most recent live block of
its size and category. This runs a suite's training cases on fake tensors (the real transformers
code, as `memsim trace` does) for the warm-up and three timed steps, and replays the trace's own
allocations and frees, each free returning its own tensor's block, through the same caching
allocator (memsim.allocator.CachingAllocator) under the case's limit: beside memsim's verdict,
the verdict with true tensor identities. Kernel workspaces are not tensors and are absent from a
trace, but for cuBLAS's two, added where the executor's first step creates them.

    python benchmarks/traced_replay.py data/suites/fit-boundary-h200.yaml [--out data/validation/traced-replay-fit-boundary.csv]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from torch._subclasses.fake_tensor import FakeTensorMode

from memsim import predict
from memsim.allocator import CUDA_CONTEXT_BYTES, CachingAllocator, OutOfMemory
from memsim.catalog import load_hardware, raw_config
from memsim.executors import protocol
from memsim.executors.cuda_grouped_mm import cuda_grouped_mm
from memsim.executors.cuda_semantics import cuda_dispatch
from memsim.executors.storage_tracker import StorageTracker
from memsim.executors.trace import autocast_ctx, build_model, make_optimizer
from memsim.predict import VERDICT_STEPS, step_config
from memsim.validate import load_suite

CUBLAS_WORKSPACES = 2 * [32 * 2**20]  # memsim.runtimes' cuBLAS workspace, one per handle (as the Program has them)


def traced_events(w, steps: int = VERDICT_STEPS):
    """(phase, delta bytes, storage key) of the build and `steps` training steps, and the keys of
    the optimizer's host tensors (non-fused Adam's `step`), which a GPU run keeps on the host."""
    cfg = step_config(w)
    config = raw_config(w.model)
    amp = w.precision.compute if w.precision.compute != w.precision.weights else None
    with FakeTensorMode(allow_non_fake_inputs=False), StorageTracker() as tr, cuda_dispatch(cfg.sm), cuda_grouped_mm():
        tr.phase = "build"
        model = build_model(config, cfg.attention, w.precision.weights, cfg.methods)
        opt = make_optimizer(model, cfg.step_optimizer)
        ids = protocol.input_ids(w.batch, w.seq, config["vocab_size"])
        device = next(model.parameters()).device
        model.train()
        for step in range(steps):
            protocol.train_step(model, ids, opt, lambda: autocast_ctx(device, amp), phase=lambda name: setattr(tr, "phase", f"{step}"))
        host = {tr.key_of(t) for s in opt.state.values() for t in cfg.step_optimizer.host_state(s)} - {None}
    return [(e.phase, e.delta_bytes, e.key) for e in tr.events], host


def replay_traced(events, host, limit: int) -> tuple[bool, int]:
    """(fits, peak reserved of the steps after the first) with each free returning its own block;
    the build's cached segments are released first (torch.cuda.empty_cache, as the executor does)."""
    alloc, blocks, phase = CachingAllocator(limit), {}, "build"
    try:
        for ph, delta, key in events:
            if key in host:
                continue
            if ph != phase:
                if phase == "build":
                    alloc.release_cached()
                    for n in CUBLAS_WORKSPACES:
                        alloc.malloc(n)
                if phase == "0":  # the warm-up step ends: reset_peak_memory_stats
                    alloc.peak_reserved = alloc.reserved
                phase = ph
            if delta > 0:
                blocks[key] = alloc.malloc(delta)
            elif key in blocks:
                alloc.free(blocks.pop(key))
    except OutOfMemory:
        return False, alloc.peak_reserved
    return True, alloc.peak_reserved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("suite")
    ap.add_argument("--out", default="data/validation/traced-replay-fit-boundary.csv")
    args = ap.parse_args()
    _, cases = load_suite(args.suite)
    rows = []
    print(f"{'case':40} {'memsim':>7} {'traced':>7} {'reserved memsim':>16} {'traced':>8} {'s':>5}")
    for case in cases:
        w = case.workload
        if w.task != "train":
            continue
        t0 = time.perf_counter()
        limit = load_hardware(w.hardware).usable_bytes - CUDA_CONTEXT_BYTES
        fits, reserved = replay_traced(*traced_events(w), limit)
        report = predict(w)
        # memsim's reserved where it fits; where not, the replay without a limit (what predict reports)
        rows.append(dict(case=case.id, memsim_fits=report.fits, traced_fits=fits,
                         memsim_reserved=report.peak["gpu"].reserved_bytes, traced_reserved=reserved,
                         seconds=round(time.perf_counter() - t0, 1)))
        r = rows[-1]
        print(f"{case.id:40} {'fits' if r['memsim_fits'] else 'OOM':>7} {'fits' if fits else 'OOM':>7} "
              f"{r['memsim_reserved'] / 2**30:14.2f} G {reserved / 2**30:6.2f} G {r['seconds']:5.0f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    agree = sum(r["memsim_fits"] == r["traced_fits"] for r in rows)
    print(f"verdicts agree on {agree} of {len(rows)} cases; results: {args.out}")


if __name__ == "__main__":
    main()
