"""LoRA as PEFT runs it (peft/tuners/lora/layer.py, Linear.forward, peft 0.21):

    result = base_layer(x)                       # frozen: saves nothing for its weight
    x = x.to(lora_A.weight.dtype)                # adapters are fp32 (autocast_adapter_dtype=True)
    result = result + lora_B(lora_A(dropout(x))) * scaling   # dropout 0: nn.Identity
    result = result.to(torch_result_dtype)

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021 (arXiv:2106.09685).
"""

from __future__ import annotations


from .. import ops
from ..tape import WEIGHTS, T, Tape

ADAPTER_BYTES = 4  # fp32 adapters: peft's default autocast_adapter_dtype=True
DEFAULT_TARGETS = ("q_proj", "v_proj")  # peft's default for Llama-family models


class LoraWeight(T):
    """A frozen weight carrying its adapter; ops.linear hands it to `forward`."""

    def __init__(self, base: T, fan_in: int, fan_out: int, rank: int, dtype_bytes: int, tp: Tape):
        super().__init__(base.name, base.storage, requires_grad=False, leaf=True)
        self.fan_in, self.fan_out, self.rank, self.dtype_bytes = fan_in, fan_out, rank, dtype_bytes
        self.a = tp.external(f"{base.name}.lora_A", rank * fan_in * ADAPTER_BYTES, WEIGHTS, True, leaf=True)
        self.b = tp.external(f"{base.name}.lora_B", fan_out * rank * ADAPTER_BYTES, WEIGHTS, True, leaf=True)
        self.base = T(base.name, base.storage, requires_grad=False, leaf=True)
        self.compute_bytes = ADAPTER_BYTES  # the adapter matmuls' output dtype (16-bit under autocast)

    def forward(self, tp: Tape, name: str, x: T, out_nbytes: int, bias: T | None) -> T:
        tokens = out_nbytes // (self.fan_out * self.dtype_bytes)
        result = ops.linear(tp, name, x, self.base, out_nbytes, bias)
        xa = ops.cast(tp, f"{name}.lora_x", x, tokens * self.fan_in * ADAPTER_BYTES)
        h = ops.linear(tp, f"{name}.lora_A", xa, self.a, tokens * self.rank * self.compute_bytes, dtype_bytes=self.compute_bytes)
        tp.drop(xa)
        y = ops.linear(tp, f"{name}.lora_B", h, self.b, tokens * self.fan_out * self.compute_bytes, dtype_bytes=self.compute_bytes)
        tp.drop(h)
        scaled = ops.scale(tp, f"{name}.lora_scaling", y)
        tp.drop(y)
        summed = ops.add(tp, f"{name}.lora_add", result, scaled, scaled.nbytes)  # promoted to fp32
        tp.drop(result, scaled)
        out = ops.cast(tp, f"{name}.lora_out", summed, out_nbytes)
        tp.drop(summed)
        return out

