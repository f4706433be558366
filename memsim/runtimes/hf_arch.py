"""Where a model family's transformers code departs from Llama's: a few named hooks, keyed by
model_type. The step protocols (hf_steps) call these instead of the Llama functions directly; a
family that needs none of them (Llama, Mistral, Qwen2) gets the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..tape import T, Tape
from . import hf_transformers as hf
from .hf_transformers import Shapes

FULL = "full_attention"


def llama_masks(tp: Tape, sh: Shapes) -> dict[str, T | None]:
    """LlamaModel.forward builds one causal mask, for every layer."""
    return {FULL: hf.causal_mask(tp, sh)}


def same(tp: Tape, sh: Shapes, x: T) -> T:
    return x


@dataclass(frozen=True)
class Arch:
    # (tp, sh, x, weight) -> normed: the decoder's RMSNorm (every norm, the final one included)
    rms_norm: Callable = hf.rms_norm
    # (tp, sh, x, w, cos, sin, cache, mask) -> out: one decoder layer
    decoder_layer: Callable = hf.decoder_layer
    # (tp, sh) -> {layer type: mask or None}: the masks the model's forward builds before its layers
    masks: Callable = llama_masks
    # (tp, sh, embedding output) -> inputs_embeds
    embed_post: Callable = same
    # (tp, sh, logits) -> logits: what the causal-LM head does to its logits before the loss
    logits_post: Callable = same
    # number of 8-byte tensors a DynamicCache built from the config allocates (model) -> int
    cache_scalars: Callable = lambda m: 0
    # (tp, sh) -> mask or None: a mask the model's forward builds that no layer uses, alive until
    # the forward returns (Qwen2-MoE's sliding-window mask)
    unused_masks: Callable = lambda tp, sh: None


LLAMA = Arch()
