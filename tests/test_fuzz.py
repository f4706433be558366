"""The fuzz corpus (tests/fuzz/): every malformed input is refused in one line that names the field,
with exit code 2 from the command line and memsim.InputError from the Python API; no traceback, and
no case slow (a hang fails its case at the deadline)."""

from __future__ import annotations

import signal
import traceback
from contextlib import contextmanager

import pytest
from typer.testing import CliRunner

import memsim
from fuzz.cases import all_cases
from memsim.cli import app

CLI, API = all_cases()
# Each case's deadline: a refusal takes milliseconds; the slowest (a 5,000-deep YAML) well under one.
SECONDS = 10
runner = CliRunner()


@contextmanager
def deadline(seconds: float):
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _names(case) -> tuple[str, ...]:
    return (case.names,) if isinstance(case.names, str) else case.names


def test_the_corpus_is_large():
    assert len(CLI) + len(API) >= 300 and len({c.id for c in CLI}) == len(CLI) and len({a.id for a in API}) == len(API)


@pytest.mark.parametrize("case", CLI, ids=[c.id for c in CLI])
def test_cli_refuses_in_one_line(case, tmp_path):
    for name, data in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    args = [a.replace("{tmp}", str(tmp_path)) for a in case.args]
    with deadline(SECONDS):
        r = runner.invoke(app, args)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        pytest.fail("".join(traceback.format_exception(r.exception)))
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    for name in _names(case):
        assert name in lines[0], lines[0]


@pytest.mark.parametrize("case", API, ids=[a.id for a in API])
def test_api_raises_one_line_input_error(case):
    call = getattr(memsim, case.call)
    with deadline(SECONDS), pytest.raises(memsim.InputError) as raised:
        call(**case.args[0]) if case.call == "Workload" else call(*case.args)
    line = str(raised.value)
    assert "\n" not in line and line.strip() == line
    for name in _names(case):
        assert name in line, line
