"""Autocast mixed precision as torch.autocast runs it: fp32 weights, 16-bit matmuls.

aten/src/ATen/autocast_mode.cpp and autocast_mode.h (torch 2.13), CUDA's op lists:
- lower_precision_fp ops (linear, matmul, mm, bmm, baddbmm, scaled_dot_product_attention, ...) cast
  their floating inputs to the autocast dtype (`cached_cast`), so every projection's input is cast
  anew: q, k and v each get (and save) their own 16-bit copy of the normed hidden states.
- cached_cast keeps the cast of an fp32 leaf that requires grad (a trainable weight or bias) in a
  cache until the outermost autocast context exits (`clear_cache`): each weight is cast once per
  forward and its copy lives to the end of the forward whether autograd saves it or not. A frozen
  weight (LoRA's base, inference with requires_grad off) is cast at every use and dies after it,
  unless autograd saved it (a linear whose input needs grad saves its weight).
- other ops (embedding, mul, add, silu, cat) follow type promotion: the embedding output and the
  residual stream stay fp32, a 16-bit projection added to the fp32 residual gives fp32, and
  RoPE's fp32 cos/sin (cast to the hidden states' dtype) make q and k fp32 again before attention.
  RMSNorm and the loss upcast to fp32 explicitly (modeling_llama.py, loss_utils.py).
- backward runs outside autocast: each cast's backward casts the gradient back, so a trainable
  weight's 16-bit gradient is followed by its fp32 .grad; optimizer state is fp32 like the params.
"""

from __future__ import annotations

from .. import ops
from ..tape import T, Tape


class AutocastWeight(T):
    """A linear's weight (and bias) under autocast; ops.linear hands it to `forward`."""

    def __init__(self, base: T, fan_in: int, fan_out: int, compute_bytes: int, cached: bool):
        super().__init__(base.name, base.storage, base.requires_grad, base.leaf)
        self.base, self.fan_in, self.fan_out = base, fan_in, fan_out
        self.compute_bytes, self.cached = compute_bytes, cached
        self.copies: dict[int, T] = {}  # the autocast cache's entries for this weight and bias

    def _cast(self, tp: Tape, t: T, nbytes: int) -> T:
        if not self.cached:
            return ops.cast(tp, f"{t.name}.autocast", t, nbytes)
        if id(t) not in self.copies:
            self.copies[id(t)] = ops.cast(tp, f"{t.name}.autocast", t, nbytes)
        return self.copies[id(t)]

    def forward(self, tp: Tape, name: str, x: T, out_nbytes: int, bias: T | None) -> T:
        # The wrapper's casts are arguments of one call, which GCC evaluates last to first: the
        # bias's and the weight's before the input's (torch's allocator history of lm_head).
        tokens = out_nbytes // (self.fan_out * self.compute_bytes)
        bc = self._cast(tp, bias, self.fan_out * self.compute_bytes) if bias is not None else None
        wc = self._cast(tp, self.base, self.fan_in * self.fan_out * self.compute_bytes)
        xc = ops.cast(tp, f"{name}.autocast_input", x, tokens * self.fan_in * self.compute_bytes)
        out = ops.linear(tp, name, xc, wc, out_nbytes, bc)
        tp.drop(xc)
        if not self.cached:
            tp.drop(wc, bc)
        return out

    def release_later(self, tp: Tape) -> int:
        """The autocast context exits in a later segment: the bytes its cache then frees (copies
        autograd did not save)."""
        owed = sum(tp.release_later(c) for c in self.copies.values())
        self.copies.clear()
        return owed

    def release(self, tp: Tape) -> None:
        """The autocast context exits now (a checkpoint's recompute ends)."""
        tp.drop(*self.copies.values())
        self.copies.clear()


def wrap(tp: Tape, w: T, fan_in: int, fan_out: int, compute_bytes: int, train: bool) -> tuple[T, list[AutocastWeight]]:
    """A linear's weight under autocast, and the wrappers whose caches must be released. A weight
    a method wrapped (one with `map_parts`, e.g. a frozen base with trainable adapters) has each
    part it runs cast: a frozen one at every use, a trainable one once (cached); its own matmuls
    then run in the compute dtype."""
    def cast(part: T, part_in: int, part_out: int) -> AutocastWeight:
        return AutocastWeight(part, part_in, part_out, compute_bytes, cached=train and part.requires_grad)

    if hasattr(w, "map_parts"):
        return w, w.map_parts(cast, compute_bytes)
    aw = cast(w, fan_in, fan_out)
    return aw, [aw]


def release_later(tp: Tape, wrappers: list[AutocastWeight]) -> int:
    return sum(w.release_later(tp) for w in wrappers)
