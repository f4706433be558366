"""torchao's AdamW4bit and AdamWFp8: packed 4-bit and e4m3 moments, against torchao's own buffers."""

import pytest

from memsim.methods import AdamW4bit, AdamWFp8
from memsim.params import Param

LARGE = Param(1024, 1024, 2)


def test_4bit_packs_two_codes_a_byte_with_a_scale_per_128():
    assert AdamW4bit().state(LARGE) == (2**19, 8192 * 4, 16 * 4) * 2
    assert AdamW4bit().state(Param(100, 0, 2)) == (200, 200)


def test_fp8_keeps_a_code_a_byte_and_no_map():
    assert AdamWFp8().state(LARGE) == (2**20, 4096 * 4) * 2


@pytest.mark.parametrize("memsim_cls,torchao_name", [(AdamW4bit, "AdamW4bit"), (AdamWFp8, "AdamWFp8")])
def test_torchao_own_buffers_match(memsim_cls, torchao_name):
    torch = pytest.importorskip("torch")
    optim = pytest.importorskip("torchao.optim")
    p = torch.nn.Parameter(torch.zeros(1024, 1024, dtype=torch.bfloat16))
    opt = getattr(optim, torchao_name)([p])
    real = []
    for signed in (True, False):
        b = opt._new_buffer(p, signed)
        real += [t.numel() * t.element_size() for t in (b.codes, b.scale, getattr(b, "qmap", None)) if t is not None]
    assert sorted(real) == sorted(memsim_cls().state(LARGE))
