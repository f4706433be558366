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

This module holds the step's configuration and the pieces every step builds on (the weights, the
embedding, a decoder layer's forward, the layer runs, the loss); hf_train.py builds the training
step, hf_inference.py the inference steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .. import ops
from ..methods.base import LayerPlan, LinearSite, Methods
from ..methods.optimizer import Optimizer
from ..model import ModelSpec
from ..params import Params, cuda_rounded, linear_shapes, model_params
from ..program import Program
from ..tape import KV_CACHE, WEIGHTS, WORKSPACE, T, Tape, leaf_grad_hook
from . import autocast, hf_gemma2, hf_moe, sliding_window
from . import hf_transformers as hf
from .hf_arch import FULL, LLAMA, Arch
from .hf_transformers import FP32, INT64, Shapes
from .torch_cuda import DEFAULT_SM, cublas_workspace_bytes

# Families whose code departs from Llama's (memsim/runtimes/hf_arch.py).
ARCHS = {"gemma2": hf_gemma2.GEMMA2, "qwen2_moe": hf_moe.QWEN2_MOE}


def arch_of(m: ModelSpec) -> Arch:
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
    from .hf_inference import _decode, _generate, _prefill  # they build on this module's pieces
    from .hf_train import _forward_only_train, _step_in_backward, _train

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


def add_weights(prog: Program, cfg: StepConfig) -> Params:
    """What is resident before a step: the parameters, and cuBLAS's workspaces (one per thread that
    runs matrix products: the caller's, and in training autograd's device thread)."""
    all_params, trainable = param_shapes(cfg)
    stored = cfg.methods.stored if cfg.task == "train" else lambda p: (p.nbytes,)
    for sizes, repeat in per_param(all_params, stored):
        prog.resident("weights", sizes, WEIGHTS, repeat)
    if cfg.task == "train" and cfg.methods.resident():
        prog.resident("weights", list(cfg.methods.resident()), WEIGHTS)
    for _ in range(2 if cfg.task == "train" else 1):
        prog.static("cuBLAS workspace", cublas_workspace_bytes(cfg.sm), WORKSPACE)
    return trainable


def per_param(params: Params, tensors) -> list[tuple[list[int], int]]:
    """(sizes, repeat) for the prefix, one layer block (repeated per layer) and the suffix, where
    `tensors(p)` gives the sizes of the tensors one parameter has."""
    def sizes(ps):
        return [n for p in ps for n in tensors(p)]

    return [(sizes(params.prefix), 1), (sizes(params.layer), params.layers), (sizes(params.suffix), 1)]


def embed(tp: Tape, sh: Shapes, trainable: bool) -> tuple[T, T, T]:
    m = sh.model
    ids = tp.new("input_ids", sh.tokens * INT64)
    table = tp.external("embed_tokens", m.vocab_size * m.hidden_size * sh.param_bytes, WEIGHTS, trainable, leaf=True)
    # embedding_dense_backward (CUDA): sorted and original indices, then the table's gradient.
    x0 = tp.op("embedding", [table, ids], sh.hidden_state_bytes, [ids], (ops.ws(2 * sh.tokens * INT64), ("grad", 0)))
    return ids, table, arch_of(m).embed_post(tp, sh, x0)


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


def layer_forward(cfg: StepConfig, tp: Tape, sh: Shapes, x: T, cos: T, sin: T, cache: list, mask, casts=None,
                   plan: LayerPlan = LayerPlan()) -> T:
    w = hf.layer_weights(tp, sh, trainable=plan.trainable)
    if cfg.model.is_moe:
        w.moe = hf_moe.MoeWeights.build(tp, sh, trainable=plan.trainable)
    wrappers = _wrapped_weights(cfg, tp, sh, w)
    if casts is not None:
        casts += wrappers
    return arch_of(sh.model).decoder_layer(tp, sh, x, w, cos, sin, cache, mask)


def layer_types(sh: Shapes, masks: dict) -> list[str]:
    """Each layer's attention type, sliding layers counted as full ones where this step makes them
    allocate alike (same shapes, masks of the same size), so that runs stay long."""
    m = sh.model
    if not m.layer_types:
        return [FULL] * m.num_layers
    if sliding_window.allocates_like_full(sh, masks):
        return [FULL] * m.num_layers
    return list(m.layer_types)


def layer_runs(cfg: StepConfig, types: list[str]) -> list[tuple[bool, int, tuple]]:
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


def cache_scalar_bytes(m: ModelSpec) -> int:
    """The 8-byte tensors a DynamicCache built from the config allocates (sliding layers'
    windows), each its own block."""
    return arch_of(m).cache_scalars(m) * cuda_rounded(sliding_window.CACHE_SCALAR_BYTES)


def cache_scalars(tp: Tape, m: ModelSpec) -> int:
    """Allocate the cache's own small tensors on `tp`; returns their bytes."""
    nbytes = cache_scalar_bytes(m)
    if nbytes:
        tp.events.append((nbytes, KV_CACHE, 1))
    return nbytes


def causal_lm_loss(tp: Tape, sh: Shapes, hn: T, head_w: T) -> tuple[T, list[T]]:
    """LlamaForCausalLM.forward + loss_utils.ForCausalLMLoss: logits for every position, upcast
    to fp32, labels padded and shifted, cross_entropy = log_softmax + nll_loss."""
    V = sh.model.vocab_size
    logits = ops.linear(tp, "lm_head", hn, head_w, sh.act(V))
    logits = arch_of(sh.model).logits_post(tp, sh, logits)
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


