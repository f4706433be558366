"""Bad input: one line naming the field and what is valid, exit code 2, no traceback."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsim.cli import app

runner = CliRunner()

FIT_CASES = [
    (["fit", "llama-3-8bb"], "model: unknown model 'llama-3-8bb'; did you mean"),
    (["fit", "--hardware", "h100-sxm-80"], "hardware: unknown device"),
    (["fit", "--batch", "0"], "batch"),
    (["fit", "--seq", "-5"], "seq"),
    (["fit", "--task", "finetune"], "task"),
    (["fit", "--dtype", "fp8"], "precision.weights"),
    (["fit", "--optimizer", "adamw8"], "optimizer.name: 'adamw8' is not one of"),
    (["fit", "--impl", "cuda"], "optimizer.impl"),
    (["fit", "--optimizer", "adafactor", "--impl", "fused"], "optimizer.impl: adafactor has no 'fused'; use 'foreach' or 'for-loop'"),
    (["fit", "--attention", "xformers"], "attention"),
    (["fit", "--method", "qlora"], "unknown method 'qlora'"),
    (["fit", "--method", "mezo"], "methods.mezo: keeps no optimizer state"),
    (["fit", "--method", "lora:rank=0"], "rank"),
    (["fit", "--method", "lora:targets=qproj"], "unknown target"),
    (["fit", "--method", "lora:alpha"], "parameters are key=value"),
    (["fit", "--task", "generate"], "generate: task=generate needs generate >= 1"),
    (["fit", "--task", "prefill", "--method", "lora"], "methods: lora applies to task=train only, not prefill"),
    (["fit", "--attention", "flash", "--dtype", "fp32"], "attention: flash needs 16-bit"),
    (["fit", "--dtype", "bf16", "--compute", "fp32"], "precision: weights=bf16 with compute=fp32 is not a mode torch runs"),
    (["fit", "--dtype", "fp32", "--compute", "fp8"], "precision.compute"),
    (["validate", str(Path(__file__).parent.parent / "data/suites/h100.yaml"), "--no-run", "--out", "/nonexistent/results.jsonl"],
     "--no-run: no results of this suite's cases in /nonexistent/results.jsonl"),
    (["fit", "--dtype", "fp32", "--compute", "bf16", "--task", "decode"], "task: decode with autocast"),
    (["fit", "--dtype", "fp32", "--compute", "bf16", "--attention", "eager"], "attention: eager with autocast"),
    (["fit", "--dtype", "fp32", "--compute", "fp16"], "precision.compute: fp16 autocast training"),
    (["fit", "--hardware", "0GiB"], "capacity"),
    (["list", "gpus"], "list: 'gpus' is not one of"),
]


@pytest.mark.parametrize("args,expected", FIT_CASES, ids=[" ".join(a) for a, _ in FIT_CASES])
def test_cli_bad_input(args, expected):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert "Traceback" not in text
    assert expected in text.replace("\n", " ") or expected in " ".join(text.split())


WORKLOAD_CASES = [
    ("model: tinyllama-1.1b\nbatchsize: 4\n", "batchsize: unknown field; did you mean 'batch'"),
    ("model: {hidden_size: 64, num_hidden_layers: 2}\n", "missing key(s) num_attention_heads, vocab_size"),
    ("model: {model_type: t5, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 10}\n", "model_type 't5' is not modeled"),
    ("model: {hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 3, vocab_size: 10}\n", "multiple of num_key_value_heads"),
    ("model: mixtral-8x7b\nmethods: [{name: lora, targets: [q_proj, gate_proj]}]\n", "methods.lora.targets: gate_proj on the mixture of experts"),
    ("model: {model_type: mixtral, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 10, num_local_experts: 8, num_experts_per_tok: 2, output_router_logits: true}\n", "output_router_logits true (router aux loss) is not modeled"),
    ("model: {model_type: qwen2_moe, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 10, num_experts: 8, num_experts_per_tok: 2, decoder_sparse_step: 2}\n", "dense layers among MoE layers"),
    ("precision: {weights: fp16, compute: bf16}\n", "not a mode torch runs"),
    ("task: generate\ngenerate: 4\nprecision: {weights: fp32, compute: bf16}\n", "task: generate with autocast"),
    ("model: gemma-2-2b\nprecision: {weights: fp32, compute: bf16}\n", "autocast (weights fp32, compute bf16) on gemma2 is not modeled"),
    ("optimizer: {name: adamw, lr: 0.1}\n", "optimizer.lr: unknown parameter; adamw takes impl"),
    ("methods: [{name: lora, rnak: 8}]\n", "methods.lora.rnak: unknown parameter; did you mean 'rank'?"),
    ("methods: [{name: lora, rank: 5000}]\n", "methods.lora.rank: 5000 exceeds q_proj's smaller side (2048)"),
    ("methods: [activation-checkpointing, activation-checkpointing]\n", "given twice"),
    ("methods: lora\n", "methods: a list of methods"),
    ("methods: [{name: activation-checkpointing, every: 0}]\n", "every"),
    ("- just\n- a list\n", "must hold a mapping"),
    ("model: [unclosed\n", "not valid YAML"),
]


@pytest.mark.parametrize("text,expected", WORKLOAD_CASES)
def test_workload_file_bad_input(tmp_path, text, expected):
    f = tmp_path / "w.yaml"
    f.write_text(text)
    r = runner.invoke(app, ["predict", str(f)])
    assert r.exit_code == 2, r.output
    assert expected in " ".join(r.output.split()), r.output


def test_missing_file():
    r = runner.invoke(app, ["predict", "no/such/file.yaml"])
    assert r.exit_code == 2 and "cannot read" in r.output
