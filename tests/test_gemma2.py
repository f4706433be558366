"""Gemma-2 (model_type gemma2): config reading, parameter and weight counts, layer runs, the
sliding-window cache. The analytic-vs-traced figures are in test_traced.py (the gemma2 family)."""

import pytest

from memsim import Workload, predict
from memsim.catalog import load_model
from memsim.errors import InputError
from memsim.model import ModelSpec
from memsim.predict import step_config
from memsim.program import Program
from memsim.methods import ActivationCheckpointing, Methods
from memsim.runtimes.hf_inference import _cache_static
from memsim.runtimes.hf_steps import StepConfig, layer_runs, param_sizes
from memsim.simulator import cuda_rounded

TINY = dict(model_type="gemma2", hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32, vocab_size=100)


# data/models/README.md's table (a meta-device build with transformers 5.17).
@pytest.mark.parametrize("name,params", [("gemma-2-2b", 2_614_341_888), ("gemma-2-9b", 9_241_705_984)])
def test_catalog_counts(name, params):
    m = load_model(name)
    assert m.param_count() == params
    assert m.tie_word_embeddings  # no key in the published file: Gemma2Config's default
    all_bytes, _ = param_sizes(StepConfig(m, "train", 1, 16, 2))
    assert sum(all_bytes) == 2 * params
    assert len(all_bytes) == 1 + 11 * m.num_layers + 1  # embedding, 7 linears + 4 norms per layer, final norm


def test_weights_match_a_meta_build():
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    c = AutoConfig.for_model(**TINY)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(c, dtype=torch.bfloat16)
    real = sum(cuda_rounded(p.numel() * 2) for p in model.parameters())
    all_bytes, _ = param_sizes(StepConfig(ModelSpec.from_config(TINY), "train", 1, 16, 2))
    assert sum(cuda_rounded(n) for n in all_bytes) == real


def test_defaults_follow_gemma2config():
    m = ModelSpec.from_config(TINY)
    assert m.layer_types == ("sliding_attention", "full_attention") * 2
    assert (m.sliding_window, m.attn_logit_softcapping, m.final_logit_softcapping) == (4096, 50.0, 30.0)
    assert m.hidden_activation == "gelu_pytorch_tanh"
    assert not ModelSpec.from_config(dict(TINY, tie_word_embeddings=False)).tie_word_embeddings
    assert ModelSpec.from_config(dict(TINY, final_logit_softcapping=None)).final_logit_softcapping is None


@pytest.mark.parametrize("extra,expected", [
    (dict(layer_types=["sliding_attention"] * 3), "layer_types must list 4 entries"),
    (dict(layer_types=["local"] * 4), "layer_types must list 4 entries"),
    (dict(sliding_window=0), "sliding_window must be a positive number"),
    (dict(hidden_activation="gelu_new"), "hidden_activation 'gelu_new' is not modeled"),
])
def test_bad_config(extra, expected):
    with pytest.raises(InputError, match=expected):
        ModelSpec.from_config(dict(TINY, **extra))


def test_alternating_layers_repeat_as_pairs():
    m = load_model("gemma-2-9b")  # 42 layers
    cfg = StepConfig(m, "train", 1, 16, 2)
    runs = layer_runs(cfg, list(m.layer_types))
    assert [(first, n, len(block)) for first, n, block in runs] == [(True, 1, 1), (False, 20, 2), (False, 1, 1)]
    every_third = Methods((ActivationCheckpointing(every=3),))
    ckpt = layer_runs(StepConfig(m, "train", 1, 16, 2, methods=every_third), list(m.layer_types))
    assert sum(n * len(block) for _, n, block in ckpt) == 42 and len(ckpt) <= 6


def test_sliding_layers_keep_their_window_in_generate():
    """Before generate's last step (8098 cached tokens), full layers hold them all, sliding ones the
    4096 of their window (DynamicSlidingWindowLayer), plus one int64 window tensor each."""
    w = Workload.parse(dict(model="gemma-2-2b", hardware="80GiB", task="generate", batch=1, seq=8000, generate=100))
    cfg = step_config(w)
    m = cfg.model
    prog = Program()
    _cache_static(prog, cfg, 8098)
    token = m.num_kv_heads * m.head_dim * 2  # bf16 K (or V) bytes per token of one sequence
    half = m.num_layers // 2
    held = sorted((ev[0], seg.repeat) for seg in prog.segments if seg.name == "kv cache" for ev in seg.events)
    assert held == sorted([(4096 * token, half)] * 2 + [(8098 * token, half)] * 2 + [(half * 512, 1)])


def test_fit_gemma_2_2b_on_a_24gb_card():
    r = predict(Workload.parse(dict(model="gemma-2-2b", hardware="rtx-4090", methods=[{"name": "lora", "rank": 16}])))
    assert r.parameters == 2_614_341_888
    assert r.breakdown_bytes["weights"] >= 2 * 2_614_341_888
