"""The parameter inventory: every parameter of a model, in model.parameters() order.

One statement of what a model holds, used by the parameter count, the resident weights, the
gradients and the optimizer state alike. nn.Linear weights are [out, in].
"""

from __future__ import annotations

from dataclasses import dataclass, field

# c10/cuda/CUDACachingAllocator.cpp: kMinBlockSize = 512; every request is rounded up to it.
CUDA_BLOCK_BYTES = 512

# A decoder layer's projections (nn.Linear names in transformers' Llama-family modeling code).
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
PROJECTIONS = ATTENTION_PROJECTIONS + MLP_PROJECTIONS
# RMSNorms per decoder layer: input + post_attention; Gemma2DecoderLayer adds pre_ and post_feedforward.
NORMS_PER_LAYER = {"gemma2": 4}


def cuda_rounded(nbytes: int) -> int:
    """Bytes the CUDA caching allocator counts as allocated for one request."""
    return -(-nbytes // CUDA_BLOCK_BYTES) * CUDA_BLOCK_BYTES if nbytes > 0 else 0


@dataclass(frozen=True)
class Param:
    """A parameter as its optimizer sees it: a [rows, cols] matrix (cols = 0 for a 1-D vector of
    `rows` elements) of `dtype_bytes` elements."""

    rows: int
    cols: int
    dtype_bytes: int
    name: str = field(default="", compare=False)

    @property
    def numel(self) -> int:
        return self.rows * max(self.cols, 1)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype_bytes

    @property
    def is_matrix(self) -> bool:
        return self.cols > 0


@dataclass(frozen=True)
class Params:
    """Parameters in model.parameters() order: a prefix, one decoder layer's block repeated
    `layers` times, a suffix. Sums over them are closed forms, so their cost does not grow with depth."""

    prefix: tuple[Param, ...]
    layer: tuple[Param, ...]
    layers: int
    suffix: tuple[Param, ...] = ()

    def walk(self, max_layers: int) -> list[Param]:
        """The order, with at most `max_layers` layer blocks."""
        return [*self.prefix, *self.layer * min(self.layers, max_layers), *self.suffix]

    def total(self, f=lambda p: cuda_rounded(p.nbytes)) -> int:
        """sum(f(p)) over every parameter."""
        ends = sum(f(p) for p in self.prefix) + sum(f(p) for p in self.suffix)
        return ends + self.layers * sum(f(p) for p in self.layer)

    @property
    def count(self) -> int:
        return len(self.prefix) + self.layers * len(self.layer) + len(self.suffix)

    def only(self, keep) -> Params:
        """The parameters for which keep(p) holds, in the same order."""
        pick = lambda ps: tuple(p for p in ps if keep(p))
        return Params(pick(self.prefix), pick(self.layer), self.layers, pick(self.suffix))


def linear_shapes(m) -> dict[str, tuple[int, int]]:
    """(fan_in, fan_out) of each nn.Linear projection of a decoder layer; a mixture of experts
    keeps its MLP in 3-D expert parameters (moe_params), so only attention's are linears."""
    d, f = m.hidden_size, m.intermediate_size
    shapes = {"q_proj": (d, m.q_dim), "k_proj": (d, m.kv_dim), "v_proj": (d, m.kv_dim), "o_proj": (m.q_dim, d),
              "gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d)}
    return {name: shapes[name] for name in (ATTENTION_PROJECTIONS if m.num_experts else PROJECTIONS)}


def moe_params(m, dtype_bytes: int) -> list[Param]:
    """One layer's MoE-block parameters (MixtralExperts / Qwen2MoeExperts keep the experts as two
    3-D parameters, [experts, 2f, d] and [experts, d, f], here [experts * rows, cols]: exact in
    bytes; Adafactor's column state of a 3-D parameter, experts * cols, is counted as cols).
    The router is one [experts, hidden] matrix."""
    d, e, f = m.hidden_size, m.num_experts, m.moe_intermediate_size
    out = [Param(e * 2 * f, d, dtype_bytes, "experts.gate_up_proj"), Param(e * d, f, dtype_bytes, "experts.down_proj"),
           Param(e, d, dtype_bytes, "gate.weight")]
    if m.shared_expert_intermediate_size:
        s = m.shared_expert_intermediate_size
        out += [Param(s, d, dtype_bytes, "shared_expert.gate_proj"), Param(s, d, dtype_bytes, "shared_expert.up_proj"),
                Param(d, s, dtype_bytes, "shared_expert.down_proj"), Param(1, d, dtype_bytes, "shared_expert_gate")]
    return out


def model_params(m, dtype_bytes: int) -> Params:
    """Every parameter of model `m` (a ModelSpec) stored in `dtype_bytes` elements."""
    d = m.hidden_size
    layer = []
    for name, (fan_in, fan_out) in linear_shapes(m).items():
        layer.append(Param(fan_out, fan_in, dtype_bytes, name))
        if (m.attention_bias and name in ("q_proj", "k_proj", "v_proj")) or (m.o_proj_bias and name == "o_proj"):
            layer.append(Param(fan_out, 0, dtype_bytes, name.replace("proj", "bias")))
    if m.num_experts:
        layer += moe_params(m, dtype_bytes)
    layer += [Param(d, 0, dtype_bytes, "layernorm")] * NORMS_PER_LAYER.get(m.model_type, 2)
    head = () if m.tie_word_embeddings else (Param(m.vocab_size, d, dtype_bytes, "lm_head"),)
    return Params((Param(m.vocab_size, d, dtype_bytes, "embed_tokens"),), tuple(layer), m.num_layers,
                  (Param(d, 0, dtype_bytes, "norm"), *head))
