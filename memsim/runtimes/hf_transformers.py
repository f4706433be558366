"""Runtime profile `hf-transformers`: what Hugging Face transformers 5.x allocates.

Each function below mirrors the transformers 5.17 code it names (models/llama/modeling_llama.py,
integrations/sdpa_attention.py, loss/loss_utils.py, cache_utils.py) op by op, with Python's
variable lifetimes: a tensor dies when its last variable is rebound or goes out of scope, unless
autograd saved it. The same code serves Llama, Mistral and Qwen2 (bias on q/k/v).

Checked against fake-tensor traces of the real code (memsim trace; tests/test_traced.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import ops
from ..model import ModelSpec
from ..tape import KV_CACHE, WEIGHTS, T, Tape
from .torch_cuda import DEFAULT_SM, padded_head_dim, sdpa_backend

FP32 = 4
CUDNN_WORKSPACE_EXTRA = 256  # bytes cuDNN's attention backward adds to its one workspace block (see sdpa_attention)
INT64 = 8


@dataclass(frozen=True)
class Shapes:
    """Sizes of one forward: b sequences of s new tokens attending to `past` cached ones."""

    model: ModelSpec
    batch: int
    seq: int
    dtype_bytes: int  # compute: matmul outputs (and, without autocast, everything)
    attention: str  # eager | sdpa
    past: int = 0
    window: int = 0  # a sliding-window layer's window (Gemma-2), 0 for full attention
    weights_dtype_bytes: int = 0  # the parameters' dtype under autocast (fp32); 0: dtype_bytes
    sm: int = DEFAULT_SM  # the GPU's compute capability: which SDPA kernel runs (torch_cuda)

    @property
    def param_bytes(self) -> int:
        return self.weights_dtype_bytes or self.dtype_bytes

    @property
    def residual_bytes(self) -> int:
        """The residual stream's dtype: the embedding's output, which autocast leaves alone (adds
        promote a 16-bit projection to it)."""
        return self.param_bytes

    @property
    def autocast(self) -> bool:
        return self.param_bytes != self.dtype_bytes

    @property
    def hidden_state_bytes(self) -> int:
        """One [batch, seq, hidden] residual-stream tensor."""
        return self.act(self.model.hidden_size, self.residual_bytes)

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def kv_len(self) -> int:
        return self.past + self.seq

    def act(self, width: int, dtype_bytes: int | None = None) -> int:
        """Bytes of a [batch, seq, width] tensor."""
        return self.tokens * width * (dtype_bytes or self.dtype_bytes)

    @property
    def kv_bytes(self) -> int:
        """One layer's K (or V) cache after this forward."""
        m = self.model
        return self.batch * m.num_kv_heads * self.kv_len * m.head_dim * self.dtype_bytes

    def sdpa_kernel(self, masked: bool = False) -> str:
        """The kernel CUDA's SDPA picks (torch_cuda.sdpa_backend) given transformers' arguments:
        without a mask, grouped KV heads go in as they are (enable_gqa); with one, repeated."""
        m = self.model
        gqa = not masked and m.num_heads != m.num_kv_heads
        return sdpa_backend(self.sm, self.dtype_bytes == 2, m.head_dim, masked, gqa)


@dataclass
class LayerWeights:
    q: T
    k: T
    v: T
    o: T
    gate: T
    up: T
    down: T
    ln1: T
    ln2: T
    q_bias: T | None = None
    k_bias: T | None = None
    v_bias: T | None = None
    o_bias: T | None = None
    moe: object | None = None  # hf_moe.MoeWeights: a sparse MoE block in place of the MLP


def layer_weights(tp: Tape, sh: Shapes, trainable: bool) -> LayerWeights:
    m, b = sh.model, sh.param_bytes
    d = m.hidden_size

    def w(name, n):
        return tp.external(name, n * b, WEIGHTS, requires_grad=trainable, leaf=True)

    lw = LayerWeights(
        q=w("q_proj", d * m.q_dim), k=w("k_proj", d * m.kv_dim), v=w("v_proj", d * m.kv_dim),
        o=w("o_proj", m.q_dim * d), gate=w("gate_proj", d * m.intermediate_size),
        up=w("up_proj", d * m.intermediate_size), down=w("down_proj", m.intermediate_size * d),
        ln1=w("input_layernorm", d), ln2=w("post_attention_layernorm", d),
    )
    if m.attention_bias:
        lw.q_bias, lw.k_bias, lw.v_bias = w("q_bias", m.q_dim), w("k_bias", m.kv_dim), w("v_bias", m.kv_dim)
    if m.o_proj_bias:
        lw.o_bias = w("o_bias", d)
    return lw


# -- LlamaRMSNorm.forward ----------------------------------------------------------------------
def rms_norm(tp: Tape, sh: Shapes, x: T, weight: T) -> T:
    d = sh.model.hidden_size
    x32 = ops.cast(tp, "norm.to_fp32", x, sh.act(d, FP32))  # hidden_states.to(torch.float32)
    sq = ops.unary_saving_input(tp, "norm.pow", x32, bwd_temps=(x32.nbytes, x32.nbytes))
    var = ops.reduce(tp, "norm.mean", sq, sh.act(1, FP32))
    tp.drop(sq)
    eps = tp.op("norm.add_eps", [var], var.nbytes, (), (("pass", 0),))
    rs = ops.unary_saving_output(tp, "norm.rsqrt", eps, bwd_temps=(eps.nbytes, eps.nbytes))
    tp.drop(eps)
    normed = ops.mul(tp, "norm.mul", x32, rs, x32.nbytes, layout="broadcast_rows")  # by a per-token scalar
    tp.drop(rs, x32)
    cast = ops.cast(tp, "norm.to_dtype", normed, x.nbytes)  # .to(input_dtype)
    out = ops.mul(tp, "norm.weight", weight, cast, cast.nbytes)
    tp.drop(cast, normed, var)
    return out


# -- apply_rotary_pos_emb / rotate_half --------------------------------------------------------
def rope(tp: Tape, x: T, cos: T, sin: T, out_nbytes: int | None = None) -> T:
    """`out_nbytes`: the promoted size when x is 16-bit and cos/sin fp32 (autocast)."""
    full, half = out_nbytes or x.nbytes, x.nbytes // 2
    # x is q_proj's output viewed [b, s, h, d] and transposed: the kernels reading it are strided.
    a = ops.mul(tp, "rope.mul_cos", x, cos, full, layout="strided")
    x1 = tp.view("rope.x1", x, half, recipe=(("grad", 0, full),))  # slice backward: zeros + copy
    x2 = tp.view("rope.x2", x, half, recipe=(("grad", 0, full),))
    neg = tp.op("rope.neg", [x2], half, (), (("grad", 0),), layout="strided")
    rot = tp.op("rope.cat", [neg, x1], x.nbytes, (), (("pass", 0), ("pass", 1)), kind="cat", layout="cat_strided")
    tp.drop(neg, x1, x2)
    b = ops.mul(tp, "rope.mul_sin", rot, sin, full)
    tp.drop(rot)
    out = ops.add(tp, "rope.add", a, b, layout="strided")
    tp.drop(a, b)
    return out


# -- LlamaAttention.forward ----------------------------------------------------------------------
def attention(tp: Tape, sh: Shapes, h: T, w: LayerWeights, cos: T, sin: T, cache: list, mask: T | None) -> tuple[T, T | None]:
    """Returns (attn_output, attn_weights) as LlamaAttention does: eager's weights, else None."""
    m = sh.model
    q = ops.linear(tp, "q_proj", h, w.q, sh.act(m.q_dim), w.q_bias)
    k = ops.linear(tp, "k_proj", h, w.k, sh.act(m.kv_dim), w.k_bias)
    v = ops.linear(tp, "v_proj", h, w.v, sh.act(m.kv_dim), w.v_bias)
    qe = rope(tp, q, cos, sin, sh.act(m.q_dim, sh.residual_bytes))
    ke = rope(tp, k, cos, sin, sh.act(m.kv_dim, sh.residual_bytes))
    tp.drop(q, k)
    if cache is None:  # use_cache=False (gradient checkpointing)
        kc, vc = ke, v
    else:
        kc, vc = cache_update(tp, sh, ke, v, cache)
        tp.drop(ke, v)
    if sh.attention == "eager":
        out, weights = eager_attention(tp, sh, qe, kc, vc, mask)
    elif mask is not None:  # an explicit mask (Gemma-2's sliding layers once the window is reached)
        out, weights = masked_sdpa_attention(tp, sh, qe, kc, vc, mask), None
    elif sh.autocast:  # autocast's SDPA wrapper casts q, k and v to the compute dtype; the casts
        # die when the wrapper returns, before transformers makes the output contiguous
        va, ka = (ops.cast(tp, "sdpa.autocast_kv", t, sh.kv_bytes) for t in (vc, kc))  # last argument first
        qa = ops.cast(tp, "sdpa.autocast_q", qe, sh.act(m.q_dim))
        out, weights = sdpa_attention(tp, sh, qa, ka, va), None
        tp.drop(qa, ka, va)
        out = sdpa_contiguous(tp, out)
    else:
        out, weights = sdpa_contiguous(tp, sdpa_attention(tp, sh, qe, kc, vc)), None
    o = ops.linear(tp, "o_proj", out, w.o, sh.act(m.hidden_size), w.o_bias)
    tp.drop(out)
    tp.drop(qe, kc, vc)  # query_states, key_states and value_states live until the forward returns
    return o, weights


def cache_update(tp: Tape, sh: Shapes, k: T, v: T, cache: list) -> tuple[T, T]:
    """DynamicLayer.update: keys = torch.cat([keys, new]) (an empty tensor at first). `cache`
    holds this layer's [K, V] from earlier steps (empty at first); it keeps the new ones. Both
    start empty in the keys' dtype (lazy_initialization), so under autocast, where RoPE made K
    fp32 and V is 16-bit, cat promotes V: both caches are fp32 (CUDA's cat copies each input into
    its slice of the output, casting on the way; no temporary).
    DynamicSlidingWindowLayer.update (sh.window) makes both cats before rebinding keys and values."""
    kv_bytes = k.nbytes // sh.seq * sh.kv_len
    out = []
    olds = []
    for i, new in enumerate((k, v)):
        old = cache[i] if cache else None
        inputs = [new] if old is None else [old, new]
        # A promoted input's gradient is cast back to its dtype (a new tensor), others pass through.
        recipe = tuple(("pass", j) if x is old or x.nbytes == k.nbytes else ("grad", j) for j, x in enumerate(inputs))
        t = tp.op("cache.cat", inputs, kv_bytes, (), recipe, category=KV_CACHE, kind="cat",
                  layout="cat_into_empty" if old is None else "cat")  # the first: a transposed K into an empty cache
        if old is not None:
            olds.append(old)
            if not sh.window:
                tp.drop(olds.pop())
        out.append(t)
    tp.drop(*olds)
    cache[:] = [tp._hold(out[0]), tp._hold(out[1])]
    return out[0], out[1]


def sdpa_attention(tp: Tape, sh: Shapes, q: T, k: T, v: T, bias: T | None = None) -> T:
    """sdpa_attention_forward: one fused kernel (flash, or cuDNN's, which allocates alike);
    transpose(1, 2).contiguous() of its output is free. An additive `bias` (masked_sdpa_attention)
    is saved for backward."""
    m = sh.model
    kernel = sh.sdpa_kernel(masked=bias is not None)
    if kernel == "math":
        return math_attention(tp, sh, q, k, v)
    b, hq, s = sh.batch, m.num_heads, sh.seq
    hd = padded_head_dim(m.head_dim) if kernel == "flash" else m.head_dim
    pads = []
    if hd != m.head_dim:  # attention.cpp pad_last_dim: copies at the padded width (backward: a slice)
        pads = [tp.op("sdpa.pad_head_dim", [x], x.nbytes // m.head_dim * hd, (), (("pass", 0),)) for x in (q, k, v)]
        q, k, v = pads
    out_bytes = sh.act(m.q_dim) // m.head_dim * hd
    if kernel in ("flash", "cudnn"):
        lse_bytes = b * hq * s * FP32
        # flash_api.cpp mha_bwd: softmax_d [b, h, s128] and dq_accum [b, s128, h, hd32] in fp32;
        # with GQA, dk/dv are first computed per query head ([b, s_k, h, hd]) then summed. cuDNN's
        # backward holds the same pieces in one workspace block.
        s128 = -(-s // 128) * 128
        hd32 = -(-hd // 32) * 32 if hd <= 192 else 256
        workspace = [b * hq * s128 * FP32, b * s128 * hq * hd32 * FP32]
        if m.num_kv_heads != hq:
            workspace += [b * sh.kv_len * hq * hd * sh.dtype_bytes] * 2
    else:  # memory-efficient: logsumexp padded to 32 rows
        lse_bytes = b * hq * (-(-s // 32) * 32) * FP32 if tp.grad_enabled and q.requires_grad else 0
        workspace = [b * hq * s * FP32]  # delta
    # Backward launches a main kernel and one a workspace piece (cuDNN's: bprop, dot_do_o,
    # convert_dq and, with GQA, two fmha_reduce_head, as the profiles show).
    backward_kernels = 1 + len(workspace)
    if kernel == "cudnn":  # one block of them all and 256 B more (torch's allocator history on an H200,
        # data/validation/allocator-traces-h200/: 328,433,920 B for Qwen2.5-1.5B b26 s1024, 84,214,016 B
        # for Llama-3-8B b5 s512, once a layer)
        workspace = [sum(workspace) + CUDNN_WORKSPACE_EXTRA]
    # Two products per head over the score matrix; causal (no mask, no cache) skips half of it.
    # Backward recomputes the scores and makes four products: 2.5 times the forward's.
    causal = bias is None and sh.past == 0 and s > 1
    flops = 4 * b * hq * s * sh.kv_len * hd * (0.5 if causal else 1.0)
    out, lse, seed, offset = tp.op(f"sdpa.{kernel}", [q, k, v], out_bytes, extra_outputs=(lse_bytes, 8, 8),
                                   kind="attention", flops=flops, backward_flops=2.5, head_dim=hd, masked=bias is not None,
                                   seq=s)
    recipe = (("grad", 0), ("grad", 1), ("grad", 2)) + tuple(ops.ws(n) for n in workspace)
    saved = [q, k, v] + ([bias] if bias is not None else []) + [out, lse, seed, offset]
    cost = tp.last_cost and replace(tp.last_cost, backward_kernels=backward_kernels)
    tp.record(f"sdpa.{kernel}", [q, k, v], out, saved, recipe, cost)
    tp.drop(lse, seed, offset, *pads)
    if hd != m.head_dim:  # the output sliced back to the head dim (a view of the padded one)
        sliced = tp.view("sdpa.unpad", out, sh.act(m.q_dim), recipe=(("grad", 0, out_bytes),))
        tp.drop(out)
        out = sliced
    return out


def sdpa_contiguous(tp: Tape, out: T) -> T:
    """sdpa_attention_forward's transpose(1, 2).contiguous(): free for the fused kernels' [b, s, h, d]
    output, a copy of the padded one's slice (sdpa_attention's view, smaller than its storage)."""
    if out.nbytes == out.storage.nbytes:
        return out
    copied = ops.copy(tp, "sdpa.out_contiguous", out)
    tp.drop(out)
    return copied


# attention.cpp preprocess_mask: the memory-efficient kernel's bias is padded to a multiple of 16 keys.
MEM_EFF_ALIGNMENT = 16


def masked_sdpa_attention(tp: Tape, sh: Shapes, q: T, k: T, v: T, mask: T) -> T:
    """sdpa_attention_forward with a boolean mask: use_gqa_in_sdpa is False, so K and V are repeated
    per query head; torch's scaled_dot_product_attention makes the mask additive in the model dtype
    (attention.cpp convert_boolean_attn_mask: zeros_like(mask) [b, 1, q, kv], masked_fill_ where
    logical_not(mask)). cuDNN takes that bias as it is; for the memory-efficient kernel
    preprocess_mask expands it to [b, h, q, kv] and, when kv is not a multiple of 16, pads it (a
    [b, h, q, kv16] copy). The kernel saves what it was given."""
    m = sh.model
    rep = m.num_heads // m.num_kv_heads
    kr = repeat_kv(tp, sh, k, rep)
    vr = repeat_kv(tp, sh, v, rep)
    n = sh.batch * sh.seq * sh.kv_len
    bias = tp.new("sdpa.mask_additive", n * sh.dtype_bytes)
    tp.drop(tp.new("sdpa.mask_not", n))
    if sh.sdpa_kernel(masked=True) == "efficient" and sh.kv_len % MEM_EFF_ALIGNMENT:
        kv16 = -(-sh.kv_len // MEM_EFF_ALIGNMENT) * MEM_EFF_ALIGNMENT
        padded = tp.new("sdpa.mask_padded", sh.batch * m.num_heads * sh.seq * kv16 * sh.dtype_bytes)
        tp.drop(bias)
        bias = padded
    # (the math fallback is modeled as the causal math path)
    out = sdpa_attention(tp, sh, q, kr, vr, bias)
    tp.drop(kr, vr, bias)
    return out


def math_attention(tp: Tape, sh: Shapes, q: T, k: T, v: T) -> T:
    """aten/src/ATen/native/transformers/attention.cpp _scaled_dot_product_attention_math with
    enable_gqa and is_causal: K and V repeated per query head, q and k scaled by sqrt(scale), the
    causal mask (a tril boolean made a float [L, S] mask) added to the scores in place,
    _safe_softmax, then @ V."""
    m = sh.model
    b, hq, s, kv = sh.batch, m.num_heads, sh.seq, sh.kv_len
    rep = m.num_heads // m.num_kv_heads
    scores = b * hq * s * kv * sh.dtype_bytes
    kr = repeat_kv(tp, sh, k, rep)
    vr = repeat_kv(tp, sh, v, rep)
    qs = ops.scale(tp, "math.q_scale", q)
    ks = ops.scale(tp, "math.k_scale", kr)
    tp.drop(kr)
    bmm = 2 * b * hq * s * kv * m.head_dim  # one of the two batched products
    att = tp.op("math.qk", [qs, ks], scores, [qs, ks], (("grad", 0), ("grad", 1)), kind="flops", flops=bmm)
    tp.drop(qs, ks)
    if s > 1:
        # ones and tril (bool), then convert_boolean_attn_mask's where: three small kernels
        mask = tp.new("math.causal_mask", s * kv * sh.dtype_bytes)
        tp.work("math.causal_mask", s * kv * (3 + sh.dtype_bytes), kernels=3)
        masked = T("math.mask_add_", tp._hold(att).storage)  # attn.add_(mask): AddBackward passes the gradient on
        tp.record("math.mask_add_", [att], masked, (), (("pass", 0),), layout="broadcast", read=(mask,))
        tp.drop(mask, att)
        att = masked
    p = _safe_softmax(tp, att, b * hq * s * kv, b * hq * s)
    tp.drop(att)
    out = tp.op("math.pv", [p, vr], sh.act(m.q_dim), [p, vr], (("grad", 0), ("grad", 1)), kind="flops", flops=bmm)
    tp.drop(p, vr)
    return out


def _safe_softmax(tp: Tape, x: T, elements: int, rows: int) -> T:
    """at::_safe_softmax (SoftMax.cpp): softmax, then rows whose scores are all -inf set to 0
    (isneginf, all over the row, where), four kernels (the profiler's, SmolLM2-360M fp32 on an
    H200); one node, whose backward is the softmax's, on the saved result (derivatives.yaml)."""
    out = tp.op("math.softmax", [x], x.nbytes)
    softmax = tp.last_cost
    neg_inf = tp.op("math.isneginf", [x], elements, layout="contiguous")  # bool, vectorized (as profiled)
    all_masked = tp.op("math.all_masked_rows", [neg_inf], rows, layout="reduce")
    p = tp.op("math.where_masked_rows", [all_masked, out], x.nbytes, layout="broadcast")
    tp.record("math.softmax", [x], p, [p], (("grad", 0),), softmax)
    tp.drop(neg_inf, all_masked, out)  # the function's locals, freed as it returns
    return p


def repeat_kv(tp: Tape, sh: Shapes, x: T, rep: int) -> T:
    """expand + reshape: a copy per query head; backward sums the copies (one kv-size gradient)."""
    if rep == 1:
        return tp.view("repeat_kv", x)
    return tp.op("repeat_kv", [x], x.nbytes * rep, (), (("grad", 0),))


def eager_attention(tp: Tape, sh: Shapes, q: T, k: T, v: T, mask: T | None) -> tuple[T, T]:
    """eager_attention_forward: scores materialized, softmax in fp32, then cast back. Returns the
    output and the attention weights, which the caller holds (see decoder_layer)."""
    m = sh.model
    b, hq, s, kv = sh.batch, m.num_heads, sh.seq, sh.kv_len
    rep = m.num_heads // m.num_kv_heads
    scores = b * hq * s * kv * sh.dtype_bytes
    kr = repeat_kv(tp, sh, k, rep)
    vr = repeat_kv(tp, sh, v, rep)
    # q is [b, h, s, d] over a [b, s, h, d] layout: matmul's reshape to [b*h, s, d] copies it,
    # unless b or s is 1 (then the dims merge as a view).
    qc = ops.copy(tp, "matmul.q_contiguous", q) if b > 1 and s > 1 else tp.view("matmul.q", q)
    bmm = 2 * b * hq * s * kv * m.head_dim  # one of the two batched products
    att = tp.op("attn.qk", [qc, kr], scores, [qc, kr], (("grad", 0), ("grad", 1)), kind="flops", flops=bmm)
    tp.drop(qc)  # key_states (kr) is a local: it lives until the function returns
    scaled = ops.scale(tp, "attn.scale", att)
    tp.drop(att)
    if m.attn_logit_softcapping:  # Gemma-2's eager_attention_forward: scores / cap, tanh, * cap
        from .hf_gemma2 import softcap

        scaled = softcap(tp, "attn.softcap", scaled)
    if mask is not None:
        masked = ops.add(tp, "attn.mask", scaled, mask, scores)
        tp.drop(scaled)
        scaled = masked
    s32 = ops.cast(tp, "softmax.to_fp32", scaled, scores // sh.dtype_bytes * FP32)
    p32 = ops.unary_saving_output(tp, "softmax", s32)
    tp.drop(s32)
    p = ops.cast(tp, "softmax.to_dtype", p32, scores)
    tp.drop(p32, scaled)
    out = tp.op("attn.pv", [p, vr], sh.act(m.q_dim), [p, vr], (("grad", 0), ("grad", 1)), kind="flops", flops=bmm)
    oc = ops.copy(tp, "attn.transpose_contiguous", out)
    tp.drop(out, kr, vr)
    return oc, p


# -- LlamaMLP.forward --------------------------------------------------------------------------
def mlp(tp: Tape, sh: Shapes, h: T, w: LayerWeights, width: int | None = None) -> T:
    """`width`: the intermediate size when it is not the config's (Qwen2-MoE's shared expert)."""
    m = sh.model
    width = width or m.intermediate_size
    gate = ops.linear(tp, "gate_proj", h, w.gate, sh.act(width))
    act = ops.unary_saving_input(tp, "act_fn", gate)
    tp.drop(gate)
    up = ops.linear(tp, "up_proj", h, w.up, sh.act(width))
    prod = ops.mul(tp, "act*up", act, up, act.nbytes)
    tp.drop(act, up)
    out = ops.linear(tp, "down_proj", prod, w.down, sh.act(m.hidden_size))
    tp.drop(prod)
    return out


# -- LlamaDecoderLayer.forward -------------------------------------------------------------------
def decoder_layer(tp: Tape, sh: Shapes, x: T, w: LayerWeights, cos: T, sin: T, cache: list, mask: T | None) -> T:
    h = rms_norm(tp, sh, x, w.ln1)
    # `hidden_states, _ = self.self_attn(...)`: `_` keeps eager's attention weights alive until
    # the layer returns, through the MLP.
    a, attn_weights = attention(tp, sh, h, w, cos, sin, cache, mask)
    tp.drop(h)
    mid = ops.add(tp, "residual.attn", x, a)
    tp.drop(a)
    h = rms_norm(tp, sh, mid, w.ln2)
    f = w.moe.forward(tp, sh, h) if w.moe is not None else mlp(tp, sh, h, w)
    tp.drop(h)
    out = ops.add(tp, "residual.mlp", mid, f)
    tp.drop(f, mid, attn_weights)
    return out


# -- LlamaModel.forward: position ids, rotary tables, the mask ------------------------------------
def rotary_tables(tp: Tape, sh: Shapes) -> tuple[T, T]:
    """LlamaRotaryEmbedding.forward: fp32 tables for the positions, then cast to the model dtype.
    The model's position_ids are arange(s).unsqueeze(0): the tables have batch 1 and broadcast."""
    b, s, hd = 1, sh.seq, sh.model.head_dim
    inv = tp.new("rope.inv_freq", hd // 2 * FP32)
    freqs = tp.new("rope.freqs", b * s * hd // 2 * FP32)
    emb = tp.new("rope.emb", b * s * hd * FP32)
    tabs = []
    for fn in ("cos", "sin"):
        raw = tp.new(f"rope.{fn}", emb.nbytes)
        tabs.append(tp.new(f"rope.{fn}_scaled", emb.nbytes))
        tp.drop(raw)
    cos = tp.new("rope.cos_cast", b * s * hd * sh.residual_bytes)  # .to(x.dtype)
    sin = tp.new("rope.sin_cast", b * s * hd * sh.residual_bytes)
    tp.drop(inv, freqs, emb, *tabs)
    return cos, sin


def causal_mask(tp: Tape, sh: Shapes) -> T | None:
    """masking_utils.create_causal_mask: None for SDPA without padding (is_causal is used);
    eager gets an additive [b, 1, s, kv] mask built from a boolean one."""
    if sh.attention != "eager":
        return None
    keep = tp.new("mask.bool", sh.seq * sh.kv_len)
    mask = tp.new("mask.additive", sh.batch * sh.seq * sh.kv_len * sh.dtype_bytes)
    tp.drop(keep)
    return mask
