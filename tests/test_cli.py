"""The CLI's answers and its JSON contract."""

import json
import subprocess
import sys

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
