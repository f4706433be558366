"""The caching-allocator replay (memsim.allocator) against the rules of CUDACachingAllocator.cpp,
and, on a GPU, against torch's allocator itself on a random sequence of requests and frees."""

import random

import pytest

from memsim.allocator import MIB, CachingAllocator, OutOfMemory, replay
from memsim.program import Program
from memsim.simulator import simulate
from memsim.tape import Tape


def test_small_requests_share_a_2_mib_segment():
    a = CachingAllocator()
    a.malloc(1000)
    a.malloc(MIB)
    assert a.reserved == 2 * MIB and a.allocated == 1024 + MIB


def test_medium_requests_share_a_20_mib_segment_and_large_ones_are_rounded_to_2_mib():
    a = CachingAllocator()
    a.malloc(5 * MIB)
    a.malloc(5 * MIB)  # split from the same 20 MiB segment
    assert a.reserved == 20 * MIB
    a.malloc(11 * MIB + 1)
    assert a.reserved == 20 * MIB + 12 * MIB


def test_best_fit_split_and_merge():
    a = CachingAllocator()
    big = a.malloc(100 * MIB)
    a.free(big)
    x = a.malloc(60 * MIB)  # reuses the cached 100 MiB block, split (40 MiB left > 1 MiB)
    assert a.reserved == 100 * MIB
    a.malloc(50 * MIB)  # 40 MiB free is too small: a new segment
    assert a.reserved == 150 * MIB
    a.free(x)  # merges back with the free 40 MiB
    a.malloc(90 * MIB)
    assert a.reserved == 150 * MIB


def test_a_small_remainder_is_not_split_off_a_large_block():
    a = CachingAllocator()
    b = a.malloc(12 * MIB)
    a.free(b)
    a.malloc(12 * MIB - 600 * 1024)  # the 600 KiB left is not over 1 MiB: the whole block is taken
    assert a.allocated == 12 * MIB


def test_under_a_limit_cached_segments_are_released_then_it_runs_out():
    a = CachingAllocator(limit=100 * MIB)
    a.free(a.malloc(60 * MIB))
    a.malloc(70 * MIB)  # 60 + 70 > 100: the cached 60 MiB segment is released first
    assert a.reserved == 70 * MIB
    with pytest.raises(OutOfMemory):
        a.malloc(40 * MIB)


def test_replay_frees_by_size_and_category_and_reports_the_failing_request():
    p = Program()
    p.add("forward", [(30 * MIB, "activations", 1), (30 * MIB, "activations", 1), (30 * MIB, "activations", -1),
                      (50 * MIB, "temporaries", 1), (50 * MIB, "temporaries", -1), (30 * MIB, "activations", -1)])
    r = replay(p, steps=1)
    assert r.fits and r.peak_reserved == 110 * MIB and r.peak_allocated == 80 * MIB
    tight = replay(p, limit=70 * MIB, steps=1)
    assert not tight.fits and tight.requested == 50 * MIB


def test_a_free_that_names_its_storage_frees_that_block():
    """Two 8 MiB tensors share a 20 MiB segment; the older is freed first. Its own block comes free,
    which leaves two gaps (8 and 4 MiB) too small for 12 MiB: a new segment. Freeing the most
    recent instead would merge it with the 4 MiB tail into a 12 MiB gap that holds the request."""
    def program(named: bool) -> Program:
        a, b = ((1,), (2,)) if named else ((), ())
        p = Program()
        p.add("forward", [(8 * MIB, "activations", 1, *a), (8 * MIB, "activations", 1, *b), (8 * MIB, "activations", -1, *a),
                          (12 * MIB, "temporaries", 1), (12 * MIB, "temporaries", -1), (8 * MIB, "activations", -1, *b)])
        return p

    assert replay(program(named=True), steps=1).peak_reserved == 20 * MIB + 12 * MIB
    assert replay(program(named=False), steps=1).peak_reserved == 20 * MIB


def test_tape_events_name_their_storage():
    tp = Tape()
    x = tp.new("x", 100)
    y = tp.new("y", 100)
    tp.drop(x, y)
    assert [e[2:] for e in tp.events] == [(1, x.storage.key), (1, y.storage.key), (-1, x.storage.key), (-1, y.storage.key)]
    assert x.storage.key != y.storage.key


def test_a_steps_free_never_takes_a_resident_block():
    """A free that names the weights' category but stands for blocks the step allocated (autocast's
    cached weight casts, freed as one event) frees those blocks; the weights stay allocated."""
    p = Program()
    p.resident("weights", [40 * MIB], "weights")
    p.add("forward", [(20 * MIB, "activations", 1), (20 * MIB, "activations", 1), (40 * MIB, "weights", -1),
                      (30 * MIB, "temporaries", 1), (30 * MIB, "temporaries", -1)])
    for steps in (1, 2, 4):
        r = replay(p, steps=steps)
        assert r.peak_allocated == simulate(p).bytes == 80 * MIB, steps


def test_a_free_of_several_takes_the_blocks_no_later_free_claims():
    """Of two 8 MiB blocks, a later free claims the most recent: a 12 MiB free of several takes the
    older one and the 4 MiB block, which leaves no 12 MiB gap for the next request."""
    p = Program()
    p.add("forward", [(8 * MIB, "activations", 1), (8 * MIB, "activations", 1), (4 * MIB, "activations", 1),
                      (12 * MIB, "activations", -1), (12 * MIB, "temporaries", 1), (12 * MIB, "temporaries", -1),
                      (8 * MIB, "activations", -1)])
    r = replay(p, steps=1)
    assert r.peak_reserved == 20 * MIB + 12 * MIB and r.peak_allocated == 20 * MIB


def test_a_carried_block_replaced_by_a_larger_one_is_freed_every_step():
    """A decode step replaces each cached tensor with one a token longer: from the second step on,
    the free names the size it was built for, and takes the carried block that replaced it."""
    p = Program(carries=("kv_cache",))
    p.resident("kv cache", [16 * MIB, 16 * MIB], "kv_cache")
    p.add("decode", [(16 * MIB + 8192, "kv_cache", 1), (16 * MIB, "kv_cache", -1)], repeat=2)
    runs = [replay(p, steps=s) for s in (2, 3, 4)]
    assert all(r.peak_allocated == 3 * (16 * MIB + 8192) for r in runs)  # two carried, one new
    assert len({r.peak_reserved for r in runs}) == 1  # nothing left behind to grow the cache


def test_autocast_checkpointed_training_reserves_at_least_its_allocated_bytes():
    """Llama-3-8B, fp32 weights under bf16 autocast, checkpointed: the step's cached weight casts
    leave in one event that names the weights' category."""
    from memsim import Workload, predict
    from memsim.predict import VERDICT_STEPS, step_config
    from memsim.runtimes.hf_steps import build_program

    w = Workload(model="llama-3-8b", hardware="2048GiB", batch=8, seq=512,
                 precision={"weights": "fp32", "compute": "bf16"}, methods=["activation-checkpointing"])
    program = build_program(step_config(w))
    assert replay(program, steps=VERDICT_STEPS).peak_allocated == simulate(program).bytes
    p = predict(w).peak["gpu"]
    assert p.allocated_bytes <= p.reserved_bytes


def _random_trace(seed: int, n: int = 400):
    """Requests from 512 B to 300 MiB, each freed at a random later point."""
    rng = random.Random(seed)
    sizes = [rng.choice([rng.randint(1, 2**20), rng.randint(2**20, 12 * 2**20), rng.randint(12 * 2**20, 300 * 2**20)])
             for _ in range(n)]
    ops, live = [], []
    for i, s in enumerate(sizes):
        ops.append(("malloc", i, s))
        live.append(i)
        while live and rng.random() < 0.45:
            ops.append(("free", live.pop(rng.randrange(len(live))), 0))
    return ops


@pytest.mark.gpu
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reserved_matches_torch_step_by_step(seed):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    torch.cuda.empty_cache()
    base = torch.cuda.memory_reserved()
    model, real, blocks = CachingAllocator(), {}, {}
    for op, i, size in _random_trace(seed):
        if op == "malloc":
            real[i] = torch.empty(size, dtype=torch.uint8, device="cuda")
            blocks[i] = model.malloc(size)
        else:
            del real[i]
            model.free(blocks.pop(i))
        assert torch.cuda.memory_reserved() - base == model.reserved, (op, i, size)
