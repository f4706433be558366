"""ModelSpec: the architecture facts memory depends on, read from a Hugging Face config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import InputError, first_error
from .params import model_params

# model_type values whose decoder layer the hf-transformers profile models.
DENSE_TYPES = {"llama", "mistral", "qwen2", "gemma2"}
MOE_TYPES = {"mixtral", "qwen2_moe"}
SUPPORTED_TYPES = DENSE_TYPES | MOE_TYPES
REQUIRED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")

# Defaults of the config classes where they differ from Llama's, for keys a config.json may omit
# (transformers 5.17 models/gemma2/configuration_gemma2.py, Gemma2Config).
GEMMA2_DEFAULTS = dict(tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh", sliding_window=4096,
                       attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
LAYER_TYPES = ("full_attention", "sliding_attention")
# Activations that run as one ATen op saving its input (transformers activations.py: SiLUActivation
# -> F.silu; GELUTanh -> F.gelu(approximate="tanh"); GELUActivation -> F.gelu), which mlp() models.
FUSED_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu", "silu")


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    model_type: str
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    hidden_activation: str = "silu"
    # Gemma-2: per-layer attention kind, the window of the sliding ones (tokens), logit soft-caps (None: off).
    layer_types: tuple[str, ...] = ()
    sliding_window: int = 0
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    # Mixture of experts (0 experts: dense).
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    norm_topk_prob: bool = False  # top-k routing weights renormalized to sum to 1 (Mixtral always)

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
        """Build from config.json keys; a missing or invalid key is a one-line InputError."""
        missing = [k for k in REQUIRED_KEYS if k not in cfg]
        if missing:
            raise InputError(f"model config '{name}': missing key(s) {', '.join(missing)}; a Hugging Face config.json has them")
        model_type = cfg.get("model_type", "llama")
        if model_type not in SUPPORTED_TYPES:
            raise InputError(
                f"model config '{name}': model_type '{model_type}' is not modeled yet; supported: {', '.join(sorted(SUPPORTED_TYPES))}"
            )
        heads = cfg["num_attention_heads"]
        hidden = cfg["hidden_size"]
        moe = model_type in MOE_TYPES
        fields = dict(
            name=name,
            model_type=model_type,
            hidden_size=hidden,
            intermediate_size=cfg.get("intermediate_size") or 4 * hidden,
            num_layers=cfg["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or (hidden // heads if heads else 0),
            vocab_size=cfg["vocab_size"],
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=bool(cfg.get("attention_bias", model_type.startswith("qwen2"))),
            mlp_bias=bool(cfg.get("mlp_bias", False)),
        )
        if model_type == "gemma2":
            fields.update(_gemma2_fields(cfg, name))
        if moe:
            _check_moe_config(cfg, name)
            if model_type == "qwen2_moe":  # Qwen2MoeAttention: bias=config.qkv_bias (default True)
                fields["attention_bias"] = bool(cfg.get("qkv_bias", True))
            fields.update(
                num_experts=cfg.get("num_local_experts") or cfg.get("num_experts") or 0,
                experts_per_token=cfg.get("num_experts_per_tok") or 0,
                moe_intermediate_size=cfg.get("moe_intermediate_size") or cfg.get("intermediate_size") or 0,
                shared_expert_intermediate_size=cfg.get("shared_expert_intermediate_size") or 0,
                # MixtralTopKRouter always divides by the sum; Qwen2MoeTopKRouter if norm_topk_prob.
                norm_topk_prob=model_type == "mixtral" or bool(cfg.get("norm_topk_prob", False)),
            )
        try:
            return cls(**fields)
        except ValueError as e:
            raise InputError(f"model config '{name}': {first_error(e)}") from None

    @classmethod
    def from_path(cls, path: Path) -> ModelSpec:
        try:
            cfg = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"model: cannot read config.json at '{path}': {e}") from None
        return cls.from_config(cfg, name=Path(path).stem)



def _gemma2_fields(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """Gemma-2's extra keys, with Gemma2Config's defaults; layer_types defaults to sliding for even
    layers, full for odd ones (Gemma2Config.__post_init__)."""
    d = GEMMA2_DEFAULTS
    layers = cfg["num_hidden_layers"]
    types = cfg.get("layer_types") or ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)]
    if not isinstance(types, list) or len(types) != layers or set(types) - set(LAYER_TYPES):
        raise InputError(f"model config '{name}': layer_types must list {layers} entries, each one of {', '.join(LAYER_TYPES)}")
    window = cfg.get("sliding_window", d["sliding_window"])
    if "sliding_attention" in types and not (isinstance(window, int) and window > 0):
        raise InputError(f"model config '{name}': sliding_window must be a positive number of tokens with sliding layers; got {window!r}")
    act = cfg.get("hidden_activation") or d["hidden_activation"]
    if act not in FUSED_ACTIVATIONS:
        raise InputError(f"model config '{name}': hidden_activation '{act}' is not modeled; modeled: {', '.join(FUSED_ACTIVATIONS)}")
    return dict(
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", d["tie_word_embeddings"])),
        hidden_activation=act,
        layer_types=tuple(types),
        sliding_window=window if "sliding_attention" in types else 0,
        attn_logit_softcapping=cfg.get("attn_logit_softcapping", d["attn_logit_softcapping"]),
        final_logit_softcapping=cfg.get("final_logit_softcapping", d["final_logit_softcapping"]),
    )


def _check_moe_config(cfg: dict[str, Any], name: str) -> None:
    """MoE options whose memory the hf-transformers profile does not model: refused, not guessed."""
    if cfg.get("output_router_logits"):
        raise InputError(f"model config '{name}': output_router_logits true (router aux loss) is not modeled yet; set it false")
    if cfg.get("router_jitter_noise"):
        raise InputError(f"model config '{name}': router_jitter_noise > 0 is not modeled yet; set it 0")
    if cfg.get("decoder_sparse_step", 1) != 1 or cfg.get("mlp_only_layers"):
        raise InputError(
            f"model config '{name}': dense layers among MoE layers (decoder_sparse_step != 1 or mlp_only_layers) "
            "are not modeled yet; every layer must be sparse"
        )
