"""A step's host time against the model's depth: the host calibration's model (calibration.
HOST_CALIBRATION_MODEL) at 2, 4, 8 and 16 layers, prefill, decode and train step, each the median
of timed calls, and the line through them: a fixed part a call and a part a layer. On a GPU the
kernels of this model take microseconds, so the time is the host's; on a CPU it includes the tiny
CPU kernels, and shows the split all the same. Writes data/benchmarks/host-depth-<device>.txt.

    python benchmarks/host_depth.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from memsim.calibration import HOST_CALIBRATION_BATCH, HOST_CALIBRATION_MODEL, HOST_CALIBRATION_SEQ
from memsim.executors.protocol import decode_step, input_ids, new_cache, prefill, train_step
from memsim.executors.timing import host_median
from memsim.executors.trace import build_model, make_optimizer
from memsim.methods import AdamW

DEPTHS = (2, 4, 8, 16)


def seconds(fn, device: str, reps: int) -> float:
    """Median wall seconds of fn() to the end of its GPU work."""
    def call():
        fn()
        if device == "cuda":
            torch.cuda.synchronize()

    return host_median(call, reps, warmup=3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)  # the host's one Python thread, as it issues a GPU step
    rows = []
    for layers in DEPTHS:
        config = dict(HOST_CALIBRATION_MODEL, num_hidden_layers=layers)
        with torch.device(args.device):
            model = build_model(config, "sdpa", "fp32" if args.device == "cpu" else "bf16")
            opt = make_optimizer(model, AdamW())  # foreach
        ids = input_ids(HOST_CALIBRATION_BATCH, HOST_CALIBRATION_SEQ, config["vocab_size"]).to(args.device)
        cache = new_cache(model)
        prefill(model, ids, cache)
        rows.append((layers, seconds(lambda: prefill(model, ids, new_cache(model)), args.device, 30),
                     seconds(lambda: decode_step(model, cache, ids[:, -1:]), args.device, 30),
                     seconds(lambda: train_step(model, ids, opt), args.device, 15)))
    lines = [f"# host time of HOST_CALIBRATION_MODEL's steps by depth; {args.device}, {platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}, "
             f"{time.strftime('%Y-%m-%d')}",
             f"{'layers':>6} {'prefill ms':>11} {'decode ms':>10} {'train ms':>9}"]
    lines += [f"{n:>6} {p * 1e3:>11.3f} {d * 1e3:>10.3f} {t * 1e3:>9.3f}" for n, p, d, t in rows]
    depth = np.array([r[0] for r in rows], dtype=float)
    for i, name in enumerate(("prefill", "decode", "train"), start=1):
        per_layer, fixed = np.polyfit(depth, [r[i] for r in rows], 1)
        at4 = fixed + 4 * per_layer
        lines.append(f"{name}: fixed {fixed * 1e3:.3f} ms a call + {per_layer * 1e3:.3f} ms a layer; "
                     f"the fixed part is {fixed / at4:.0%} of the 4-layer step")
    text = "\n".join(lines) + "\n"
    out = Path(f"data/benchmarks/host-depth-{args.device}.txt")
    out.write_text(text)
    print(text + f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
