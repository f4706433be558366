"""Host-device transfer times predicted from a measured profile against new measurements at sizes
the profile was not calibrated on (held_out: drawn log-uniformly from 1 MiB to 4 GiB, seeded,
none within 3% of a calibrated size), pinned and pageable, both directions. Run on the GPU the
profile measures, in a fresh process:

    python benchmarks/transfer_check.py hardware/measured/h100-sxm-80gb.yaml --out data/validation/transfer-h100.csv
"""

from __future__ import annotations

import argparse
import random
import csv
import statistics
import sys
from pathlib import Path

from memsim.calibration import MeasuredProfile

HELD_OUT_COUNT, HELD_OUT_SEED = 16, 2026


def held_out(calibrated: list[int], count: int = HELD_OUT_COUNT, seed: int = HELD_OUT_SEED) -> list[int]:
    """`count` sizes (4 KiB multiples) log-uniform over 1 MiB .. 4 GiB, none within 3% of a
    calibrated size."""
    rng = random.Random(seed)
    out: list[int] = []
    while len(out) < count:
        n = round(2 ** rng.uniform(20, 32) / 4096) * 4096
        if all(abs(n - c) > 0.03 * c for c in calibrated):
            out.append(n)
    return sorted(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    profile = MeasuredProfile.from_path(args.profile)

    from memsim.executors.calibrate import transfers
    from memsim.executors.run import provenance

    prov = provenance(True)
    rows = []
    for r in transfers(held_out(sorted({p.bytes for p in profile.transfer})), refine=False):
        pred = profile.transfer_seconds(r["bytes"], r["direction"], r["pinned"])
        err = (pred - r["seconds"]) / r["seconds"]
        rows.append((r["direction"], "pinned" if r["pinned"] else "pageable", r["bytes"], r["seconds"], pred, err))
        print(f"{r['direction']:15} {rows[-1][1]:9} {r['bytes']:>12,} measured {r['seconds'] * 1e3:10.3f} ms  "
              f"predicted {pred * 1e3:10.3f} ms  {err:+.2%}", flush=True)
    errs = [abs(r[-1]) for r in rows]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        f.write(f"# transfers predicted from {args.profile} vs measured at held-out sizes; {prov.device}, driver {prov.driver}, "
                f"CUDA {prov.cuda}, torch {prov.torch}, {prov.date}\n")
        w = csv.writer(f)
        w.writerow(["direction", "memory", "bytes", "measured_s", "predicted_s", "error"])
        w.writerows([(*r[:5], f"{r[5]:.5f}") for r in rows])
    print(f"\n{len(rows)} transfers: median |error| {statistics.median(errs):.2%}, max {max(errs):.2%} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
