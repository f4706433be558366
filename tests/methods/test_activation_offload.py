"""Activation offload: every saved tensor packed to pinned host memory, unpacked by backward."""

import pytest

import memsim
from memsim.predict import step_config
from memsim.runtimes.hf_steps import build_program
from memsim.simulator import simulate
from memsim.tape import recording_costs

W = dict(model="tinyllama-1.1b", hardware="h200", batch=4, seq=1024, methods=["activation-offload"])


def test_weights_saved_for_input_gradients_are_packed_too():
    # LoRA freezes the base, whose products save their weights for the input's gradient: each
    # forward packs a copy of every frozen projection it uses.
    lora = memsim.predict(dict(W, methods=["activation-offload", {"name": "lora", "rank": 16}]))
    weights = memsim.predict(dict(W, methods=[])).breakdown_bytes["weights"]
    assert lora.peak["cpu"].allocated_bytes > 0.9 * weights


def test_each_pack_and_unpack_is_a_transfer_on_the_host_link():
    with recording_costs():
        program = build_program(step_config(memsim.Workload.parse(W)))
    copies = [c for seg in program.segments for c in seg.costs() for _ in range(seg.repeat) if c.kind == "transfer"]
    down = sum(c.bytes for c in copies if c.layout == "device_to_host")
    up = sum(c.bytes for c in copies if c.layout == "host_to_device")
    assert down == up == simulate(program, tier="cpu", rounding=lambda n: n).bytes


def test_it_does_not_combine_with_checkpointing():
    with pytest.raises(memsim.InputError, match="activation-offload cannot be combined with activation-checkpointing"):
        memsim.Workload.parse(dict(W, methods=["activation-offload", "activation-checkpointing"]))
