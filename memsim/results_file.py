"""The results file of `memsim validate`: one Measurement per JSONL line, appended as each case
lands, so that a killed run keeps what it finished and the next run resumes.

A line is written in one write call and flushed to the disk before the next case starts: a kill
can leave at most the last line torn (cut mid-write), never an earlier one. A torn last line is
cut off before the next append, or the next result would be glued to it and lost with it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from .measurement import Measurement


def read_results(path: Path) -> dict[str, Measurement]:
    """The measurements already in a results file, by case id (lines that are not one are skipped:
    a torn last line, or a line of another format)."""
    done: dict[str, Measurement] = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                m = Measurement.model_validate_json(line)
            except ValidationError:
                continue
            done[m.case] = m
    return done


def append_result(path: Path, m: Measurement) -> None:
    """One line for `m` at the end of `path`, in one write (O_APPEND), fsync'ed before returning."""
    data = (m.model_dump_json() + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a regular file takes it whole; a short write (disk full) goes on
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def drop_torn_tail(path: Path) -> str:
    """Cut a torn last line (no newline at its end, and not a whole Measurement) off `path`; a
    whole one gets its newline. Returns a note saying what was cut, or '' where nothing was."""
    if not path.is_file():
        return ""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return ""
    start = data.rfind(b"\n") + 1
    tail = data[start:]
    try:
        Measurement.model_validate_json(tail)
    except ValidationError:
        with path.open("r+b") as f:
            f.truncate(start)
            f.flush()
            os.fsync(f.fileno())
        return f"{path}: dropped a torn last line ({len(tail)} bytes, a run killed while writing it); its case runs again"
    with path.open("ab") as f:
        f.write(b"\n")
    return ""
