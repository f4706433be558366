"""The CLI's answers and its JSON contract."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsim import Workload, largest_fitting, predict
from memsim.cli import app

runner = CliRunner()


def test_fit_default_answers():
    r = runner.invoke(app, ["fit"])
    assert r.exit_code == 0, r.output
    assert "tinyllama-1.1b" in r.output and "rtx-4090" in r.output
    assert "largest batch that fits" in r.output


def test_predict_json_contract(tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text("model: tinyllama-1.1b\nhardware: a100-80gb\ntask: train\nbatch: 2\nseq: 512\n"
                 "methods: [activation-checkpointing, {name: lora, rank: 16, targets: [q_proj, v_proj]}]\n")
    r = runner.invoke(app, ["predict", str(f), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert isinstance(data["fits"], bool)
    gpu = data["peak"]["gpu"]
    assert {"allocated_bytes", "reserved_bytes", "device_bytes"} <= set(gpu)
    assert gpu["allocated_bytes"] <= gpu["reserved_bytes"] <= gpu["device_bytes"]
    assert set(data["breakdown_bytes"]) >= {"weights", "gradients", "optimizer_state", "activations", "kv_cache", "temporaries"}


@pytest.mark.parametrize("what", ["models", "hardware", "methods"])
def test_list(what):
    r = runner.invoke(app, ["list", what])
    assert r.exit_code == 0, r.output


def test_largest_batch_is_the_boundary():
    w = Workload(model="tinyllama-1.1b", hardware="rtx-4090", seq=2048)
    b = largest_fitting(w, "batch")
    assert b >= 1
    assert predict(w.model_copy(update={"batch": b})).fits
    assert not predict(w.model_copy(update={"batch": b + 1})).fits


def test_import_memsim_stays_light():
    code = "import sys, memsim, memsim.cli; print(any(m in sys.modules for m in ('torch', 'triton')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _fit_json(*args):
    r = runner.invoke(app, ["fit", "tinyllama-1.1b", "-H", "80GiB", "--json", "--no-solve", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_fit_autocast_mixed_precision():
    """fp32 weights with bf16 autocast: fp32 weights, gradients and AdamW state (16 bytes per
    parameter, twice pure bf16's), plus the forward's bf16 weight copies."""
    amp = _fit_json("--dtype", "fp32", "--compute", "bf16")
    bf16 = _fit_json("--dtype", "bf16")
    params = amp["parameters"]
    assert amp["breakdown_bytes"]["optimizer_state"] >= 8 * params > bf16["breakdown_bytes"]["optimizer_state"]
    assert amp["peak"]["gpu"]["allocated_bytes"] > 16 * params


def test_fit_adafactor_keeps_factored_state():
    ada = _fit_json("--optimizer", "adafactor", "--impl", "for-loop")
    adamw = _fit_json("--optimizer", "adamw")
    # Row and column factors: far below AdamW's two full-size moments.
    assert ada["breakdown_bytes"]["optimizer_state"] < adamw["breakdown_bytes"]["optimizer_state"] / 50


# --- what a user reads: brackets printed as typed, every table whole at 80 columns


def test_trace_without_torch_names_the_extra(tmp_path, monkeypatch):
    f = tmp_path / "w.yaml"
    f.write_text("model: tinyllama-1.1b\nseq: 128\n")
    for name in [m for m in sys.modules if m.startswith("memsim.executors")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, as in a process that has not imported them
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails, as where torch is not installed
    r = runner.invoke(app, ["trace", str(f)])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'memsim[torch]'" in lines[0], r.output


def test_brackets_in_names_and_messages_are_printed_as_typed(tmp_path):
    r = runner.invoke(app, ["fit", "[red]my-model"])
    assert r.exit_code == 2 and "'[red]my-model'" in r.output, r.output
    config = tmp_path / "[bold]m.json"
    config.write_text((Path(__file__).parent.parent / "data/models/smollm2-135m.json").read_text())
    r = runner.invoke(app, ["fit", str(config), "--no-solve"])
    assert r.exit_code == 0 and r.output.startswith("[bold]m · train"), r.output


@pytest.fixture
def narrow(monkeypatch):
    """The CLI's console 80 columns wide, as a terminal of that width makes it."""
    from rich.console import Console

    from memsim import cli

    monkeypatch.setattr(cli, "out", Console(width=80))


def _whole_at_80(output: str, names) -> None:
    """No line past 80 columns, no cell cut short (rich's ellipsis), and each name whole on a line."""
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "\u2026" not in output, output
    for name in names:
        assert any(re.search(rf"(?<![\w.+-]){re.escape(name)}(?![\w.+-])", line) for line in lines), (name, output)


def _catalog_names(what: str) -> list[str]:
    from memsim.catalog import component_names, hardware_names, model_names
    from memsim.cli import PARTS
    from memsim.methods import catalog

    if what == "models":
        return model_names()
    if what == "hardware":
        return hardware_names()
    if what == "methods":
        return [d["name"] for d in catalog()]
    return component_names(PARTS[what])


@pytest.mark.parametrize("what", ["models", "hardware", "methods", "cpu", "links", "ssd", "mcu", "machines"])
def test_list_tables_keep_every_name_whole_at_80_columns(narrow, what):
    r = runner.invoke(app, ["list", what])
    assert r.exit_code == 0, r.output
    _whole_at_80(r.output, _catalog_names(what))


def test_machines_at_80_columns_name_their_parts_whole(narrow):
    r = runner.invoke(app, ["list", "machines"])
    _whole_at_80(r.output, ["a100-40gb", "h100-sxm-80gb", "rtx-4090", "ryzen-9-7950x-64gb", "dgx-h100-host"])
    assert "left out at 80 columns:" in r.output  # what did not fit is said, not cut


@pytest.mark.parametrize("model, hardware, method", [
    ("llama-3.1-405b", "apple-m2-ultra-192gb", "activation-offload"),
    ("qwen1.5-moe-a2.7b", "rtx-4060-ti-16gb", "activation-checkpointing"),
])
def test_fit_and_predict_at_80_columns(narrow, tmp_path, model, hardware, method):
    r = runner.invoke(app, ["fit", model, "-H", hardware, "--method", method])
    assert r.exit_code == 0, r.output
    _whole_at_80(r.output, [model, hardware])
    f = tmp_path / "w.yaml"
    f.write_text(f"model: {model}\nhardware: {hardware}\nmethods: [{method}]\n")
    r = runner.invoke(app, ["predict", str(f)])
    assert r.exit_code == 0, r.output
    _whole_at_80(r.output, [model, hardware])


def test_roofline_at_80_columns_keeps_kernel_names_whole(narrow, tmp_path):
    from memsim.predict import predict_time

    f = tmp_path / "w.yaml"
    f.write_text("model: llama-3-8b\nhardware: h200\nbatch: 2\nseq: 2048\nmethods: [activation-checkpointing]\n")
    r = runner.invoke(app, ["roofline", str(f), "--top", "12"])
    assert r.exit_code == 0, r.output
    _, _, st = predict_time(Workload.from_file(f))
    _whole_at_80(r.output, [k.name for k in st.kernels[:12]])


def test_validate_no_run_at_80_columns_keeps_case_ids_whole(narrow):
    from memsim.validate import load_suite, read_results

    root = Path(__file__).parent.parent
    r = runner.invoke(app, ["validate", str(root / "data/suites/h100.yaml"), "--no-run"])
    assert r.exit_code == 0, r.output
    _, cases = load_suite(root / "data/suites/h100.yaml")
    done = read_results(root / "data/validation/h100.jsonl")
    _whole_at_80(r.output, [c.id for c in cases if c.id in done])
    assert "alloc" in r.output and "left out at 80 columns:" in r.output


def test_calibration_table_at_80_columns(narrow, capsys):
    from memsim import cli
    from memsim.calibration import MeasuredProfile

    profiles = [MeasuredProfile.from_path(p) for p in sorted((Path(__file__).parent.parent / "hardware/measured").glob("*.yaml"))]
    for profile in profiles:
        cli.views.calibration(cli.out, profile)
    _whole_at_80(capsys.readouterr().out, [p.name for p in profiles] + ["host to device, pageable"])


def test_fit_says_which_defaults_it_filled(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(model_type="llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=64)))
    r = runner.invoke(app, ["fit", str(cfg), "-H", "8GiB", "--no-solve"])
    assert r.exit_code == 0, r.output
    assert "note:" in r.output and "intermediate_size=11008" in " ".join(r.output.split())


def test_trace_refuses_a_key_transformers_refuses_in_one_line(tmp_path):
    pytest.importorskip("transformers")
    f = tmp_path / "w.yaml"
    f.write_text("model: {model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4,"
                 " num_key_value_heads: 2, vocab_size: 128, rms_norm_eps: x}\nseq: 16\nhardware: 8GiB\n")
    r = runner.invoke(app, ["trace", str(f)])
    assert r.exit_code == 2 and "rms_norm_eps" in r.output and "Traceback" not in r.output, r.output
