"""Measure peak GPU memory of real workloads (one fresh process each) and write JSONL.

Runs on a CUDA machine with torch, transformers and peft; needs nothing of memsim's core (no
pydantic), so it runs on a bare device image:

    python benchmarks/gpu_measure.py --out data/validation/h100-measured.jsonl

Protocol per case (the same step protocols as executors/trace.py's run_task): build the model
from its config.json on the GPU (random weights), create the optimizer, reset the peak
statistics, run the task, read torch.cuda.max_memory_allocated / max_memory_reserved and the
device's used memory (cudaMemGetInfo: the CUDA context included). Results append as they land.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (model, task, dtype, attention, optimizer, impl, lora (rank, targets) or None, checkpoint, batch, seq, new tokens);
# dtype "amp-bf16": fp32 weights, the forward under torch.autocast(dtype=bf16).
CASES = [
    ("tinyllama-1.1b", "train", "bf16", "sdpa", "adamw", "foreach", None, False, 4, 1024, 0),
    ("tinyllama-1.1b", "train", "bf16", "sdpa", "adamw", "fused", None, False, 4, 1024, 0),
    ("tinyllama-1.1b", "train", "bf16", "sdpa", "adamw", "foreach", None, True, 8, 1024, 0),
    ("tinyllama-1.1b", "train", "bf16", "eager", "adamw", "foreach", None, False, 2, 512, 0),
    ("tinyllama-1.1b", "train", "fp32", "sdpa", "sgd-momentum", "foreach", None, False, 2, 512, 0),
    ("tinyllama-1.1b", "train", "fp16", "sdpa", "adamw", "for-loop", None, False, 4, 512, 0),
    ("tinyllama-1.1b", "train", "bf16", "sdpa", "adamw", "foreach", (16, ["q_proj", "v_proj"]), False, 4, 1024, 0),
    ("qwen2.5-0.5b", "train", "bf16", "sdpa", "adamw", "foreach", None, False, 4, 1024, 0),
    ("qwen2.5-0.5b", "train", "bf16", "sdpa", "adamw", "foreach", (8, ["q_proj", "v_proj"]), True, 4, 2048, 0),
    ("mistral-7b", "train", "bf16", "sdpa", "adamw", "foreach", (16, ["q_proj", "k_proj", "v_proj", "o_proj"]), True, 2, 1024, 0),
    ("tinyllama-1.1b", "prefill", "bf16", "sdpa", "adamw", "foreach", None, False, 8, 2048, 0),
    ("mistral-7b", "prefill", "bf16", "sdpa", "adamw", "foreach", None, False, 4, 2048, 0),
    ("tinyllama-1.1b", "generate", "bf16", "sdpa", "adamw", "foreach", None, False, 8, 512, 64),
    ("qwen2.5-0.5b", "generate", "bf16", "sdpa", "adamw", "foreach", None, False, 16, 1024, 32),
    ("qwen2.5-0.5b", "decode", "bf16", "sdpa", "adamw", "foreach", None, False, 32, 2048, 0),
    ("mistral-7b", "decode", "bf16", "eager", "adamw", "foreach", None, False, 8, 2048, 0),
]


class _Peak:
    """run_task's tracker interface, backed by the CUDA allocator's statistics."""

    phase = ""

    def reset_peak(self):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def run_case(i: int) -> dict:
    import torch

    from executors.trace import build_model, make_optimizer, run_task

    model_name, task, dtype, attention, opt, impl, lora, ckpt, batch, seq, new = CASES[i]
    weights, autocast = ("fp32", dtype.removeprefix("amp-")) if dtype.startswith("amp-") else (dtype, None)
    config = json.loads((ROOT / "data" / "models" / f"{model_name}.json").read_text())
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    free0, total = torch.cuda.mem_get_info()
    context_bytes = total - free0 - torch.cuda.memory_reserved()
    with torch.device("cuda"):
        model = build_model(config, attention, weights, lora[0] if lora else 0, lora[1] if lora else (), ckpt)
        optimizer = None
        if task == "train":
            optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], opt, impl)
        else:
            for p in model.parameters():
                p.requires_grad_(False)
        base = torch.cuda.memory_allocated()
        tracker = _Peak()
        tracker.reset_peak()
        t0 = time.perf_counter()
        error = None
        try:
            run_task(model, tracker, task, batch, seq, config["vocab_size"], new, optimizer, autocast)
            torch.cuda.synchronize()
        except torch.OutOfMemoryError as e:
            error = f"out of memory: {str(e).splitlines()[0]}"
    free1, _ = torch.cuda.mem_get_info()
    return dict(
        case=i, model=model_name, task=task, dtype=dtype, attention=attention, optimizer=opt, impl=impl,
        lora=lora, checkpoint=ckpt, batch=batch, seq=seq, new_tokens=new,
        peak_allocated_bytes=torch.cuda.max_memory_allocated(), peak_reserved_bytes=torch.cuda.max_memory_reserved(),
        device_used_bytes=total - free1, context_bytes=context_bytes, allocated_before_step_bytes=base,
        seconds=time.perf_counter() - t0, error=error,
    )


def provenance() -> dict:
    import peft
    import torch
    import transformers

    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    return dict(device=torch.cuda.get_device_name(), nvidia_smi=smi, torch=torch.__version__,
                cuda=torch.version.cuda, transformers=transformers.__version__, peft=peft.__version__,
                date=str(datetime.date.today()))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", type=int)
    args = ap.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args.case)))
        return 0
    out = Path(args.out)
    done = {json.loads(line)["case"] for line in out.read_text().splitlines()[1:]} if out.exists() else set()
    if not out.exists():
        out.write_text(json.dumps({"provenance": provenance()}) + "\n")
    for i in range(len(CASES)):
        if i in done:
            continue  # resumes: a killed run loses nothing it finished
        r = subprocess.run([sys.executable, __file__, "--out", str(out), "--case", str(i)], capture_output=True, text=True)
        line = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else json.dumps(
            {"case": i, "error": (r.stderr.strip().splitlines() or ["failed"])[-1]})
        with out.open("a") as f:
            f.write(line + "\n")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
