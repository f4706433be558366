"""Activation checkpointing: every k-th layer recomputed; the executors run every layer only."""

import pytest

import memsim
from memsim.methods import ActivationCheckpointing, Methods

W = dict(model="llama-3-8b", hardware="80GiB", batch=2, seq=2048, optimizer="sgd")  # activations set the peak


def test_every_kth_layer_is_recomputed():
    plans = Methods((ActivationCheckpointing(every=3),)).plans(8)
    assert [p.recompute for p in plans] == [True, False, False, True, False, False, True, False]


def test_fewer_recomputed_layers_hold_more():
    peaks = [memsim.peak(dict(W, methods=[{"name": "activation-checkpointing", "every": k}])).bytes for k in (1, 2, 4)]
    assert peaks[0] < peaks[1] < peaks[2] < memsim.peak(W).bytes


def test_the_executors_refuse_every_above_one():
    with pytest.raises(memsim.InputError, match="every > 1 is analytic-only"):
        ActivationCheckpointing(every=2).check_torch()
