"""LoRA: fp32 adapters on the targeted projections, the base frozen."""

import pytest

import memsim
from memsim.methods import Lora
from memsim.params import cuda_rounded


def test_adapters_are_the_only_trainable_parameters():
    m = memsim.load_model("llama-3-8b")
    adapters = Lora(rank=16).extra_params(m)
    assert [(p.rows, p.cols, p.dtype_bytes) for p in adapters] == [(16, 4096, 4), (4096, 16, 4), (16, 4096, 4), (1024, 16, 4)]
    r = memsim.predict(dict(model="llama-3-8b", hardware="80GiB", seq=512, methods=[{"name": "lora", "rank": 16}]))
    assert r.breakdown_bytes["optimizer_state"] == 2 * m.num_layers * sum(cuda_rounded(p.nbytes) for p in adapters)


def test_a_rank_above_the_projection_is_refused():
    with pytest.raises(memsim.InputError, match="methods.lora.rank: 300 exceeds k_proj's smaller side"):
        memsim.predict(dict(model="smollm2-135m", methods=[{"name": "lora", "rank": 300, "targets": ["k_proj"]}]))


def test_mixture_of_experts_mlp_targets_are_refused():
    with pytest.raises(memsim.InputError, match="on the mixture of experts"):
        memsim.predict(dict(model="mixtral-8x7b", methods=[{"name": "lora", "targets": ["up_proj"]}]))
