"""The symbolic autograd tape against hand-counted lifetimes."""

from memsim import ops
from memsim.program import Program
from memsim.simulator import simulate
from memsim.tape import GRADIENTS, Tape


def walk(events):
    p = Program()
    p.add("x", events)
    return simulate(p, rounding=lambda n: n)


def test_saved_tensor_outlives_its_python_reference():
    tp = Tape()
    w = tp.external("w", 100, requires_grad=True, leaf=True)
    x = tp.new("x", 10)
    y = ops.linear(tp, "y", x, w, 20)  # saves x for w's gradient
    tp.drop(x)
    assert walk(tp.events).final_bytes == 30  # x kept alive by the node
    tp.backward({id(y): tp.new("gy", 20)})
    tp.drop(y)
    # After backward: x and y freed, the incoming gradient freed, w's gradient kept.
    assert walk(tp.events).final_bytes == 100
    assert [e[:3] for e in tp.events if e[1] == GRADIENTS] == [(100, GRADIENTS, 1)]


def test_no_grad_frees_at_last_use():
    tp = Tape(grad_enabled=False)
    w = tp.external("w", 100, requires_grad=True, leaf=True)
    x = tp.new("x", 10)
    y = ops.linear(tp, "y", x, w, 20)
    tp.drop(x)
    assert not tp.nodes
    assert walk(tp.events).final_bytes == 20


def test_gradient_arriving_twice_is_summed_out_of_place():
    tp = Tape()
    w1 = tp.external("w1", 4, requires_grad=True, leaf=True)
    w2 = tp.external("w2", 4, requires_grad=True, leaf=True)
    x = tp.incoming("x", 8, requires_grad=True)
    a = ops.linear(tp, "a", x, w1, 8)
    b = ops.linear(tp, "b", x, w2, 8)
    s = ops.add(tp, "s", a, b)
    tp.drop(a, b)
    left = tp.backward({id(s): tp.new("gs", 8)})
    assert list(left) == [id(x)]
    assert left[id(x)].name.endswith(".sum")


def test_repeated_segment_peak_in_closed_form():
    p = Program()
    p.add("layer", [(10, "activations", 1), (5, "temporaries", 1), (5, "temporaries", -1)], repeat=100)
    peak = simulate(p, rounding=lambda n: n)
    assert peak.bytes == 99 * 10 + 15
    assert peak.breakdown["activations"] == 1000 and peak.breakdown["temporaries"] == 5
