"""PyTorch ops as the tape sees them: outputs, what autograd saves, what backward allocates.

Each helper mirrors one ATen op's autograd formula (tools/autograd/derivatives.yaml): the caller
keeps ownership of the inputs and gets a new handle it must drop.
"""

from __future__ import annotations

from .tape import WORKSPACE, T, Tape


def _needs(x: T) -> bool:
    return x.requires_grad


def linear(tp: Tape, name: str, x: T, w: T, out_nbytes: int, bias: T | None = None, dtype_bytes: int = 0) -> T:
    """x @ w.T (+ bias): MmBackward saves x when w needs grad and w when x does; the weight's
    gradient is computed before the input's. A weight carrying an adapter (LoRA) runs its own."""
    if hasattr(w, "forward"):
        return w.forward(tp, name, x, out_nbytes, bias)
    saves = ([x] if _needs(w) else []) + ([w] if _needs(x) else [])
    inputs = [x, w] + ([bias] if bias is not None else [])
    recipe = ((("grad", 2),) if bias is not None else ()) + (("grad", 1), ("grad", 0))
    return tp.op(name, inputs, out_nbytes, saves, recipe, kind="matmul", dtype_bytes=dtype_bytes)


def mul(tp: Tape, name: str, a: T, b: T, out_nbytes: int, layout: str | None = None) -> T:
    """a * b with broadcasting: a broadcast input's gradient is a full-size product summed down."""
    saves = ([b] if _needs(a) else []) + ([a] if _needs(b) else [])
    recipe = []
    for i, x in enumerate((a, b)):
        if not _needs(x):
            continue
        if x.nbytes < out_nbytes:  # broadcast: product at full size, then reduced
            recipe += [("tmp", out_nbytes), ("grad", i)]
        else:
            recipe.insert(0, ("grad", i))
    return tp.op(name, [a, b], out_nbytes, saves, tuple(recipe), layout=layout)


def scale(tp: Tape, name: str, x: T) -> T:
    """x * python scalar (or + scalar): nothing saved; backward allocates one gradient."""
    return tp.op(name, [x], x.nbytes, (), (("grad", 0),))


def add(tp: Tape, name: str, a: T, b: T, out_nbytes: int | None = None, layout: str | None = None) -> T:
    """a + b: nothing saved, the gradient passes to both unchanged (same-shape inputs)."""
    recipe = tuple(("pass", i) if x.nbytes >= (out_nbytes or a.nbytes) else ("grad", i) for i, x in enumerate((a, b)))
    return tp.op(name, [a, b], out_nbytes or max(a.nbytes, b.nbytes), (), recipe, layout=layout)


def cast(tp: Tape, name: str, x: T, out_nbytes: int) -> T:
    """x.to(dtype): nothing saved; backward casts the gradient back. A no-op cast returns x."""
    if out_nbytes == x.nbytes:
        return tp.view(name, x)
    return tp.op(name, [x], out_nbytes, (), (("grad", 0),), layout="cast")


def copy(tp: Tape, name: str, x: T) -> T:
    """contiguous / a reshape that copies (of a strided view): gradient passes through."""
    return tp.op(name, [x], x.nbytes, (), (("pass", 0),), layout="copy_strided")


def unary_saving_input(tp: Tape, name: str, x: T, out_nbytes: int | None = None, bwd_temps=()) -> T:
    """silu, pow, gelu...: backward reads the saved input."""
    recipe = tuple(("tmp", n) for n in bwd_temps) + (("grad", 0),)
    return tp.op(name, [x], out_nbytes or x.nbytes, [x], recipe)


def unary_saving_output(tp: Tape, name: str, x: T, out_nbytes: int | None = None, bwd_temps=()) -> T:
    """rsqrt, softmax, log_softmax...: backward reads the saved output."""
    out = tp.op(name, [x], out_nbytes or x.nbytes)
    tp.record(name, [x], out, [out], tuple(("tmp", n) for n in bwd_temps) + (("grad", 0),), tp.last_cost)
    return out


def reduce(tp: Tape, name: str, x: T, out_nbytes: int) -> T:
    """mean / sum over a dim: nothing saved; backward expands to a full-size gradient."""
    return tp.op(name, [x], out_nbytes, (), (("grad", 0),))


def ws(nbytes: int) -> tuple:
    """A kernel's internal workspace in a backward recipe (absent from fake-tensor traces)."""
    return ("tmp", nbytes, WORKSPACE)
