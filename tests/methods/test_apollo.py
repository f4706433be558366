"""APOLLO and APOLLO-Mini: a stored random projector and low-rank moments, against apollo-torch."""

import pytest

import memsim
from memsim.methods.apollo import ApolloAdamW
from memsim.params import Param


def _opt(rank: int, scale_type: str) -> ApolloAdamW:
    return ApolloAdamW(rank=rank, update_gap=200, scale=1.0, scale_type=scale_type, targets=("q_proj",))


def test_the_projector_and_moments_follow_the_gradients_shape():
    tall = Param(2048, 512, 2, "q_proj")
    assert _opt(64, "channel").state(tall) == (2048 * 64 * 2, 2048 * 64 * 2, 64 * 512 * 2, 2)
    assert _opt(1, "tensor").state(tall)[:3] == (2048 * 2, 2048 * 2, 512 * 2)  # APOLLO-Mini: (2048, 1), (1, 512)


@pytest.mark.parametrize("rank,scale_type", [(64, "channel"), (1, "tensor")])
def test_apollo_torchs_own_state_matches(rank, scale_type):
    torch = pytest.importorskip("torch")
    apollo = pytest.importorskip("apollo_torch")
    p = torch.nn.Parameter(torch.zeros(2048, 512, dtype=torch.bfloat16))
    opt = apollo.APOLLOAdamW([{"params": [p], "rank": rank, "proj": "random", "scale_type": scale_type, "scale": 1.0,
                               "update_proj_gap": 200, "proj_type": "std"}])
    for _ in range(2):  # the second step keeps the scaled gradient's norm in the state
        p.grad = torch.randn_like(p)
        opt.step()
    st = opt.state[p]
    real = (st["exp_avg"], st["exp_avg_sq"], st["projector"].ortho_matrix, st["scaled_grad"])
    assert tuple(t.numel() * t.element_size() for t in real) == _opt(rank, scale_type).state(Param(2048, 512, 2, "q_proj"))


def test_apollo_mini_holds_less_than_apollo():
    w = dict(model="llama-3-8b", hardware="h200", seq=1024)
    full, mini = (memsim.predict(dict(w, methods=[m])).breakdown_bytes["optimizer_state"] for m in ("apollo", "apollo-mini"))
    assert mini < full < memsim.predict(w).breakdown_bytes["optimizer_state"]


def test_apollo_and_galore_do_not_combine():
    with pytest.raises(memsim.InputError, match="cannot be combined"):
        memsim.Workload.parse(dict(methods=["apollo", "galore"]))
