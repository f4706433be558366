"""`memsim validate` as a user meets it: GPU suites refused without a GPU, --no-run writing only
where --out says, results that survive a kill (no torn line hides the next result) and a killed
command that leaves no worker behind."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsim import Workload
from memsim import results_file
from memsim import validate as v
from memsim.catalog import parse_size
from memsim.cli import app
from memsim.measurement import Measurement, Provenance
from memsim.results_file import append_result, drop_torn_tail, read_results

ROOT = Path(__file__).parent.parent
runner = CliRunner()
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512, "tie_word_embeddings": False}


def _measured(case: str) -> Measurement:
    return Measurement(case=case, workload={}, fits=True, peak_allocated_bytes=1 << 20, step_times_s=[0.01],
                       provenance=Provenance(device="test", backend="cpu-tracker", torch="-", transformers="-", python="-",
                                             date="2026-01-01"))


def _suite(ids=("a", "b", "c")):
    suite = v.Suite(name="t", hardware="8GiB", cases=[{}])
    return suite, [v.Case(id=i, workload=Workload(model=TINY, hardware="8GiB", batch=1, seq=32)) for i in ids]


# --- results: one line a write, a torn last line cut off before the next append


def test_a_result_is_one_write_of_its_whole_line_then_fsync(tmp_path, monkeypatch):
    calls = []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(results_file.os, "write", lambda fd, data: calls.append(("write", bytes(data))) or real_write(fd, data))
    monkeypatch.setattr(results_file.os, "fsync", lambda fd: calls.append(("fsync", b"")) or real_fsync(fd))
    out = tmp_path / "r.jsonl"
    append_result(out, _measured("a"))
    assert [c[0] for c in calls] == ["write", "fsync"]
    assert calls[0][1].endswith(b"\n") and calls[0][1].count(b"\n") == 1
    assert Measurement.model_validate_json(calls[0][1]).case == "a"


def test_resume_after_a_torn_last_line_drops_it_and_loses_no_result(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    append_result(out, _measured("a"))
    whole = _measured("b").model_dump_json().encode()
    with out.open("ab") as f:
        f.write(whole[: len(whole) // 2])  # the run was killed while writing b's line
    ran, notes = [], []
    monkeypatch.setattr(v, "run_case", lambda case, suite, device: ran.append(case.id) or _measured(case.id))
    suite, cases = _suite()
    done = v.run_suite(suite, cases, out, on_note=notes.append)
    assert ran == ["b", "c"]  # a was kept; the torn b runs again
    assert set(done) == set(read_results(out)) == {"a", "b", "c"}
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(Measurement.model_validate_json(line) for line in lines)
    assert len(notes) == 1 and "torn last line" in notes[0] and str(out) in notes[0]


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(_measured("a").model_dump_json())
    assert drop_torn_tail(out) == ""
    assert out.read_text().endswith("\n") and set(read_results(out)) == {"a"}
    assert drop_torn_tail(tmp_path / "missing.jsonl") == ""


# --- which device: a GPU suite without a GPU is refused, with the way to run it anyway


def test_cpu_suite_is_sized_for_the_cpu():
    suite, cases = v.load_suite(ROOT / v.CPU_SUITE)
    assert parse_size(suite.hardware) is not None and cases  # a capacity, not a GPU: what `auto` runs on a CPU


def test_gpu_suite_without_a_gpu_is_refused_naming_device_cpu_and_the_cpu_suite(monkeypatch):
    monkeypatch.setattr(v, "torch_device", lambda: "cpu")
    r = runner.invoke(app, ["validate", str(ROOT / "data/suites/h100.yaml")])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "--device cpu" in lines[0] and v.CPU_SUITE in lines[0] and "h100-sxm-80gb" in lines[0]


def test_the_refusal_on_this_machine_when_it_has_no_gpu():
    found = v.torch_device()  # asks torch in a fresh interpreter
    if found != "cpu":
        pytest.skip("this machine has a GPU, or no torch: " + repr(found))
    r = runner.invoke(app, ["validate", str(ROOT / "data/suites/h100.yaml")])
    assert r.exit_code == 2 and "--device cpu" in r.output and v.CPU_SUITE in r.output


@pytest.mark.parametrize("found, device, expected", [
    ("", "auto", "pip install 'memsim[torch]'"),
    ("cpu", "cuda", "--device cuda: torch sees no CUDA GPU"),
])
def test_no_torch_or_no_gpu_for_device_cuda_is_one_line(monkeypatch, found, device, expected):
    monkeypatch.setattr(v, "torch_device", lambda: found)
    r = runner.invoke(app, ["validate", str(ROOT / v.CPU_SUITE), "--device", device])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and expected in r.output, r.output


def test_device_cpu_and_capacity_suites_pass_the_check(monkeypatch):
    monkeypatch.setattr(v, "torch_device", lambda: "cpu")
    gpu_suite, _ = v.load_suite(ROOT / "data/suites/h100.yaml")
    v.check_device(gpu_suite, "h100.yaml", "cpu")  # asked for: runs on the CPU
    cpu_suite, _ = v.load_suite(ROOT / v.CPU_SUITE)
    v.check_device(cpu_suite, v.CPU_SUITE, "auto")


def test_a_worker_error_with_brackets_is_printed_whole(tmp_path, monkeypatch):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: t\nhardware: 8GiB\ncases:\n  - {id: a, seq: 32, model: " + json.dumps(TINY) + "}\n")
    monkeypatch.setattr(v, "run_case", lambda case, suite, device: "ImportError: install 'memsim[torch]'")
    r = runner.invoke(app, ["validate", str(suite), "--device", "cpu", "--out", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 1 and "a: ImportError: install 'memsim[torch]'" in r.output, r.output


# --- --no-run writes only where --out says


def _tree(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


TWO_CASES = ["--only", "tinyllama-train-bf16-adamw-foreach-b4s1024", "--only", "qwen0.5b-decode-b32s2048"]


def test_no_run_without_out_writes_nothing(tmp_path, monkeypatch):
    (tmp_path / "data/validation").mkdir(parents=True)
    shutil.copy(ROOT / "data/validation/h100.jsonl", tmp_path / "data/validation/h100.jsonl")
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    r = runner.invoke(app, ["validate", str(ROOT / "data/suites/h100.yaml"), "--no-run", *TWO_CASES])
    assert r.exit_code == 0, r.output
    assert "predicted vs measured" in r.output and "allocated: median" in r.output
    assert _tree(tmp_path) == before


def test_no_run_with_out_writes_beside_it_only(tmp_path):
    results = tmp_path / "mine" / "r.jsonl"
    results.parent.mkdir()
    shutil.copy(ROOT / "data/validation/h100.jsonl", results)
    committed = _tree(ROOT / "data/validation")
    r = runner.invoke(app, ["validate", str(ROOT / "data/suites/h100.yaml"), "--no-run", "--out", str(results), *TWO_CASES])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in results.parent.iterdir()) == ["r-compare.csv", "r.jsonl", "r.png"]
    assert _tree(ROOT / "data/validation") == committed


# --- a killed command leaves no worker behind


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited: only its entry waits to be reaped


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -signal.SIGKILL)])
def test_a_killed_validate_leaves_no_worker(tmp_path, sig, code):
    pytest.importorskip("torch")
    suite = tmp_path / "s.yaml"  # one case of many steps: the worker is still running when the command is killed
    suite.write_text("name: t\nhardware: 8GiB\nsteps: 100000\ncases:\n  - {id: a, seq: 32, model: " + json.dumps(TINY) + "}\n")
    out = tmp_path / "r.jsonl"
    cli = subprocess.Popen([sys.executable, "-m", "memsim.cli", "validate", str(suite), "--device", "cpu", "--out", str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a background shell ignores SIGINT
    try:
        deadline = time.monotonic() + 60
        workers = []
        while not workers and time.monotonic() < deadline and cli.poll() is None:
            workers = [p for p in _children(cli.pid) if b"memsim.executors.worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
            time.sleep(0.1)
        assert workers, "no worker started: " + (cli.stderr.read() if cli.poll() is not None else "")
        time.sleep(1.0)  # the worker is importing torch or stepping
        cli.send_signal(sig)
        _, stderr = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == code, stderr
    if sig != signal.SIGKILL:
        assert "stopped by " + sig.name in stderr and "resumes" in stderr
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)
    assert not out.exists() or all(Measurement.model_validate_json(line) for line in out.read_text().splitlines())
