"""Gemma-2 in the `hf-transformers` profile: where transformers 5.17's models/gemma2/modeling_gemma2.py
departs from Llama's code, op by op. Everything else (projections, rotary embedding, SDPA/eager
attention, the MLP, the loss) is the shared code of hf_transformers.

What differs, and what it costs in memory:
- Gemma2TextScaledWordEmbedding: embedding * embed_scale.to(dtype) (sqrt(hidden_size), a 0-d buffer
  in the model dtype): a second [b, s, d] tensor, the first freed.
- Gemma2RMSNorm computes in fp32 and scales by (1 + weight.float()) before casting back, so autograd
  keeps the fp32 normalized tensor (Llama keeps the cast one in the model dtype); four per layer
  (input, post_attention, pre_feedforward, post_feedforward).
- gelu_pytorch_tanh (activations.GELUTanh: F.gelu(approximate="tanh")): saves its input, like SiLU.
- attn_logit_softcapping: eager_attention_forward divides the scores, takes tanh (saving its output)
  and multiplies back; the sdpa path drops `softcap` (integrations/sdpa_attention.py ignores it).
- final_logit_softcapping: the same three ops on the full-vocabulary logits.
- layer_types alternate sliding and full attention (Gemma2Config.__post_init__); the sliding
  layers' semantics, shared with any model that has them, are in sliding_window.py. A sliding layer
  gets masking_utils.create_sliding_window_causal_mask's mask: for SDPA it is None (is_causal) only
  while the key length is below the window, else a boolean [1, 1, q, kv] mask that
  sdpa_attention_forward passes with K/V repeated per head (see hf.masked_sdpa_attention). Its cache
  is a DynamicSlidingWindowLayer (cache_utils): cat([kept, new]) then a view of the last W-1 tokens,
  which keeps the whole cat's storage alive.
"""

from __future__ import annotations

from .. import ops
from ..tape import WEIGHTS, T, Tape
from . import hf_transformers as hf
from .hf_arch import FULL, Arch
from .hf_transformers import FP32, Shapes
from .sliding_window import SLIDING, layer_shapes, sliding_mask, sliding_window_scalars


# -- Gemma2RMSNorm.forward ---------------------------------------------------------------------
def rms_norm(tp: Tape, sh: Shapes, x: T, weight: T) -> T:
    """output = _norm(x.float()); output = output * (1.0 + weight.float()); output.type_as(x)."""
    d = sh.model.hidden_size
    x32 = ops.cast(tp, "gnorm.to_fp32", x, sh.act(d, FP32))
    sq = ops.unary_saving_input(tp, "gnorm.pow", x32, bwd_temps=(x32.nbytes, x32.nbytes))
    var = ops.reduce(tp, "gnorm.mean", sq, sh.act(1, FP32))
    tp.drop(sq)
    eps = tp.op("gnorm.add_eps", [var], var.nbytes, (), (("pass", 0),))
    tp.drop(var)
    rs = ops.unary_saving_output(tp, "gnorm.rsqrt", eps, bwd_temps=(eps.nbytes, eps.nbytes))
    tp.drop(eps)
    normed = ops.mul(tp, "gnorm.mul", x32, rs, x32.nbytes)
    tp.drop(rs, x32)
    w32 = ops.cast(tp, "gnorm.weight_fp32", weight, d * FP32)
    one_plus = tp.op("gnorm.one_plus", [w32], d * FP32, (), (("pass", 0),))
    tp.drop(w32)
    out32 = ops.mul(tp, "gnorm.scale", normed, one_plus, normed.nbytes)
    tp.drop(normed, one_plus)
    out = ops.cast(tp, "gnorm.to_dtype", out32, sh.act(d))
    tp.drop(out32)
    return out


def softcap(tp: Tape, name: str, x: T) -> T:
    """x = x / cap; x = tanh(x); x = x * cap: each rebinding frees the previous tensor unless saved;
    tanh saves its output. Consumes the caller's handle on x."""
    a = ops.scale(tp, f"{name}.div", x)
    tp.drop(x)
    t = ops.unary_saving_output(tp, f"{name}.tanh", a)
    tp.drop(a)
    out = ops.scale(tp, f"{name}.mul", t)
    tp.drop(t)
    return out


def logits_softcap(tp: Tape, sh: Shapes, logits: T) -> T:
    """Gemma2ForCausalLM.forward: final_logit_softcapping on the logits."""
    if not sh.model.final_logit_softcapping:
        return logits
    return softcap(tp, "logits.softcap", logits)


def embed_scale(tp: Tape, sh: Shapes, x: T) -> T:
    """Gemma2TextScaledWordEmbedding.forward: embedding * self.embed_scale.to(self.weight.dtype). The
    0-d buffer already has the model's dtype (the model is built in it), so .to() copies nothing."""
    scale = tp.external("embed_scale", sh.dtype_bytes)
    out = ops.mul(tp, "embed.scale", x, scale, x.nbytes)
    tp.drop(x)
    return out


# -- Gemma2DecoderLayer.forward ------------------------------------------------------------------
def decoder_layer(tp: Tape, sh: Shapes, x: T, w: hf.LayerWeights, cos: T, sin: T, cache: list, mask: T | None) -> T:
    trainable = w.ln1.requires_grad
    h = rms_norm(tp, sh, x, w.ln1)
    # `hidden_states, _ = self.self_attn(...)`: eager's attention weights live until the layer returns.
    a, attn_weights = hf.attention(tp, sh, h, w, cos, sin, cache, mask)
    tp.drop(h)
    a2 = rms_norm(tp, sh, a, w.ln2)  # post_attention_layernorm
    tp.drop(a)
    mid = ops.add(tp, "residual.attn", x, a2)
    tp.drop(a2)
    h = rms_norm(tp, sh, mid, _norm_weight(tp, sh, "pre_feedforward_layernorm", trainable))
    f = hf.mlp(tp, sh, h, w)
    tp.drop(h)
    f2 = rms_norm(tp, sh, f, _norm_weight(tp, sh, "post_feedforward_layernorm", trainable))
    tp.drop(f)
    out = ops.add(tp, "residual.mlp", mid, f2)
    tp.drop(f2, mid, attn_weights)
    return out


def _norm_weight(tp: Tape, sh: Shapes, name: str, trainable: bool) -> T:
    return tp.external(name, sh.model.hidden_size * sh.dtype_bytes, WEIGHTS, requires_grad=trainable, leaf=True)


# -- Gemma2Model.forward: the two masks ------------------------------------------------------------
def masks(tp: Tape, sh: Shapes) -> dict[str, T | None]:
    """causal_mask_mapping: create_causal_mask for the full layers, then
    create_sliding_window_causal_mask for the sliding ones (both built before the first layer)."""
    return {FULL: hf.causal_mask(tp, sh), SLIDING: sliding_mask(tp, layer_shapes(sh, SLIDING))}


GEMMA2 = Arch(
    rms_norm=rms_norm,
    decoder_layer=decoder_layer,
    masks=masks,
    embed_post=embed_scale,
    logits_post=logits_softcap,
    cache_scalars=sliding_window_scalars,
)
