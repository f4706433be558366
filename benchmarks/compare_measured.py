"""Predicted against measured peak memory for a gpu_measure.py JSONL; prints the table and the
summary, and writes <input>.compare.csv beside it.

    python benchmarks/compare_measured.py data/validation/h100-measured.jsonl
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

from memsim import Workload, predict


def workload_of(r: dict) -> Workload:
    methods = []
    if r["checkpoint"]:
        methods.append("activation-checkpointing")
    if r["lora"]:
        methods.append({"name": "lora", "rank": r["lora"][0], "targets": r["lora"][1]})
    d = r["dtype"]
    weights, compute = ("fp32", d.removeprefix("amp-")) if d.startswith("amp-") else (d, d)
    return Workload(model=r["model"], hardware="h100-sxm-80gb", task=r["task"], batch=r["batch"], seq=r["seq"],
                    generate=r["new_tokens"], precision={"weights": weights, "compute": compute},
                    optimizer={"name": r["optimizer"], "impl": r["impl"]}, attention=r["attention"], methods=methods)


def main(path: str) -> int:
    lines = [json.loads(x) for x in Path(path).read_text().splitlines()]
    prov, rows = lines[0]["provenance"], [r for r in lines[1:] if not r.get("error")]
    print(f"{prov['device']} · driver {prov['nvidia_smi'].split(', ')[1]} · torch {prov['torch']} · "
          f"transformers {prov['transformers']} · peft {prov['peft']} · {prov['date']}")
    out = []
    for r in rows:
        rep = predict(workload_of(r))
        p = rep.peak["gpu"]
        errs = {k: (getattr(p, f"{k}_bytes") - r[m]) / r[m] for k, m in
                (("allocated", "peak_allocated_bytes"), ("reserved", "peak_reserved_bytes"), ("device", "device_used_bytes"))}
        label = f"{r['model']} {r['task']} {r['dtype']} {r['attention']} {r['optimizer']}/{r['impl']}" + \
                (" ckpt" if r["checkpoint"] else "") + (f" lora{r['lora'][0]}" if r["lora"] else "") + f" b{r['batch']} s{r['seq']}"
        out.append((label, p.allocated_bytes, r["peak_allocated_bytes"], errs["allocated"], p.reserved_bytes,
                    r["peak_reserved_bytes"], errs["reserved"], p.device_bytes, r["device_used_bytes"], errs["device"]))
        print(f"{label:80} alloc {p.allocated_bytes / 2**30:7.3f} vs {r['peak_allocated_bytes'] / 2**30:7.3f} GiB {errs['allocated']:+7.2%}"
              f" | reserved {errs['reserved']:+7.2%} | device {errs['device']:+7.2%}")
    a = [abs(o[3]) for o in out]
    print(f"\n{len(out)} workloads, peak allocated: median |error| {statistics.median(a):.2%}, max {max(a):.2%}")
    for name, idx in (("reserved", 6), ("device", 9)):
        e = [abs(o[idx]) for o in out]
        print(f"  {name}: median |error| {statistics.median(e):.2%}, max {max(e):.2%}")
    with open(str(path) + ".compare.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "predicted_allocated", "measured_allocated", "error_allocated", "predicted_reserved",
                    "measured_reserved", "error_reserved", "predicted_device", "measured_device", "error_device"])
        w.writerows(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
