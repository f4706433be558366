"""A loss fused with lm_head that never holds the logits: Liger's or Apple's cut cross-entropy.

liger (liger-kernel 0.8.5, ops/fused_linear_cross_entropy.py), run by
_apply_liger_kernel_to_instance(model, fused_linear_cross_entropy=True) with its other kernels
off (rope, rms_norm, swiglu: not modeled yet): labels padded and shifted as transformers does,
then in the *forward* the gradients: grad_input zeros_like(hidden), grad_weight zeros_like(lm_head)
when the head trains, an fp32 loss and a bool mask per token, and one [chunk, V] logits buffer,
chunk = min(next_pow2(ceil(BT / ceil(V / H))), BT). An fp32 head's gradient is accumulated
through an fp32 [V, H] product a chunk (a 16-bit one by addmm in place). Backward hands the two
gradients over (no copy: grad_output is 1).

cce (cut-cross-entropy 25.1.1, linear_cross_entropy(hidden, lm_head.weight, ids, shift=1)): the
valid targets' flat indices (int64), an fp32 log-sum-exp and an fp32 mean logit per vocabulary
entry (the gradient filter's ordering); it saves the hidden states. Backward sorts the vocabulary
by mean logit, then dE like the hidden states, dC like the head (when it trains) and int32 locks.
"""

from __future__ import annotations

from typing import Literal

from ..errors import InputError
from ..tape import COST, GRADIENTS, TEMPORARIES, OpCost, T, Tape
from .base import Method

FP32, INT32, INT64 = 4, 4, 8
LOCK_COLUMNS = 64  # cce_backward_kernel: nd_locks = cdiv(D, 64)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def liger_chunk(tokens: int, hidden: int, vocab: int) -> int:
    """Rows of Liger's logits buffer (fused_linear_cross_entropy_forward, _CHUNK_MEM_CONST = 1)."""
    rows = _cdiv(tokens, _cdiv(vocab, hidden))
    return min(1 << (rows - 1).bit_length(), tokens)


class FusedLinearCrossEntropy(Method):
    name: Literal["fused-linear-cross-entropy"] = "fused-linear-cross-entropy"
    impl: Literal["liger", "cce"] = "liger"
    summary = "lm_head and the cross-entropy fused, the logits never stored (Liger's or cut-cross-entropy's kernel)"
    citation = ("Hsu et al., Liger Kernel: Efficient Triton Kernels for LLM Training, 2024 (arXiv:2410.10989); "
                "Wijmans et al., Cut Your Losses in Large-Vocabulary Language Models, 2024 (arXiv:2411.09009)")
    untraceable = "its kernels are Triton's, which run on no fake tensor"
    conflicts = ("mezo",)

    def check(self, model, workload) -> None:
        p = workload.precision
        if p.weights != p.compute:
            raise InputError(f"methods.fused-linear-cross-entropy: autocast (weights {p.weights}, compute {p.compute}) is not "
                             "modeled yet; use one dtype for both")
        if self.impl == "cce" and p.compute == "fp32":
            raise InputError("methods.fused-linear-cross-entropy.impl: cce's backward needs 16-bit hidden states; "
                             "use precision bf16 or fp16, or impl liger")
        if getattr(model, "final_logit_softcapping", None):
            raise InputError(f"methods.fused-linear-cross-entropy: '{model.name}' caps its logits (final_logit_softcapping), "
                             "not modeled yet; use a model without")

    def loss(self, tape: Tape, shapes, hidden: T, head_weight: T):
        return (_liger if self.impl == "liger" else _cce)(tape, shapes, hidden, head_weight)

    def check_torch(self) -> None:
        package = {"liger": "liger_kernel", "cce": "cut_cross_entropy"}[self.impl]
        try:
            __import__(package)
        except ImportError:
            raise InputError(f"methods.fused-linear-cross-entropy.impl: {self.impl} needs the '{package}' package "
                             "(pip install liger-kernel / cut-cross-entropy)") from None

    def apply_torch(self, model):
        if self.impl == "liger":
            from liger_kernel.transformers import _apply_liger_kernel_to_instance

            _apply_liger_kernel_to_instance(model=_causal_lm(model), rope=False, rms_norm=False, swiglu=False,
                                            cross_entropy=False, fused_linear_cross_entropy=True)
        return model

    def torch_loss(self, model, ids):
        if self.impl != "cce":
            return None  # the patched forward computes Liger's loss
        from cut_cross_entropy import linear_cross_entropy

        lm = _causal_lm(model)
        outputs = lm.model(input_ids=ids)  # alive through the loss, as in the model's own forward
        return linear_cross_entropy(outputs.last_hidden_state, lm.lm_head.weight, ids, shift=1)


def _causal_lm(model):
    """The transformers CausalLM under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _liger(tp: Tape, sh, hidden: T, head_w: T):
    m, tokens = sh.model, sh.tokens
    hdim, vocab, act = m.hidden_size, m.vocab_size, sh.dtype_bytes
    padded = tp.new("loss.labels_padded", sh.batch * (sh.seq + 1) * INT64)
    shifted = tp.new("loss.labels_shifted", tokens * INT64)
    grads = [tp.new("flce.grad_input", tokens * hdim * act, TEMPORARIES)]
    if head_w.requires_grad:
        grads.append(tp.new("flce.grad_weight", head_w.nbytes, GRADIENTS))
        head_w.owns_grad = True
    per_token = [tp.new("flce.loss_1d", tokens * FP32), tp.new("flce.target_mask", tokens)]
    logits = tp.new("flce.logits_chunk", liger_chunk(tokens, hdim, vocab) * vocab * act, TEMPORARIES)
    if head_w.requires_grad and act == FP32:  # grad_weight += mm(grad_logits.t(), x).float(), a chunk at a time
        tp.transient(vocab * hdim * FP32)
    cost = _matmul_work(tp, "flce", tokens, hdim, vocab, 3 if head_w.requires_grad else 2, act)  # logits, then the gradients
    tp.drop(logits)
    loss = tp.new("flce.loss", FP32)
    tp.drop(*per_token, padded, shifted)
    recipe = (("transient", FP32), ("saved", 0, 0)) + ((("saved", 1, 1),) if head_w.requires_grad else ())
    tp.record("flce", [hidden, head_w], loss, grads, recipe, cost)
    tp.drop(*grads)
    return loss, []


def _cce(tp: Tape, sh, hidden: T, head_w: T):
    m = sh.model
    hdim, vocab, valid = m.hidden_size, m.vocab_size, sh.batch * (sh.seq - 1)
    # _build_flat_valids: (targets[..., 1:] != ignore).nonzero().to(int32), strides applied, .sum(1).
    mask = tp.new("cce.valid_mask", valid)
    pairs = tp.new("cce.nonzero", valid * 2 * INT64, TEMPORARIES)
    tp.drop(mask)
    pairs32 = tp.new("cce.nonzero_int32", valid * 2 * INT32, TEMPORARIES)
    tp.drop(pairs)
    valids = tp.new("cce.valids", valid * INT64)
    tp.drop(pairs32)
    lse = tp.new("cce.lse", valid * FP32)
    locks = tp.new("cce.lse_locks", _cdiv(valid, 128) * INT32, TEMPORARIES)
    logit_avg = tp.new("cce.logit_avg", vocab * FP32)
    tp.drop(locks)
    # The log-sum-exp's product; backward recomputes the logits (counted here) beside dE and dC.
    cost = _matmul_work(tp, "cce", valid, hdim, vocab, 2, sh.dtype_bytes)
    neg_dot = tp.new("cce.neg_dot", valid * FP32, TEMPORARIES)
    loss = tp.new("cce.loss", FP32)
    tp.drop(neg_dot)
    nd_locks = _cdiv(hdim, LOCK_COLUMNS)
    head_w.owns_grad = True  # dC, zeros_like(c), dense
    # Backward: argsort (sorted values fp32 and indices int64, then .to(int32)), dE, dC, locks.
    recipe = (("transient", vocab * (FP32 + INT64)), ("tmp", vocab * INT32), ("grad", 0), ("grad", 1),
              ("tmp", _cdiv(valid, nd_locks) * nd_locks * INT32), ("tmp", _cdiv(vocab, nd_locks) * nd_locks * INT32))
    tp.record("cce", [hidden, head_w], loss, [hidden, lse, valids, logit_avg], recipe, cost)
    tp.drop(lse, valids, logit_avg)
    return loss, []


def _matmul_work(tp: Tape, name: str, rows: int, hdim: int, vocab: int, products: int, act: int) -> OpCost | None:
    """The fused kernel's products of [rows, hdim] by [vocab, hdim] for the roofline (the logits
    never leave the chip: it reads the two operands)."""
    if not tp.costs:
        return None
    operands = (rows * hdim * act, vocab * hdim * act, rows * vocab * act)
    cost = OpCost(name, "matmul", operands[0] + operands[1], operands=operands, passes=products, dtype_bytes=act)
    tp.events.append((cost, COST, 0))
    return cost
