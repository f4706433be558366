"""How far two measurements of the same suite on the same kind of GPU agree: the floor under any
prediction's error. For each case measured in both results files (memsim validate's JSONL), its
median step time and reserved memory in each and how far the second is from the first, grouped by
what the roofline says bounds the step (a host-bound step's time is the host's speed, which moved
between machines; a GPU-bound one's is the GPU's).

    python benchmarks/repeatability.py data/validation/h200.jsonl data/validation/h200-second-machine.jsonl \\
        --hardware h200 --out data/validation/repeatability-h200.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memsim.validate import comparison, load_suite, read_results

# The figures compared: comparison()'s column, and the Measurement field it reads.
COLUMNS = {"measured_step_s": "step_time_s", "measured_reserved": "peak_reserved_bytes"}


def repeatability(first: Path, second: Path, suite: str, hardware: str):
    """One row a case measured (and fitting) in both: each file's figures and the second's
    relative difference from the first, beside the roofline's bound for the step (a record the
    second file holds unchanged from the first is left out)."""
    _, cases = load_suite(suite, hardware)
    ra, rb = read_results(first), read_results(second)
    again = {k: m for k, m in rb.items() if ra.get(k) != m and m.fits}  # a record copied over is no second measurement
    a = comparison([c for c in cases if c.id in again], ra).set_index("case")  # the roofline's bound, once a case
    both = a.index[a["measured_step_s"].gt(0)]
    out = a.loc[both, ["task", "predicted_bound"]].copy()
    for col, field in COLUMNS.items():
        second = [getattr(again[c], field) for c in both]
        out[f"{col}_first"], out[f"{col}_second"] = a.loc[both, col], second
        out[f"change_{col.removeprefix('measured_')}"] = out[f"{col}_second"] / out[f"{col}_first"] - 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--suite", default="data/suites/h100.yaml")
    ap.add_argument("--hardware", default="h200")
    ap.add_argument("--out", help="CSV of the cases")
    args = ap.parse_args()
    for p in (args.first, args.second):
        if not Path(p).exists():
            print(f"error: results file '{p}' does not exist", file=sys.stderr)
            return 2
    df = repeatability(Path(args.first), Path(args.second), args.suite, args.hardware)
    if df.empty:
        print("error: no case ran to the end in both files", file=sys.stderr)
        return 2
    print(df[["predicted_bound", "measured_step_s_first", "measured_step_s_second", "change_step_s", "change_reserved"]]
          .to_string(float_format=lambda x: f"{x:.4f}"))
    host = df["predicted_bound"] == "host"
    print()
    for name, rows in (("GPU-bound", df[~host]), ("host-bound", df[host]), ("all", df)):
        step, res = rows["change_step_s"].abs(), rows["change_reserved"].abs()
        print(f"{name:10} {len(rows):3} cases  step time |change| median {step.median():6.1%} max {step.max():6.1%}  "
              f"(ratio {1 + rows['change_step_s'].min():.2f}x-{1 + rows['change_step_s'].max():.2f}x)  "
              f"reserved |change| median {res.median():.2%} max {res.max():.2%}")
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"# {args.second} against {args.first}, suite {args.suite} on {args.hardware}\n")
            df.to_csv(f)
        print(f"table: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
