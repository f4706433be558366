"""Bad input: one line naming the field and what is valid, exit code 2, no traceback."""

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import memsim
from memsim import InputError, Workload
from memsim.cli import app
from memsim.model import MAX_LAYERS, ModelSpec

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
    (["fit", "--method", "qlorra"], "unknown method 'qlorra'; did you mean 'qlora'"),
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
    ("model: {model_type: mixtral, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 10, num_local_experts: 8, num_experts_per_tok: 2, output_router_logits: true}\n", "output_router_logits true (router aux loss) is not modeled"),
    ("model: {model_type: qwen2_moe, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 10, num_experts: 8, num_experts_per_tok: 2, decoder_sparse_step: 2}\n", "dense layers among MoE layers"),
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


# --- No silent guesses: each input once answered wrongly without a word, now right or refused.
TINY = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=128)


def test_intermediate_size_zero_is_refused_not_four_times_hidden():
    with pytest.raises(InputError, match="intermediate_size must be an integer from 1 to"):
        ModelSpec.from_config(dict(TINY, intermediate_size=0))


@pytest.mark.parametrize("value", ["no", "false", 0, None])
def test_tie_word_embeddings_must_be_a_boolean(value):
    with pytest.raises(InputError, match="tie_word_embeddings must be true or false"):
        ModelSpec.from_config(dict(TINY, tie_word_embeddings=value))
    assert not ModelSpec.from_config(dict(TINY, tie_word_embeddings=False)).tie_word_embeddings


def test_quantization_config_is_refused_naming_the_qlora_method():
    cfg = dict(TINY, quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True})
    with pytest.raises(InputError, match=r"quantization_config \(bitsandbytes\).*methods: \[\{name: qlora\}\]"):
        memsim.predict({"model": cfg})


def test_largest_fitting_names_the_fields_it_solves():
    with pytest.raises(InputError, match="field 'batchsize' is not one of batch, seq; did you mean 'batch'"):
        memsim.largest_fitting(Workload(model="smollm2-135m"), "batchsize")


def test_a_mixtral_config_without_its_expert_count_is_a_mixture_of_mixtrals_default():
    cfg = {k: v for k, v in TINY.items() if k != "num_key_value_heads"} | {"model_type": "mixtral", "num_attention_heads": 8}
    m = ModelSpec.from_config(cfg)
    assert (m.num_experts, m.experts_per_token, m.num_kv_heads) == (8, 2, 8)  # MixtralConfig's defaults
    report = memsim.predict({"model": cfg, "seq": 16})
    assert any("num_local_experts=8" in n and "num_experts_per_tok=2" in n for n in report.notes), report.notes


TYPES = ["llama", "mistral", "qwen2", "gemma2", "mixtral", "qwen2_moe"]


@pytest.mark.parametrize("model_type", TYPES)
def test_keys_left_out_take_what_transformers_builds(model_type):
    """A config.json with only the required keys: memsim's parameter count is the one transformers
    builds from it (its config class's defaults), and the report names the defaults it used."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = dict(model_type=model_type, hidden_size=128, num_hidden_layers=1, num_attention_heads=32, vocab_size=64)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**cfg))
    assert ModelSpec.from_config(cfg).param_count() == sum(p.numel() for p in model.parameters())
    notes = memsim.predict({"model": cfg, "seq": 16, "hardware": "1000GiB"}).notes
    assert any("intermediate_size=" in n and "defaults" in n for n in notes), notes


@pytest.mark.parametrize("model_type", TYPES)
def test_attention_bias_biases_what_transformers_biases(model_type):
    """attention_bias: Llama and Gemma-2 bias q, k, v and o; Qwen2 q, k and v whatever the key;
    Mistral none: memsim's parameter count is transformers' for each."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = dict(model_type=model_type, hidden_size=128, num_hidden_layers=1, num_attention_heads=8, num_key_value_heads=4,
               vocab_size=64, attention_bias=True, intermediate_size=256)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**cfg))
    assert ModelSpec.from_config(cfg).param_count() == sum(p.numel() for p in model.parameters())


def test_workload_raises_memsims_one_line_error_with_pydantics_detail():
    from pydantic import ValidationError

    with pytest.raises(InputError) as e:
        Workload(batch=0, seq="long")
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value) and str(e.value).startswith("batch:")
    assert isinstance(e.value.detail, ValidationError) and len(e.value.detail.errors()) == 2
    w = Workload(model="smollm2-135m", batch=2)
    assert w.model_copy(update={"batch": 3}).batch == 3
    assert Workload.model_validate_json(w.model_dump_json()) == w == Workload.parse(w.model_dump())


def test_a_model_at_the_layer_bound_predicts_quickly_and_past_it_is_refused():
    deep = dict(TINY, num_hidden_layers=MAX_LAYERS)
    start = time.perf_counter()
    memsim.predict({"model": deep, "seq": 64})
    assert time.perf_counter() - start < 30  # the allocator replay walks each layer: about 2 s here
    with pytest.raises(InputError, match=f"num_hidden_layers must be an integer from 1 to {MAX_LAYERS}"):
        memsim.predict({"model": dict(TINY, num_hidden_layers=10_000)})


def test_a_sliding_window_past_its_length_is_named_not_silently_modeled_as_full():
    """Mistral-7B v0.1's sliding_window (4096): transformers slides every layer; memsim models full
    attention and says so once the step's keys reach past the window."""
    below = memsim.predict({"model": "mistral-7b", "task": "prefill", "seq": 4096})
    past = memsim.predict({"model": "mistral-7b", "task": "decode", "seq": 8192})
    assert not any("sliding_window" in n for n in below.notes)
    assert any(n.startswith("sliding_window 4096:") and "8193 tokens" in n for n in past.notes), past.notes
    with pytest.raises(memsim.InputError, match="sliding_window must be null or a positive number of tokens"):
        ModelSpec.from_config({**TINY, "model_type": "mistral", "sliding_window": "4096"})
