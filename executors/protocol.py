"""The step protocols memsim predicts, as real torch code: what one train step, prefill, decode
step or generate call does. The tracer (trace.py) and the executor (run.py) both run these, so a
traced, a measured and a predicted figure are of the same program (memsim/runtimes/hf_steps.py
documents the protocols).
"""

from __future__ import annotations

import contextlib

import torch


def input_ids(batch: int, seq: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq))


def train_step(model, ids, opt, forward_ctx=contextlib.nullcontext, phase=lambda name: None, methods=()) -> None:
    """loss = model(input_ids, labels).loss (or a method's own loss); backward; step;
    zero_grad(set_to_none=True). The outputs object dies before backward, as in
    Trainer.compute_loss. `phase` labels each part."""
    phase("forward")
    with forward_ctx():
        loss = next((out for m in methods if (out := m.torch_loss(model, ids)) is not None), None)
        if loss is None:
            loss = model(input_ids=ids, labels=ids).loss
    phase("backward")
    loss.backward()
    del loss
    phase("optimizer")
    opt.step()
    opt.zero_grad(set_to_none=True)


@torch.no_grad()
def prefill(model, ids, cache=None, logits_to_keep: int = 1):
    """A prompt as generate() runs it: the cache filled, logits of the last position only; with
    logits_to_keep=0, of every position (a scoring forward, model(input_ids))."""
    return model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=logits_to_keep)


def new_cache(model):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


@torch.no_grad()
def decode_step(model, cache, next_ids) -> None:
    """One new token per sequence against the cache (DynamicLayer.update: cat([keys, new]))."""
    out = model(input_ids=next_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    del out


@torch.no_grad()
def reset_cache(cache, tokens: int) -> None:
    """Between timed decode steps: the cache cropped back to `tokens`, each layer's K and V made
    contiguous again, so that every step sees the cache a generate loop's step sees (the previous
    cat's contiguous output: crop alone leaves a strided view, whose cat runs at a quarter of the
    bandwidth). Sliding-window layers past their window cannot crop: they grow a token a step."""
    if cache.get_seq_length() > tokens:
        try:
            cache.crop(tokens - cache.get_seq_length())  # a negative count: drop that many tokens
        except RuntimeError:
            pass
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if t is not None and not t.is_contiguous():
                setattr(layer, name, t.contiguous())


@torch.no_grad()
def generate(model, ids, new_tokens: int, before_decode=None, sample_after_last: bool = True) -> torch.Tensor:
    """GenerationMixin._sample's memory-relevant steps, greedy: prefill, then for each new token
    the next-token logits copied to fp32, the ids grown by concatenation, and a one-token forward.
    generate() samples after its last forward too (`sample_after_last`); a decode step
    (new_tokens=1, sample_after_last=False) ends on the forward."""
    cache = new_cache(model)
    out = prefill(model, ids, cache)
    for i in range(new_tokens):
        logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
        del out
        nxt = logits.argmax(-1)
        ids = torch.cat([ids, nxt[:, None]], dim=-1)
        del logits
        if i == new_tokens - 1 and sample_after_last:
            break
        if before_decode is not None:
            before_decode(i)
        out = model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True, logits_to_keep=1)
    return ids
