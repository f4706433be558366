"""Analytic against traced peak allocated bytes over executors/matrix.py; writes
data/validation/traced-matrix.csv and prints the table and the summary.

    python benchmarks/traced_matrix.py
"""

from __future__ import annotations

import csv
import datetime
import platform
import statistics
import sys
from pathlib import Path

import torch
import transformers

from memsim.executors.matrix import compare, workloads

OUT = Path(__file__).resolve().parent.parent / "data" / "validation" / "traced-matrix.csv"


def main() -> int:
    rows = []
    for cid, w in workloads():
        analytic, traced = compare(w)
        err = (analytic - traced) / traced
        rows.append((cid, analytic, traced, err))
        print(f"{cid:75} {analytic:>13,} {traced:>13,} {err:+.3%}", flush=True)
    errs = [abs(r[3]) for r in rows]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as f:
        f.write(f"# memsim analytic vs fake-tensor trace; torch {torch.__version__}, transformers {transformers.__version__}, "
                f"python {platform.python_version()}, {datetime.date.today()}\n")
        wr = csv.writer(f)
        wr.writerow(["case", "analytic_bytes", "traced_bytes", "error"])
        wr.writerows([(c, a, t, f"{e:.6f}") for c, a, t, e in rows])
    print(f"\n{len(rows)} workloads: median |error| {statistics.median(errs):.3%}, max {max(errs):.3%}  -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
