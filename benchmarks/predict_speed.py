"""How long one prediction takes, in-process (median of repeated runs): the analytic peak alone
(memsim.peak: allocated bytes and their breakdown) and the whole report (memsim.predict: the peak
plus the caching-allocator replay behind reserved bytes and the fits verdict). The replay walks every
allocation of every layer, so its cost grows with depth; on a device the model overflows it stops at
the first allocation that cannot be had.

    python benchmarks/predict_speed.py
"""

from __future__ import annotations

import platform
import statistics
import time

from memsim import Workload, peak, predict

CASES = {
    "llama-3-70b train bf16 b1 s4096": Workload(model="llama-3-70b", hardware="h100-sxm-80gb", batch=1, seq=4096),
    "llama-3-70b train ckpt+lora": Workload(model="llama-3-70b", hardware="h100-sxm-80gb", batch=1, seq=4096,
                                            methods=["activation-checkpointing", {"name": "lora", "rank": 16}]),
    "llama-3-70b generate b8 s2048 n256": Workload(model="llama-3-70b", hardware="h100-sxm-80gb", task="generate",
                                                   batch=8, seq=2048, generate=256),
    "llama-3-70b train, 2 TiB device (fits)": Workload(model="llama-3-70b", hardware="2048GiB", batch=1, seq=4096),
    "llama-3-8b train lora, h100 (fits)": Workload(model="llama-3-8b", hardware="h100-sxm-80gb", batch=4, seq=2048,
                                                   methods=["activation-checkpointing", {"name": "lora", "rank": 16}]),
    "tinyllama-1.1b train bf16 b4 s1024": Workload(model="tinyllama-1.1b", hardware="rtx-4090", batch=4, seq=1024),
}


def _median_ms(f, w, runs: int) -> tuple[float, float]:
    f(w)  # warm the catalog cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f(w)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.9 * len(times))]


def main() -> None:
    print(f"python {platform.python_version()} on {platform.processor() or platform.machine()}")
    print(f"{'workload':42} {'peak median ms':>15} {'p90':>7} {'predict median ms':>18} {'p90':>7}")
    for name, w in CASES.items():
        pk = _median_ms(peak, w, 200)
        pr = _median_ms(predict, w, 20)
        print(f"{name:42} {pk[0]:15.3f} {pk[1]:7.3f} {pr[0]:18.3f} {pr[1]:7.3f}")


if __name__ == "__main__":
    main()
