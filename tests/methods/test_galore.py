"""GaLore: moments of a rank-r projection and a projector per projected matrix."""

import pytest

import memsim
from memsim.methods.galore import GaLoreAdamW, GaLoreAdamW8bit
from memsim.params import Param

OPT = GaLoreAdamW(rank=64, update_gap=200, scale=0.25, targets=("q_proj", "up_proj"))


def test_the_low_rank_side_follows_the_gradients_shape():
    tall, wide = Param(2048, 512, 2, "q_proj"), Param(512, 2048, 2, "up_proj")
    assert OPT.state(tall) == (2048 * 64 * 2, 2048 * 64 * 2, 64 * 512 * 2)  # moments (2048, 64), projector (64, 512)
    assert OPT.state(wide) == (64 * 2048 * 2, 64 * 2048 * 2, 512 * 64 * 2)  # moments (64, 2048), projector (512, 64)
    assert OPT.state(Param(2048, 512, 2, "down_proj")) == (2048 * 512 * 2,) * 2  # not a target: plain moments


def test_an_fp32_projector_is_a_view_that_keeps_the_whole_factor():
    assert OPT.state(Param(2048, 512, 4, "q_proj"))[2] == 512 * 512 * 4


def test_galore_torchs_own_state_matches():
    torch = pytest.importorskip("torch")
    galore = pytest.importorskip("galore_torch")
    params = [torch.nn.Parameter(torch.zeros(s, dtype=torch.bfloat16)) for s in ((2048, 512), (512, 2048))]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = galore.GaLoreAdamW([{"params": params, "rank": 64, "update_proj_gap": 200, "scale": 0.25, "proj_type": "std"}],
                             no_deprecation_warning=True)
    opt.step()
    for p, name in zip(params, ("q_proj", "up_proj")):
        st = opt.state[p]
        real = (st["exp_avg"], st["exp_avg_sq"], st["projector"].ortho_matrix)
        assert tuple(t.numel() * t.element_size() for t in real) == OPT.state(Param(*p.shape, 2, name))


def test_galore_torchs_8bit_state_matches(monkeypatch):
    """GaLoreAdamW8bit on the CPU (its unconditional torch.cuda.synchronize() made a no-op): each
    state tensor's storage, the projected parameter's 8-bit moments in the low-rank shape."""
    torch = pytest.importorskip("torch")
    galore = pytest.importorskip("galore_torch")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    weight = torch.nn.Parameter(torch.randn(512, 256, dtype=torch.bfloat16))
    norm = torch.nn.Parameter(torch.randn(64, dtype=torch.bfloat16))
    opt = galore.GaLoreAdamW8bit([{"params": [norm]}, {"params": [weight], "rank": 32, "update_proj_gap": 1, "scale": 0.25,
                                                      "proj_type": "std"}], lr=1e-3)
    for _ in range(2):
        (weight.float().sum() + norm.float().sum()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model = GaLoreAdamW8bit(rank=32, update_gap=1, scale=0.25, targets=("q_proj",))
    for p, name in ((norm, "layernorm"), (weight, "q_proj")):
        st = opt.state[p]
        held = [st[k] for k in ("state1", "state2", "absmax1", "absmax2", "unorm_vec") if k in st]
        if "projector" in st:
            held.append(st["projector"].ortho_matrix)
        shape = (p.shape[0], p.shape[1] if p.dim() == 2 else 0)
        assert sorted(t.numel() * t.element_size() for t in held) == sorted(model.state(Param(*shape, 2, name)))


def test_galore_with_8bit_adam_keeps_less_state():
    w = dict(model="qwen2.5-0.5b", hardware="h200", seq=512, methods=[{"name": "galore", "rank": 64}])
    full = memsim.predict(dict(w, optimizer="adamw")).breakdown_bytes["optimizer_state"]
    eight = memsim.predict(dict(w, optimizer="adamw8bit")).breakdown_bytes["optimizer_state"]
    assert eight < 0.6 * full


@pytest.mark.parametrize("optimizer", ["adamw", "adamw8bit"])
def test_layerwise_frees_each_gradient_as_backward_goes(optimizer):
    """An optimizer per parameter stepped from its gradient hook: the full gradients never
    accumulate, so with checkpointing (the step's peak) nearly all of them are saved."""
    w = dict(model="llama-3-8b", hardware="h200", seq=1024, optimizer=optimizer)
    whole = memsim.predict(dict(w, methods=[{"name": "galore", "update_gap": 1}, "activation-checkpointing"]))
    layerwise = memsim.predict(dict(w, methods=[{"name": "galore", "update_gap": 1, "layerwise": True}, "activation-checkpointing"]))
    grads = whole.breakdown_bytes["gradients"]
    assert layerwise.breakdown_bytes["gradients"] < 0.1 * grads
    assert layerwise.peak["gpu"].allocated_bytes < whole.peak["gpu"].allocated_bytes - 0.8 * grads


def test_it_saves_most_of_adams_state_on_an_8b_model():
    w = dict(model="llama-3-8b", hardware="h200", seq=1024, optimizer={"impl": "for-loop"})
    adam = memsim.predict(w).breakdown_bytes["optimizer_state"]
    galore = memsim.predict(dict(w, methods=[{"name": "galore", "rank": 128}])).breakdown_bytes["optimizer_state"]
    assert galore < 0.2 * adam


@pytest.mark.parametrize("method,optimizer,message", [
    ({"name": "galore", "rank": 5000}, "adamw", "methods.galore.rank: 5000 exceeds the smallest projected side"),
    ({"name": "galore"}, "sgd", "methods.galore: wraps optimizer adamw"),
    ({"name": "galore"}, {"name": "adamw8bit", "paged": True}, "GaLoreAdamW8bit is bitsandbytes' unpaged"),
    ({"name": "galore", "update_gap": 0}, "adamw", "methods.galore.update_gap"),
])
def test_bad_galore_input_is_one_line(method, optimizer, message):
    with pytest.raises(memsim.InputError, match=message):
        memsim.predict(dict(model="tinyllama-1.1b", methods=[method], optimizer=optimizer))
