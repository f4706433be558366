"""The sparse MoE block of the hf-transformers profile: Mixtral and Qwen2-MoE (transformers 5.17).

Mirrors models/mixtral/modeling_mixtral.py (MixtralSparseMoeBlock, MixtralTopKRouter) and
models/qwen2_moe/modeling_qwen2_moe.py (Qwen2MoeSparseMoeBlock, Qwen2MoeTopKRouter, its shared
expert and shared_expert_gate), op by op with Python's variable lifetimes, as hf_transformers.py
does for the dense layer.

Which experts code runs: `@use_experts_implementation` (integrations/moe.py) dispatches on
`config._experts_implementation`, which PreTrainedModel.__init__ sets through
modeling_utils.get_correct_experts_implementation: "grouped_mm" unless the user asks otherwise
(the eager per-expert loop only as a fallback for classes without the decorator). So the default,
modeled here, is integrations/moe.py `grouped_mm_experts_forward`: every (token, expert) pair is
one row of S = tokens * top_k rows, sorted by expert, run through `torch._grouped_mm`
(GroupedBlas.cpp: CUTLASS for bf16 on sm90+, else a loop of mm into one output).

Routing does not change memory here: every tensor of that path has S or `tokens` rows whatever
the routing (per-expert row counts only move the boundaries `offs` inside them), so the sizes are
exact for any routing, balanced or not. (The eager loop, by contrast, holds per-expert tensors
whose size is the routed count.) Per layer the cost is independent of the number of experts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ops
from ..params import moe_params
from ..tape import WEIGHTS, T, Tape
from . import hf_transformers as hf
from .hf_arch import Arch
from .hf_transformers import FP32, INT64, Shapes

INT32 = 4
BOOL = 1
TMA_ALIGN_BYTES = 16  # GroupedMMUtils.h create_grouped_gemm_output_tensor: row stride padded to 16 bytes


def grouped_mm_out_bytes(rows: int, width: int, dtype_bytes: int) -> int:
    """create_grouped_gemm_output_tensor: [rows, width] with the row stride padded to 16 bytes;
    empty_strided's storage ends at the last element."""
    align = TMA_ALIGN_BYTES // dtype_bytes
    padded = -(-width // align) * align
    return ((rows - 1) * padded + width) * dtype_bytes if rows else 0


def unused_sliding_mask(tp: Tape, sh: Shapes) -> T | None:
    """Qwen2MoeModel.forward builds `create_sliding_window_causal_mask` for every forward, used
    or not; with use_sliding_window false the config sets sliding_window = 0
    (configuration_qwen2_moe.py), which masking_utils cannot skip: the boolean mask is
    materialized (eager: then made additive) and lives in causal_mask_mapping until the model's
    forward returns."""
    if sh.attention == "eager":
        return hf.causal_mask(tp, sh)
    q, kv = sh.seq, sh.kv_len
    index = [tp.new("mask.index", n * INT64) for n in (kv, kv, q, q)]  # sdpa_mask's kv/q aranges and offsets
    beyond = tp.new("mask.gt", q * kv * BOOL)
    both = tp.new("mask.and", q * kv * BOOL)
    tp.drop(beyond)
    within = tp.new("mask.le", q * kv * BOOL)
    mask = tp.new("mask.sliding", q * kv * BOOL)  # expanded over the batch: a view
    tp.drop(within, both, *index)
    return mask


@dataclass
class SharedExpert:
    """Qwen2MoeMLP's weights, in the shape hf.mlp reads."""

    gate: T
    up: T
    down: T


@dataclass
class MoeWeights:
    router: T
    gate_up: T
    down: T
    shared: SharedExpert | None = None
    shared_gate: T | None = None

    @classmethod
    def build(cls, tp: Tape, sh: Shapes, trainable: bool) -> MoeWeights:
        m = sh.model

        def w(name, n):
            return tp.external(name, n, WEIGHTS, requires_grad=trainable, leaf=True)

        sizes = [p.nbytes for p in moe_params(m, sh.param_bytes)]
        mw = cls(gate_up=w("experts.gate_up_proj", sizes[0]), down=w("experts.down_proj", sizes[1]),
                 router=w("gate.weight", sizes[2]))
        if m.shared_expert_intermediate_size:
            mw.shared = SharedExpert(w("shared_expert.gate_proj", sizes[3]), w("shared_expert.up_proj", sizes[4]),
                                     w("shared_expert.down_proj", sizes[5]))
            mw.shared_gate = w("shared_expert_gate", sizes[6])
        return mw

    def forward(self, tp: Tape, sh: Shapes, h: T) -> T:
        return sparse_moe_block(tp, sh, h, self)


# -- Qwen2MoeSparseMoeBlock.forward / MixtralSparseMoeBlock.forward --------------------------------
def sparse_moe_block(tp: Tape, sh: Shapes, h: T, w: MoeWeights) -> T:
    m = sh.model
    shared = None
    if w.shared is not None:  # the shared expert runs first, on every token
        shared = hf.mlp(tp, sh, h, w.shared, width=m.shared_expert_intermediate_size)
    logits, scores, idx = router(tp, sh, h, w.router)
    out = experts(tp, sh, h, idx, scores, w)
    if shared is not None:
        g = ops.linear(tp, "shared_expert_gate", h, w.shared_gate, sh.act(1))
        sig = ops.unary_saving_output(tp, "shared_gate.sigmoid", g)
        tp.drop(g)
        gated = ops.mul(tp, "shared_gate*shared", sig, shared, shared.nbytes)
        tp.drop(sig, shared)
        total = ops.add(tp, "experts+shared", out, gated)
        tp.drop(out, gated)
        out = total
    tp.drop(logits, scores, idx)  # `_, routing_weights, selected_experts` die with the block
    return out


# -- MixtralTopKRouter / Qwen2MoeTopKRouter.forward ------------------------------------------------
def router(tp: Tape, sh: Shapes, h: T, weight: T):
    """Logits, fp32 softmax, top-k; Mixtral (and Qwen2-MoE with norm_topk_prob) renormalize in
    place; Qwen2-MoE casts the weights back to the model dtype. Returns (logits, scores, indices):
    the block keeps the logits in `_` until it returns."""
    m = sh.model
    n, e, k = sh.tokens, m.num_experts, m.experts_per_token
    logits = ops.linear(tp, "router", h, weight, n * e * sh.dtype_bytes)
    l32 = ops.cast(tp, "router.float", logits, n * e * FP32)  # softmax(x.float()) / softmax(x, dtype=float)
    probs = ops.unary_saving_output(tp, "router.softmax", l32)
    tp.drop(l32)
    values, idx = tp.op("router.topk", [probs], n * k * FP32, extra_outputs=(n * k * INT64,))
    tp.record("router.topk", [probs], values, [idx], (("tmp", probs.nbytes), ("grad", 0)), tp.last_cost)  # zeros + scatter
    if m.norm_topk_prob:
        values = _renormalize_in_place(tp, values, n)
    tp.drop(probs)  # router_probs dies when the router returns (saved by softmax under grad)
    if m.model_type == "qwen2_moe":
        scores = ops.cast(tp, "router.to_dtype", values, n * k * sh.dtype_bytes)
        tp.drop(values)
        values = scores
    return logits, values, idx


def _renormalize_in_place(tp: Tape, values: T, tokens: int) -> T:
    """router_top_value /= router_top_value.sum(dim=-1, keepdim=True): DivBackward0 saves the
    divisor and, the op being in place, a clone of the original values."""
    total = tp.op("router.topk_sum", [values], tokens * FP32, (), (("pass", 0),))  # backward: expand, a view
    needs = tp.grad_enabled and values.requires_grad
    original = tp.new("router.div_.original", values.nbytes) if needs else None
    out = T("router.div_", tp._hold(values).storage)
    k_bytes = values.nbytes
    tp.record("router.div_", [values, total], out, [original, total] if needs else [],
              (("tmp", k_bytes), ("tmp", k_bytes), ("tmp", k_bytes), ("grad", 0), ("grad", 1)))
    tp.drop(original, total, values)
    return out


# -- integrations/moe.py grouped_mm_experts_forward --------------------------------------------------
def experts(tp: Tape, sh: Shapes, h: T, idx: T, scores: T, w: MoeWeights) -> T:
    m = sh.model
    n, k, d, f = sh.tokens, m.experts_per_token, m.hidden_size, m.moe_intermediate_size
    rows = n * k  # S: one row per (token, chosen expert)
    b = sh.dtype_bytes
    score_bytes = scores.nbytes // rows  # fp32 (Mixtral) or the model dtype (Qwen2-MoE)

    ids_sorted = tp.new("experts.sort.values", rows * INT64)
    perm = tp.new("experts.sort.indices", rows * INT64)
    tp.work("experts.sort", SORT_PASSES * 4 * rows * INT64, SORT_KERNELS)
    token_of_row = tp.new("experts.perm//top_k", rows * INT64)
    tp.work("experts.perm//top_k", 2 * rows * INT64)
    x = _gather(tp, "experts.gather_tokens", h, token_of_row, rows * d * b)
    tp.drop(token_of_row)
    sw = _gather(tp, "experts.gather_weights", scores, perm, rows * score_bytes)
    hist_in = tp.new("experts.histc_input", rows * INT32)  # .int() on CUDA (.float() on CPU: same bytes)
    counts = tp.new("experts.histc", m.num_experts * INT32)
    offs = tp.new("experts.offsets", m.num_experts * INT32)  # cumsum(..., dtype=int32)
    mask = tp.new("experts.sentinel_mask", rows * BOOL)
    # the cast, histc (a memset and the histogram), cumsum (cub's scan: init and sweep), the mask
    tp.work("experts.offsets", rows * (INT64 + 2 * INT32 + BOOL), 6)
    x = _masked_fill_(tp, "experts.premask", x, mask)

    per_expert = max(rows // m.num_experts, 1)  # rows a group multiplies, routing balanced
    gu = _grouped_mm(tp, "experts.gate_up", x, w.gate_up, offs, grouped_mm_out_bytes(rows, 2 * f, b), (rows, 2 * f, d), per_expert)
    gu2 = _masked_fill(tp, "experts.gate_up.mask", gu, mask)
    tp.drop(gu)
    act_bytes = rows * f * b
    both = tp.view("experts.chunk", gu2, recipe=(("grad", 0),))  # SplitBackward: cat of both halves
    act = tp.op("experts.act_fn", [both], act_bytes, [both], (("grad", 0, act_bytes),))
    prod = tp.op("experts.act*up", [act, both], act_bytes, _mul_saves(act, both), (("grad", 0), ("grad", 1, act_bytes)))
    tp.drop(act, both, gu2)
    down = _grouped_mm(tp, "experts.down", prod, w.down, offs, grouped_mm_out_bytes(rows, d, b), (rows, d, f), per_expert)
    tp.drop(prod)
    down2 = _masked_fill(tp, "experts.down.mask", down, mask)
    tp.drop(down)

    out_b = max(b, score_bytes)  # proj_out * sample_weights: type promotion
    weighted = _scale_rows(tp, down2, sw, rows * d * out_b)
    inv = tp.new("experts.inv_perm", rows * INT64)
    tp.drop(tp.new("experts.arange", rows * INT64))  # inv_perm[perm] = arange(S)
    tp.work("experts.inv_perm", 4 * rows * INT64, 2)  # arange, then the scatter
    restored = _gather(tp, "experts.restore_order", weighted, inv, weighted.nbytes)
    tp.drop(weighted)
    rows3 = tp.view("experts.view", restored, recipe=(("grad", 0),))  # backward reshapes an expand: a copy
    summed = tp.op("experts.sum_top_k", [rows3], n * d * out_b, (), (("pass", 0),))
    tp.drop(rows3)
    out = ops.cast(tp, "experts.to_dtype", summed, n * d * b)
    tp.drop(ids_sorted, perm, x, sw, hist_in, counts, offs, mask, down2, restored, inv, summed)
    return out


# torch.sort of the flattened int64 expert ids (ATen Sort.cu -> cub's radix sort): one onesweep
# pass per 8-bit digit of the 64-bit key, each reading and writing keys and values, after a
# histogram and an exclusive sum.
SORT_PASSES = 8
SORT_KERNELS = SORT_PASSES + 2


def _mul_saves(a: T, b: T) -> list[T]:
    return ([b] if a.requires_grad else []) + ([a] if b.requires_grad else [])


def _gather(tp: Tape, name: str, src: T, index: T, out_nbytes: int) -> T:
    """src[index]: IndexBackward0 saves the indices; backward is new_zeros + index_put."""
    return tp.op(name, [src], out_nbytes, [index], (("tmp", src.nbytes), ("grad", 0)))


def _masked_fill(tp: Tape, name: str, x: T, mask: T) -> T:
    """x.masked_fill(mask[:, None], 0): the row mask broadcast over x's columns."""
    return tp.op(name, [x, mask], x.nbytes, [mask], (("grad", 0),))


def _masked_fill_(tp: Tape, name: str, x: T, mask: T) -> T:
    """In place: the same storage under a new autograd node."""
    out = T(name, tp._hold(x).storage)
    tp.record(name, [x], out, [mask], (("grad", 0),), layout="broadcast", read=(mask,))
    tp.drop(x)
    return out


def _grouped_mm(tp: Tape, name: str, x: T, weight: T, offs: T, out_nbytes: int, shape: tuple[int, int, int],
                per_expert: int) -> T:
    """torch._grouped_mm(x, weight.transpose(-2, -1), offs): GroupedMmBackward0 saves x when the
    weight needs grad, the weight when x does, and offs; the weight's gradient comes first. Every
    row of `shape` (rows, n, k) meets one expert's [n, k] weight; the kernel runs at the rate of one
    group's product, `per_expert` rows."""
    rows, n, k = shape
    saves = ([x] if weight.requires_grad else []) + ([weight] if x.requires_grad else []) + [offs]
    return tp.op(name, [x, weight], out_nbytes, saves, (("grad", 1), ("grad", 0)), kind="grouped", flops=2 * rows * n * k,
                 group=(per_expert, n, k))


def _scale_rows(tp: Tape, rows: T, weights: T, out_nbytes: int) -> T:
    """proj_out * sample_weights.unsqueeze(-1): a [S, 1] broadcast, in the promoted dtype.
    Backward makes both full-size products, then autograd casts one down and sums the other."""
    recipe = []
    if weights.requires_grad:
        recipe += [("tmp", out_nbytes), ("grad", 1)]
    if rows.requires_grad:
        recipe = ([("tmp", out_nbytes)] if out_nbytes != rows.nbytes else []) + [("grad", 0)] + recipe
    return tp.op("experts.weighted", [rows, weights], out_nbytes, _mul_saves(rows, weights), tuple(recipe))


QWEN2_MOE = Arch(unused_masks=unused_sliding_mask)
