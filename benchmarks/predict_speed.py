"""How long one analytic prediction takes, in-process (median of repeated runs).

    python benchmarks/predict_speed.py
"""

from __future__ import annotations

import platform
import statistics
import time

from memsim import Workload, predict

CASES = {
    "llama-3-70b train bf16 b1 s4096": Workload(model="llama-3-70b", hardware="h100-sxm-80gb", batch=1, seq=4096),
    "llama-3-70b train ckpt+lora": Workload(model="llama-3-70b", hardware="h100-sxm-80gb", batch=1, seq=4096,
                                            methods=["activation-checkpointing", {"name": "lora", "rank": 16}]),
    "llama-3-70b generate b8 s2048 n256": Workload(model="llama-3-70b", hardware="h100-sxm-80gb", task="generate",
                                                   batch=8, seq=2048, generate=256),
    "tinyllama-1.1b train bf16 b4 s1024": Workload(model="tinyllama-1.1b", hardware="rtx-4090", batch=4, seq=1024),
}


def main() -> None:
    print(f"python {platform.python_version()} on {platform.processor() or platform.machine()}")
    print(f"{'workload':40} {'median ms':>10} {'p90 ms':>8}")
    for name, w in CASES.items():
        predict(w)  # warm the catalog cache
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            predict(w)
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        print(f"{name:40} {statistics.median(times):10.3f} {times[int(0.9 * len(times))]:8.3f}")


if __name__ == "__main__":
    main()
