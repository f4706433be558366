"""What an optimizer's step allocates beyond its state, per parameter shape, on a CUDA GPU: for each
shape and optimizer, one parameter with a gradient, two steps (the first creates the state and
compiles), then the third step's peak over what was allocated before it. The temporaries of a
step that runs one parameter at a time are the largest parameter's.

    python benchmarks/optimizer_step_temps.py --out results.json [--optimizers adamw8bit:torchao,adamw4bit]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from memsim.methods import parse_optimizer

SHAPES = [(4096, 4096), (14336, 4096), (128256, 4096)]  # Llama-3-8B's attention, MLP and embedding
DEFAULT = "adamw8bit,adamw8bit:torchao,adamw4bit,adamw-fp8"


def step_temporaries(spec: str, shape: tuple[int, int], dtype=torch.bfloat16) -> dict:
    name, _, impl = spec.partition(":")
    optimizer = parse_optimizer({"name": name, **({"impl": impl} if impl else {})})
    p = torch.nn.Parameter(torch.zeros(shape, dtype=dtype, device="cuda"))
    p.grad = torch.randn_like(p)
    opt = optimizer.torch_optimizer([p])
    t0 = time.perf_counter()
    for _ in range(2):
        opt.step()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    opt.step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    elements = shape[0] * shape[1]
    out = dict(optimizer=spec, shape=list(shape), elements=elements, temporaries_bytes=peak - before,
               bytes_per_element=(peak - before) / elements, seconds=time.perf_counter() - t0)
    del opt, p
    torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--optimizers", default=DEFAULT)
    args = ap.parse_args()
    rows = []
    for spec in args.optimizers.split(","):
        for shape in SHAPES:
            rows.append(step_temporaries(spec, shape))
            print(json.dumps(rows[-1]), flush=True)
            with open(args.out, "w") as f:  # rewritten after each row: a killed run keeps what it measured
                json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
