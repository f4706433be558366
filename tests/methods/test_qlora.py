"""QLoRA: a 4-bit (NF4) frozen base through bitsandbytes, fp32 adapters, prepare_model_for_kbit_training."""

import pytest

import memsim
from memsim.dtypes import Blockwise4bit
from memsim.methods import QLoRA
from memsim.params import PROJECTIONS, cuda_rounded

TINY = dict(model_type="llama", vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False)


def _workload(**method):
    return dict(model=TINY, hardware="80GiB", batch=2, seq=64, methods=[{"name": "qlora", **method}])


@pytest.mark.parametrize("double_quant", [True, False])
@pytest.mark.parametrize("shape", [(1000, 512), (256, 128), (7, 9)])
def test_weight_tensors_are_what_bitsandbytes_stores(shape, double_quant):
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("bitsandbytes.functional")
    packed, state = functional.quantize_4bit(torch.randn(*shape, dtype=torch.bfloat16), blocksize=64,
                                             compress_statistics=double_quant, quant_type="nf4")
    stored = [packed, state.absmax, state.code]
    if double_quant:
        stored += [state.offset, state.state2.absmax, state.state2.code]
    assert Blockwise4bit("nf4", double_quant).tensors(shape[0] * shape[1]) == tuple(t.numel() * t.element_size() for t in stored)


def test_resident_weights_match_a_quantized_model():
    """Every tensor the quantized, prepared, adapted model holds, each in its allocator block,
    against the prediction's resident weights (before any step allocates)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("bitsandbytes")
    from memsim.executors.trace import build_model

    method = QLoRA(rank=4)
    model = build_model({k: v for k, v in TINY.items()}, "sdpa", "bf16", [method])
    held = {id(t): t for t in model.parameters()}
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None:
            held |= {id(t): t for t in (state.absmax, state.code, state.offset, state.state2.absmax, state.state2.code)}
    measured = sum(cuda_rounded(t.numel() * t.element_size()) for t in held.values())
    w = memsim.Workload.parse(_workload(rank=4))
    from memsim.predict import step_config
    from memsim.runtimes.hf_steps import build_program

    program = build_program(step_config(w))
    resident = sum(seg.repeat * cuda_rounded(n) for seg in program.segments if seg.resident and not seg.lazy
                   for n, category, *_ in seg.events if category == "weights")
    assert resident == measured + cuda_rounded(Blockwise4bit.SHARED_MAP_BYTES)


def test_prepare_kbit_runs_the_rest_of_the_model_in_fp32():
    prepared = memsim.predict(_workload(prepare_kbit=True)).breakdown_bytes
    plain = memsim.predict(_workload(prepare_kbit=False)).breakdown_bytes
    assert prepared["weights"] > plain["weights"]  # embeddings, norms and lm_head fp32
    assert prepared["activations"] > 1.5 * plain["activations"]  # the residual stream fp32


def test_only_the_projections_are_quantized():
    m = memsim.load_model("llama-3-8b")
    method = QLoRA()
    from memsim.params import model_params

    params = model_params(m, 2)
    for p in params.walk(1):
        sizes = method.stored(p, (p.nbytes,))
        assert (sizes != (p.nbytes,)) == (p.name in PROJECTIONS)


@pytest.mark.parametrize("methods, expected", [
    ([{"name": "qlora", "rank": 0}], "methods.qlora.rank"),
    ([{"name": "qlora"}, {"name": "lora"}], "qlora cannot be combined with lora"),
    ([{"name": "qlora", "quant_type": "int3"}], "methods.qlora.quant_type"),
    ([{"name": "qlora", "targets": ["w_proj"]}], "methods.qlora.targets"),
])
def test_bad_parameters_are_one_line(methods, expected):
    with pytest.raises(memsim.InputError, match=expected):
        memsim.predict(dict(model="smollm2-135m", methods=methods))


def test_precision_must_be_the_compute_dtype():
    with pytest.raises(memsim.InputError, match="methods.qlora.compute_dtype"):
        memsim.predict(dict(model="smollm2-135m", precision={"weights": "fp32", "compute": "bf16"}, methods=["qlora"]))


def test_a_mixture_of_experts_is_refused():
    with pytest.raises(memsim.InputError, match="mixture of experts"):
        memsim.predict(dict(model="mixtral-8x7b", methods=["qlora"]))
