"""The measured profile `memsim calibrate` writes, and the transfer model read from it."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsim.calibration import MeasuredProfile, link_fit, transfer_curve
from memsim.cli import app
from memsim.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
H100 = ROOT / "hardware" / "measured" / "h100-sxm-80gb.yaml"


def test_the_committed_h100_profile_loads_with_provenance():
    p = MeasuredProfile.from_path(H100)
    assert p.provenance.device.startswith("NVIDIA H100") and p.provenance.driver and p.provenance.date
    assert {m.dtype for m in p.matmul} == {"bf16", "fp16", "fp32"}
    best_bf16 = max(m.flops_per_s for m in p.matmul if m.dtype == "bf16")
    assert 0.5e15 < best_bf16 < 989.4e12  # below the datasheet's dense peak, as a real run is
    assert 2.5e12 < p.device_copy[-1].bytes_per_s < 3.35e12  # below the 3.35 TB/s of HBM3


def test_pinned_transfers_run_near_pcie_gen5_and_pageable_ones_slower():
    p = MeasuredProfile.from_path(H100)
    gib = 2**30
    pinned = gib / p.transfer_seconds(gib, "host_to_device", pinned=True)
    pageable = gib / p.transfer_seconds(gib, "host_to_device", pinned=False)
    assert 45e9 < pinned < 63.0e9  # PCIe 5.0 x16: 63.0 GB/s per direction before protocol overhead
    assert pageable < pinned / 2


def test_transfer_curve_goes_through_its_points_and_extends_its_ends():
    pts = [(2**20, 1e-4), (2**22, 3e-4), (2**24, 1e-3)]
    assert transfer_curve(pts, 2**22) == pytest.approx(3e-4)
    assert transfer_curve(pts, 3 * 2**20) == pytest.approx(1e-4 + 2 / 3 * 2e-4)  # two thirds of the way
    assert transfer_curve(pts, 2**25) == pytest.approx(1e-3 + 2**24 * (1e-3 - 3e-4) / (2**24 - 2**22))
    latency, bandwidth = link_fit([(n, 5e-6 + n / 50e9) for n in (2**20, 2**24, 2**28)])
    assert latency == pytest.approx(5e-6) and bandwidth == pytest.approx(50e9)


def test_a_profile_without_pageable_points_says_so(tmp_path):
    p = MeasuredProfile.from_path(H100).model_copy(update={"transfer": []})
    with pytest.raises(InputError, match="pageable host_to_device"):
        p.transfer_seconds(2**20, "host_to_device", pinned=False)


def test_bad_profile_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprovenance: {}\n")
    with pytest.raises(InputError) as e:
        MeasuredProfile.from_path(bad)
    assert "\n" not in str(e.value)


def test_calibrate_without_a_gpu_is_a_one_line_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = CliRunner().invoke(app, ["calibrate", "--out", "/dev/null"])
    assert r.exit_code == 2 and "needs a CUDA device" in r.output


def test_update_names_the_sections_it_can_measure_again():
    r = CliRunner().invoke(app, ["calibrate", "--update", str(H100), "--only", "matmuls"])
    assert r.exit_code == 2 and "memory_kernels" in r.output and "not matmuls" in r.output
    r = CliRunner().invoke(app, ["calibrate", "--update", str(H100)])
    assert r.exit_code == 2 and "--only" in r.output


H200 = ROOT / "hardware" / "measured" / "h200.yaml"


def _grid_profile(rates: dict) -> MeasuredProfile:
    """A profile of `rates` {(m, n, k): FLOP/s} in bf16, on the H200 profile's provenance."""
    from memsim.calibration import MatmulPoint

    base = MeasuredProfile.from_path(H200)
    pts = [MatmulPoint(dtype="bf16", m=m, n=n, k=k, seconds=2 * m * n * k / r, flops_per_s=r) for (m, n, k), r in rates.items()]
    return base.model_copy(update={"matmul": pts})


def test_matmul_rates_interpolate_in_log_space_over_a_calibrated_grid():
    axis = (256, 4096)
    rates = {(m, n, k): 1e14 * (2 if m == 4096 else 1) * (3 if n == 4096 else 1) * (5 if k == 4096 else 1)
             for m in axis for n in axis for k in axis}
    p = _grid_profile(rates)
    assert p.matmul_rate(256, 4096, 256, "bf16") == pytest.approx(3e14)  # a grid point
    assert p.matmul_rate(1024, 256, 256, "bf16") == pytest.approx(1e14 * 2**0.5)  # half way in log m
    assert p.matmul_rate(64, 9999, 1024, "bf16") == pytest.approx(3e14 * 5**0.5)  # edges clamp
    assert p.matmul_rate(256, 256, 256, "fp32") is None


def test_a_scattered_old_profile_falls_back_to_the_nearest_product():
    p = _grid_profile({(1, 4096, 4096): 1e12, (4096, 4096, 4096): 6e14, (4096, 14336, 4096): 7e14})  # no full grid
    assert p.matmul_rate(2, 4096, 4096, "bf16") == 1e12 and p.matmul_rate(8192, 4096, 4096, "bf16") == 6e14


def test_h200_memory_kernels_by_layout_and_size():
    k = MeasuredProfile.from_path(H200).memory_kernels
    big = 2**29
    assert k.bandwidth("contiguous", big) > 2 * k.bandwidth("broadcast", big)  # the vectorized kernel
    assert k.bandwidth("cat", big) > 4 * k.bandwidth("cat_strided", big)  # a cropped cache's cat
    pts = sorted((p.bytes, p.bytes_per_s) for p in k.layouts if p.layout == "strided" and p.dtype_bytes == 2)
    (n0, r0), (n1, r1) = pts[:2]
    mid = (n0 * n1) ** 0.5
    assert k.bandwidth("strided", mid) == pytest.approx((r0 + r1) / 2)  # linear in log bytes
    assert k.bandwidth("strided", 1) == r0 and k.bandwidth("strided", 2**40) == pts[-1][1]
    assert k.bandwidth("no-such-layout", big) is None
    # fp32 points, where measured, serve fp32 kernels; bf16's serve the layouts measured in bf16 alone.
    fp32 = sorted((p.bytes, p.bytes_per_s) for p in k.layouts if p.layout == "broadcast" and p.dtype_bytes == 4)
    n, rate = fp32[0]
    assert k.bandwidth("broadcast", n, 4) == rate != k.bandwidth("broadcast", n)
    assert not any(p.layout == "reduce" and p.dtype_bytes == 4 for p in k.layouts)
    assert k.bandwidth("reduce", big, 4) == k.bandwidth("reduce", big)


def test_attention_rate_follows_the_calls_work():
    from memsim.calibration import AttentionPoint

    p = MeasuredProfile.from_path(H200).model_copy(update={"attention": [
        AttentionPoint(head_dim=128, masked=False, direction="forward", flops_per_s=2e14, seq=1024),
        AttentionPoint(head_dim=128, masked=False, direction="forward", flops_per_s=8e14, seq=4096)]})
    short, long = p.attention
    assert long.flops == 16 * short.flops  # the score matrix grows with the square of the length
    at_2048 = p.attention_rate(128, False, False, 4 * short.flops)
    assert at_2048 == pytest.approx(4e14)  # geometric between the two, in log FLOPs
    # 4x the heads at 1024 tokens is the work of 2048 tokens: the same rate.
    many_heads = AttentionPoint(head_dim=128, masked=False, direction="forward", flops_per_s=1.0, seq=1024, batch_heads=4 * short.batch_heads)
    assert p.attention_rate(128, False, False, many_heads.flops) == pytest.approx(at_2048)
    assert p.attention_rate(120, False, False, 1.0) == pytest.approx(2e14)  # nearest head dim, the smaller end
    assert p.attention_rate(128, True, False, short.flops) is None


def test_transfer_sizes_are_refined_where_the_line_between_two_misses():
    from memsim.calibration import REFINE_LARGEST, TRANSFER_SIZES, refine_sizes, transfer_curve

    MiB = 2**20
    # A pageable copy's shape as measured: 12 GB/s up to a break at 52 MiB, 8 GB/s above, 20 µs latency.
    def copy_seconds(n):
        return 20e-6 + n / (12e9 if n <= 52 * MiB else 8e9)

    asked = []

    def measure(n):
        asked.append(n)
        return (copy_seconds(n),)

    grid = {n: (copy_seconds(n),) for n in TRANSFER_SIZES}
    refined = refine_sizes(grid, measure, tolerance=0.05, depth=4)
    assert set(grid) < set(refined) and all(n % 4096 == 0 for n in asked)
    curve = lambda pts, n: transfer_curve(sorted((m, t[0]) for m, t in pts.items()), n)
    # Away from the break both grids are exact; at 48 MiB only the refined one is.
    assert curve(grid, 48 * MiB) / copy_seconds(48 * MiB) - 1 > 0.2
    assert abs(curve(refined, 48 * MiB) / copy_seconds(48 * MiB) - 1) < 0.05
    # Only the pair around the break is refined past the first level (one midpoint per pair up to
    # REFINE_LARGEST), and nothing above it is measured again.
    pairs = sum(1 for b in TRANSFER_SIZES[1:] if b <= REFINE_LARGEST)
    assert len(asked) - pairs <= 2 * 3 and max(asked) < REFINE_LARGEST


def test_a_train_steps_host_time_splits_into_its_phases():
    from executors.host_costs import train_phases

    per_kernel = {"train:forward": (10e-6, 100), "train:forward-backward": (12e-6, 300), "train:optimizer": (20e-6, 20)}
    phases = train_phases(per_kernel, "train")
    assert phases["forward"] == pytest.approx([1e-3, 100])
    assert phases["backward"] == pytest.approx([2.6e-3, 200])  # forward-backward less forward
    assert phases["optimizer"] == pytest.approx([4e-4, 20])
    launch = MeasuredProfile.from_path(H200).launch.model_copy(update={"phases": {"train": phases}})
    assert launch.phases["train"]["backward"][1] == 200


def test_a_runs_own_host_measure_moves_the_deep_steps_with_the_shallow_ones():
    launch = MeasuredProfile.from_path(H200).launch
    launch = launch.model_copy(update={"deep": {"forward": [20e-6, 700], "train": [25e-6, 2000]}})
    per_kernel, kernels = launch.host_step("forward")
    # A run's host_launch as runs write it, and as older runs did (a field per figure).
    for fields in ({"steps": {"forward": [1.5 * per_kernel, kernels]}}, {"hf_forward_host_per_kernel_s": 1.5 * per_kernel}):
        run = launch.measured_again(fields)
        assert run.host_step("forward") == (pytest.approx(1.5 * per_kernel), kernels)
        assert run.deep_step("forward") == (pytest.approx(30e-6), 700)  # moved as its shallow step did
        assert run.deep_step("train") == (pytest.approx(25e-6), 2000)  # the run did not measure train again
        assert run.host_step("decode") == launch.host_step("decode")
    assert launch.measured_again({}) is launch and launch.deep_step("lora-train") == (0.0, 0)


# Every committed profile, written with a field per calibration step.
OLD_FORMAT_PROFILES = [*sorted((ROOT / "hardware" / "measured").glob("*.yaml")), ROOT / "data" / "validation" / "h200-machine-f.yaml"]


@pytest.mark.parametrize("path", OLD_FORMAT_PROFILES, ids=lambda p: p.name)
def test_a_profile_with_a_field_per_calibration_step_loads_into_steps(path):
    import yaml

    from memsim.calibration import LaunchCosts

    raw = yaml.safe_load(path.read_text())["launch"]
    assert any(k.startswith("hf_") for k in raw)  # the committed profiles keep the older form
    launch = MeasuredProfile.from_path(path).launch
    for step in ("forward", "train", "decode", "lora-train", "ckpt-train"):
        field = "hf_" + step.replace("-", "_")
        assert launch.host_step(step) == (raw.get(f"{field}_host_per_kernel_s", 0.0), raw.get(f"{field}_kernels", 0))
        assert launch.deep_step(step) == tuple(raw.get("hf_deep", {}).get(step, (0.0, 0)))
    assert launch.phases == {step: raw[f"hf_{step.replace('-', '_')}_phases"] for step in ("train", "lora-train")
                             if f"hf_{step.replace('-', '_')}_phases" in raw}
    # Its upgraded form reads the same.
    again = LaunchCosts(**launch.model_dump())
    assert again == launch and not any(k.startswith("hf_") for k in launch.model_dump())


def test_a_profile_in_the_steps_form_round_trips(tmp_path):
    profile = MeasuredProfile.from_path(H200)
    path = tmp_path / "h200.yaml"
    path.write_text(profile.to_yaml())
    assert "hf_" not in path.read_text() and "steps:" in path.read_text()
    again = MeasuredProfile.from_path(path)
    assert again.launch == profile.launch and again == profile


def test_a_profile_without_the_forward_and_train_steps_is_a_one_line_error(tmp_path):
    import yaml

    raw = yaml.safe_load(H200.read_text())
    raw["launch"] = {"gpu_kernel_s": 1e-6, "host_op_s": 5e-6, "steps": {"decode": [2e-5, 180]}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError) as e:
        MeasuredProfile.from_path(path)
    assert "\n" not in str(e.value) and "forward and train" in str(e.value)


def test_every_methods_host_step_is_a_calibration_step():
    from memsim.calibration import HOST_CALIBRATION_STEPS
    from memsim.methods import METHODS

    assert {"forward", "train", "decode"} <= set(HOST_CALIBRATION_STEPS)
    own = {cls.host_step: cls for cls in METHODS.values() if cls.host_step}
    assert own and set(own) <= set(HOST_CALIBRATION_STEPS)
    for step, cls in own.items():
        assert HOST_CALIBRATION_STEPS[step] == ("train", list(cls.host_methods))


def test_the_host_calibration_steps_run_through_on_the_cpu():
    # On a GPU these time the host; here they only run (no CUDA kernels to count), so that a
    # broken step fails in CI and not in a device session.
    from executors.host_costs import _hf_host_per_kernel, phase_steps, step_figures, train_phases
    from memsim.calibration import HOST_CALIBRATION_STEPS, LaunchCosts

    out = _hf_host_per_kernel(quiet=True, device="cpu")
    parts = [f"{p}:{w}" for p in ("train", "lora-train") for w in ("forward", "forward-backward", "optimizer")]
    assert set(out) == {"forward", "train", "lora-train", "decode", "ckpt-train", *parts}
    assert set(out) == {*HOST_CALIBRATION_STEPS, *(f"{p}:{w}" for p in phase_steps() for w in ("forward", "forward-backward",
                                                                                                 "optimizer"))}
    assert all(per > 0 and kernels == 0 for per, kernels in out.values())
    # What launches() writes of them reads back as a launch section.
    launch = LaunchCosts(gpu_kernel_s=1e-6, host_op_s=5e-6, steps=step_figures(out),
                         phases={step: train_phases(out, step) for step in phase_steps()})
    assert launch.host_step("ckpt-train") == (out["ckpt-train"][0], 0) and set(launch.phases) == {"train", "lora-train"}


def test_the_launch_section_keeps_each_steps_median_round():
    from executors.host_costs import median_round

    rounds = [{"forward": (30e-6, 185), "decode": (23e-6, 181)}, {"forward": (21e-6, 185), "decode": (40e-6, 181)},
              {"forward": (22e-6, 185), "decode": (24e-6, 181)}]
    assert median_round(rounds) == {"forward": (22e-6, 185), "decode": (24e-6, 181)}  # each step its own middle


def test_measuring_a_section_again_keeps_the_others_provenance():
    from executors.calibrate import replaced

    old = MeasuredProfile.from_path(H200)
    later = old.provenance.model_copy(update={"date": "2027-01-02", "driver": "999.1"})
    new = replaced(old, {"device_copy": [dict(bytes=2**20, seconds=1e-6, bytes_per_s=2e12)]}, later)
    assert new.provenance == later and new.section_provenance["device_copy"] == later
    assert new.section_provenance["matmul"] == old.provenance and new.matmul == old.matmul
    again = replaced(new, {"matmul": []}, later.model_copy(update={"date": "2027-02-03"}))
    assert again.section_provenance["device_copy"] == later  # kept from the update before
