"""The inference steps' Programs (memsim.runtimes.hf_steps describes the protocols): prefill, one
decode step against a cache, and generate (the larger of its prefill and its last decode step)."""

from __future__ import annotations

from ..program import Program
from ..tape import ACTIVATIONS, KV_CACHE, WEIGHTS, T, Tape
from . import sliding_window
from . import hf_transformers as hf
from .hf_arch import FULL
from .hf_steps import (StepConfig, add_weights, arch_of, cache_scalar_bytes, cache_scalars, causal_lm_loss, layer_forward, layer_runs,
                       layer_types)
from .hf_transformers import FP32, INT64, Shapes


def inference_forward(prog: Program, cfg: StepConfig, sh: Shapes, label: str, logits_rows: int,
                       with_loss: bool = False) -> int:
    """One no-grad forward that appends to a DynamicCache of `sh.past` tokens (`with_loss`: with
    labels, the loss over every position). Returns the bytes it leaves behind (the grown cache and
    the kept logits)."""
    m = cfg.model
    arch = arch_of(m)
    tp0 = Tape(grad_enabled=False)
    ids = tp0.new("input_ids", sh.tokens * INT64)
    x0 = arch.embed_post(tp0, sh, tp0.new("embedding", sh.hidden_state_bytes))
    if not sh.past:  # the model's forward builds the DynamicCache (generate's is already there: static)
        cache_scalars(tp0, m)
    pos = tp0.new("position_ids", sh.seq * INT64)
    cos, sin = hf.rotary_tables(tp0, sh)
    masks = arch.masks(tp0, sh)
    sliding = arch.unused_masks(tp0, sh)
    prog.add(label, tp0.events)

    for first, count, block in layer_runs(cfg, layer_types(sh, masks)):
        events = []
        for _, kind in block:
            events += _inference_layer(cfg, sh, kind, first, cos, sin, masks[kind])
        prog.add(label, events, count)

    tp2 = Tape(grad_enabled=False)
    h_last = tp2.incoming("hidden", x0.nbytes)
    norm_w = tp2.external("norm", m.hidden_size * sh.param_bytes, WEIGHTS)
    hn = arch.rms_norm(tp2, sh, h_last, norm_w)
    tp2.drop(h_last)
    for t in (x0, pos, cos, sin, *masks.values(), sliding):
        if t is not None:
            tp2.events.append((t.nbytes, ACTIVATIONS, -1))
    if with_loss:
        head_w = tp2.external("lm_head", m.vocab_size * m.hidden_size * sh.param_bytes, WEIGHTS)
        loss, _ = causal_lm_loss(tp2, sh, hn, head_w)
        tp2.drop(hn, loss)
        prog.add(label, tp2.events)
        return 0, ids.nbytes
    rows = Shapes(m, sh.batch, logits_rows, sh.dtype_bytes, sh.attention, sm=sh.sm)
    sliced = tp2.new("hidden[:, -k:]", rows.act(m.hidden_size)) if logits_rows != sh.seq else None
    # Under autocast lm_head casts the sliced hidden states (that copy is `sliced`) and, uncached
    # (requires_grad is off for inference), its weight.
    head_cast = tp2.new("lm_head.autocast", m.vocab_size * m.hidden_size * sh.dtype_bytes) if sh.autocast else None
    logits = arch.logits_post(tp2, rows, tp2.new("logits", rows.act(m.vocab_size)))
    tp2.drop(hn, sliced, head_cast)
    prog.add(label, tp2.events)
    return logits.nbytes, ids.nbytes


def _inference_layer(cfg: StepConfig, sh: Shapes, kind: str, first: bool, cos: T, sin: T, mask: T | None) -> list:
    """One no-grad decoder layer of type `kind`: its cache grows from what the previous step left
    (a cache of `sh.past` tokens came straight from the prompt's prefill when past == seq)."""
    m = cfg.model
    tp = Tape(grad_enabled=False)
    x = tp.incoming("hidden", sh.hidden_state_bytes)
    held = sliding_window.cached_tokens(m, kind, sh.past, from_prefill=sh.past == cfg.seq)
    past = Shapes(m, sh.batch, held, sh.dtype_bytes, sh.attention, sm=sh.sm)
    cache = [tp.incoming("cache.k", past.kv_bytes, KV_CACHE), tp.incoming("cache.v", past.kv_bytes, KV_CACHE)] if sh.past else []
    layer_forward(cfg, tp, sliding_window.layer_shapes(sh, kind), x, tp.external("cos", cos.nbytes), tp.external("sin", sin.nbytes),
                   cache, tp.external("mask", mask.nbytes) if mask is not None else None)
    if not first:
        tp.drop(x)
    return tp.events


def _prefill(cfg: StepConfig) -> Program:
    prog = Program()
    add_weights(prog, cfg)
    sh = Shapes(cfg.model, cfg.batch, cfg.seq, cfg.dtype_bytes, cfg.attention, weights_dtype_bytes=cfg.weights_dtype_bytes, sm=cfg.sm)
    inference_forward(prog, cfg, sh, "prefill", logits_rows=cfg.seq if cfg.all_logits else 1)
    return prog


def prefill_program(cfg: StepConfig) -> Program:
    """A prefill alone (what generate starts with)."""
    return _prefill(cfg)


def decode_program(cfg: StepConfig, past: int) -> Program:
    """One decode step against `past` cached tokens."""
    return _decode(cfg, past)


def _cache_static(prog: Program, cfg: StepConfig, tokens: int) -> None:
    """The K and V of every layer before a decode step over `tokens` cached ones (sliding layers hold
    their window: sliding_window.cached_tokens), and the cache's own small tensors."""
    m = cfg.model
    types = m.layer_types or (FULL,) * m.num_layers
    for kind in set(types):
        held = sliding_window.cached_tokens(m, kind, tokens, from_prefill=tokens == cfg.seq)
        sh = Shapes(m, cfg.batch, held, cfg.dtype_bytes, cfg.attention, sm=cfg.sm)
        prog.resident("kv cache", [sh.kv_bytes, sh.kv_bytes], KV_CACHE, repeat=types.count(kind))
    prog.static("kv cache", cache_scalar_bytes(m), KV_CACHE)


def _decode(cfg: StepConfig, past: int, prog: Program | None = None) -> Program:
    prog = prog or Program()
    if not prog.segments:
        add_weights(prog, cfg)
        _cache_static(prog, cfg, past)
    sh = Shapes(cfg.model, cfg.batch, 1, cfg.dtype_bytes, cfg.attention, past=past, sm=cfg.sm)
    inference_forward(prog, cfg, sh, "decode", logits_rows=1)
    prog.carries = (KV_CACHE,)
    return prog


def _generate(cfg: StepConfig) -> Program:
    """The last decode step holds the longest cache; generate's own tensors ride along: the
    growing input_ids, the fp32 copy of the next-token logits, the unfinished-sequence flags."""
    prefill = _prefill(cfg)
    if cfg.new_tokens <= 1:
        return prefill
    m = cfg.model
    past = cfg.seq + cfg.new_tokens - 2  # the cache before the last step's forward
    last = Program()
    add_weights(last, cfg)
    _cache_static(last, cfg, past)
    ids = cfg.batch * (past + 1) * INT64
    last.static("generate state", ids + cfg.batch * m.vocab_size * FP32, ACTIVATIONS)
    _decode(cfg, past, last)
    prefill.notes.append("generate: peak of prefill and of the last decode step")
    return _max_program(prefill, last)


def _max_program(a: Program, b: Program) -> Program:
    """A program whose peak is the larger of two alternatives' (they never coexist)."""
    from ..simulator import simulate

    return a if simulate(a).bytes >= simulate(b).bytes else b
