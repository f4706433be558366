"""Sliding-window attention as transformers 5.17 runs it, for any architecture whose config has
sliding layers (`layer_types`; Gemma-2's alternate): masking_utils'
create_sliding_window_causal_mask and cache_utils' DynamicSlidingWindowLayer. Not tied to a model:
the Arch of each family decides which layers are sliding.
"""

from __future__ import annotations

from dataclasses import replace

from ..model import ModelSpec
from ..tape import T, Tape
from .hf_arch import FULL
from .hf_transformers import INT64, Shapes

SLIDING = "sliding_attention"
CACHE_SCALAR_BYTES = INT64  # DynamicSlidingWindowLayer's torch.tensor(sliding_window)


def sliding_mask(tp: Tape, sh: Shapes) -> T | None:
    """masking_utils.sdpa_mask with sliding_window_causal_mask_function: for SDPA, None while the key
    length is below the window (_ignore_causal_mask_sdpa with local_size), else the boolean
    [1, 1, q, kv] result of and_masks(window overlay, causal), expanded over the batch; eager turns
    it into an additive [b, 1, q, kv] mask in the model dtype (eager_mask's torch.where)."""
    if sh.attention != "eager" and sh.kv_len < sh.model.sliding_window:
        return None
    n = sh.seq * sh.kv_len
    # and_mask: result = ones(()) & overlay; result = result & causal: two [q, kv] terms, two results.
    overlay = tp.new("mask.window", n)
    first = tp.new("mask.and", n)
    tp.drop(overlay)
    causal = tp.new("mask.causal", n)
    keep = tp.new("mask.and", n)
    tp.drop(causal, first)
    if sh.attention != "eager":
        return keep
    mask = tp.new("mask.additive", sh.batch * n * sh.dtype_bytes)
    tp.drop(keep)
    return mask


# -- DynamicSlidingWindowLayer ---------------------------------------------------------------------
def layer_shapes(sh: Shapes, layer_type: str) -> Shapes:
    """A sliding layer attends to the last W-1 cached tokens plus the new ones (get_mask_sizes; update
    returns cat([kept, new]))."""
    if layer_type != SLIDING:
        return sh
    w = sh.model.sliding_window
    return replace(sh, past=min(sh.past, w - 1), window=w)


def allocates_like_full(sh: Shapes, masks: dict) -> bool:
    """Whether this step's sliding layers allocate what its full ones do: no cache to grow yet (the
    sliding cache's update order and window only matter past the prompt) and masks of one size."""
    size = {kind: mask.nbytes if mask is not None else 0 for kind, mask in masks.items()}
    return sh.past == 0 and size.get(SLIDING, 0) == size.get(FULL, 0)


def cached_tokens(m: ModelSpec, layer_type: str, past: int, from_prefill: bool) -> int:
    """Tokens a layer's K (or V) storage holds before a forward over `past` cached tokens. A sliding
    layer keeps a view of the last W-1 tokens of its last cat: after the prompt's prefill that cat
    held every prompt token; after a decode step, min(past, W)."""
    if layer_type != SLIDING or from_prefill:
        return past
    return min(past, m.sliding_window)


def sliding_window_scalars(m: ModelSpec) -> int:
    """DynamicSlidingWindowLayer.__init__: torch.tensor(sliding_window) (int64), moved to the device."""
    return sum(t == SLIDING for t in m.layer_types)
