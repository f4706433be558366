"""One measured case in a fresh process (a clean CUDA context): `memsim validate` runs

    python -m memsim.executors.worker '{"case": ..., "workload": {...}, "warmup": 1, "steps": 3, ...}'

and reads the Measurement's JSON from the last line of its standard output. Given the command's
pid (`parent_pid`), the worker dies with that command, even one killed outright.
"""

from __future__ import annotations

import json
import os
import sys


def die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel sends this process SIGKILL when its parent exits (prctl PR_SET_PDEATHSIG);
    a parent already gone before that ends it now. Elsewhere, nothing."""
    if not parent_pid or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def main(argv: list[str]) -> int:
    req = json.loads(argv[0])
    die_with_parent(req.get("parent_pid", 0))  # before the seconds of importing torch

    from memsim.workload import Workload

    from .run import measure

    m = measure(Workload.parse(req["workload"]), case=req["case"], warmup=req.get("warmup", 1),
                steps=req.get("steps", 3), device=req.get("device", "auto"),
                emulate_capacity_bytes=req.get("emulate_capacity_bytes", 0))
    print(m.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
