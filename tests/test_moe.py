"""Mixture-of-experts predictions: parameters and weight bytes as transformers builds them."""

import pytest

from memsim import Workload
from memsim.catalog import load_model
from memsim.predict import predict, step_config
from memsim.runtimes.hf_steps import param_sizes
from memsim.simulator import cuda_rounded

# data/models/README.md: unique parameters of the meta-device build (transformers 5.17).
META_BUILD_PARAMS = {"mixtral-8x7b": 46_702_792_704, "qwen1.5-moe-a2.7b": 14_315_784_192}


@pytest.mark.parametrize("name", sorted(META_BUILD_PARAMS))
@pytest.mark.parametrize("task", ["prefill", "train"])
def test_moe_parameters_and_weight_bytes(name, task):
    w = Workload.parse(dict(model=name, hardware="h100-sxm-80gb", task=task, batch=1, seq=512))
    report = predict(w)
    assert report.parameters == load_model(name).param_count() == META_BUILD_PARAMS[name]
    tensors, _ = param_sizes(step_config(w))
    assert sum(tensors) == 2 * META_BUILD_PARAMS[name]  # bf16
    # every parameter tensor is one block of the caching allocator (rounded to 512 bytes)
    assert report.breakdown_bytes["weights"] == sum(cuda_rounded(n) for n in tensors)
