"""Programs for one step of a Hugging Face transformers causal LM: train, prefill, decode, generate.

The step protocols (what the executors run, and what a user's loop does):
- train:   loss = model(input_ids=ids, labels=ids).loss; loss.backward(); optimizer.step();
           optimizer.zero_grad(set_to_none=True), in its steady state (the outputs object is
           dropped before backward, as Trainer.compute_loss does).
- prefill: under torch.no_grad(), model(input_ids, use_cache=True, logits_to_keep=1), as
           generate() runs a prompt.
- decode:  one new token per sequence against a cache of `seq` tokens.
- generate: prefill of `seq` tokens, then `new_tokens` decode steps, greedy, as
           GenerationMixin._sample runs them; the peak is the larger of the prefill and the
           last decode step, which holds the longest cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .. import ops
from ..methods.base import LayerPlan, LinearSite, Methods
from ..methods.optimizer import Optimizer, StepMemory
from ..model import ModelSpec
from ..params import Param, Params, cuda_rounded, linear_shapes, model_params
from ..program import Program
from ..tape import ACTIVATIONS, COST, GPU, GRADIENTS, KV_CACHE, OPTIMIZER, TEMPORARIES, WEIGHTS, WORKSPACE, OpCost, T, Tape, leaf_grad_hook, on_tier
from . import autocast, hf_gemma2, hf_moe, sliding_window
from . import hf_transformers as hf
from .hf_arch import FULL, LLAMA, Arch
from .hf_transformers import FP32, INT64, Shapes
from .torch_cuda import DEFAULT_SM, cublas_workspace_bytes

# Families whose code departs from Llama's (memsim/runtimes/hf_arch.py).
ARCHS = {"gemma2": hf_gemma2.GEMMA2, "qwen2_moe": hf_moe.QWEN2_MOE}


def _arch(m: ModelSpec) -> Arch:
    return ARCHS.get(m.model_type, LLAMA)


@dataclass(frozen=True)
class StepConfig:
    model: ModelSpec
    task: str
    batch: int
    seq: int
    dtype_bytes: int
    attention: str = "sdpa"
    optimizer: Optimizer | None = None  # a training step's (memsim.methods)
    methods: Methods = Methods()
    new_tokens: int = 0
    all_logits: bool = False  # prefill: logits of every position (else the last one's)
    weights_dtype_bytes: int = 0  # parameters' dtype when it differs from compute (autocast); 0: the same
    sm: int = DEFAULT_SM  # the GPU's compute capability (torch_cuda: attention kernel, cuBLAS workspace)

    @property
    def param_bytes(self) -> int:
        return self.weights_dtype_bytes or self.dtype_bytes

    @cached_property
    def plans(self) -> list[LayerPlan]:
        """Each decoder layer's plan: what the methods make of it in training, plain otherwise."""
        if self.task != "train":
            return [LayerPlan()] * self.model.num_layers
        return self.methods.plans(self.model.num_layers)

    @property
    def step_optimizer(self) -> Optimizer | None:
        """The optimizer the step runs: the workload's, as its methods make it (GaLore projects it)."""
        return self.methods.wrap_optimizer(self.optimizer) if self.optimizer else None

    @property
    def recomputes(self) -> bool:
        """Some layer is recomputed (transformers' gradient checkpointing is on)."""
        return any(p.recompute for p in self.plans)


def param_sizes(cfg: StepConfig) -> tuple[list[int], list[int]]:
    """Every parameter's bytes, and the trainable ones' (for gradients and optimizer state)."""
    all_params, trainable = param_shapes(cfg)
    return [p.nbytes for p in all_params.walk(cfg.model.num_layers)], [p.nbytes for p in trainable.walk(cfg.model.num_layers)]


def param_shapes(cfg: StepConfig) -> tuple[Params, Params]:
    """Every parameter, in model.parameters() order (the model's inventory and the parameters its
    methods add to each layer), and the trainable ones."""
    m = cfg.model
    base = model_params(m, cfg.param_bytes)
    extra = cfg.methods.extra_params(m) if cfg.task == "train" else ()
    everything = Params(base.prefix, base.layer + extra, m.num_layers, base.suffix)
    if cfg.task != "train":
        return everything, everything
    ends = lambda ps: tuple(p for p in ps if cfg.methods.trains(p.name))  # noqa: E731
    trained_layers = sum(p.trainable for p in cfg.plans)
    layer = extra or base.layer
    if extra and trained_layers:
        raise ValueError("a method's added parameters beside trained base layers are not modeled")
    return everything, Params(ends(base.prefix), layer, m.num_layers if extra else trained_layers, ends(base.suffix))


def build_program(cfg: StepConfig) -> Program:
    if cfg.task == "train":
        if not cfg.methods.backward():
            return _forward_only_train(cfg)
        with leaf_grad_hook(_step_in_backward(cfg)):
            return _train(cfg)
    if cfg.task == "prefill":
        return _prefill(cfg)
    if cfg.task == "decode":
        return _decode(cfg, cfg.seq)
    if cfg.task == "generate":
        return _generate(cfg)
    raise ValueError(cfg.task)


# ---------------------------------------------------------------------------------------------
def _weights(prog: Program, cfg: StepConfig) -> Params:
    """What is resident before a step: the parameters, and cuBLAS's workspaces (one per thread that
    runs matrix products: the caller's, and in training autograd's device thread)."""
    all_params, trainable = param_shapes(cfg)
    stored = cfg.methods.stored if cfg.task == "train" else lambda p: (p.nbytes,)
    for sizes, repeat in _per_param(all_params, stored):
        prog.resident("weights", sizes, WEIGHTS, repeat)
    if cfg.task == "train" and cfg.methods.resident():
        prog.resident("weights", list(cfg.methods.resident()), WEIGHTS)
    for _ in range(2 if cfg.task == "train" else 1):
        prog.static("cuBLAS workspace", cublas_workspace_bytes(cfg.sm), WORKSPACE)
    return trainable


def _per_param(params: Params, tensors) -> list[tuple[list[int], int]]:
    """(sizes, repeat) for the prefix, one layer block (repeated per layer) and the suffix, where
    `tensors(p)` gives the sizes of the tensors one parameter has."""
    def sizes(ps):
        return [n for p in ps for n in tensors(p)]

    return [(sizes(params.prefix), 1), (sizes(params.layer), params.layers), (sizes(params.suffix), 1)]


def _embed(tp: Tape, sh: Shapes, trainable: bool) -> tuple[T, T, T]:
    m = sh.model
    ids = tp.new("input_ids", sh.tokens * INT64)
    table = tp.external("embed_tokens", m.vocab_size * m.hidden_size * sh.param_bytes, WEIGHTS, trainable, leaf=True)
    # embedding_dense_backward (CUDA): sorted and original indices, then the table's gradient.
    x0 = tp.op("embedding", [table, ids], sh.hidden_state_bytes, [ids], (ops.ws(2 * sh.tokens * INT64), ("grad", 0)))
    return ids, table, _arch(m).embed_post(tp, sh, x0)


def _wrapped_weights(cfg: StepConfig, tp: Tape, sh: Shapes, w: hf.LayerWeights) -> list:
    """Each projection's weight as the methods run it, then under autocast where it is on
    (runtimes/autocast.py); returns the autocast wrappers whose cached casts live until the
    autocast context exits."""
    wrappers = []
    for name, (fan_in, fan_out) in linear_shapes(sh.model).items():
        attr = name.removesuffix("_proj")
        weight = getattr(w, attr)
        if cfg.task == "train":
            weight = cfg.methods.wrap_linear(tp, LinearSite(name, fan_in, fan_out, sh.dtype_bytes), weight)
        if sh.autocast:
            weight, ws = autocast.wrap(tp, weight, fan_in, fan_out, sh.dtype_bytes, cfg.task == "train")
            wrappers += ws
        setattr(w, attr, weight)
    return wrappers


def _layer_forward(cfg: StepConfig, tp: Tape, sh: Shapes, x: T, cos: T, sin: T, cache: list, mask, casts=None,
                   plan: LayerPlan = LayerPlan()) -> T:
    w = hf.layer_weights(tp, sh, trainable=plan.trainable)
    if cfg.model.is_moe:
        w.moe = hf_moe.MoeWeights.build(tp, sh, trainable=plan.trainable)
    wrappers = _wrapped_weights(cfg, tp, sh, w)
    if casts is not None:
        casts += wrappers
    return _arch(sh.model).decoder_layer(tp, sh, x, w, cos, sin, cache, mask)


def _train(cfg: StepConfig) -> Program:
    m = cfg.model
    use_cache = not cfg.recomputes  # transformers turns the cache off under gradient checkpointing
    sh = Shapes(m, cfg.batch, cfg.seq, cfg.dtype_bytes, cfg.attention, weights_dtype_bytes=cfg.weights_dtype_bytes, sm=cfg.sm)
    prog = Program()
    trainable = _weights(prog, cfg)
    opt = cfg.step_optimizer
    if opt is None:
        raise ValueError("StepConfig.optimizer: a training step needs one")
    step_memory = opt.step_memory(trainable)

    # Prologue: ids, embedding, the cache object, positions, rotary tables, masks.
    arch = _arch(m)
    tp0 = _forward_tape(cfg)
    ids, table, x0 = _embed(tp0, sh, trainable=cfg.methods.trains("embed_tokens"))
    scalars = _cache_scalars(tp0, m) if use_cache else 0
    pos = tp0.new("position_ids", sh.seq * INT64)
    cos, sin = hf.rotary_tables(tp0, sh)
    masks = arch.masks(tp0, sh)
    sliding = arch.unused_masks(tp0, sh)
    prog.add("forward", tp0.events)
    mark0 = len(tp0.events)

    # Layers: layer 0 keeps its input (inputs_embeds lives on in LlamaModel.forward); the others
    # free theirs when the loop rebinds hidden_states. Checkpointing changes what a layer keeps.
    built = []
    owed = 0
    x0_owed = 0
    casts_owed = 0  # autocast's cached weight casts that nothing saved: freed when the context exits
    for first, count, block in _layer_runs(cfg, _layer_types(sh, masks)):
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
    head_trains = cfg.methods.trains("embed_tokens" if m.tie_word_embeddings else "lm_head")
    head_w = tp2.external("lm_head", m.vocab_size * m.hidden_size * sh.param_bytes, WEIGHTS, head_trains, leaf=True)
    head_w.defers_grad = m.tie_word_embeddings  # its gradient waits in the embedding's InputBuffer
    head_casts = []
    if sh.autocast:
        head_w, head_casts = autocast.wrap(tp2, head_w, m.hidden_size, m.vocab_size, sh.dtype_bytes, True)
    if m.tie_word_embeddings:
        table.grad_pending = table.nbytes  # tied: lm_head's gradient waits for the embedding's, then the two are summed
    loss, tail = cfg.methods.loss(tp2, sh, hn, head_w) or _loss(tp2, sh, hn, head_w)
    table.pending_inplace = m.tie_word_embeddings and head_w.owns_grad
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

    # optimizer.step(): the first creates the state (_init_group), then the update's temporaries;
    # zero_grad(set_to_none=True).
    prog.resident("optimizer state", list(opt.shared_state(trainable)), OPTIMIZER, lazy=True)
    for tier in (GPU, *sorted(opt.tiers())):
        on = lambda p, tier=tier: [n for n, t in zip(opt.state(p), opt.state_tiers(p)) if t == tier]  # noqa: E731
        for sizes, repeat in _per_param(trainable, on):
            prog.resident("optimizer state", sizes, on_tier(OPTIMIZER, tier), repeat, lazy=True)
    if opt.steps_in_backward:
        step_memory = StepMemory(0)  # each parameter's step ran in backward; its gradient is gone
    if step_memory.temp_per_param:  # a foreach list: one tensor per parameter, all freed after the update
        for sign in (1, -1):
            for sizes, repeat in _per_param(trainable, lambda p: (p.nbytes,)):
                prog.add("optimizer", [(n, TEMPORARIES, sign) for n in sizes], repeat)
    else:
        prog.add("optimizer", [(step_memory.temp_bytes, TEMPORARIES, 1), (step_memory.temp_bytes, TEMPORARIES, -1)])
    # foreach and fused steps run multi_tensor_apply kernels over the parameter lists; for-loop
    # ones (and Adafactor's per-parameter norms) a kernel per parameter and op, each a bare torch
    # op issued from the optimizer's Python loop.
    step = [(OpCost("optimizer.step", "memory", part.bytes, kernels=part.kernels,
                    layout="contiguous" if part.one_at_a_time else "foreach", issued_by="op" if part.one_at_a_time else ""), COST, 0)
            for part in opt.step_kernels(trainable)] if tp0.costs else []
    prog.add("optimizer", step + ([] if opt.steps_in_backward else [(trainable.total(), GRADIENTS, -1)]))
    return prog


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
    for sizes, repeat in _per_param(all_params, lambda p: (p.nbytes,)):
        prog.resident("weights", sizes, WEIGHTS, repeat)
    prog.static("cuBLAS workspace", cublas_workspace_bytes(cfg.sm), WORKSPACE)
    sh = Shapes(cfg.model, cfg.batch, cfg.seq, cfg.dtype_bytes, cfg.attention, weights_dtype_bytes=cfg.weights_dtype_bytes, sm=cfg.sm)
    cache = 2 * cfg.model.num_layers * sh.kv_bytes + _cache_scalar_bytes(cfg.model)
    # The loop's variable holds the last parameter's tensor while the next one's is made.
    sizes = [cuda_rounded(p.nbytes) for p in all_params.walk(2)]
    perturbation = max(a + b for a, b in zip(sizes, sizes[1:] + [0]))
    for _ in range(cfg.methods.forwards()):
        prog.add("perturb", [(perturbation, TEMPORARIES, 1), (perturbation, TEMPORARIES, -1)])
        _inference_forward(prog, cfg, sh, "forward", logits_rows=cfg.seq, with_loss=True)
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
    out = _layer_forward(cfg, tp, sh, x, ext_cos, ext_sin, cache, ext_mask, casts, plan)
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


def _layer_types(sh: Shapes, masks: dict) -> list[str]:
    """Each layer's attention type, sliding layers counted as full ones where this step makes them
    allocate alike (same shapes, masks of the same size), so that runs stay long."""
    m = sh.model
    if not m.layer_types:
        return [FULL] * m.num_layers
    if sliding_window.allocates_like_full(sh, masks):
        return [FULL] * m.num_layers
    return list(m.layer_types)


def _layer_runs(cfg: StepConfig, types: list[str]) -> list[tuple[bool, int, tuple]]:
    """(is layer 0, repeats, block) runs: layer 0 alone, then blocks of consecutive layers, each a
    tuple of (LayerPlan, layer type), repeated; a block is one layer, or the shortest period of
    the pattern (Gemma-2's alternating sliding/full layers: two; a method's every k-th layer: k),
    so the program does not grow with depth."""
    L = cfg.model.num_layers
    keys = list(zip(cfg.plans, types))
    periods = sorted({n * p for p in cfg.methods.layer_periods() for n in (1, 2)} | {2})
    runs: list[tuple[bool, int, tuple]] = [(True, 1, (keys[0],))]
    i = 1
    while i < L:
        best_p, best_n = 1, 1
        for p in periods:
            block = keys[i:i + p]
            if len(block) < p:
                continue
            n = 1
            while keys[i + n * p:i + (n + 1) * p] == block:
                n += 1
            if n * p > best_p * best_n or (n * p == best_p * best_n and p < best_p):
                best_p, best_n = p, n
        runs.append((False, best_n, tuple(keys[i:i + best_p])))
        i += best_p * best_n
    return runs


def _cache_scalar_bytes(m: ModelSpec) -> int:
    """The 8-byte tensors a DynamicCache built from the config allocates (sliding layers'
    windows), each its own block."""
    return _arch(m).cache_scalars(m) * cuda_rounded(sliding_window.CACHE_SCALAR_BYTES)


def _cache_scalars(tp: Tape, m: ModelSpec) -> int:
    """Allocate the cache's own small tensors on `tp`; returns their bytes."""
    nbytes = _cache_scalar_bytes(m)
    if nbytes:
        tp.events.append((nbytes, KV_CACHE, 1))
    return nbytes


def _input_needs_grad(cfg: StepConfig, first: bool) -> bool:
    """A layer's input needs grad unless it is a frozen embedding's output that no method marks
    (enable_input_require_grads)."""
    return not first or cfg.methods.trains("embed_tokens") or cfg.methods.marks_embedding_output()


def _recomputed_layer(cfg, sh, first, plan, cos, sin, mask, casts=None):
    """A layer under torch.utils.checkpoint, non-reentrant (transformers 5's default): the forward
    runs without saving anything but the layer's input; backward reruns the layer with grad
    (stopping early, before the last residual add), backprops through it, then lets the input go."""
    tp = Tape(grad_enabled=False)
    x = tp.incoming("hidden", sh.hidden_state_bytes, ACTIVATIONS)
    tp._hold(x)  # the saved input
    out = _layer_forward(cfg, tp, sh, x, cos, sin, None, mask, casts, plan)
    if not first:
        tp.drop(x)  # the loop variable; the checkpoint still holds it
    fwd = list(tp.events)

    rt = Tape()
    xr = rt.incoming("hidden", x.nbytes, ACTIVATIONS, requires_grad=_input_needs_grad(cfg, first))
    rcasts: list = []
    out2 = _layer_forward(cfg, rt, sh, xr, cos, sin, None, mask, rcasts, plan)
    if rt.costs:
        # Each tensor autograd saves goes through saved-tensor hooks in Python: packed in the
        # forward (a placeholder kept), packed again as the recompute saves it, unpacked by backward.
        saved = sum(len(n.saved) for n in rt.nodes)
        fwd.append((OpCost("saved_tensor_hooks.pack", "host", 0, host_calls=saved), COST, 0))
        rt.events.append((OpCost("saved_tensor_hooks.recompute", "host", 0, host_calls=2 * saved), COST, 0))
    rt.drop(out2)  # recomputed outputs are discarded (early stop skips even this last add)
    for c in rcasts:  # the recompute's own autocast context exits: its cache lets go
        c.release(rt)
    g = rt.incoming("grad.hidden", out.nbytes, TEMPORARIES)
    rt.backward({id(out2): g})  # out2's node is still on the tape: the gradient flows through it
    rt.drop(xr)  # the saved input's hold; layer 0's input also dies here (its forward var is gone)
    return fwd, list(rt.events)


def _loss(tp: Tape, sh: Shapes, hn: T, head_w: T) -> tuple[T, list[T]]:
    """LlamaForCausalLM.forward + loss_utils.ForCausalLMLoss: logits for every position, upcast
    to fp32, labels padded and shifted, cross_entropy = log_softmax + nll_loss."""
    V = sh.model.vocab_size
    logits = ops.linear(tp, "lm_head", hn, head_w, sh.act(V))
    logits = _arch(sh.model).logits_post(tp, sh, logits)
    l32 = ops.cast(tp, "loss.logits_fp32", logits, sh.act(V, FP32))
    padded = tp.new("loss.labels_padded", sh.batch * (sh.seq + 1) * INT64)
    shifted = tp.new("loss.labels_shifted", sh.tokens * INT64)
    lsm = ops.unary_saving_output(tp, "log_softmax", l32)
    loss, total_weight = tp.op("nll_loss", [lsm], FP32, extra_outputs=(FP32,))
    # nll_loss saves its input (log_softmax's saved output: one storage, unless saved-tensor hooks
    # pack each reference apart), the targets and total_weight (derivatives.yaml).
    tp.record("nll_loss", [lsm], loss, [lsm, shifted, total_weight], (("grad", 0),), tp.last_cost)
    tp.drop(total_weight, lsm, l32, padded, shifted)
    tp.drop(logits)  # outputs.logits dies with the outputs object
    return loss, []


# ---------------------------------------------------------------------------------------------
def _inference_forward(prog: Program, cfg: StepConfig, sh: Shapes, label: str, logits_rows: int,
                       with_loss: bool = False) -> int:
    """One no-grad forward that appends to a DynamicCache of `sh.past` tokens (`with_loss`: with
    labels, the loss over every position). Returns the bytes it leaves behind (the grown cache and
    the kept logits)."""
    m = cfg.model
    arch = _arch(m)
    tp0 = Tape(grad_enabled=False)
    ids = tp0.new("input_ids", sh.tokens * INT64)
    x0 = arch.embed_post(tp0, sh, tp0.new("embedding", sh.hidden_state_bytes))
    if not sh.past:  # the model's forward builds the DynamicCache (generate's is already there: static)
        _cache_scalars(tp0, m)
    pos = tp0.new("position_ids", sh.seq * INT64)
    cos, sin = hf.rotary_tables(tp0, sh)
    masks = arch.masks(tp0, sh)
    sliding = arch.unused_masks(tp0, sh)
    prog.add(label, tp0.events)

    for first, count, block in _layer_runs(cfg, _layer_types(sh, masks)):
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
        loss, _ = _loss(tp2, sh, hn, head_w)
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
    _layer_forward(cfg, tp, sliding_window.layer_shapes(sh, kind), x, tp.external("cos", cos.nbytes), tp.external("sin", sin.nbytes),
                   cache, tp.external("mask", mask.nbytes) if mask is not None else None)
    if not first:
        tp.drop(x)
    return tp.events


def _prefill(cfg: StepConfig) -> Program:
    prog = Program()
    _weights(prog, cfg)
    sh = Shapes(cfg.model, cfg.batch, cfg.seq, cfg.dtype_bytes, cfg.attention, weights_dtype_bytes=cfg.weights_dtype_bytes, sm=cfg.sm)
    _inference_forward(prog, cfg, sh, "prefill", logits_rows=cfg.seq if cfg.all_logits else 1)
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
    prog.static("kv cache", _cache_scalar_bytes(m), KV_CACHE)


def _decode(cfg: StepConfig, past: int, prog: Program | None = None) -> Program:
    prog = prog or Program()
    if not prog.segments:
        _weights(prog, cfg)
        _cache_static(prog, cfg, past)
    sh = Shapes(cfg.model, cfg.batch, 1, cfg.dtype_bytes, cfg.attention, past=past, sm=cfg.sm)
    _inference_forward(prog, cfg, sh, "decode", logits_rows=1)
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
    _weights(last, cfg)
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
