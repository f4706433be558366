"""One measured case in a fresh process (a clean CUDA context): `memsim validate` runs

    python -m memsim.executors.worker '{"case": ..., "workload": {...}, "warmup": 1, "steps": 3, ...}'

and reads the Measurement's JSON from the last line of its standard output.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from memsim.workload import Workload

    from .run import measure

    req = json.loads(argv[0])
    m = measure(Workload.parse(req["workload"]), case=req["case"], warmup=req.get("warmup", 1),
                steps=req.get("steps", 3), device=req.get("device", "auto"),
                emulate_capacity_bytes=req.get("emulate_capacity_bytes", 0))
    print(m.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
