"""Why a host-bound step's time moves: the host's speed (executors.host_costs.host_index, seconds
per bare torch op) on each CPU this process may run on, in several passes, with the steal time the
hypervisor reports and the cgroup's throttling over the run; then a host-bound suite case's step
timed unpinned and pinned to the fastest and the slowest CPU.

    python benchmarks/host_noise.py data/suites/h100.yaml CASE_ID --out FILE.json   (further ids: ignored)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import suite_cases  # benchmarks/suite_cases.py: the shared command line

PASSES = 3


def _steal_ticks() -> dict[str, int]:
    """/proc/stat's first line: the whole machine's CPU time by state, in clock ticks."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {n: int(v) for n, v in zip(names, fields)}


def _cgroup() -> dict[str, str]:
    out = {}
    for name in ("cpu.max", "cpu.stat"):
        p = Path("/sys/fs/cgroup") / name
        if p.exists():
            out[name] = p.read_text().strip()
    return out


def per_cpu_speed(cpus: list[int]) -> dict[int, list[float]]:
    from memsim.executors.host_costs import host_index

    speeds: dict[int, list[float]] = {c: [] for c in cpus}
    for _ in range(PASSES):
        for c in cpus:
            os.sched_setaffinity(0, {c})
            host_index()  # settle on the CPU
            speeds[c].append(host_index(reps=5))
    os.sched_setaffinity(0, set(cpus))
    return speeds


def step_times(workload, placements: dict[str, set[int]], steps: int = 9) -> dict[str, list[float]]:
    import torch

    from memsim.executors.run import build_steps

    run = build_steps(workload)
    out = {}
    for name, cpus in placements.items():
        os.sched_setaffinity(0, cpus)
        for _ in range(2):
            run()
            run.between()
        times = []
        for _ in range(steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            run()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            run.between()
        out[name] = times
    return out


def main() -> int:
    args, by_id = suite_cases.parse()
    case = args.cases[0]  # the first: one case's steps timed pinned and unpinned
    cpus = sorted(os.sched_getaffinity(0))
    before, cg_before, t0 = _steal_ticks(), _cgroup(), time.time()
    speeds = per_cpu_speed(cpus)
    medians = {c: statistics.median(v) for c, v in speeds.items()}
    fast, slow = min(medians, key=medians.get), max(medians, key=medians.get)
    times = step_times(by_id[case].workload, {"unpinned": set(cpus), f"fastest cpu {fast}": {fast},
                                               f"slowest cpu {slow}": {slow}, "unpinned again": set(cpus)})
    speeds_after = per_cpu_speed(cpus)
    after = _steal_ticks()
    ticks = {k: after[k] - before[k] for k in after}
    result = dict(cpus=cpus, seconds=time.time() - t0, per_cpu_index_s=speeds, per_cpu_index_after_s=speeds_after,
                  proc_stat_delta_ticks=ticks, cgroup_before=cg_before, cgroup_after=_cgroup(),
                  loadavg=Path("/proc/loadavg").read_text().strip(), case=case, step_times_s=times)
    Path(args.out).write_text(json.dumps(result, indent=1))
    total = sum(ticks.values()) or 1
    print(f"steal {100 * ticks['steal'] / total:.1f}% of CPU time; per-CPU index (us): "
          + " ".join(f"{c}:{medians[c] * 1e6:.1f}" for c in cpus))
    for name, ts in times.items():
        print(f"{case} {name}: median {statistics.median(ts) * 1e3:.1f} ms, {min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
