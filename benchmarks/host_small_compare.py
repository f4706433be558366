"""benchmarks/host_small.py's steps beside memsim's host time for the same workloads, predicted
with a measured profile (the one calibrated on the machine that ran them), as a table.

    python benchmarks/host_small_compare.py RESULTS.json PROFILE.yaml [--out FILE.csv]

(data/validation/host-small-h200.json ran on the H200 whose profile is data/validation/h200-machine-f.yaml.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import yaml

import memsim.catalog as catalog
from memsim.calibration import MeasuredProfile
from memsim.predict import phase_times
from memsim.validate import load_suite
from memsim.workload import Workload


def _median(rounds: list[list[float]]) -> float:
    return statistics.median(x for r in rounds for x in r)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("profile")
    ap.add_argument("--suite", default="data/suites/h100.yaml")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    profile = MeasuredProfile(**yaml.safe_load(open(args.profile)))
    catalog.load_measured = lambda name: profile  # the same machine's calibration, not the committed one
    _, cases = load_suite(args.suite, profile.name)
    by_id = {c.id: c for c in cases}
    rows = []
    for r in json.load(open(args.results))["cases"]:
        small = Workload.parse(dict(r["small"]["workload"], hardware=profile.name))
        st = next(iter(phase_times(small).values()))
        row = dict(case=r["case"], small_measured_ms=_median(r["small"]["step_s"]) * 1e3, small_host_ms=st.host_seconds * 1e3,
                   profiler_kernels=r["small"]["kernels"], tape_kernels=sum(k.count for k in st.kernels))
        row["small_error"] = row["small_host_ms"] / row["small_measured_ms"] - 1
        if "own" in r:
            own = next(iter(phase_times(by_id[r["case"]].workload).values()))
            row.update(own_measured_ms=_median(r["own"]["step_s"]) * 1e3, own_predicted_ms=own.seconds * 1e3)
            row["own_error"] = row["own_predicted_ms"] / row["own_measured_ms"] - 1
        rows.append(row)
    import pandas as pd

    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}" if abs(x) < 1 else f"{x:.1f}"))
    err = df["small_error"].abs()
    print(f"small steps' host time: median |error| {err.median():.1%}, max {err.max():.1%} over {len(df)} cases")
    if args.out:
        df.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
