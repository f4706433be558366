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
