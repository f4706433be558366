"""A recomputed layer's rerun as torch.utils.checkpoint's early stop runs it (memsim/runtimes/rerun.py),
on a tape of three ops: a saves its input, b saves a's output, c (a residual-like add) saves nothing."""

from memsim.runtimes import rerun
from memsim.tape import Tape

MB = 2**20


def _layer():
    tp = Tape()
    x = tp.incoming("x", 1 * MB, requires_grad=True)
    a = tp.op("a", [x], 2 * MB, saves=[x], recipe=(("grad", 0),))
    scratch = tp.new("scratch", 5 * MB)  # made before b's output, dropped after it: unwinding frees it
    b = tp.op("b", [a], 3 * MB, saves=[a], recipe=(("grad", 0),))
    c = tp.op("c", [b], 4 * MB, recipe=(("grad", 0, 6 * MB),))  # its gradient is cast: 6 MB
    tp.drop(scratch, a, b)
    tp.drop(c)
    return tp, x, c


def test_the_rerun_stops_before_the_last_saving_ops_output():
    tp, _, _ = _layer()
    events = rerun.stop_early(tp)
    made = [n for n, _, sign, *_ in events if sign > 0]
    assert made == [2 * MB, 5 * MB]  # a's output and the scratch; neither b's output nor c's
    freed = [n for n, _, sign, *_ in events if sign < 0]
    assert freed == [5 * MB]  # the scratch, as the rerun unwinds; a's output stays saved by b


def test_the_nodes_after_the_last_saving_one_run_before_the_rerun():
    tp, _, c = _layer()
    replayed = rerun.stop_early(tp)
    rerun.backward(tp, {id(c): tp.incoming("grad", 4 * MB)}, replayed)
    first_made = [n for n, _, sign, *_ in tp.events if sign > 0][:3]
    assert first_made == [6 * MB, 2 * MB, 5 * MB]  # c's gradient cast, then the rerun
    assert [n.name for n in tp.nodes] == ["a", "b", "c"]
