"""The executor on the CPU: real tensors, live bytes counted by the tracker, checked against the
analytic prediction and the fake-tensor trace; and `memsim validate`'s run-resume-compare loop."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from memsim import Workload  # noqa: E402
from memsim.cli import app  # noqa: E402
from memsim.executors.matrix import FAMILIES  # noqa: E402
from memsim.executors.run import measure, requested_bytes  # noqa: E402
from memsim.executors.trace import trace_workload  # noqa: E402
from memsim.predict import step_config  # noqa: E402
from memsim.runtimes.hf_steps import build_program  # noqa: E402
from memsim.simulator import simulate  # noqa: E402
from memsim.validate import load_suite, read_results  # noqa: E402

SMALL = dict(model=FAMILIES["llama"], hardware="8GiB", batch=2, seq=64, attention="eager")


@pytest.mark.parametrize("extra", [
    dict(task="train", precision={"weights": "fp32", "compute": "fp32"}),
    dict(task="train", methods=[{"name": "lora", "rank": 8}]),
    dict(task="train", methods=["activation-checkpointing"], optimizer={"name": "sgd-momentum"}),
    dict(task="prefill", seq=128),
    dict(task="decode", seq=100),
], ids=["train-fp32", "train-lora", "train-ckpt-sgd", "prefill", "decode"])
def test_cpu_measurement_matches_analytic_and_trace(extra):
    w = Workload.parse({**SMALL, **extra})
    m = measure(w, warmup=1, steps=1, device="cpu")
    analytic = simulate(build_program(step_config(w)), exclude=("workspace",)).bytes
    traced = trace_workload(w).peak_bytes
    assert m.fits and m.provenance.backend == "cpu-tracker"
    assert m.step_times_s and m.tokens_per_step > 0
    assert abs(analytic - m.peak_allocated_bytes) / m.peak_allocated_bytes < 0.015
    assert abs(traced - m.peak_allocated_bytes) / m.peak_allocated_bytes < 0.015


@pytest.mark.parametrize("task", ["train", "decode"])
def test_measured_steps_run_outside_the_device_context(task, monkeypatch):
    """torch.device(...) as a context is a TorchFunctionMode: a step run inside it sends every torch
    call through Python (users' loops do not), so the model is built in it and the steps run out
    of it (executors.run.build_steps)."""
    from memsim.executors import protocol

    modes = []
    name = {"train": "train_step", "decode": "decode_step"}[task]
    real = getattr(protocol, name)
    monkeypatch.setattr(protocol, name, lambda *a, **k: (modes.append(torch._C._len_torch_function_stack()), real(*a, **k))[1])
    m = measure(Workload.parse({**SMALL, "task": task, "seq": 64}), warmup=1, steps=2, device="cpu")
    assert m.fits and modes == [0, 0, 0]


def test_requested_bytes_parses_torch_oom_message():
    msg = "CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity of 79.19 GiB"
    assert requested_bytes(msg) == int(2.5 * 2**30)
    assert requested_bytes("something else") == 0


def test_validate_runs_resumes_and_compares(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: t\nhardware: 8GiB\nsteps: 1\ndefaults: " + json.dumps(SMALL) +
        "\ncases:\n  - {id: pre, task: prefill}\n  - {id: dec, task: decode}\n")
    out = tmp_path / "r.jsonl"
    runner = CliRunner()
    r = runner.invoke(app, ["validate", str(suite), "--device", "cpu", "--out", str(out), "--only", "pre"])
    assert r.exit_code == 0, r.output
    assert set(read_results(out)) == {"pre"}
    first = out.read_text()
    r = runner.invoke(app, ["validate", str(suite), "--device", "cpu", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith(first)  # resumed: the finished case was not run again
    assert set(read_results(out)) == {"pre", "dec"}
    assert "allocated: median" in r.output and (tmp_path / "r.png").exists()
    from memsim.validate import comparison

    _, cases = load_suite(suite)
    df = comparison(cases, read_results(out))
    assert (df["error_allocated"].abs() < 0.015).all()  # the CPU tracker against the peak without kernel workspaces


def test_suite_boundary_expands_to_largest_and_one_more(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: b\ncases:\n  - {id: edge, model: tinyllama-1.1b, seq: 1024, emulate: rtx-4090, boundary: batch}\n")
    _, cases = load_suite(suite)
    assert [c.id.rsplit("-", 1)[1] for c in cases] == ["fits", "over"]
    assert cases[1].workload.batch == cases[0].workload.batch + 1
    assert cases[0].emulate_capacity_bytes == cases[1].emulate_capacity_bytes > 20 * 2**30


@pytest.mark.parametrize("text,needle", [
    ("name: x\ncases: []\n", "cases"),
    ("name: x\ncases:\n  - {id: a, model: no-such-model}\n", "unknown model"),
    ("name: x\ncases:\n  - {id: a}\n  - {id: a}\n", "used twice"),
    ("name: x\ncases:\n  - {id: 'bad id'}\n", "id"),
    ("name: x\nbogus: 1\ncases:\n  - {id: a}\n", "bogus"),
])
def test_bad_suites_are_one_line_errors(tmp_path, text, needle):
    suite = tmp_path / "s.yaml"
    suite.write_text(text)
    r = CliRunner().invoke(app, ["validate", str(suite), "--device", "cpu", "--out", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2
    assert needle in r.output and "Traceback" not in r.output


def test_between_timed_decode_steps_the_cache_is_cropped_back_and_contiguous():
    from memsim.catalog import raw_config
    from memsim.executors import protocol
    from memsim.executors.trace import build_model

    config = raw_config(FAMILIES["llama"])
    model = build_model(config, "eager", "fp32")
    cache = protocol.new_cache(model)
    ids = protocol.input_ids(2, 16, config["vocab_size"])
    protocol.prefill(model, ids, cache)
    protocol.decode_step(model, cache, ids[:, -1:])
    assert cache.get_seq_length() == 17
    protocol.reset_cache(cache, 16)
    assert cache.get_seq_length() == 16
    assert all(layer.keys.is_contiguous() and layer.values.is_contiguous() for layer in cache.layers)
    assert all(layer.keys.untyped_storage().nbytes() == layer.keys.nbytes for layer in cache.layers)  # no cropped view


def test_a_suite_runs_on_another_device_named_by_hardware():
    from memsim.errors import InputError

    suite, cases = load_suite("data/suites/h100.yaml", "h200")
    assert suite.name == "h200" and all(c.workload.hardware.startswith("h200") for c in cases)
    assert any(c.workload.hardware == "h200@rtx-4090" for c in cases)  # emulated capacities follow
    with pytest.raises(InputError, match="--hardware"):
        load_suite("data/suites/h100.yaml", "h201")


def test_validate_summarizes_step_time_by_task_and_bound():
    from memsim.validate import comparison, summary

    suite, cases = load_suite("data/suites/h100.yaml", "h200")
    done = read_results(__import__("pathlib").Path("data/validation/h200.jsonl"))
    df = comparison([c for c in cases if c.id.startswith(("tinyllama-prefill", "qwen0.5b-decode", "tinyllama-train-bf16-b12"))], done)
    s = summary(df)
    assert s["step, train"]["cases"] == 1 and s["step, inference"]["cases"] == 2
    assert set(df["predicted_bound"]) <= {"compute", "memory", "launch", "host"}


def test_a_runs_own_host_speed_predicts_its_host_bound_steps():
    from pathlib import Path

    from memsim.catalog import load_measured
    from memsim.validate import comparison

    _, cases = load_suite("data/suites/h100.yaml", "h200")
    case = next(c for c in cases if c.id == "qwen0.5b-decode-b32s2048")
    m = read_results(Path("data/validation/h200.jsonl"))[case.id]
    launch = load_measured("h200").launch
    per_kernel, kernels = launch.host_step("decode")
    assert kernels  # a decode step is timed on the calibration's decode step
    slow = m.model_copy(update={"host_launch": {"steps": {"decode": [2 * per_kernel, kernels]}}})
    row = comparison([case], {case.id: slow}).iloc[0]
    assert row["predicted_step_run_host_s"] == pytest.approx(2 * row["predicted_step_s"], rel=0.05)  # host-bound
    import math

    assert m.host_launch and comparison([case], {case.id: m}).iloc[0]["predicted_step_run_host_s"] > 0  # the run measured its host
    unmeasured = m.model_copy(update={"host_launch": {}})
    assert math.isnan(comparison([case], {case.id: unmeasured}).iloc[0]["predicted_step_run_host_s"])  # a run that measured none


def test_a_run_is_predicted_at_the_host_its_calibration_steps_measured():
    from pathlib import Path

    from memsim.validate import comparison, run_host_launch

    from executors.host_costs import host_index

    assert 1e-8 < host_index() < 1e-3  # seconds per bare CPU op, measured here
    _, cases = load_suite("data/suites/h100.yaml", "h200")
    case = next(c for c in cases if c.id == "qwen0.5b-decode-b32s2048")
    m = read_results(Path("data/validation/h200.jsonl"))[case.id]
    assert m.host_index_s and run_host_launch(m) == m.host_launch  # the index is recorded, the steps' times used
    per_kernel = {k: v for k, v in m.host_launch.items() if k.endswith("_per_kernel_s")}
    slow = m.model_copy(update={"host_launch": m.host_launch | {k: 1.5 * v for k, v in per_kernel.items()}})
    rows = comparison([case], {case.id: m}), comparison([case], {case.id: slow})
    fast, slowed = (r.iloc[0]["predicted_step_run_host_s"] for r in rows)
    assert slowed > 1.3 * fast  # host-bound: a host 1.5x slower, a step about as much longer


def test_a_generate_step_is_timed_to_its_first_token_and_after():
    w = Workload.parse({**SMALL, "task": "generate", "generate": 4})
    m = measure(w, warmup=1, steps=2, device="cpu")
    assert len(m.first_token_s) == 2 and all(0 < f < t for f, t in zip(m.first_token_s, m.step_times_s))
    phases = m.phase_times_s
    assert set(phases) == {"prefill", "decode"} and phases["decode"] > 0
    from memsim.validate import Case, comparison

    row = comparison([Case(id="g", workload=w)], {"g": m.model_copy(update={"case": "g"})}).iloc[0]
    assert row["measured_prefill_s"] == phases["prefill"] and row["measured_decode_s"] == phases["decode"]
    prefill = measure(Workload.parse({**SMALL, "task": "prefill"}), warmup=0, steps=1, device="cpu")
    assert set(prefill.phase_times_s) == {"prefill"}  # a prefill case's whole step is its prefill


def test_repeatability_puts_two_measurements_of_a_case_side_by_side(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("repeatability", "benchmarks/repeatability.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    results = read_results(Path("data/validation/h200.jsonl"))
    ids = ["qwen0.5b-decode-b32s2048", "llama3-8b-prefill-b2s8192", "mistral7b-prefill-b4s2048"]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(results[i].model_dump_json() + "\n" for i in ids))
    slower = results[ids[0]].model_copy(update={"step_times_s": [1.5 * t for t in results[ids[0]].step_times_s]})
    # the first again, slower; the second measured again as it was; the third copied over (left out)
    again = [slower, results[ids[1]].model_copy(update={"host_index_s": [1e-5]}), results[ids[2]]]
    second.write_text("".join(m.model_dump_json() + "\n" for m in again))
    df = mod.repeatability(first, second, "data/suites/h100.yaml", "h200")
    assert sorted(df.index) == sorted(ids[:2])
    assert df.loc[ids[0], "change_step_s"] == pytest.approx(0.5) and df.loc[ids[1], "change_step_s"] == 0
    assert df.loc[ids[0], "predicted_bound"] == "host" and df.loc[ids[1], "predicted_bound"] != "host"
