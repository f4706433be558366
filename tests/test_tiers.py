"""Memory beyond the GPU's caching allocator: pinned host memory and CUDA managed memory."""

import pytest

import memsim
from memsim.program import Program
from memsim.tape import CPU, OPTIMIZER, on_tier
from memsim.tiers import _pinned_pool_bytes, load_host_capacity, power_of_two

W = dict(model="llama-3-8b", hardware="h200", batch=2, seq=2048, optimizer="sgd")


def test_pinned_blocks_round_to_powers_of_two():
    assert [power_of_two(n) for n in (1, 3, 1024, 1025, 117440512)] == [1, 4, 1024, 2048, 134217728]


def test_the_pinned_pool_keeps_each_size_class_at_its_own_peak():
    prog = Program()
    cpu = on_tier("activations", CPU)
    # 3000 B (a 4096 class) and 1000 B (1024) never alive together: each class's peak counts.
    prog.add("forward", [(3000, cpu, 1), (3000, cpu, -1), (1000, cpu, 1), (1000, cpu, -1)])
    assert _pinned_pool_bytes(prog) == 4096 + 1024


def test_offloaded_activations_leave_the_gpu_for_pinned_memory():
    plain, offloaded = memsim.predict(W), memsim.predict(dict(W, methods=["activation-offload"]))
    assert offloaded.peak["gpu"].allocated_bytes < plain.peak["gpu"].allocated_bytes
    assert "cpu" not in plain.peak and offloaded.peak["cpu"].reserved_bytes > 0
    # No catalog machine holds an H200: its host's capacity is unknown, and the report says so.
    assert "cpu" not in offloaded.capacity_bytes and any("no host named" in n for n in offloaded.notes)


def test_a_host_too_small_for_the_pinned_copies_does_not_fit():
    small = memsim.predict(dict(W, methods=["activation-offload"], host="16GiB"))
    assert not small.fits and small.headroom_bytes["cpu"] < 0
    assert memsim.predict(dict(W, methods=["activation-offload"], host="dgx-h100-host")).fits


def test_an_unknown_host_is_one_line():
    with pytest.raises(memsim.InputError, match="host: unknown cpu 'dgx-h99'; did you mean 'dgx-h100-host'"):
        memsim.Workload.parse(dict(W, host="dgx-h99"))


def test_paged_state_is_outside_the_allocator_but_on_the_device():
    paged = memsim.predict(dict(W, optimizer={"name": "adamw8bit", "paged": True}))
    unpaged = memsim.predict(dict(W, optimizer={"name": "adamw8bit"}))
    managed = paged.peak["managed"].allocated_bytes
    assert managed > 0 and paged.peak["gpu"].allocated_bytes < unpaged.peak["gpu"].allocated_bytes
    assert paged.peak["gpu"].device_bytes > paged.peak["gpu"].reserved_bytes + managed  # context + managed


def test_host_capacity_reads_a_size_a_host_or_the_gpus_machine():
    assert load_host_capacity("512GiB", None) == 512 * 2**30
    assert load_host_capacity("dgx-h100-host", None) == load_host_capacity(None, memsim.load_hardware("h100-sxm-80gb"))
    assert load_host_capacity(None, memsim.load_hardware("24GiB")) is None


def test_optimizer_state_categories_name_their_tier():
    assert on_tier(OPTIMIZER, "gpu") == OPTIMIZER and on_tier(OPTIMIZER, "managed") == "managed:optimizer_state"


def test_nvme_files_count_their_bytes_against_the_machines_ssd():
    from memsim.tape import NVME
    from memsim.tiers import load_ssd_capacity, tier_capacities, tier_peaks

    prog = Program()
    nvme = on_tier(OPTIMIZER, NVME)
    prog.add("optimizer", [(3000, nvme, 1), (5000, nvme, 1), (3000, nvme, -1), (1000, nvme, 1)])
    peaks = tier_peaks(prog, {NVME})
    assert peaks[NVME].allocated_bytes == peaks[NVME].reserved_bytes == 8000  # no allocator rounds a file
    rtx = memsim.load_hardware("rtx-4090")  # hardware/machines/workstation-rtx-4090.yaml: a 990 PRO 2TB
    assert load_ssd_capacity(rtx) == 2 * 10**12
    assert tier_capacities(peaks, None, rtx) == ({NVME: 2 * 10**12}, [])
    capacities, notes = tier_capacities(peaks, None, memsim.load_hardware("h200"))
    assert capacities == {} and notes == ["nvme: no catalog machine gives h200 an SSD (hardware/machines/): its capacity is not checked"]
