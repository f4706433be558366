"""The training step's Program (memsim.runtimes.hf_steps describes the protocol): the prologue
(ids, embedding, rotary tables, masks), the decoder layers (saved, or recomputed under
checkpointing), the head and loss, backward, and optimizer.step(); and the forward-only step of a
method that trains without backward."""

from __future__ import annotations

from ..methods.base import LayerPlan
from ..methods.optimizer import StepMemory
from ..params import Param, Params, cuda_rounded
from ..program import Program
from ..tape import (ACTIVATIONS, COST, GPU, GRADIENTS, KV_CACHE, OPTIMIZER, TEMPORARIES, WEIGHTS, WORKSPACE, OpCost, T, Tape,
                    on_tier)
from . import autocast, rerun, sliding_window
from . import hf_transformers as hf
from .hf_inference import inference_forward
from .hf_steps import (StepConfig, add_weights, arch_of, cache_scalar_bytes, cache_scalars, causal_lm_loss, embed, layer_forward,
                       layer_runs, layer_types, param_shapes, per_param)
from .hf_transformers import FP32, INT64, Shapes
from .torch_cuda import cublas_workspace_bytes


def _train(cfg: StepConfig) -> Program:
    m = cfg.model
    use_cache = not cfg.recomputes  # transformers turns the cache off under gradient checkpointing
    sh = Shapes(m, cfg.batch, cfg.seq, cfg.dtype_bytes, cfg.attention, weights_dtype_bytes=cfg.weights_dtype_bytes, sm=cfg.sm)
    prog = Program()
    trainable = add_weights(prog, cfg)
    opt = cfg.step_optimizer
    if opt is None:
        raise ValueError("StepConfig.optimizer: a training step needs one")
    step_memory = opt.step_memory(trainable)

    # Prologue: ids, embedding, the cache object, positions, rotary tables, masks.
    arch = arch_of(m)
    tp0 = _forward_tape(cfg)
    ids, table, x0 = embed(tp0, sh, trainable=cfg.methods.trains("embed_tokens"))
    scalars = cache_scalars(tp0, m) if use_cache else 0
    pos = tp0.new("position_ids", sh.seq * INT64)
    cos, sin = hf.rotary_tables(tp0, sh)
    masks = arch.masks(tp0, sh)
    sliding = arch.unused_masks(tp0, sh)
    prog.add("forward", tp0.events)
    mark0 = len(tp0.events)

    built, owed, x0_owed, casts_owed = _train_layers(prog, cfg, sh, use_cache, cos, sin, masks)

    # Epilogue: final norm, lm_head, loss; the outputs (and their cache) die before backward.
    tp2 = _forward_tape(cfg)
    h_last = tp2.incoming("hidden", sh.hidden_state_bytes, ACTIVATIONS, requires_grad=True)
    norm_w = tp2.external("norm", m.hidden_size * sh.param_bytes, WEIGHTS, cfg.methods.trains("norm"), leaf=True)
    hn = arch.rms_norm(tp2, sh, h_last, norm_w)
    tp2.drop(h_last)
    if x0_owed:
        tp2.events.append((x0_owed, ACTIVATIONS, -1))  # inputs_embeds
    # Recomputed layers hold their arguments (position ids, masks) until their backward.
    held_args = [t for t in (pos, *masks.values()) if t is not None]
    if use_cache:
        tp2.events += [(t.nbytes, ACTIVATIONS, -1) for t in held_args]
    if sliding is not None:  # no layer's argument: dies with causal_mask_mapping
        tp2.events.append((sliding.nbytes, ACTIVATIONS, -1))
    loss, tail, head_casts = _head_and_loss(tp2, cfg, sh, hn, table)
    tp2.drop(hn)
    if owed or scalars:
        tp2.events.append((owed + scalars, KV_CACHE, -1))
    for c in head_casts:  # the autocast context exits after the outputs die
        c.release(tp2)
    if casts_owed:  # the cached casts were made as activations (ops.cast)
        tp2.events.append((casts_owed, ACTIVATIONS, -1))
    prog.add("forward", tp2.events)
    mark2 = len(tp2.events)
    seed = tp2.new("loss.grad", FP32, TEMPORARIES)
    tp2.backward({id(loss): seed})
    tp2.drop(loss, *tail)
    prog.add("backward", tp2.events[mark2:])

    for bwd, count in reversed(built):
        prog.add("backward", bwd, count)
    # Layer 0's input gradient flows into the embedding.
    g0 = tp0.incoming("grad.hidden", x0.nbytes, TEMPORARIES)
    x0.storage.external = True  # its free was accounted where its last reference died
    tp0.drop(cos, sin)  # saved by every layer's rope: layer 0's backward released the last
    if not use_cache:
        tp0.drop(*held_args)  # a recomputed layer 0's arguments, let go with its backward
    tp0.backward({id(x0): g0})
    prog.add("backward", tp0.events[mark0:])

    _optimizer_step(prog, opt, trainable, step_memory, costs=tp0.costs)
    return prog


def _head_and_loss(tp: Tape, cfg: StepConfig, sh: Shapes, hn: T, table: T) -> tuple[T, list[T], list]:
    """lm_head (tied to the embedding `table` or its own weight, cast under autocast) and the loss
    (a method's fused one, or transformers'): the loss, what it leaves for backward, the casts."""
    m = cfg.model
    head_trains = cfg.methods.trains("embed_tokens" if m.tie_word_embeddings else "lm_head")
    head_w = tp.external("lm_head", m.vocab_size * m.hidden_size * sh.param_bytes, WEIGHTS, head_trains, leaf=True)
    head_w.defers_grad = m.tie_word_embeddings  # its gradient waits in the embedding's InputBuffer
    head_casts = []
    if sh.autocast:
        head_w, head_casts = autocast.wrap(tp, head_w, m.hidden_size, m.vocab_size, sh.dtype_bytes, True)
    if m.tie_word_embeddings:
        table.grad_pending = table.nbytes  # tied: lm_head's gradient waits for the embedding's, then the two are summed
    loss, tail = cfg.methods.loss(tp, sh, hn, head_w) or causal_lm_loss(tp, sh, hn, head_w)
    table.pending_inplace = m.tie_word_embeddings and head_w.owns_grad
    return loss, tail, head_casts


def _train_layers(prog: Program, cfg: StepConfig, sh: Shapes, use_cache: bool, cos: T, sin: T, masks: dict):
    """The decoder layers' forward segments added to `prog`; returns their backward segments (in
    forward order, with repeats) and the bytes the epilogue frees for them: the caches' tensors,
    layer 0's input (inputs_embeds lives on in LlamaModel.forward; the others free theirs when the
    loop rebinds hidden_states) and autocast's cached weight casts that nothing saved."""
    built, owed, x0_owed, casts_owed = [], 0, 0, 0
    for first, count, block in layer_runs(cfg, layer_types(sh, masks)):
        fwd, bwd = [], []
        for plan, kind in block:
            lsh = sliding_window.layer_shapes(sh, kind)
            f, b, layer_owed, embeds_owed, layer_casts = _train_layer(cfg, lsh, first, plan, use_cache, cos, sin, masks[kind])
            fwd, bwd = fwd + f, b + bwd
            owed += count * layer_owed
            casts_owed += count * layer_casts
            x0_owed = x0_owed or embeds_owed
        prog.add("forward", fwd, count)
        built.append((bwd, count))
    return built, owed, x0_owed, casts_owed


def _optimizer_step(prog: Program, opt, trainable: Params, step_memory: StepMemory, costs: bool) -> None:
    """optimizer.step(): the first creates the state (_init_group), then the update's temporaries;
    zero_grad(set_to_none=True)."""
    prog.resident("optimizer state", list(opt.shared_state(trainable)), OPTIMIZER, lazy=True)
    for tier in (GPU, *sorted(opt.tiers())):
        on = lambda p, tier=tier: [n for n, t in zip(opt.state(p), opt.state_tiers(p)) if t == tier]  # noqa: E731
        for sizes, repeat in per_param(trainable, on):
            prog.resident("optimizer state", sizes, on_tier(OPTIMIZER, tier), repeat, lazy=True)
    if opt.steps_in_backward:
        step_memory = StepMemory(0)  # each parameter's step ran in backward; its gradient is gone
    if step_memory.temp_per_param:  # a foreach list: one tensor per parameter, all freed after the update
        for sign in (1, -1):
            for sizes, repeat in per_param(trainable, lambda p: (p.nbytes,)):
                prog.add("optimizer", [(n, TEMPORARIES, sign) for n in sizes], repeat)
    else:
        prog.add("optimizer", [(step_memory.temp_bytes, TEMPORARIES, 1), (step_memory.temp_bytes, TEMPORARIES, -1)])
    # foreach and fused steps run multi_tensor_apply kernels over the parameter lists; for-loop
    # ones (and Adafactor's per-parameter norms) a kernel per parameter and op, each a bare torch
    # op issued from the optimizer's Python loop.
    step = [(OpCost("optimizer.step", "memory", part.bytes, kernels=part.kernels,
                    layout="contiguous" if part.one_at_a_time else "foreach", issued_by="op" if part.one_at_a_time else ""), COST, 0)
            for part in opt.step_kernels(trainable)] if costs else []
    prog.add("optimizer", step + ([] if opt.steps_in_backward else [(trainable.total(), GRADIENTS, -1)]))


def _step_in_backward(cfg: StepConfig):
    """The tapes' hook for an optimizer stepped per parameter in backward: that parameter's step
    temporaries, then its gradient freed (zero_grad). None for a step after backward."""
    opt = cfg.step_optimizer
    if opt is None or not opt.steps_in_backward:
        return None
    by_name = {p.name: p for p in param_shapes(cfg)[1].walk(1)}

    def step(tp: Tape, leaf: T, grad_bytes: int) -> None:
        p = by_name.get(leaf.name) or Param(leaf.nbytes // cfg.param_bytes, 0, cfg.param_bytes, leaf.name)
        tp.transient(opt.param_step_bytes(p))
        tp.events.append((grad_bytes, GRADIENTS, -1))

    return step


def _forward_tape(cfg: StepConfig) -> Tape:
    """A tape of the training forward: its saved tensors where the methods keep them."""
    return Tape(saved_tier=cfg.methods.saved_tensors_tier())


def _forward_only_train(cfg: StepConfig) -> Program:
    """A training step of no-grad forwards with labels (a zeroth-order method's): each forward's
    outputs (logits, cache) die with it; before each, and for the update after them, the method
    draws a perturbation a parameter at a time."""
    prog = Program()
    all_params, _ = param_shapes(cfg)
    for sizes, repeat in per_param(all_params, lambda p: (p.nbytes,)):
        prog.resident("weights", sizes, WEIGHTS, repeat)
    prog.static("cuBLAS workspace", cublas_workspace_bytes(cfg.sm), WORKSPACE)
    sh = Shapes(cfg.model, cfg.batch, cfg.seq, cfg.dtype_bytes, cfg.attention, weights_dtype_bytes=cfg.weights_dtype_bytes, sm=cfg.sm)
    cache = 2 * cfg.model.num_layers * sh.kv_bytes + cache_scalar_bytes(cfg.model)
    # The loop's variable holds the last parameter's tensor while the next one's is made.
    sizes = [cuda_rounded(p.nbytes) for p in all_params.walk(2)]
    perturbation = max(a + b for a, b in zip(sizes, sizes[1:] + [0]))
    for _ in range(cfg.methods.forwards()):
        prog.add("perturb", [(perturbation, TEMPORARIES, 1), (perturbation, TEMPORARIES, -1)])
        inference_forward(prog, cfg, sh, "forward", logits_rows=cfg.seq, with_loss=True)
        prog.add("forward", [(cache, KV_CACHE, -1)])  # the outputs object, and its cache, die
    prog.add("optimizer", [(perturbation, TEMPORARIES, 1), (perturbation, TEMPORARIES, -1)])
    return prog


def _train_layer(cfg: StepConfig, sh: Shapes, first: bool, plan: LayerPlan, use_cache: bool, cos: T, sin: T, mask: T | None):
    """One decoder layer of a training step: (forward events, backward events, cache bytes,
    inputs_embeds bytes and autocast weight-cast bytes whose free is owed to the epilogue)."""
    tp = _forward_tape(cfg)
    casts: list = []
    x = tp.incoming("hidden", sh.hidden_state_bytes, ACTIVATIONS, requires_grad=_input_needs_grad(cfg, first))
    ext_cos = tp.external("cos", cos.nbytes)
    ext_sin = tp.external("sin", sin.nbytes)
    ext_mask = tp.external("mask", mask.nbytes) if mask is not None else None
    if plan.recompute:
        fwd, bwd = _recomputed_layer(cfg, sh, first, plan, ext_cos, ext_sin, ext_mask, casts)
        return fwd, bwd, 0, 0, autocast.release_later(tp, casts)
    cache = [] if use_cache else None
    out = layer_forward(cfg, tp, sh, x, ext_cos, ext_sin, cache, ext_mask, casts, plan)
    owed = sum(tp.release_later(t) for t in cache) if cache else 0
    casts_owed = autocast.release_later(tp, casts)
    x0_owed = 0
    if first:  # inputs_embeds: freed when LlamaModel.forward returns, unless saved
        x0_owed = tp.release_later(x)
    else:
        tp.drop(x)
    fwd = list(tp.events)
    g = tp.incoming("grad.hidden", sh.hidden_state_bytes, TEMPORARIES)
    tp.backward({id(out): g})
    return fwd, tp.events[len(fwd):], owed, x0_owed, casts_owed


def _input_needs_grad(cfg: StepConfig, first: bool) -> bool:
    """A layer's input needs grad unless it is a frozen embedding's output that no method marks
    (enable_input_require_grads)."""
    return not first or cfg.methods.trains("embed_tokens") or cfg.methods.marks_embedding_output()


def _recomputed_layer(cfg, sh, first, plan, cos, sin, mask, casts=None):
    """A layer under torch.utils.checkpoint (runtimes/rerun.py): the forward runs without
    saving anything but the layer's input; backward reruns the layer with grad up to its last
    saved tensor, backprops through it, then lets the input go."""
    tp = Tape(grad_enabled=False)
    x = tp.incoming("hidden", sh.hidden_state_bytes, ACTIVATIONS)
    tp._hold(x)  # the saved input
    out = layer_forward(cfg, tp, sh, x, cos, sin, None, mask, casts, plan)
    if not first:
        tp.drop(x)  # the loop variable; the checkpoint still holds it
    fwd = list(tp.events)

    rt = Tape()
    xr = rt.incoming("hidden", x.nbytes, ACTIVATIONS, requires_grad=_input_needs_grad(cfg, first))
    rcasts: list = []
    out2 = layer_forward(cfg, rt, sh, xr, cos, sin, None, mask, rcasts, plan)
    rt.drop(out2)
    for c in rcasts:  # the rerun's own autocast context exits: its cache lets go
        c.release(rt)
    replayed = rerun.stop_early(rt)
    if rt.costs:
        # Each tensor autograd saves goes through saved-tensor hooks in Python: packed in the
        # forward (a placeholder kept), packed again as the recompute saves it, unpacked by backward.
        saved = sum(len(n.saved) for n in rt.nodes)
        fwd.append((OpCost("saved_tensor_hooks.pack", "host", 0, host_calls=saved), COST, 0))
        replayed.append((OpCost("saved_tensor_hooks.recompute", "host", 0, host_calls=2 * saved), COST, 0))
    g = rt.incoming("grad.hidden", out.nbytes, TEMPORARIES)
    rerun.backward(rt, {id(out2): g}, replayed)  # out2's node is on the tape: the gradient flows through it
    rt.drop(xr)  # the saved input's hold; layer 0's input also dies here (its forward var is gone)
    return fwd, list(rt.events)
