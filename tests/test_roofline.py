"""Time on the roofline (memsim.roofline): kernels recorded by the tape, timed on a device."""

import pytest
from typer.testing import CliRunner

from memsim.cli import app
from memsim.predict import predict_time, step_config
from memsim.roofline import _shape
from memsim.runtimes.hf_steps import build_program
from memsim.tape import COST, OpCost, Tape, recording_costs
from memsim.workload import Workload

H100 = dict(hardware="h100-sxm-80gb")


def test_a_products_shape_comes_back_from_its_operands():
    m, n, k, d = 4096, 14336, 4096, 2
    assert _shape(OpCost("up_proj", "matmul", 0, operands=(m * k * d, n * k * d, m * n * d)), d) == (m, n, k)


def test_backward_of_a_frozen_weight_is_one_product_and_of_a_trained_one_two():
    def passes(weight_trainable: bool) -> int:
        tp = Tape(costs=True)
        x = tp.incoming("x", 64 * 32 * 2, requires_grad=True)
        w = tp.external("w", 16 * 32 * 2, requires_grad=weight_trainable, leaf=True)
        from memsim import ops

        y = ops.linear(tp, "proj", x, w, 64 * 16 * 2)
        tp.backward({id(y): tp.new("g", y.nbytes)})
        return [ev[0].passes for ev in tp.events if ev[1] == COST and ev[0].name == "proj.bwd"][0]

    assert passes(False) == 1 and passes(True) == 2


def test_every_kernel_of_a_step_is_on_the_program_and_memory_walks_ignore_them():
    cfg = step_config(Workload.parse(dict(model="tinyllama-1.1b", batch=1, seq=256, **H100)))
    assert not any(ev[1] == COST for seg in build_program(cfg).segments for ev in seg.events)  # memory only
    with recording_costs():
        prog = build_program(cfg)
    costs = [ev[0] for seg in prog.segments for ev in seg.events if ev[1] == COST]
    names = {c.name for c in costs}
    assert {"q_proj", "q_proj.bwd", "lm_head", "optimizer.step"} <= names
    assert any(c.kind == "attention" and c.name.startswith("sdpa.") and c.head_dim == 64 for c in costs)
    assert any(c.kind == "cat" and c.name == "rope.cat" for c in costs)


def test_a_long_prefill_is_compute_bound_and_twice_the_batch_takes_twice_as_long():
    one, _, _ = predict_time(dict(model="llama-3-8b", task="prefill", batch=1, seq=8192, **H100))
    two, tokens, st = predict_time(dict(model="llama-3-8b", task="prefill", batch=2, seq=8192, **H100))
    assert st.bound == "compute" and tokens == 2 * 8192
    assert 1.8 < two / one < 2.2


def test_small_decode_is_host_bound():
    _, tokens, st = predict_time(dict(model="qwen2.5-0.5b", task="decode", batch=1, seq=512, **H100))
    assert st.bound == "host" and tokens == 1


def test_roofline_cli_lists_kernels_and_plots(tmp_path):
    w = tmp_path / "w.yaml"
    w.write_text("model: tinyllama-1.1b\nhardware: h100-sxm-80gb\nbatch: 2\nseq: 512\n")
    png = tmp_path / "roof.png"
    r = CliRunner().invoke(app, ["roofline", str(w), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert "tokens/s" in r.output and png.stat().st_size > 10_000


def test_without_a_measured_profile_the_datasheet_is_a_lower_bound():
    _, _, st = predict_time(dict(model="tinyllama-1.1b", hardware="a100-80gb", batch=2, seq=512))
    assert any("lower bound" in a for a in st.assumptions)


def test_generate_is_a_prefill_then_its_decode_steps():
    from memsim.predict import phase_times

    w = dict(model="qwen2.5-0.5b", task="generate", batch=4, seq=512, generate=9, **H100)
    phases = phase_times(w)
    assert set(phases) == {"prefill", "decode"}
    total, tokens, _ = predict_time(w)
    assert total == pytest.approx(phases["prefill"].seconds + 8 * phases["decode"].seconds)
    assert tokens == 4 * 9
