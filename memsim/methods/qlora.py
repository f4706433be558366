"""QLoRA as transformers, bitsandbytes and peft run it: every nn.Linear but lm_head quantized to
4 bits (BitsAndBytesConfig(load_in_4bit, bnb_4bit_quant_type, bnb_4bit_use_double_quant,
bnb_4bit_compute_dtype)), optionally peft's prepare_model_for_kbit_training, then peft LoRA.

bitsandbytes 0.50 (nn/modules.py Linear4bit.forward, autograd/_functions.py MatMul4Bit,
backends/cuda/ops.py gemm_4bit):

    x = x.to(compute_dtype)                        # a copy when the residual stream is fp32
    out = gemm_4bit(x, W4)                         # saves only the packed weight
    return out.to(input_dtype)

gemm_4bit dequantizes the whole weight into a [out, in] tensor and calls F.linear for more than
1536 rows (and, on Hopper, for nearly every count above 4: its per-architecture heuristic, taken
here as that); its backward always does (dequantize_4bit, then grad_output @ W). peft's 4-bit
LoRA layer (peft/tuners/lora/bnb.py Linear4bit.forward) clones the base output, runs fp32
adapters on x cast to fp32 and casts their output back before the add.

prepare_model_for_kbit_training (peft/utils/other.py) casts every 16-bit parameter that is not
4-bit (embeddings, norms, lm_head) to fp32, so the residual stream and the logits are fp32; it
is modeled with use_gradient_checkpointing=False (list activation-checkpointing for its default).
"""

from __future__ import annotations

from typing import Literal

from .. import ops
from ..dtypes import Blockwise4bit
from ..errors import InputError
from ..params import PROJECTIONS, Param
from ..tape import WORKSPACE, T, Tape
from .base import LinearSite
from .lora import Lora, LoraWeight

# gemm_4bit: at most this many rows take bitsandbytes' fused kernel whatever the GPU (_GEMM_4BIT_CUSTOM_FLOOR_M).
FUSED_MAX_ROWS = 4


class QLoRA(Lora):
    name: Literal["qlora"] = "qlora"  # rank and targets as Lora's
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bf16", "fp16"] = "bf16"
    prepare_kbit: bool = True
    summary = "4-bit (NF4) frozen base through bitsandbytes, fp32 peft LoRA adapters on the named projections"
    citation = "Dettmers et al., QLoRA: Efficient Finetuning of Quantized LLMs, 2023 (arXiv:2305.14314)"
    untraceable = "bitsandbytes' Params4bit is a tensor subclass, which a FakeTensor cannot be"
    host_step = ""
    host_methods = ()
    conflicts = ("lisa", "lora", "galore", "apollo", "apollo-mini", "mezo")

    @property
    def format(self) -> Blockwise4bit:
        return Blockwise4bit(self.quant_type, self.double_quant)

    def check(self, model, workload) -> None:
        if model.is_moe:
            raise InputError(f"methods.qlora: the mixture of experts '{model.name}' is not modeled (its experts are not nn.Linear); "
                             "use a dense model")
        p = workload.precision
        if not p.weights == p.compute == self.compute_dtype:
            raise InputError(f"methods.qlora.compute_dtype: {self.compute_dtype} with precision weights {p.weights}, compute {p.compute} "
                             f"is not modeled; load the model in the compute dtype (precision {self.compute_dtype} for both)")
        super().check(model, workload)

    def precision(self, weights: str, compute: str) -> tuple[str, str]:
        return ("fp32", "fp32") if self.prepare_kbit else (weights, compute)

    def stored(self, p: Param, sizes: tuple[int, ...]) -> tuple[int, ...]:
        return self.format.tensors(p.numel) if p.name in PROJECTIONS else sizes

    def resident(self) -> tuple[int, ...]:
        return (Blockwise4bit.SHARED_MAP_BYTES,) if self.double_quant else ()

    def wrap_linear(self, tape: Tape, site: LinearSite, weight):
        base = Linear4bit(weight, site, self.format, 2)
        if site.name not in self.targets:
            return base
        return Qlora4bitWeight(base, site.fan_in, site.fan_out, self.rank, site.dtype_bytes, tape)

    def apply_torch(self, model):
        from peft import LoraConfig, prepare_model_for_kbit_training

        from .lora import _peft_model

        _quantize_linears(model, self)
        if self.prepare_kbit:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return _peft_model(model, LoraConfig(r=self.rank, lora_alpha=2 * self.rank, lora_dropout=0.0,
                                             target_modules=list(self.targets)))


class Linear4bit(T):
    """A frozen 4-bit projection (bitsandbytes Linear4bit); ops.linear hands it to `forward`."""

    def __init__(self, base: T, site: LinearSite, fmt: Blockwise4bit, compute_bytes: int):
        super().__init__(base.name, base.storage, requires_grad=False, leaf=True)
        self.site, self.fmt, self.compute_bytes = site, fmt, compute_bytes

    def forward(self, tp: Tape, name: str, x: T, out_nbytes: int, bias: T | None) -> T:
        s, c = self.site, self.compute_bytes
        rows = out_nbytes // (s.fan_out * s.dtype_bytes)
        numel = s.fan_in * s.fan_out
        xc = ops.cast(tp, f"{name}.to_compute", x, rows * s.fan_in * c)
        # _dequant_linear_fallback's buffers (inside the op: absent from a fake-tensor trace).
        workspace = [tp.new(f"{name}.absmax_dq", self.fmt.absmax_dequantized(numel), WORKSPACE) for _ in range(2)] \
            if self.fmt.double_quant and rows > FUSED_MAX_ROWS else []
        if rows > FUSED_MAX_ROWS:
            workspace.append(tp.new(f"{name}.dequantized", numel * c, WORKSPACE))
        # MatMul4Bit.backward: the fp32 absmax rebuilt (freed on return), the weight dequantized
        # in its load dtype (the compute dtype: check() holds them equal), then grad_output @ W.
        recipe = ((("transient", self.fmt.absmax_dequantized(numel)),) if self.fmt.double_quant else ()) + \
            (("tmp", numel * c), ("grad", 0))
        out = tp.op(name, [xc, self], rows * s.fan_out * c, (), recipe, kind="matmul", dtype_bytes=c)
        tp.drop(*workspace, xc)
        y = ops.cast(tp, f"{name}.to_input", out, out_nbytes)
        tp.drop(out)
        return y


class Qlora4bitWeight(LoraWeight):
    """A 4-bit projection with peft's adapter (peft/tuners/lora/bnb.py Linear4bit.forward)."""

    def __init__(self, base: Linear4bit, fan_in: int, fan_out: int, rank: int, dtype_bytes: int, tp: Tape):
        super().__init__(base, fan_in, fan_out, rank, dtype_bytes, tp)
        self.base = base

    def forward(self, tp: Tape, name: str, x: T, out_nbytes: int, bias: T | None) -> T:
        base = self.base.forward(tp, name, x, out_nbytes, bias)
        result = ops.copy(tp, f"{name}.clone", base)  # "defensively clone"
        tp.drop(base)
        scaled = self.adapter(tp, name, x, out_nbytes // (self.fan_out * self.dtype_bytes))
        back = ops.cast(tp, f"{name}.lora_out", scaled, out_nbytes)
        tp.drop(scaled)
        out = ops.add(tp, f"{name}.lora_add", result, back)
        tp.drop(result, back)
        return out


def _quantize_linears(model, method: QLoRA) -> None:
    """What from_pretrained(quantization_config=BitsAndBytesConfig(...)) leaves: each nn.Linear
    but lm_head a bitsandbytes Linear4bit holding the quantized weight (transformers'
    replace_with_bnb_linear, then Params4bit quantizing on its device)."""
    import bitsandbytes as bnb
    import torch

    compute = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[method.compute_dtype]
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or name.split(".")[-1] == "lm_head":
            continue
        with torch.device("meta"):
            new = bnb.nn.Linear4bit(module.in_features, module.out_features, module.bias is not None, compute,
                                    compress_statistics=method.double_quant, quant_type=method.quant_type, quant_storage=torch.uint8)
        weight = bnb.nn.Params4bit(module.weight.data, requires_grad=False, compress_statistics=method.double_quant,
                                   quant_type=method.quant_type, quant_storage=torch.uint8, module=new)
        new.weight = weight.to(module.weight.device)
        if module.bias is not None:
            new.bias = torch.nn.Parameter(module.bias.data, requires_grad=False)
        new.requires_grad_(False)
        model.set_submodule(name, new)
    model.is_loaded_in_4bit = True
