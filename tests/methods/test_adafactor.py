"""Adafactor: factored second moments; norms issued one parameter at a time in both implementations."""

import pytest

import memsim
from memsim.methods import Adafactor
from memsim.methods.adafactor import KERNELS
from memsim.methods.optimizer import multi_tensor_launches
from memsim.params import Param, Params


def test_adafactor_issues_its_norms_one_parameter_at_a_time_in_both_implementations():
    params = Params(prefix=(Param(64, 64, 2),), layer=(Param(256, 256, 2), Param(256, 0, 2)), layers=10)
    matrices, vectors = params.only(lambda p: p.is_matrix), params.only(lambda p: not p.is_matrix)
    assert (matrices.count, vectors.count) == (11, 10)
    loop = Adafactor(impl="for-loop").step_kernels(params)
    assert all(k.one_at_a_time for k in loop) and sum(k.kernels for k in loop) == 22 * 11 + 11 * 10
    foreach = Adafactor().step_kernels(params)
    per_param = sum(k.kernels for k in foreach if k.one_at_a_time)
    assert per_param == 10 * 11 + 5 * 10  # the norms, their .item()s, the factors' own ops
    lists = sum(k.kernels for k in foreach if not k.one_at_a_time)
    assert lists == 7 * multi_tensor_launches(matrices) + 6 + 7 * multi_tensor_launches(vectors)
    # Every element of the full-size tensors read and written as the source's ops do.
    assert sum(k.bytes for k in loop) == 17 * matrices.total() + 20 * vectors.total()
    assert KERNELS["foreach"]["matrix"][0] + KERNELS["foreach"]["matrix"][2] == 19  # one more mul_ (alphas)


def test_a_matrix_keeps_a_row_and_a_column():
    assert Adafactor().state(Param(4096, 1024, 4)) == (4096 * 4, 1024 * 4)
    assert Adafactor().state(Param(1024, 0, 4)) == (4096,)


def test_adafactor_has_no_fused_step():
    with pytest.raises(memsim.InputError, match="optimizer.impl: adafactor has no 'fused'"):
        memsim.Workload.parse(dict(optimizer={"name": "adafactor", "impl": "fused"}))
