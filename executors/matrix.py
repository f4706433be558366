"""The analytic-vs-traced matrix: small models of six families (four dense, two MoE) across every axis memsim models.

Shared by tests/test_traced.py (CI) and benchmarks/traced_matrix.py (the committed table).
"""

from __future__ import annotations

from memsim.methods import METHODS, OPTIMIZERS

# Small members of each family: real code paths (GQA, bias, untied/tied heads), CPU-quick sizes.
FAMILIES = {
    "llama": dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, vocab_size=1024, max_position_embeddings=4096,
                  tie_word_embeddings=False),
    "mistral": dict(model_type="mistral", hidden_size=256, intermediate_size=896, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=1, head_dim=64, vocab_size=2048,
                    max_position_embeddings=4096, sliding_window=None, tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", hidden_size=192, intermediate_size=512, num_hidden_layers=3,
                  num_attention_heads=6, num_key_value_heads=2, vocab_size=3000, max_position_embeddings=4096,
                  tie_word_embeddings=True),
    # Gemma-2: 4 layers alternating sliding/global attention (layer_types' default), a window shorter than
    # most cases' sequences (masks and the windowed cache matter), both soft-caps on; no tie_word_embeddings
    # key, as in the published configs (Gemma2Config defaults it to true).
    "gemma2": dict(model_type="gemma2", hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=128, query_pre_attn_scalar=128,
                   vocab_size=2048, max_position_embeddings=4096, sliding_window=66,
                   attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                   hidden_activation="gelu_pytorch_tanh"),
    # OpenLLaMA's shape: a head dim (100) that is not a multiple of 8, full multi-head attention;
    # CUDA's flash path pads q, k and v to 104 (memsim.runtimes.torch_cuda).
    "llama_hd100": dict(model_type="llama", hidden_size=400, intermediate_size=1080, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=4, vocab_size=1024, max_position_embeddings=4096,
                        tie_word_embeddings=False),
    # Mistral with a sliding window (Mistral-7B v0.1's config has 4096), shorter here than most
    # cases' sequences. transformers makes every layer sliding; memsim models them as full ones
    # for now, which this family measures (within 0.9% at this shape).
    "mistral_sw": dict(model_type="mistral", hidden_size=256, intermediate_size=896, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=1, head_dim=64, vocab_size=2048,
                       max_position_embeddings=4096, sliding_window=66, tie_word_embeddings=False),
    # Mixture of experts: top-2 of 8 (Mixtral, fp32 routing weights) and top-4 of 8 plus a gated
    # shared expert (Qwen2-MoE, routing weights in the model dtype, no renormalization).
    "mixtral": dict(model_type="mixtral", hidden_size=256, intermediate_size=384, num_hidden_layers=3,
                    num_attention_heads=8, num_key_value_heads=2, vocab_size=1024, max_position_embeddings=4096,
                    num_local_experts=8, num_experts_per_tok=2, sliding_window=None, tie_word_embeddings=False),
    "qwen2_moe": dict(model_type="qwen2_moe", hidden_size=192, intermediate_size=512, moe_intermediate_size=128,
                      shared_expert_intermediate_size=256, num_hidden_layers=3, num_attention_heads=6,
                      num_key_value_heads=2, vocab_size=2048, max_position_embeddings=4096, num_experts=8,
                      num_experts_per_tok=4, norm_topk_prob=False, tie_word_embeddings=False),
}

# (task, dtype, attention, optimizer, impl, methods, batch, seq, new tokens); dtype "amp-bf16":
# fp32 weights with the forward under torch.autocast(dtype=bf16) (precision weights fp32, compute bf16).
CASES = [
    ("train", "bf16", "sdpa", "adamw", "foreach", [], 2, 128, 0),
    ("train", "bf16", "eager", "adamw", "fused", [], 2, 64, 0),
    ("train", "fp32", "sdpa", "adamw", "for-loop", [], 1, 96, 0),
    ("train", "fp32", "eager", "sgd", "foreach", [], 2, 64, 0),
    ("train", "fp16", "sdpa", "sgd-momentum", "foreach", ["activation-checkpointing"], 2, 128, 0),
    ("train", "bf16", "sdpa", "adamw", "foreach", ["activation-checkpointing"], 4, 64, 0),
    ("train", "bf16", "sdpa", "adamw", "foreach", [{"name": "lora", "rank": 8}], 2, 128, 0),
    ("train", "bf16", "eager", "adamw", "fused", [{"name": "lora", "rank": 4, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}], 2, 64, 0),
    ("train", "fp32", "sdpa", "adamw", "foreach", [{"name": "lora", "rank": 16, "targets": ["gate_proj", "up_proj", "down_proj"]}], 1, 128, 0),
    ("prefill", "bf16", "sdpa", "adamw", "foreach", [], 2, 256, 0),
    ("prefill", "fp32", "eager", "adamw", "foreach", [], 1, 128, 0),
    ("generate", "bf16", "sdpa", "adamw", "foreach", [], 2, 64, 6),
    ("generate", "fp16", "eager", "adamw", "foreach", [], 1, 64, 4),
    ("decode", "bf16", "sdpa", "adamw", "foreach", [], 4, 200, 0),
    ("train", "bf16", "sdpa", "adafactor", "foreach", [], 2, 64, 0),
    ("train", "fp32", "sdpa", "adafactor", "for-loop", [], 2, 64, 0),
    ("train", "bf16", "sdpa", "adafactor", "for-loop", [{"name": "lora", "rank": 8}], 2, 64, 0),
    ("train", "amp-bf16", "sdpa", "adamw", "foreach", [], 2, 128, 0),
    ("train", "amp-bf16", "sdpa", "sgd", "foreach", [], 4, 256, 0),
    ("train", "amp-bf16", "sdpa", "sgd", "foreach", ["activation-checkpointing"], 4, 128, 0),
    ("train", "amp-bf16", "sdpa", "adamw", "foreach", [{"name": "lora", "rank": 8}], 2, 128, 0),
    ("prefill", "amp-bf16", "sdpa", "adamw", "foreach", [], 2, 256, 0),
    ("prefill", "amp-fp16", "sdpa", "adamw", "foreach", [], 1, 128, 0),
]


# Each method and optimizer beyond the cross-product above, on a dense family with an untied and
# one with a tied head: the traced verifier runs the method's own torch side (Method.apply_torch,
# Optimizer.torch_optimizer).
METHOD_FAMILIES = ("llama", "qwen2")
METHOD_CASES = [
    ("train", "bf16", "sdpa", "adam", "fused", [], 2, 64, 0),
    # A stateless optimizer and checkpointing: the peak is the tied embedding's gradient sum.
    ("train", "fp32", "eager", "sgd", "foreach", ["activation-checkpointing"], 2, 64, 0),
    ("train", "bf16", "sdpa", "adamw8bit", "bitsandbytes", [], 2, 64, 0),
    ("train", "fp32", "eager", "adamw8bit", "bitsandbytes", ["activation-checkpointing"], 2, 64, 0),
    ("train", "bf16", "sdpa", "adamw", "foreach", [{"name": "lisa", "active_layers": 1}], 2, 128, 0),
    ("train", "bf16", "sdpa", "adamw8bit", "bitsandbytes", [{"name": "lisa", "active_layers": 2}, "activation-checkpointing"], 2, 64, 0),
    # GaLore updating its projector every step (the trace's second step is then one with the state
    # in place, as a run's update steps are), 16-bit (the projector a copy) and fp32 (a view).
    ("train", "bf16", "sdpa", "adamw", "for-loop", [{"name": "galore", "rank": 16, "update_gap": 1}], 2, 64, 0),
    ("train", "fp32", "eager", "adamw", "for-loop", [{"name": "galore", "rank": 8, "update_gap": 1, "targets": ["q_proj", "o_proj", "down_proj"]}], 1, 64, 0),
    # GaLore layerwise: an optimizer per parameter stepped from its post-accumulate-grad hook.
    ("train", "bf16", "sdpa", "adamw", "for-loop", [{"name": "galore", "rank": 16, "update_gap": 1, "layerwise": True}], 2, 64, 0),
    ("train", "fp32", "eager", "adamw", "for-loop", [{"name": "galore", "rank": 8, "update_gap": 1, "layerwise": True}, "activation-checkpointing"], 2, 64, 0),
    # APOLLO (channel scaling) and APOLLO-Mini (rank 1, one factor a tensor), drawing every step.
    ("train", "bf16", "sdpa", "adamw", "for-loop", [{"name": "apollo", "rank": 16, "update_gap": 1}], 2, 64, 0),
    ("train", "fp32", "eager", "adamw", "for-loop", [{"name": "apollo-mini", "update_gap": 1}], 1, 64, 0),
    # MeZO: two no-grad forwards with labels a step, parameters perturbed in place.
    ("train", "bf16", "sdpa", "sgd", "foreach", ["mezo"], 2, 128, 0),
    ("train", "fp32", "eager", "sgd", "foreach", ["mezo"], 1, 64, 0),
    # A scoring forward, model(input_ids): every position's logits (a tenth element: further workload fields).
    ("prefill", "bf16", "sdpa", "adamw", "foreach", [], 2, 256, 0, {"logits": "all"}),
    ("prefill", "fp32", "eager", "adamw", "foreach", [], 1, 128, 0, {"logits": "all"}),
]
# Methods and optimizers that cannot run on fake tensors say why (their `untraceable`); they are
# verified on the GPU only.
UNTRACEABLE = {name: cls.untraceable for name, cls in {**METHODS, **OPTIMIZERS}.items() if cls.untraceable}

# Families that run a subset of CASES (by index): MoE models cannot take LoRA on the MLP (case 8:
# PEFT's target_modules miss the 3-D expert weights); Qwen2-MoE runs a cheaper cross-section.
CASE_SUBSETS = {
    # the first 14 cases but LoRA on the MLP (experts are not LoRA targets), and Adafactor; autocast
    # on experts is not modeled yet
    "mixtral": tuple(i for i in range(15) if i != 8),
    "qwen2_moe": (0, 1, 2, 4, 6, 9, 11, 13),
    # the first 14 cases and Adafactor; autocast on Gemma-2 is not modeled yet
    "gemma2": tuple(range(17)),
    "llama_hd100": (0, 2, 4, 5, 7, 9, 11, 13, 17),
    "mistral_sw": (0, 1, 3, 4, 5, 6, 9, 10, 11, 12, 13),
}

# The attention kernel depends on the GPU (torch_cuda.sdpa_backend): the matrix runs on an anonymous
# 80 GiB device (sm80's flash, memory-efficient, math), and these families' 16-bit SDPA cases again
# on an H100 (sm90: cuDNN first).
H100_FAMILIES = ("llama", "gemma2", "llama_hd100")
H100 = "h100-sxm-80gb"


def workloads() -> list[tuple[str, dict]]:
    """(case id, memsim workload dict) for every family x case (or the family's subset), and the
    H100 variants."""
    out = []
    crossed = [(family, case) for family in FAMILIES for i, case in enumerate(CASES)
               if i in CASE_SUBSETS.get(family, range(len(CASES)))]
    for family, case in crossed + [(f, c) for f in METHOD_FAMILIES for c in METHOD_CASES]:
        config = FAMILIES[family]
        task, dtype, attention, opt, impl, methods, batch, seq, new, *extra = case
        fields = extra[0] if extra else {}
        weights, compute = ("fp32", dtype.removeprefix("amp-")) if dtype.startswith("amp-") else (dtype, dtype)
        names = "+".join(m if isinstance(m, str) else m["name"] + "".join(str(v) for k, v in m.items() if k != "name" and not isinstance(v, list))
                         for m in methods) or "plain"
        cid = f"{family}-{task}-{dtype}-{attention}-{opt}-{impl}-{names}-b{batch}s{seq}" + (f"n{new}" if new else "")
        cid += "".join(f"-{k}-{v}" for k, v in fields.items())
        hardware = ["80GiB"]
        if family in H100_FAMILIES and attention == "sdpa" and compute != "fp32":
            hardware.append(H100)
        for hw in hardware:
            w = dict(model=dict(config), hardware=hw, task=task, batch=batch, seq=seq, generate=new,
                     precision={"weights": weights, "compute": compute}, optimizer={"name": opt, "impl": impl},
                     attention=attention, methods=methods, **fields)
            out.append((cid + ("-h100" if hw == H100 else ""), w))
    return out


def compare(workload: dict) -> tuple[int, int]:
    """(analytic tensor bytes, traced bytes) for one workload."""
    from memsim import Workload
    from memsim.predict import step_config
    from memsim.runtimes.hf_steps import build_program
    from memsim.simulator import simulate

    from .trace import trace_workload

    w = Workload.parse(workload)
    analytic = simulate(build_program(step_config(w)), exclude=("workspace",)).bytes
    return analytic, trace_workload(w).peak_bytes
