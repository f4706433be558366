"""AdamW8bit: bitsandbytes' and torchao's quantized moments, held against the libraries' own state."""

import pytest

import memsim
from memsim.methods import AdamW8bit
from memsim.params import Param, Params

SMALL, LARGE = Param(64, 32, 2), Param(1024, 1024, 2)


def test_bitsandbytes_quantizes_from_4096_elements_and_keeps_fp32_below():
    assert AdamW8bit().state(SMALL) == (64 * 32 * 4, 64 * 32 * 4)  # fp32 whatever the dtype
    assert AdamW8bit().state(LARGE) == (2**20, 2**20, 4096 * 4, 4096 * 4)
    assert AdamW8bit().shared_state(Params((SMALL,), (LARGE,), 2)) == (1024, 1024)
    assert AdamW8bit().shared_state(Params((SMALL,), (), 0)) == ()


def test_torchao_quantizes_whole_blocks_only_and_keeps_the_parameters_dtype_below():
    ao = AdamW8bit(impl="torchao")
    assert ao.state(SMALL) == (SMALL.nbytes, SMALL.nbytes)
    assert ao.state(Param(4097, 1, 2)) == (4097 * 2, 4097 * 2)  # not a whole number of 256-blocks
    assert ao.state(LARGE) == (2**20, 4096 * 4, 1024) * 2


def test_an_8b_model_keeps_about_2_bytes_a_parameter():
    w = dict(model="llama-3-8b", hardware="80GiB", batch=1, seq=512)
    state = memsim.predict(dict(w, optimizer="adamw8bit")).breakdown_bytes["optimizer_state"]
    params = memsim.load_model("llama-3-8b").param_count()
    assert 2.03 < state / params < 2.04  # 2 codes + 2 x 4/256 absmax


def _real_state(opt, p):
    return sorted(t.numel() * t.element_size() for t in opt.state[p].values() if hasattr(t, "numel"))


def test_bitsandbytes_own_state_matches():
    torch = pytest.importorskip("torch")
    bnb = pytest.importorskip("bitsandbytes")
    params = [torch.nn.Parameter(torch.zeros(s, dtype=torch.bfloat16)) for s in ((1024, 1024), (64, 32))]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = bnb.optim.AdamW8bit(params)
    opt.step()
    big = [n for n in _real_state(opt, params[0])]
    assert sorted(AdamW8bit().state(LARGE) + (1024, 1024)) == big  # its two maps are referenced from the state
    assert _real_state(opt, params[1]) == sorted(AdamW8bit().state(SMALL))


def test_torchao_own_buffers_match():
    torch = pytest.importorskip("torch")
    optim = pytest.importorskip("torchao.optim")
    p = torch.nn.Parameter(torch.zeros(1024, 1024, dtype=torch.bfloat16))
    opt = optim.AdamW8bit([p])
    buffers = [opt._new_buffer(p, True), opt._new_buffer(p, False)]
    real = sorted(t.numel() * t.element_size() for b in buffers for t in (b.codes, b.scale, b.qmap))
    assert real == sorted(AdamW8bit(impl="torchao").state(LARGE))
