"""AdamW and Adam: two moments per parameter; foreach and fused steps launch by multi_tensor_apply chunks."""

import memsim
from memsim.methods import Adam, AdamW
from memsim.methods.optimizer import multi_tensor_launches
from memsim.params import Param, Params


def test_foreach_steps_launch_by_multi_tensor_apply_chunks():
    billion = Params(prefix=(), layer=(Param(2**15, 2**15, 2),), layers=1)  # 2**30 elements
    assert multi_tensor_launches(billion) == -(-(2**30) // (65536 * 320)) == 52
    many_small = Params(prefix=(), layer=(Param(64, 0, 2),), layers=480)
    assert multi_tensor_launches(many_small) == 10  # 48 tensors a launch
    assert [k.kernels for k in AdamW().step_kernels(billion)] == [8 * multi_tensor_launches(billion)]
    assert [(k.kernels, k.one_at_a_time) for k in AdamW(impl="for-loop").step_kernels(many_small)] == [(8 * 480, True)]


def test_moments_follow_the_parameters_dtype_and_fused_keeps_step_on_the_gpu():
    p = Param(4096, 1024, 2)
    assert AdamW().state(p) == (p.nbytes, p.nbytes)
    assert AdamW(impl="fused").state(p) == (p.nbytes, p.nbytes, 4)
    assert Adam(impl="fused").state(p) == AdamW(impl="fused").state(p)


def test_foreach_holds_a_square_root_per_parameter_and_fused_none():
    params = Params((Param(1000, 64, 2),), (Param(64, 64, 2),), 3)
    assert AdamW().step_memory(params).temp_per_param and AdamW().step_memory(params).temp_bytes == params.total()
    assert AdamW(impl="fused").step_memory(params).temp_bytes == 0
    w = dict(model="smollm2-135m", hardware="80GiB", batch=1, seq=256)
    fused = memsim.peak(dict(w, optimizer={"impl": "fused"}))
    assert memsim.peak(w).bytes > fused.bytes  # the foreach sqrt list
