"""The command line the per-case benchmarks share: a suite YAML, case ids from it, an --out path."""

from __future__ import annotations

import argparse

from memsim.validate import load_suite


def parse(extra_ids: tuple[str, ...] = ()):
    """(args, {case id: case}) for `SUITE CASE_ID [CASE_ID ...] --out PATH`; an unknown id (not in
    the suite nor `extra_ids`) is a one-line usage error."""
    ap = argparse.ArgumentParser()
    ap.add_argument("suite")
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    _, cases = load_suite(args.suite)
    by_id = {c.id: c for c in cases}
    unknown = [c for c in args.cases if c not in by_id and c not in extra_ids]
    if unknown:
        ap.error(f"cases: {', '.join(unknown)} not in {args.suite}")
    return args, by_id
