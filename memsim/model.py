"""ModelSpec: the architecture facts memory depends on, read from a Hugging Face config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import InputError, first_error, read_data, shown
from .params import model_params

# model_type values whose decoder layer the hf-transformers profile models.
DENSE_TYPES = {"llama", "mistral", "qwen2", "gemma2"}
MOE_TYPES = {"mixtral", "qwen2_moe"}
SUPPORTED_TYPES = DENSE_TYPES | MOE_TYPES
REQUIRED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")

# Bounds of a config's sizes. Layers: the allocator replay walks every layer's allocations (about
# 1 ms a layer a prediction on one core), and the deepest published decoder stack has 1,000 layers
# (DeepNet, arXiv:2203.00555; Llama-3.1-405B has 126): 1,024 predict in about two seconds. Other
# sizes: 2**24, 64 times the largest dimension of any published model (Gemma's 256,000-token
# vocabulary), so a typo of a few digits is an error, not a figure past float range.
MAX_LAYERS = 512
MAX_SIZE = 1 << 24

# The sizing keys memsim reads that a config.json may omit, with its config class's default
# (transformers 5.17, models/<type>/configuration_<type>.py): what transformers builds from the
# file, and a report's note says which it filled. Unnoted, as every class has them: attention_bias,
# mlp_bias false and Qwen2-MoE's qkv_bias true (bias vectors, a hidden size wide), hidden_act silu,
# use_sliding_window false. head_dim null or absent (but for Gemma-2) is hidden_size //
# num_attention_heads, as the attention modules derive it.
CLASS_DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", dict(intermediate_size=11008, tie_word_embeddings=False)),
    "mistral": ("MistralConfig", dict(intermediate_size=14336, tie_word_embeddings=False, num_key_value_heads=8)),
    "qwen2": ("Qwen2Config", dict(intermediate_size=22016, tie_word_embeddings=False, num_key_value_heads=32)),
    "gemma2": ("Gemma2Config", dict(intermediate_size=9216, tie_word_embeddings=True, num_key_value_heads=4, head_dim=256,
                                    hidden_activation="gelu_pytorch_tanh", sliding_window=4096,
                                    attn_logit_softcapping=50.0, final_logit_softcapping=30.0)),
    "mixtral": ("MixtralConfig", dict(intermediate_size=14336, tie_word_embeddings=False, num_key_value_heads=8,
                                      num_local_experts=8, num_experts_per_tok=2)),
    "qwen2_moe": ("Qwen2MoeConfig", dict(intermediate_size=5632, tie_word_embeddings=False, num_key_value_heads=16,
                                         num_experts=60, num_experts_per_tok=4, moe_intermediate_size=1408,
                                         shared_expert_intermediate_size=5632, norm_topk_prob=False)),
}
# Where num_key_value_heads null means the heads (the classes' __post_init__); LlamaConfig's
# default is that null. Gemma-2's and Qwen2-MoE's classes have no such rule.
NULL_KV_IS_HEADS = {"llama", "mistral", "qwen2", "mixtral"}
# Config classes that refuse a hidden size the heads do not divide (validate_architecture), even
# with head_dim given; the others need head_dim given then (their modules fail on the remainder).
DIVIDED_HIDDEN = {"llama", "gemma2"}
# Qwen2Attention: q/k/v with a bias always; Mistral's and Mixtral's: never (no config key).
FIXED_ATTENTION_BIAS = {"qwen2": True, "mistral": False, "mixtral": False}
# Families whose every layer slides when the config gives a window (MistralModel, MixtralModel);
# memsim models their layers as full attention (ModelSpec.full_attention_window).
WINDOWED_TYPES = ("mistral", "mixtral")
LAYER_TYPES = ("full_attention", "sliding_attention")
# Activations that run as one ATen op saving its input (transformers activations.py: SiLUActivation
# -> F.silu; GELUTanh -> F.gelu(approximate="tanh"); GELUActivation -> F.gelu), which mlp() models.
FUSED_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu", "silu")


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    model_type: str
    hidden_size: int = Field(gt=0, le=MAX_SIZE)
    intermediate_size: int = Field(gt=0, le=MAX_SIZE)
    num_layers: int = Field(gt=0, le=MAX_LAYERS)
    num_heads: int = Field(gt=0, le=MAX_SIZE)
    num_kv_heads: int = Field(gt=0, le=MAX_SIZE)
    head_dim: int = Field(gt=0, le=MAX_SIZE)
    vocab_size: int = Field(gt=0, le=MAX_SIZE)
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q, k and v projections' biases
    o_proj_bias: bool = False  # Llama's and Gemma-2's attention_bias biases o_proj too (Qwen2's does not)
    mlp_bias: bool = False
    hidden_activation: str = "silu"
    # Gemma-2: per-layer attention kind, the window of the sliding ones (tokens), logit soft-caps (None: off).
    layer_types: tuple[str, ...] = ()
    sliding_window: int = 0
    # Mistral's and Mixtral's sliding_window, which transformers applies to every layer (a sliding
    # mask, a cache of the window): modeled as full attention, so the report notes it past the window.
    full_attention_window: int = 0
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    # Mixture of experts (0 experts: dense).
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    norm_topk_prob: bool = False  # top-k routing weights renormalized to sum to 1 (Mixtral always)
    # What the config left out and its config class's default filled (for the report's notes).
    notes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of num_key_value_heads ({self.num_kv_heads})"
            )
        return self

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def param_count(self) -> int:
        return model_params(self, 1).total(lambda p: p.numel)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], name: str = "inline") -> ModelSpec:
        """Build from config.json keys, typed as transformers types them; a missing, mistyped or
        out-of-range key, or one whose memory memsim does not model, is a one-line InputError."""
        if not isinstance(cfg, dict):
            raise InputError(f"model config '{name}': must be a mapping of config.json keys, not {type(cfg).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in cfg]
        if missing:
            raise InputError(f"model config '{name}': missing key(s) {', '.join(missing)}; a Hugging Face config.json has them")
        model_type = cfg.get("model_type", "llama")
        if not isinstance(model_type, str) or model_type not in SUPPORTED_TYPES:
            raise InputError(
                f"model config '{name}': model_type {shown(model_type)} is not modeled yet; supported: {', '.join(sorted(SUPPORTED_TYPES))}"
            )
        keys = _Keys(cfg, name, model_type)
        _refuse_unmodeled(keys, model_type)
        fields = dict(name=name, model_type=model_type, **_shape_fields(keys, model_type))
        if model_type == "gemma2":
            fields.update(_gemma2_fields(keys, fields["num_layers"]))
        if model_type in WINDOWED_TYPES:
            fields.update(_window_fields(keys))
        if model_type in MOE_TYPES:
            fields.update(_moe_fields(keys, model_type))
        filled = [f"{k}={json.dumps(v)}" for k, v in keys.filled.items()]
        if "model_type" not in cfg:
            filled.insert(0, "model_type=\"llama\"")
        if filled:
            fields["notes"] = (f"model config '{name}': keys absent, filled with {keys.cls_name}'s defaults "
                               f"(transformers 5.17): {', '.join(filled)}",)
        try:
            return cls(**fields)
        except ValueError as e:
            raise InputError(f"model config '{name}': {first_error(e)}", detail=e) from None

    @classmethod
    def from_path(cls, path: Path) -> ModelSpec:
        cfg = read_data(path, "model config.json", as_json=True)
        return cls.from_config(cfg, name=Path(path).stem)


_ABSENT = object()


class _Keys:
    """A config.json's keys read strictly, as transformers' config classes type them: a size is an
    integer (not a string, float or boolean) within memsim's bounds, a flag is true or false. A key
    absent takes its config class's default (CLASS_DEFAULTS), listed in `filled`."""

    def __init__(self, cfg: dict[str, Any], name: str, model_type: str):
        self.cfg, self.name = cfg, name
        self.cls_name, self.defaults = CLASS_DEFAULTS[model_type]
        self.filled: dict[str, Any] = {}

    def error(self, text: str) -> InputError:
        return InputError(f"model config '{self.name}': {text}")

    def get(self, key: str, default=_ABSENT):
        if key in self.cfg:
            return self.cfg[key]
        if key in self.defaults:
            self.filled[key] = self.defaults[key]
            return self.defaults[key]
        return None if default is _ABSENT else default

    def size(self, key: str, low: int = 1, high: int = MAX_SIZE, default=_ABSENT) -> int:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise self.error(f"{key} must be an integer from {low} to {high:,}; got {_json(v)}")
        return v

    def flag(self, key: str, default=_ABSENT) -> bool:
        v = self.get(key, default)
        if not isinstance(v, bool):
            raise self.error(f"{key} must be true or false; got {_json(v)}")
        return v

    def number(self, key: str, default=_ABSENT) -> float | None:
        """A positive finite number, or null (off)."""
        v = self.get(key, default)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf")):
            raise self.error(f"{key} must be a positive number or null; got {_json(v)}")
        return v

    def choice(self, key: str, valid: tuple[str, ...], default=_ABSENT) -> str:
        v = self.get(key, default)
        if v not in valid:
            raise self.error(f"{key} {shown(v) if isinstance(v, str) else _json(v)} is not modeled; modeled: {', '.join(valid)}")
        return v


def _json(v) -> str:
    """A config value as config.json spells it (null, true, "no"), cut to a readable length."""
    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        return shown(v)
    return text if len(text) <= 80 else f"{text[:80]}... ({len(text):,} characters)"


def _refuse_unmodeled(keys: _Keys, model_type: str) -> None:
    """Keys that change memory in ways the hf-transformers profile does not model: refused with
    what to do instead, not guessed."""
    cfg = keys.cfg
    if cfg.get("quantization_config") is not None:
        method = cfg["quantization_config"].get("quant_method", "") if isinstance(cfg["quantization_config"], dict) else ""
        raise keys.error(f"quantization_config{f' ({method})' if isinstance(method, str) and method else ''} is not read "
                         "as part of the model: memsim models 4-bit weights as a method; remove it and give "
                         "methods: [{name: qlora}] (memsim fit --method qlora)")
    archs = cfg.get("architectures")
    if archs is not None:
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            raise keys.error(f"architectures must be a list of class names; got {_json(archs)}")
        if archs and not any(a.endswith("ForCausalLM") for a in archs):
            raise keys.error(f"architectures {_json(archs)}: memsim models the causal language model "
                             "(...ForCausalLM: decoder and lm_head); other heads are not modeled")
    if model_type == "llama" and keys.flag("mlp_bias", False):  # params.py has no MLP bias vectors yet
        raise keys.error("mlp_bias true (bias vectors on gate, up and down projections) is not modeled yet; set it false")
    if model_type in ("qwen2", "qwen2_moe") and keys.flag("use_sliding_window", default=False):
        raise keys.error(f"use_sliding_window true (sliding layers from max_window_layers on) is not modeled yet for "
                         f"{model_type}; set it false")


def _shape_fields(keys: _Keys, model_type: str) -> dict[str, Any]:
    """The sizes every modeled architecture has, with the heads checked as its config class checks them."""
    hidden = keys.size("hidden_size")
    layers = keys.size("num_hidden_layers", high=MAX_LAYERS)
    heads = keys.size("num_attention_heads")
    # null (or LlamaConfig's default, null): the heads; else as given, or the class's default.
    null_kv = keys.cfg.get("num_key_value_heads") is None and ("num_key_value_heads" in keys.cfg or "num_key_value_heads" not in keys.defaults)
    kv_heads = heads if null_kv and model_type in NULL_KV_IS_HEADS else keys.size("num_key_value_heads")
    if heads % kv_heads:
        defaulted = f", {keys.cls_name}'s default: the key is absent" if "num_key_value_heads" in keys.filled else ""
        raise keys.error(f"num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv_heads}{defaulted})")
    given_head_dim = keys.cfg.get("head_dim", keys.defaults.get("head_dim")) is not None
    if hidden % heads and (model_type in DIVIDED_HIDDEN or not given_head_dim):
        raise keys.error(f"hidden_size ({hidden}) must be a multiple of num_attention_heads ({heads})"
                         + (f": {keys.cls_name} refuses it otherwise" if model_type in DIVIDED_HIDDEN else
                            "; or give head_dim (the attention modules would take hidden_size // num_attention_heads)"))
    head_dim = keys.size("head_dim") if given_head_dim else hidden // heads
    if head_dim % 2:  # rotary embeddings turn pairs of dimensions: an odd head_dim's cos/sin are one too wide
        raise keys.error(f"head_dim ({head_dim}{'' if given_head_dim else ', hidden_size / num_attention_heads'}) must be even "
                         "(rotary position embeddings rotate pairs of dimensions)")
    fixed_bias = FIXED_ATTENTION_BIAS.get(model_type)
    return dict(
        hidden_size=hidden,
        intermediate_size=keys.size("intermediate_size"),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=keys.size("vocab_size"),
        tie_word_embeddings=keys.flag("tie_word_embeddings"),
        # Qwen2-MoE's q/k/v bias is its qkv_bias key (_moe_fields); Gemma-2's and Llama's attention_bias.
        attention_bias=fixed_bias if fixed_bias is not None else model_type != "qwen2_moe" and keys.flag("attention_bias", False),
        o_proj_bias=model_type in ("llama", "gemma2") and keys.flag("attention_bias", False),
        mlp_bias=model_type == "llama" and keys.flag("mlp_bias", False),
        hidden_activation=keys.choice("hidden_act", FUSED_ACTIVATIONS, "silu") if model_type != "gemma2" else "silu",
    )


def _gemma2_fields(keys: _Keys, layers: int) -> dict[str, Any]:
    """Gemma-2's extra keys, with Gemma2Config's defaults; layer_types defaults to sliding for even
    layers, full for odd ones (Gemma2Config.__post_init__)."""
    types = keys.cfg.get("layer_types")
    if types is None:
        types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)]
    elif not isinstance(types, list) or len(types) != layers or not all(isinstance(t, str) and t in LAYER_TYPES for t in types):
        raise keys.error(f"layer_types must list {layers} entries, each one of {', '.join(LAYER_TYPES)}")
    sliding = "sliding_attention" in types
    window = keys.get("sliding_window") if sliding else 0
    if sliding and (isinstance(window, bool) or not isinstance(window, int) or not 0 < window <= MAX_SIZE):
        raise keys.error(f"sliding_window must be a positive number of tokens with sliding layers; got {_json(window)}")
    return dict(
        hidden_activation=keys.choice("hidden_activation", FUSED_ACTIVATIONS),
        layer_types=tuple(types),
        sliding_window=window,
        attn_logit_softcapping=keys.number("attn_logit_softcapping"),
        final_logit_softcapping=keys.number("final_logit_softcapping"),
    )


def _window_fields(keys: _Keys) -> dict[str, Any]:
    """Mistral's and Mixtral's sliding_window: null, or a number of tokens that every layer slides
    over (cache_utils.get_layer_types_and_kwargs; the model's one sliding mask)."""
    window = keys.cfg.get("sliding_window", keys.defaults.get("sliding_window"))
    if window is None:
        return {}
    if isinstance(window, bool) or not isinstance(window, int) or not 0 < window <= MAX_SIZE:
        raise keys.error(f"sliding_window must be null or a positive number of tokens; got {_json(window)}")
    return dict(full_attention_window=window)


def _moe_fields(keys: _Keys, model_type: str) -> dict[str, Any]:
    """A mixture of experts' keys; the options whose memory the profile does not model refused."""
    if keys.flag("output_router_logits", default=False):
        raise keys.error("output_router_logits true (router aux loss) is not modeled yet; set it false")
    jitter = keys.get("router_jitter_noise", 0)
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or jitter != 0:
        raise keys.error(f"router_jitter_noise {_json(jitter)} is not modeled yet (only 0, no jitter)")
    if keys.get("decoder_sparse_step", 1) != 1 or keys.get("mlp_only_layers", None):
        raise keys.error("dense layers among MoE layers (decoder_sparse_step != 1 or mlp_only_layers) "
                         "are not modeled yet; every layer must be sparse")
    if model_type == "mixtral":  # num_experts: MixtralConfig's attribute_map name for num_local_experts
        experts_key = "num_local_experts" if "num_local_experts" in keys.cfg or "num_experts" not in keys.cfg else "num_experts"
        fields = dict(num_experts=keys.size(experts_key), moe_intermediate_size=keys.size("intermediate_size"),
                      norm_topk_prob=True)  # MixtralTopKRouter always divides by the sum
    else:
        fields = dict(num_experts=keys.size("num_experts"), moe_intermediate_size=keys.size("moe_intermediate_size"),
                      shared_expert_intermediate_size=keys.size("shared_expert_intermediate_size"),
                      norm_topk_prob=keys.flag("norm_topk_prob"),
                      attention_bias=keys.flag("qkv_bias", True))  # Qwen2MoeAttention: bias=config.qkv_bias
    # top-k of the experts: at least one, at most all (torch.topk refuses more).
    fields["experts_per_token"] = keys.size("num_experts_per_tok", high=fields["num_experts"])
    return fields
