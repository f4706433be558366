"""LISA: a few decoder layers train beside the embeddings, norm and head."""

import pytest

import memsim
from memsim.params import cuda_rounded
from memsim.predict import step_config
from memsim.runtimes.hf_steps import param_shapes

W = dict(model="llama-3-8b", hardware="80GiB", batch=1, seq=512)


def test_optimizer_state_covers_the_active_layers_and_the_ends():
    cfg = step_config(memsim.Workload.parse(dict(W, methods=[{"name": "lisa", "active_layers": 2}])))
    everything, trainable = param_shapes(cfg)
    assert trainable.layers == 2 and trainable.layer == everything.layer
    assert [p.name for p in trainable.prefix + trainable.suffix] == ["embed_tokens", "norm", "lm_head"]
    state = memsim.predict(dict(W, methods=[{"name": "lisa", "active_layers": 2}])).breakdown_bytes["optimizer_state"]
    assert state == 2 * trainable.total(lambda p: cuda_rounded(p.nbytes))


def test_all_layers_active_is_full_fine_tuning():
    m = memsim.load_model("llama-3-8b")
    lisa = memsim.predict(dict(W, methods=[{"name": "lisa", "active_layers": m.num_layers}]))
    assert lisa.peak == memsim.predict(W).peak


def test_more_active_layers_than_the_model_has_is_refused():
    with pytest.raises(memsim.InputError, match="methods.lisa.active_layers: 33 exceeds the model's 32"):
        memsim.predict(dict(W, methods=[{"name": "lisa", "active_layers": 33}]))


def test_lisa_and_lora_do_not_combine():
    with pytest.raises(memsim.InputError, match="cannot be combined with"):
        memsim.Workload.parse(dict(W, methods=["lisa", "lora"]))
