"""The validation suite's cases predicted by llm-analysis (github.com/cli99/llm-analysis), beside
memsim's predictions and the measurements: peak memory and step time. It reads the measurements
(data/validation/DEVICE.jsonl), memsim's comparison (data/validation/DEVICE-compare.csv, from
`memsim validate data/suites/h100.yaml [--hardware h200] --no-run`) and the model configs
(data/models/), and writes data/validation/llm-analysis-DEVICE.csv. llm-analysis pins its own
dependencies, so it runs in a virtualenv of its own, without memsim:

    python -m venv /tmp/llma && /tmp/llma/bin/pip install llm-analysis==0.2.2
    /tmp/llma/bin/python benchmarks/llm_analysis_compare.py [h100|h200]

llm-analysis 0.2.2 has no H200: it is given its H100 SXM with the H200's memory and bandwidth
(NVIDIA H200 datasheet: 141 GB of HBM3e at 4.8 TB/s; the same Hopper compute).

llm-analysis is given what it asks for: the layer count, heads, KV heads, hidden size, vocabulary,
the ffn size with its expansion ratio (ffn sizes are rarely a multiple of the hidden size), gated
MLPs, flash attention unless the case runs eager attention, full recomputation under activation
checkpointing, the experts of a mixture; otherwise its defaults (AdamW with fp32 master weights,
no flops efficiency given). Cases it cannot express (LoRA, fp32 or autocast training, Adafactor,
SGD) are listed with the reason.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VALIDATION = ROOT / "data" / "validation"


def model_config(ref):
    """A catalog name (data/models) or an inline mapping of config.json keys."""
    from llm_analysis.config import ModelConfig

    c = ref if isinstance(ref, dict) else json.loads((ROOT / "data" / "models" / f"{ref}.json").read_text())
    name = ref if isinstance(ref, str) else c.get("_name_or_path", c["model_type"])
    experts = c.get("num_local_experts") or c.get("num_experts") or 1
    ffn = c.get("moe_intermediate_size") if experts > 1 and c.get("moe_intermediate_size") else c["intermediate_size"]
    return ModelConfig(name=name, num_layers=c["num_hidden_layers"], n_head=c["num_attention_heads"], hidden_dim=c["hidden_size"],
                       vocab_size=c["vocab_size"], max_seq_len=c.get("max_position_embeddings"),
                       num_key_value_heads=c.get("num_key_value_heads", c["num_attention_heads"]), ffn_embed_dim=ffn,
                       expansion_ratio=ffn / c["hidden_size"], moe_num_experts=experts,
                       moe_top_k=c.get("num_experts_per_tok", 1))


def unsupported(w: dict) -> str:
    p, opt = w["precision"], w["optimizer"]
    methods = [m if isinstance(m, str) else m["name"] for m in w["methods"]]
    if "lora" in methods:
        return "LoRA: not modeled by llm-analysis"
    if w["task"] == "train" and (p["weights"] == "fp32" or p["compute"] == "fp32"):
        return "fp32 or autocast training: not modeled by llm-analysis"
    if w["task"] == "train" and opt["name"] not in ("adamw", "adam"):
        return f"{opt['name']}: llm-analysis models Adam only"
    return ""


def gpu_config(device: str):
    import dataclasses

    from llm_analysis.config import get_gpu_config_by_name

    h100 = get_gpu_config_by_name("h100-sxm-80gb")
    if device == "h100":
        return h100
    return dataclasses.replace(h100, name="h200", mem_per_GPU_in_GB=141, hbm_bandwidth_in_GB_per_sec=4800)


def predict(w: dict, device: str) -> tuple[float, float]:
    """(peak memory bytes, step seconds) by llm-analysis on the device."""
    from llm_analysis.analysis import ActivationRecomputation, LLMAnalysis
    from llm_analysis.config import get_dtype_config_by_name

    dtype = get_dtype_config_by_name("w16a16e16")
    a = LLMAnalysis(model_config(w["model"]), gpu_config(device), dtype)
    methods = [m if isinstance(m, str) else m["name"] for m in w["methods"]]
    if w["task"] == "train":
        r = a.training(batch_size_per_gpu=w["batch"], seq_len=w["seq"], mlp_gated_linear_units=True,
                       flash_attn=w["attention"] != "eager",
                       activation_recomputation=ActivationRecomputation.FULL if "activation-checkpointing" in methods
                       else ActivationRecomputation.NONE)
        return r["(weight+op_state+grad+act)_memory_per_gpu"], r["latency_per_iter"]
    new = w["generate"] if w["task"] == "generate" else 1
    r = a.inference(batch_size_per_gpu=w["batch"], seq_len=w["seq"], num_tokens_to_generate=new)
    # decode: one step against a cache that exists (no prompt's activations); else the prefill's too
    act = r["decode_activation_memory_per_gpu"] if w["task"] == "decode" else max(
        r["prefill_activation_memory_per_gpu"], r["decode_activation_memory_per_gpu"])
    memory = r["weight_memory_per_gpu"] + r["kv_cache_memory_per_gpu"] + act
    seconds = {"prefill": r["prefill_latency"], "decode": r["decode_latency"], "generate": r["total_latency"]}[w["task"]]
    return memory, seconds


def main() -> int:
    logging.disable(logging.WARNING)
    import llm_analysis  # noqa: F401  (fails here, not mid-table, when it is not installed)

    device = sys.argv[1] if len(sys.argv) > 1 else "h100"
    if device not in ("h100", "h200"):
        print(f"device: '{device}' is not one of h100, h200", file=sys.stderr)
        return 2
    out = VALIDATION / f"llm-analysis-{device}.csv"
    measured = {}
    for line in (VALIDATION / f"{device}.jsonl").read_text().splitlines():
        m = json.loads(line)
        if m["fits"] and not m["case"].startswith("edge-"):
            measured[m["case"]] = m
    memsim = {r["case"]: r for r in csv.DictReader((VALIDATION / f"{device}-compare.csv").open())}
    rows = []
    for case, m in measured.items():
        w = m["workload"]
        step = statistics.median(m["step_times_s"])
        mem = memsim[case]
        row = dict(case=case, task=w["task"], measured_allocated=m["peak_allocated_bytes"], measured_step_s=step,
                   memsim_allocated=int(mem["predicted_allocated"]), memsim_error=float(mem["error_allocated"]),
                   memsim_step_s=float(mem["predicted_step_s"]), memsim_step_error=float(mem["error_step"]),
                   llm_analysis_memory="", llm_analysis_error="", llm_analysis_step_s="", llm_analysis_step_error="", note="")
        why = unsupported(w)
        if why:
            row["note"] = why
        else:
            try:
                memory, seconds = predict(w, device)
            except Exception as e:  # llm-analysis refuses some configs; the table says which
                row["note"] = f"llm-analysis failed: {str(e).splitlines()[0][:120]}"
            else:
                row.update(llm_analysis_memory=int(memory), llm_analysis_error=(memory - m["peak_allocated_bytes"]) / m["peak_allocated_bytes"],
                           llm_analysis_step_s=seconds, llm_analysis_step_error=(seconds - step) / step)
        rows.append(row)
        la = f"{row['llm_analysis_error']:+8.1%}" if row["llm_analysis_error"] != "" else "       -"
        print(f"{case:45} memory: memsim {row['memsim_error']:+7.2%} llm-analysis {la}   {row['note']}", flush=True)
    with out.open("w", newline="") as f:
        f.write(f"# {device.upper()} suite: measured, memsim and llm-analysis {llm_analysis_version()} (defaults, expansion_ratio given); "
                "errors are (predicted - measured) / measured\n")
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    both = [r for r in rows if r["llm_analysis_error"] != ""]
    for key, label in (("error", "peak memory"), ("step_error", "step time")):
        ms = [abs(r[f"memsim_{key}"]) for r in both]
        la = [abs(r[f"llm_analysis_{key}"]) for r in both]
        print(f"{label} over the {len(both)} cases both model: memsim median {statistics.median(ms):.1%} max {max(ms):.1%}; "
              f"llm-analysis median {statistics.median(la):.1%} max {max(la):.1%}")
    print(f"-> {out}")
    return 0


def llm_analysis_version() -> str:
    from importlib.metadata import version

    return version("llm-analysis")


if __name__ == "__main__":
    sys.exit(main())
