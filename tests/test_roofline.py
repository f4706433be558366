"""Time on the roofline (memsim.roofline): kernels recorded by the tape, timed on a device."""

import pytest
from typer.testing import CliRunner

from memsim.cli import app
from memsim.predict import predict_time, step_config
from memsim.roofline import _LaunchQueue, _shape
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


def _costs(w: dict) -> list[OpCost]:
    cfg = step_config(Workload.parse({**H100, **w}))
    with recording_costs():
        prog = build_program(cfg)
    return [ev[0] for seg in prog.segments for ev in seg.events if ev[1] == COST]


def test_kernels_carry_their_memory_layout():
    by = {c.name: c for c in _costs(dict(model="tinyllama-1.1b", batch=1, seq=256))}
    assert by["rope.mul_cos"].layout == "strided" and by["rope.cat"].layout == "cat_strided"
    assert by["norm.mul"].layout == "broadcast_rows" and by["norm.weight"].layout == "broadcast"
    assert by["norm.to_fp32"].layout == "cast" and by["norm.mean"].layout == "reduce"
    assert by["residual.attn"].layout == "contiguous" and by["optimizer.step"].layout == "foreach"


def test_backward_products_name_their_gradients_and_pass_through_backward_launches_nothing():
    costs = _costs(dict(model="tinyllama-1.1b", batch=1, seq=256, methods=[{"name": "lora", "rank": 8}]))
    by = {c.name: c for c in costs}
    assert by["q_proj.bwd"].grads == "x"  # frozen base weight: the input's gradient only
    # The adapter's weight gradient, and its input's past the first layer (frozen embeddings feed
    # layer 0); peft's adapters are fp32.
    assert {c.grads for c in costs if c.name == "q_proj.lora_A.bwd"} == {"w", "wx"} and by["q_proj.lora_A"].dtype_bytes == 4
    assert "residual.attn.bwd" not in by  # AddBackward hands the gradient on
    assert any(c.name.startswith("grad.") and c.name.endswith(".sum") for c in costs)  # the residual stream's sums


def test_the_launch_queue_lies_between_the_longer_and_the_sum_of_host_and_gpu():
    q = _LaunchQueue()
    for _ in range(100):
        q.run(1, 1e-6, 10e-6)  # tiny kernels: the GPU waits on the host
    assert q.gpu == pytest.approx(100 * 10e-6 + 1e-6)
    q.run(1, 5e-3, 10e-6)  # a long one: the host runs ahead
    for _ in range(100):
        q.run(1, 1e-6, 10e-6)
    host, gpu = q.host, 200 * 1e-6 + 5e-3
    assert max(host, gpu) <= q.gpu <= host + gpu
    assert q.gpu == pytest.approx(101 * 10e-6 + 5e-3 + 100 * 1e-6)  # the queued tiny kernels run back to back


def _with_launch(profile, steps=None, deep=None):
    """`profile` with these calibration steps' figures ({step: [host seconds per kernel, kernels]})
    in place of its own, and `deep` in place of its deep steps where given."""
    launch = profile.launch
    update = {"steps": launch.steps | (steps or {}), "deep": launch.deep if deep is None else deep}
    return profile.model_copy(update={"launch": launch.model_copy(update=update)})


def _lora():
    from memsim.methods import Methods, parse_method

    return Methods((parse_method({"name": "lora"}),))


def test_host_cost_per_tape_kernel_comes_from_the_calibration_step():
    from memsim.catalog import load_measured
    from memsim.host_time import _calibration_tape_counts, host_costs

    # Measured at one depth: all of it per kernel.
    h200 = _with_launch(load_measured("h200"), deep={})
    launch = h200.launch
    tape = lambda step: _calibration_tape_counts(step)[0]
    per_kernel, kernels = launch.host_step("train")
    expected = per_kernel * kernels / tape("train")
    assert host_costs(h200, "train")[:2] == pytest.approx((expected, 0.0))
    assert tape("train") < kernels  # the tape names fewer kernels than run
    unmeasured = _with_launch(h200, {"lora-train": [launch.host_step("lora-train")[0], 0]})
    assert host_costs(unmeasured, "train", _lora())[:2] == pytest.approx((expected, 0.0))  # no LoRA step measured: the plain one
    lora = _with_launch(h200, {"lora-train": [1e-4, 900]})
    assert host_costs(lora, "train", _lora()).per_kernel == pytest.approx(1e-4 * 900 / tape("lora-train"))
    assert host_costs(lora, "train").per_kernel == pytest.approx(expected)  # without LoRA, the plain step's
    assert host_costs(load_measured("h100-sxm-80gb"), "train") == (None, 0.0, 0.0)  # no kernel counts there


def test_checkpoints_hooks_cost_the_host_what_the_checkpointed_calibration_step_took_beyond_its_kernels():
    from memsim.calibration import HOST_CALIBRATION_DEEP_LAYERS as DEEP, HOST_CALIBRATION_MODEL
    from memsim.catalog import load_measured
    from memsim.host_time import _calibration_tape_counts, host_costs
    from memsim.predict import phase_times

    # The tape: every tensor a checkpointed layer saves, packed twice and unpacked once.
    (kernels, hooks), (deep_kernels, deep_hooks) = _calibration_tape_counts("ckpt-train"), _calibration_tape_counts("ckpt-train", DEEP)
    assert _calibration_tape_counts("train")[1] == 0 and hooks > 0 and hooks % 3 == 0
    assert deep_hooks == hooks * DEEP // HOST_CALIBRATION_MODEL["num_hidden_layers"]
    # Calibration steps of 1 ms + 20 µs a tape kernel, the checkpointed ones 8 µs a hook more
    # (the profiler counting 10% more kernels than the tape).
    h200 = load_measured("h200")
    line = lambda tape: 1e-3 + 20e-6 * tape
    plain, deep_plain = _calibration_tape_counts("train")[0], _calibration_tape_counts("train", DEEP)[0]
    profile = _with_launch(h200, {
        "train": [line(plain) / round(1.1 * plain), round(1.1 * plain)],
        "ckpt-train": [(line(kernels) + 8e-6 * hooks) / round(1.1 * kernels), round(1.1 * kernels)]},
        deep={"train": [line(deep_plain) / round(1.1 * deep_plain), round(1.1 * deep_plain)],
              "ckpt-train": [(line(deep_kernels) + 8e-6 * deep_hooks) / round(1.1 * deep_kernels), round(1.1 * deep_kernels)]})
    costs = host_costs(profile, "train")
    assert costs.per_kernel == pytest.approx(20e-6, rel=1e-2) and costs.per_hook == pytest.approx(8e-6, rel=2e-2)
    assert host_costs(profile, "prefill").per_hook == 0.0
    # A checkpointed step pays its hooks; without a checkpointed calibration step, none (a run's
    # host_launch in either form saying so).
    w = dict(model="tinyllama-1.1b", hardware="h200", batch=1, seq=32, methods=["activation-checkpointing"])
    step = phase_times(w)["train"]
    unhooked = phase_times(w, {"steps": {"ckpt-train": [h200.launch.host_step("ckpt-train")[0], 0]}})["train"]
    assert step.host_seconds > unhooked.host_seconds
    assert phase_times(w, {"hf_ckpt_train_kernels": 0})["train"].host_seconds == unhooked.host_seconds
    assert step.bound == "host" and any("saved-tensor hooks" in a for a in step.assumptions)


def test_two_depths_split_a_steps_host_time_into_a_fixed_part_and_a_part_per_kernel(monkeypatch):
    from memsim.calibration import HOST_CALIBRATION_DEEP_LAYERS
    from memsim.catalog import load_measured
    from memsim.host_time import _calibration_tape_counts, host_costs
    from memsim.predict import phase_times

    h200 = load_measured("h200")
    shallow, deep = _calibration_tape_counts("forward")[0], _calibration_tape_counts("forward", HOST_CALIBRATION_DEEP_LAYERS)[0]
    assert deep > 3 * shallow
    # Calibration steps that took 1 ms + 20 µs a tape kernel (the profiler counts 10% more kernels).
    per_profiled = lambda tape: (1e-3 + 20e-6 * tape) / round(1.1 * tape)
    two = _with_launch(h200, {"forward": [per_profiled(shallow), round(1.1 * shallow)],
                              "decode": [h200.launch.host_step("decode")[0], 0]},  # decode: the forward's
                       deep={"forward": [per_profiled(deep), round(1.1 * deep)]})
    rate, fixed, _ = host_costs(two, "prefill")
    assert rate == pytest.approx(20e-6, rel=1e-3) and fixed == pytest.approx(1e-3, rel=1e-2)
    # A deep model's host time: the fixed part once, not spread over its every layer.
    one = _with_launch(two, deep={})
    assert host_costs(one, "prefill")[1] == 0.0
    import memsim.catalog as catalog

    w = dict(model="tinyllama-1.1b", hardware="h200", task="decode", batch=1, seq=128)
    monkeypatch.setattr(catalog, "load_measured", lambda name: two)
    split = phase_times(w)["decode"]
    monkeypatch.setattr(catalog, "load_measured", lambda name: one)
    spread = phase_times(w)["decode"]
    tape = sum(k.count for k in split.kernels)
    assert split.host_seconds == pytest.approx(1e-3 + 20e-6 * tape, rel=1e-2)
    assert spread.host_seconds > 1.1 * split.host_seconds  # 22 layers at a 4-layer call's rate per kernel


def test_moe_experts_run_at_one_experts_product_rate():
    costs = _costs(dict(model="qwen1.5-moe-a2.7b", task="train", batch=1, seq=512))
    gu = next(c for c in costs if c.name == "experts.gate_up")
    assert gu.kind == "grouped" and gu.group[0] == 512 * 4 // 60 and gu.group[1:] == (2 * 1408, 2048)


def test_a_for_loop_optimizers_kernels_cost_the_host_a_bare_op_each():
    from memsim.catalog import load_measured
    from memsim.host_time import host_costs
    from memsim.predict import phase_times

    base = dict(model="tinyllama-1.1b", hardware="h200", batch=1, seq=256)
    loop, foreach = (phase_times(dict(base, optimizer={"impl": impl}))["train"] for impl in ("for-loop", "foreach"))
    opt = {impl: next(k for k in st.kernels if k.name == "optimizer.step") for impl, st in (("loop", loop), ("foreach", foreach))}
    launch = load_measured("h200").launch
    assert launch.host_op_s < launch.host_step("train")[0]  # a bare op issues faster than a module's kernel
    # Same forward and backward; the optimizer's kernels at the bare op's host cost, the foreach's at the step's.
    extra = loop.host_seconds - foreach.host_seconds
    per_kernel = host_costs(load_measured("h200"), "train").per_kernel  # a tape kernel's, beyond the call's fixed part
    assert extra == pytest.approx(opt["loop"].count * launch.host_op_s - opt["foreach"].count * per_kernel, rel=1e-6)


def test_a_host_bound_step_says_it_scales_with_the_host():
    from memsim.predict import phase_times

    small = phase_times(dict(model="qwen2.5-0.5b", hardware="h200", task="decode", batch=1, seq=128))["decode"]
    large = phase_times(dict(model="llama-3-8b", hardware="h200", task="prefill", batch=2, seq=4096))["prefill"]
    assert small.bound == "host" and any(a.startswith("host-bound") for a in small.assumptions)
    assert large.bound != "host" and not any(a.startswith("host-bound") for a in large.assumptions)


def test_a_product_pays_for_whole_output_tiles():
    from memsim.catalog import load_hardware, load_measured
    from memsim.roofline import Rates

    profile = load_measured("h200")
    r = Rates(load_hardware("h200"), profile, "bf16", "train")
    # 960 columns run as 1024 do: the same time, 960/1024 of the FLOPs.
    assert r.product(4096, 960, 1024) == pytest.approx(profile.matmul_rate(4096, 1024, 1024, "bf16") * 960 / 1024)
    assert r.product(4096, 1024, 1000) == pytest.approx(profile.matmul_rate(4096, 1024, 1000, "bf16"))  # k is not tiled so
    assert r.product(64, 4096, 4096) == pytest.approx(profile.matmul_rate(64, 4096, 4096, "bf16"))  # below a tile: the grid's own


def test_fp32_sdpas_math_path_runs_safe_softmax_and_adds_the_mask_in_place():
    # attention.cpp / SoftMax.cpp as the profiler saw them (SmolLM2-360M fp32 on an H200, 32 layers):
    # per layer, isneginf 32, an and-reduce 32, where 64 (one of them the [L, S] mask's), one softmax
    # forward and one backward; the mask's add_ has no backward kernel.
    b, s, layers, heads = 1, 256, 22, 32
    cfg = step_config(Workload.parse({**H100, "model": "tinyllama-1.1b", "batch": b, "seq": s,
                                      "precision": {"weights": "fp32", "compute": "fp32"}}))
    with recording_costs():
        prog = build_program(cfg)
    costs = [(seg.repeat, ev[0]) for seg in prog.segments for ev in seg.events if ev[1] == COST]
    count = lambda name: sum(n * c.kernels for n, c in costs if c.name == name)
    scores = b * heads * s * s * 4
    assert all(count(n) == layers for n in ("math.isneginf", "math.all_masked_rows", "math.where_masked_rows",
                                             "math.mask_add_", "math.softmax", "math.softmax.bwd"))
    assert count("math.causal_mask") == 3 * layers and count("math.mask_add_.bwd") == 0
    by = {c.name: c for _, c in costs}
    assert by["math.isneginf"].bytes == scores + scores // 4  # fp32 in, bool out
    assert by["math.mask_add_"].bytes == 2 * scores + s * s * 4 and by["math.mask_add_"].layout == "broadcast"


def test_an_fp32_steps_memory_kernels_take_the_fp32_points_where_measured():
    from memsim.catalog import load_hardware, load_measured
    from memsim.roofline import Rates

    profile = load_measured("h200")  # its broadcast kernels measured in bf16 and in fp32
    kernels = profile.memory_kernels
    bf16_only = profile.model_copy(update={"memory_kernels": kernels.model_copy(update={
        "layouts": [p for p in kernels.layouts if p.dtype_bytes == 2]})})
    cost = OpCost("math.mask_add_", "memory", 2**29, layout="broadcast")
    hw = load_hardware("h200")
    fp32_rate = Rates(hw, profile, "fp32", "train").memory(cost)
    assert fp32_rate == kernels.bandwidth("broadcast", 2**29, 4) != kernels.bandwidth("broadcast", 2**29)
    assert Rates(hw, profile, "bf16", "train").memory(cost) == kernels.bandwidth("broadcast", 2**29)
    assert Rates(hw, bf16_only, "fp32", "train").memory(cost) == kernels.bandwidth("broadcast", 2**29)  # none measured in fp32


def test_a_cudnn_decode_step_says_a_new_key_length_costs_a_graph_build():
    from memsim.predict import phase_times

    def notes(hardware, task="decode", **extra):
        w = dict(model="qwen2.5-0.5b", hardware=hardware, task=task, batch=4, seq=512, **extra)
        return [n for st in phase_times(w).values() for n in st.assumptions if n.startswith("cuDNN attention")]

    assert len(notes("h200")) == 1 and len(notes("h200", task="generate", generate=8)) == 1  # the decode phase's
    assert notes("h200", task="prefill") == []
    assert notes("a100-80gb") == []  # sm80: flash attention, no graphs


def test_a_decode_step_takes_the_calibrations_decode_where_its_kernels_were_counted():
    from memsim.calibration import HOST_CALIBRATION_DEEP_LAYERS
    from memsim.catalog import load_measured
    from memsim.host_time import _calibration_tape_counts, host_costs

    committed = load_measured("h200")
    assert committed.launch.host_step("decode")[1]  # measured on a cache cropped back a call
    h200 = _with_launch(committed, {"decode": [committed.launch.host_step("decode")[0], 0]})
    assert host_costs(h200, "decode") == host_costs(h200, "prefill")  # uncounted: not used
    shallow, deep = _calibration_tape_counts("decode")[0], _calibration_tape_counts("decode", HOST_CALIBRATION_DEEP_LAYERS)[0]
    assert shallow > 0 and deep > 3 * shallow
    per_profiled = lambda tape: (0.5e-3 + 15e-6 * tape) / round(1.2 * tape)  # 0.5 ms + 15 µs a tape kernel
    measured = _with_launch(h200, {"decode": [per_profiled(shallow), round(1.2 * shallow)]},
                            deep={**h200.launch.deep, "decode": [per_profiled(deep), round(1.2 * deep)]})
    rate, fixed, _ = host_costs(measured, "decode")
    assert rate == pytest.approx(15e-6, rel=1e-2) and fixed == pytest.approx(0.5e-3, rel=3e-2)
    assert host_costs(measured, "prefill") == host_costs(h200, "prefill")
