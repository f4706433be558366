"""The malformed inputs tests/test_fuzz.py runs: command lines (with the files they read) and Python
API calls, each with the text its one-line refusal must hold (the field it names).

Generated systematically, every case a mistake someone could make: each workload field, each
config.json key memsim reads and each command-line flag given a wrong type, a value out of range,
null, a list, something huge, a negative or an unknown name; files that are not UTF-8, not YAML or
JSON, nested without end or expanding without end; and the particular causes of tracebacks and
silent wrong answers found before (see README.md here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import yaml


@dataclass
class Cli:
    """`memsim ARGS` with FILES written first ('{tmp}' in an argument is the folder they are in)."""

    id: str
    args: tuple[str, ...]
    names: str | tuple[str, ...]  # what the one line must contain: the field, flag or file it is about
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Api:
    """`memsim.<call>(*args)` must raise memsim.InputError, one line containing `names`."""

    id: str
    call: str  # Workload | predict | largest_fitting | load_model | load_hardware
    args: tuple
    names: str


TINY = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=128)
BASES = {
    "llama": TINY,
    "gemma2": dict(TINY, model_type="gemma2", head_dim=16, sliding_window=32),
    "mixtral": dict(TINY, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(TINY, model_type="qwen2_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                      shared_expert_intermediate_size=64),
}

# Wrong values by kind: (label, value). A size is a positive integer, a flag true or false.
SIZE = [("text", "64"), ("float", 64.5), ("bool", True), ("null", None), ("list", [64]), ("mapping", {"v": 64}),
        ("zero", 0), ("negative", -64), ("huge", 2**40)]
FLAG = [("text-no", "no"), ("text-true", "true"), ("int-1", 1), ("int-0", 0), ("null", None), ("list", [True])]
NUMBER = [("text", "50"), ("bool", True), ("zero", 0), ("negative", -1.0), ("list", [50.0]), ("infinite", float("inf"))]
NAME = [("int", 5), ("null", None), ("list", ["silu"]), ("unknown", "gelu_new")]

CONFIG_KEYS = [  # (model type, key, wrong values)
    *[("llama", k, SIZE) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")],
    ("llama", "num_hidden_layers", [("past-the-bound", 513), ("ten-thousand", 10_000), ("a-million", 1_000_000)]),
    *[("llama", k, [v for v in SIZE if v[0] != "null"]) for k in ("num_key_value_heads", "head_dim")],
    *[("llama", k, FLAG) for k in ("tie_word_embeddings", "attention_bias", "mlp_bias")],
    ("llama", "mlp_bias", [("on", True)]),
    ("llama", "hidden_act", NAME),
    ("llama", "model_type", [("int", 5), ("null", None), ("list", ["llama"]), ("unknown", "t5"), ("upper-case", "LLAMA")]),
    ("gemma2", "sliding_window", [v for v in SIZE if v[0] != "mapping"]),
    ("gemma2", "hidden_activation", NAME),
    *[("gemma2", k, NUMBER) for k in ("attn_logit_softcapping", "final_logit_softcapping")],
    ("gemma2", "layer_types", [("text", "sliding_attention"), ("too-few", ["full_attention"]), ("unknown", ["full", "sliding"]),
                               ("ints", [0, 1]), ("mapping", {"0": "full_attention"})]),
    *[("mixtral", k, SIZE) for k in ("num_local_experts", "num_experts_per_tok")],
    ("mixtral", "num_experts_per_tok", [("more-than-experts", 5)]),
    ("mixtral", "output_router_logits", [v for v in FLAG if v[0] != "int-0"] + [("on", True)]),
    ("mixtral", "router_jitter_noise", [("on", 0.01), ("text", "0"), ("bool", True), ("list", [0])]),
    *[("qwen2_moe", k, SIZE) for k in ("num_experts", "moe_intermediate_size", "shared_expert_intermediate_size")],
    *[("qwen2_moe", k, FLAG) for k in ("norm_topk_prob", "qkv_bias", "use_sliding_window")],
    ("qwen2_moe", "use_sliding_window", [("on", True)]),
    ("qwen2_moe", "decoder_sparse_step", [("two", 2), ("text", "1")]),
    ("qwen2_moe", "mlp_only_layers", [("some", [0])]),
    ("llama", "quantization_config", [("bnb-4bit", {"quant_method": "bitsandbytes", "load_in_4bit": True}),
                                      ("gptq", {"quant_method": "gptq", "bits": 4}), ("text", "4bit")]),
    ("llama", "architectures", [("classifier", ["LlamaForSequenceClassification"]), ("text", "LlamaForCausalLM"), ("ints", [5])]),
]

# What each refusal of a config key names, where not the key itself.
NAMES = {("mixtral", "num_experts_per_tok", "more-than-experts"): "num_experts_per_tok",
         ("llama", "model_type", "null"): "model_type", ("qwen2_moe", "use_sliding_window", "on"): "use_sliding_window"}


def config_cases() -> tuple[list[Cli], list[Api]]:
    """Each config.json key wrong, as a file (`memsim fit cfg.json`) and inline (`memsim.predict`)."""
    cli, api = [], []
    for mtype, key, values in CONFIG_KEYS:
        for label, value in values:
            cfg = dict(BASES[mtype], **{key: value})
            cid = f"config-{mtype}-{key}-{label}"
            names = NAMES.get((mtype, key, label), key)
            cli.append(Cli(cid, ("fit", "{tmp}/" + cid + ".json", "--no-solve"), names,
                           {cid + ".json": json.dumps(cfg).encode()}))
            api.append(Api(cid, "predict", ({"model": cfg},), names))
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        cfg = {k: v for k, v in TINY.items() if k != key}
        api.append(Api(f"config-missing-{key}", "predict", ({"model": cfg},), f"missing key(s) {key}"))
    shapes = [("hidden-not-divided-by-heads", dict(TINY, hidden_size=65), "hidden_size (65) must be a multiple"),
              ("gemma2-hidden-not-divided", dict(BASES["gemma2"], num_attention_heads=3, num_key_value_heads=1), "hidden_size"),
              ("heads-not-divided-by-kv", dict(TINY, num_key_value_heads=3), "multiple of num_key_value_heads"),
              ("heads-wider-than-hidden", dict(TINY, model_type="mistral", hidden_size=2, num_key_value_heads=4), "head_dim"),
              ("kv-more-than-heads", dict(TINY, num_key_value_heads=8), "num_key_value_heads"),
              ("not-a-mapping", ["hidden_size", 64], "mapping"),
              ("empty", {}, "missing key(s)")]
    for label, cfg, names in shapes:
        cli.append(Cli(f"config-{label}", ("fit", "{tmp}/" + label + ".json", "--no-solve"), names,
                       {label + ".json": json.dumps(cfg).encode()}))
        api.append(Api(f"config-{label}", "predict", ({"model": cfg},), names))
    return cli, api


# Workload fields, each wrong: (field, label, value, what the line names).
WORKLOAD = [
    *[("model", lbl, v, "model") for lbl, v in [("int", 5), ("list", ["tinyllama-1.1b"]), ("null", None), ("bool", True),
                                                ("empty", ""), ("unknown", "llama-3-8bb"), ("long-name", "m" * 300),
                                                ("null-byte", "a\0b.json"), ("unknown-user", "~nosuchuser/config.json"),
                                                ("folder-without-config", "/"), ("markup", "[/]"),
                                                ("bytes-name", "é" * 200), ("binary", b"\0\0\0")]],
    *[("hardware", lbl, v, "hardware") for lbl, v in [("int", 5), ("list", ["rtx-4090"]), ("null", None), ("empty", " "),
                                                      ("unknown", "h100-sxm-80"), ("zero", "0GiB"), ("huge", "9" * 40 + "GiB"),
                                                      ("past-float", "9" * 400 + "GiB"), ("negative", "-24GiB"),
                                                      ("limited-twice", "h100-sxm-80gb@rtx-4090@t4"), ("limit-empty", "h100-sxm-80gb@"),
                                                      ("limit-larger", "rtx-4090@h100-sxm-80gb"), ("long-name", "h" * 300),
                                                      ("at-signs", "@" * 5000), ("null-byte", "a\0b.yaml")]],
    *[("host", lbl, v, "host") for lbl, v in [("int", 5), ("unknown", "epyc"), ("zero", "0GiB"), ("list", ["512GiB"])]],
    *[("task", lbl, v, "task") for lbl, v in [("int", 5), ("unknown", "finetune"), ("null", None), ("list", ["train"])]],
    *[(f, lbl, v, f) for f in ("batch", "seq") for lbl, v in SIZE if lbl not in ("huge",)],
    *[(f, "huge", 2**40, f) for f in ("batch", "seq", "generate")],
    *[("generate", lbl, v, "generate") for lbl, v in [("text", "8"), ("negative", -1), ("bool", True), ("float", 2.5),
                                                      ("list", [8])]],
    ("generate", "zero-with-generate-task", None, "generate"),  # task generate below
    *[("precision", lbl, v, "precision") for lbl, v in [("text", "bf16"), ("null", None), ("list", ["bf16"]),
                                                        ("unknown-weights", {"weights": "fp8"}), ("int-compute", {"compute": 16}),
                                                        ("16-bit-up", {"weights": "bf16", "compute": "fp32"}),
                                                        ("unknown-key", {"weights": "bf16", "dtype": "bf16"})]],
    *[("optimizer", lbl, v, "optimizer") for lbl, v in [("int", 5), ("unknown", "adamw8"), ("list-name", {"name": ["adamw"]}),
                                                        ("bad-impl", {"name": "adamw", "impl": "cuda"}), ("int-impl", {"impl": 5}),
                                                        ("unknown-parameter", {"name": "adamw", "lr": 0.1}),
                                                        ("list", ["adamw"]), ("null-name", {"name": None}),
                                                        ("fused-adafactor", {"name": "adafactor", "impl": "fused"})]],
    *[("attention", lbl, v, "attention") for lbl, v in [("int", 5), ("unknown", "xformers"), ("null", None)]],
    *[("logits", lbl, v, "logits") for lbl, v in [("unknown", "some"), ("bool", True)]],
    ("logits", "all-in-training", "all", "logits"),
    *[("runtime", lbl, v, "runtime") for lbl, v in [("unknown", "vllm"), ("int", 1)]],
    *[("methods", lbl, v, "methods") for lbl, v in [
        ("text", "lora"), ("int", 5), ("null", None), ("int-item", [5]), ("nameless", [{}]), ("list-name", [{"name": ["lora"]}]),
        ("unknown", ["qlorra"]), ("twice", ["activation-checkpointing", "activation-checkpointing"]),
        ("lora-rank-zero", [{"name": "lora", "rank": 0}]), ("lora-rank-huge", [{"name": "lora", "rank": 10**9}]),
        ("lora-rank-float", [{"name": "lora", "rank": 8.5}]), ("lora-targets-text", [{"name": "lora", "targets": "q_proj"}]),
        ("lora-targets-int", [{"name": "lora", "targets": [5]}]), ("lora-targets-unknown", [{"name": "lora", "targets": ["qproj"]}]),
        ("lora-unknown-parameter", [{"name": "lora", "rnak": 8}]), ("ckpt-every-zero", [{"name": "activation-checkpointing", "every": 0}]),
        ("ckpt-every-negative", [{"name": "activation-checkpointing", "every": -1}]),
        ("galore-rank-zero", [{"name": "galore", "rank": 0}]), ("lisa-layers-zero", [{"name": "lisa", "active_layers": 0}]),
        ("lora-and-galore", ["lora", "galore"])]],
    *[(f, "unknown-field", 4, f) for f in ("batchsize", "Model", "optimiser")],
]


CHECKED_AT_PREDICT = {"lora-rank-huge", "lora-targets-unknown", "galore-rank-zero", "lisa-layers-zero"}


def workload_cases() -> tuple[list[Cli], list[Api]]:
    """Each wrong field as a workload YAML (`memsim predict`), and as `memsim.Workload(**fields)`."""
    cli, api = [], []
    for fname, label, value, names in WORKLOAD:
        fields = {fname: value}
        if label == "zero-with-generate-task":
            fields = {"task": "generate", "generate": 0}
        if label == "all-in-training":
            fields = {"logits": "all", "task": "train"}
        wid = f"workload-{fname}-{label}"
        text = yaml.safe_dump(fields, allow_unicode=True)
        cli.append(Cli(wid, ("predict", "{tmp}/" + wid + ".yaml"), names, {wid + ".yaml": text.encode()}))
        # A method checked against the model (a rank past a projection's side) is refused by predict.
        api.append(Api(wid, "predict" if label in CHECKED_AT_PREDICT else "Workload", (fields,), names))
    return cli, api


GOOD = b"model: tinyllama-1.1b\nhardware: h100-sxm-80gb\nbatch: 1\nseq: 128\n"


def _w(text: str | bytes) -> dict[str, bytes]:
    return {"w.yaml": text if isinstance(text, bytes) else text.encode()}


# Command-line flags, each wrong: (id, args, names). Values that click refuses (a word for a number)
# and values memsim refuses.
FLAGS = [
    *[(f"fit-{flag}-{label}", ("fit", flag, v), names) for flag, names in (("--batch", "batch"), ("--seq", "seq"))
      for label, v in (("word", "four"), ("zero", "0"), ("negative", "-3"), ("float", "1.5"), ("huge", "9" * 30),
                       ("empty", ""))],
    *[(f"fit-generate-{label}", ("fit", "--task", "generate", "--generate", v), "generate")
      for label, v in (("word", "x"), ("negative", "-1"), ("zero", "0"), ("huge", str(2**40)))],
    *[(f"fit-{flag}-{label}", ("fit", flag, v), names)
      for flag, names, bad in (("--task", "task", ("finetune", "", "TRAIN")), ("--dtype", "precision.weights", ("fp8", "", "bfloat16")),
                               ("--optimizer", "optimizer.name", ("adamw8", "", "AdamW")), ("--impl", "optimizer.impl", ("cuda", "")),
                               ("--attention", "attention", ("xformers", "", "SDPA")), ("--hardware", "hardware", ("h100", "", "0GiB")))
      for label, v in zip(("unknown", "empty", "case"), bad)],
    ("fit-compute-unknown", ("fit", "--dtype", "fp32", "--compute", "fp8"), "precision.compute"),
    ("fit-compute-upcast", ("fit", "--dtype", "bf16", "--compute", "fp32"), "precision"),
    ("fit-model-empty", ("fit", ""), "model"),
    ("fit-model-unknown", ("fit", "llama-3-8bb"), "model"),
    ("fit-model-long-name", ("fit", "x" * 300), "model"),
    ("fit-model-long-path", ("fit", "/tmp/" + "d" * 300 + "/config.json"), "model"),
    ("fit-model-null-byte", ("fit", "a\0b.json"), "model"),
    ("fit-model-markup", ("fit", "[bold]x[/]"), "model"),
    ("fit-model-two", ("fit", "tinyllama-1.1b", "llama-3-8b"), "Got unexpected extra argument"),
    ("fit-unknown-flag", ("fit", "--batchsize", "4"), "--batchsize"),
    ("fit-flag-without-value", ("fit", "--batch"), "--batch"),
    *[(f"fit-method-{label}", ("fit", "--method", v), names) for label, v, names in (
        ("empty", "", "method"), ("colon", ":", "method"), ("no-value", "lora:rank", "--method lora:rank"),
        ("word-rank", "lora:rank=abc", "rank"), ("rank-zero", "lora:rank=0", "rank"), ("rank-huge", "lora:rank=" + "9" * 30, "rank"),
        ("no-key", "lora:=3", "method"), ("unknown", "qlorra", "qlorra"), ("unknown-parameter", "lora:rnak=8", "rnak"),
        ("every-zero", "activation-checkpointing:every=0", "every"), ("targets-unknown", "lora:targets=q+k", "targets"),
        ("mezo-with-adamw", "mezo", "mezo"))],
    ("fit-method-on-prefill", ("fit", "--task", "prefill", "--method", "lora"), "methods"),
    ("fit-flash-fp32", ("fit", "--attention", "flash", "--dtype", "fp32"), "attention"),
    ("predict-no-file", ("predict",), "workload"),
    ("predict-missing-file", ("predict", "{tmp}/nothing.yaml"), "workload"),
    ("predict-folder", ("predict", "{tmp}"), "workload"),
    ("predict-long-name", ("predict", "w" * 300 + ".yaml"), "workload"),
    ("predict-null-byte", ("predict", "w\0.yaml"), "workload"),
    ("predict-two-files", ("predict", "a.yaml", "b.yaml"), "Got unexpected extra argument"),
    ("trace-missing-file", ("trace", "{tmp}/nothing.yaml"), "workload"),
    ("trace-hidden-not-divided", ("trace", "{tmp}/hidden.yaml"), "hidden_size (65) must be a multiple of num_attention_heads"),
    ("trace-odd-head-dim", ("trace", "{tmp}/odd.yaml"), "head_dim (13"),
    ("validate-out-a-folder", ("validate", "{tmp}/suite.yaml", "--no-run", "--out", "{tmp}"), "--out"),
    *[(f"validate-plot-{label}", ("validate", "{tmp}/suite.yaml", "--no-run", "--plot", v), "--plot")
      for label, v in (("missing-folder", "{tmp}/no/x.png"), ("unknown-format", "{tmp}/x.xyz"), ("a-folder", "{tmp}"))],
    ("list-unknown", ("list", "gpus"), "list"),
    ("list-empty", ("list", ""), "list"),
    ("list-nothing", ("list",), "what"),
    ("command-unknown", ("fitt",), "fitt"),
    ("roofline-missing-file", ("roofline", "{tmp}/nothing.yaml"), "workload"),
    *[(f"roofline-top-{label}", ("roofline", "{tmp}/w.yaml", "--top", v), "--top")
      for label, v in (("zero", "0"), ("negative", "-3"), ("word", "all"))],
    *[(f"roofline-plot-{label}", ("roofline", "{tmp}/w.yaml", "--plot", v), "--plot")
      for label, v in (("missing-folder", "{tmp}/no/such/folder/x.png"), ("unknown-format", "{tmp}/x.xyz"),
                       ("no-extension", "{tmp}/plot"), ("a-folder", "{tmp}"), ("null-byte", "{tmp}/x\0.png"))],
    ("validate-missing-suite", ("validate", "{tmp}/nothing.yaml"), "suite"),
    ("validate-device-unknown", ("validate", "{tmp}/nothing.yaml", "--device", "tpu"), "--device"),
    ("calibrate-only-without-update", ("calibrate", "--only", "matmul"), "--only"),
    ("calibrate-update-missing", ("calibrate", "--update", "{tmp}/nothing.yaml", "--only", "matmul"), "measured profile"),
]

# The roofline on devices it cannot time kernels on.
ROOFLINE_DEVICES = [("t4", "bf16 peak"), ("v100-16gb", "bf16 peak"), ("v100-32gb", "bf16 peak"),
                    ("apple-m2-ultra-192gb", "peak FLOP/s"), ("apple-m3-max-128gb", "peak FLOP/s"),
                    ("apple-m4-max-128gb", "peak FLOP/s"), ("24GiB", "bare capacity")]


FLAG_FILES = {  # the files some flags' cases read besides w.yaml
    "hidden.yaml": yaml.safe_dump({"model": dict(TINY, hidden_size=65, num_key_value_heads=1), "seq": 8}).encode(),
    "odd.yaml": yaml.safe_dump({"model": dict(TINY, hidden_size=52, num_key_value_heads=1), "seq": 8}).encode(),
    "suite.yaml": b"name: s\nhardware: 8GiB\ncases:\n  - {id: a, model: smollm2-135m, seq: 64}\n",
}


def flag_cases() -> list[Cli]:
    cases = []
    for cid, args, names in FLAGS:
        files = {n: d for n, d in {"w.yaml": GOOD, **FLAG_FILES}.items() if any("{tmp}/" + n in a for a in args)}
        cases.append(Cli(cid, args, names, files))
    for hw, names in ROOFLINE_DEVICES:
        cases.append(Cli(f"roofline-on-{hw}", ("roofline", "{tmp}/w.yaml"), names,
                         _w(f"model: tinyllama-1.1b\nhardware: {hw}\nseq: 128\n")))
    return cases


# Corrupt files: (label, bytes, names). Each is given as a workload, a config.json, a hardware
# profile and a suite.
CORRUPT = [
    ("latin-1", "model: café\n".encode("latin-1"), "UTF-8"),
    ("utf-16", "model: tinyllama-1.1b\n".encode("utf-16"), "UTF-8"),
    ("binary", bytes(range(256)), "UTF-8"),
    ("empty", b"", "mapping"),
    ("whitespace", b"  \n\n", "mapping"),
    ("scalar", b"42\n", "mapping"),
    ("list", b"- a\n- b\n", "mapping"),
    ("unclosed-flow", b"model: [tinyllama\n", "not valid"),
    ("unclosed-quote", b'model: "tinyllama\n', "not valid"),
    ("tab-indent", b"model:\n\t- x\n", "not valid"),
    ("two-documents", b"batch: 1\n---\nbatch: 2\n", "not valid"),
    ("deep-flow", b"model: " + b"[" * 5000 + b"]" * 5000 + b"\n", "deeper"),
    ("deep-block", ("model:\n" + "".join(" " * (2 * i) + f"k{i}:\n" for i in range(1, 60)) + " " * 120 + "v: 1\n").encode(), "deeper"),
    ("alias-bomb", ("a: &a [" + ",".join(["x"] * 10) + "]\n" + "".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 10) + "]\n" for p, c in zip("abcdefgh", "bcdefghi"))).encode(), "values"),
    ("self-alias", b"model: &m [*m]\n", "itself"),
    ("bad-date", b"model: 2024-13-45\n", "not valid"),
    ("python-tag", b"model: !!python/object/apply:os.getcwd []\n", "not valid"),
    ("text-keys", b"1: 2\n", "field names are text"),
    ("null-key", b"~: 2\n", "field names are text"),
]
JSON_CORRUPT = [
    ("trailing-comma", b'{"hidden_size": 64,}', "not valid JSON"),
    ("comment", b'{"hidden_size": 64 // hidden\n}', "not valid JSON"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "deeper"),
    ("nan", json.dumps(dict(TINY, hidden_size=float("nan"))).encode(), "hidden_size"),
    ("infinity", json.dumps(dict(TINY, vocab_size=float("inf"))).encode(), "vocab_size"),
    ("yaml-in-json", b"hidden_size: 64\n", "not valid JSON"),
    ("latin-1", '{"_name_or_path": "café"}'.encode("latin-1"), "UTF-8"),
    ("empty", b"", "not valid JSON"),
]
KINDS = {  # how each kind of file is given: (file name, args, what the line names)
    "workload": ("w.yaml", ("predict", "{tmp}/w.yaml"), "workload"),
    "workload-json": ("w.json", ("predict", "{tmp}/w.json"), "workload"),
    "config": ("config.json", ("fit", "{tmp}/config.json", "--no-solve"), "model config"),
    "profile": ("gpu.yaml", ("fit", "--hardware", "{tmp}/gpu.yaml", "--no-solve"), "hardware profile"),
    "suite": ("suite.yaml", ("validate", "{tmp}/suite.yaml", "--no-run", "--out", "{tmp}/r.jsonl"), "suite"),
    "roofline": ("w.yaml", ("roofline", "{tmp}/w.yaml"), "workload"),
}


WORKLOAD_ONLY = {"nan", "infinity"}  # their field is a workload's (or a config's) own
SAMPLED = {"latin-1", "deep-flow", "alias-bomb", "list", "unclosed-flow", "text-keys"}  # enough for a reader shared


def file_cases() -> list[Cli]:
    cases = []
    for kind, (name, args, what) in KINDS.items():
        corrupt = JSON_CORRUPT if name.endswith(".json") else CORRUPT
        for label, data, names in corrupt:
            if (kind in ("roofline", "suite") and label not in SAMPLED) or (
                    label in WORKLOAD_ONLY and kind not in ("workload", "config")):
                continue
            cases.append(Cli(f"file-{kind}-{label}", args, (what, names), {name: data}))
    cases.append(Cli("file-workload-json-nan-batch", ("predict", "{tmp}/w.json"), ("batch",), {"w.json": b'{"batch": NaN}'}))
    cases.append(Cli("file-workload-folder-named-yaml", ("predict", "{tmp}/d.yaml"), ("workload", "d.yaml"), {"d.yaml/x": b""}))
    return cases


PROFILE = {"name": "gpu", "memory_capacity_bytes": {"value": 24e9, "source": "datasheet"},
           "memory_bandwidth_bytes_per_s": {"value": 1e12, "source": "datasheet"}}
# A hardware profile's fields, each wrong: (label, profile, what the line names).
PROFILES = [
    ("no-name", {k: v for k, v in PROFILE.items() if k != "name"}, "name"),
    ("no-capacity", {k: v for k, v in PROFILE.items() if k != "memory_capacity_bytes"}, "memory_capacity_bytes"),
    *[(f"capacity-{label}", dict(PROFILE, memory_capacity_bytes={"value": v, "source": "datasheet"}), "memory_capacity_bytes")
      for label, v in (("text", "24e9"), ("bool", True), ("zero", 0), ("negative", -1), ("null", None), ("list", [24e9]),
                       ("infinite", float("inf")), ("nan", float("nan")))],
    ("capacity-a-number", dict(PROFILE, memory_capacity_bytes=24e9), "memory_capacity_bytes"),
    ("capacity-no-source", dict(PROFILE, memory_capacity_bytes={"value": 24e9}), "source"),
    ("capacity-unknown-key", dict(PROFILE, memory_capacity_bytes={"value": 24e9, "source": "x" * 3, "unit": "B"}), "unit"),
    ("peaks-a-list", dict(PROFILE, peak_flops=[1e12]), "peak_flops"),
    ("peak-text", dict(PROFILE, peak_flops={"bf16": {"value": "fast", "source": "datasheet"}}), "peak_flops"),
    ("visible-bool", dict(PROFILE, cuda_visible_bytes={"value": True, "source": "measured"}), "cuda_visible_bytes"),
    ("sm-text", dict(PROFILE, compute_capability={"value": "9.0", "source": "datasheet"}), "compute_capability"),
]


def profile_cases() -> list[Cli]:
    return [Cli(f"profile-{label}", ("fit", "--hardware", "{tmp}/gpu.yaml", "--no-solve"), ("hardware profile", names),
                {"gpu.yaml": yaml.safe_dump(p).encode()}) for label, p, names in PROFILES]


SUITE = {"name": "s", "hardware": "8GiB", "cases": [{"id": "a", "model": "smollm2-135m", "seq": 64}]}
# A suite's fields, each wrong: (label, suite, what the line names).
SUITES = [
    ("no-cases", {k: v for k, v in SUITE.items() if k != "cases"}, "cases"),
    ("cases-empty", dict(SUITE, cases=[]), "cases"),
    ("cases-text", dict(SUITE, cases="a"), "cases"),
    ("case-text", dict(SUITE, cases=["a"]), "cases"),
    ("case-no-id", dict(SUITE, cases=[{"model": "smollm2-135m"}]), "id"),
    ("case-id-spaces", dict(SUITE, cases=[{"id": "a b"}]), "id"),
    ("case-id-twice", dict(SUITE, cases=[{"id": "a"}, {"id": "a"}]), "used twice"),
    ("case-bad-batch", dict(SUITE, cases=[{"id": "a", "batch": "2"}]), "batch"),
    ("case-unknown-field", dict(SUITE, cases=[{"id": "a", "batchsize": 2}]), "batchsize"),
    ("case-bad-model", dict(SUITE, cases=[{"id": "a", "model": {"hidden_size": "64"}}]), "model"),
    ("case-boundary-unknown", dict(SUITE, cases=[{"id": "a", "boundary": "seq"}]), "boundary"),
    ("case-emulate-unknown", dict(SUITE, cases=[{"id": "a", "emulate": "rtx-40900"}]), "hardware"),
    ("defaults-text", dict(SUITE, defaults="bf16"), "defaults"),
    ("warmup-zero", dict(SUITE, warmup=0), "warmup"),
    ("steps-list", dict(SUITE, steps=[3]), "steps"),
    ("hardware-unknown", dict(SUITE, hardware="h100"), "hardware"),
    ("unknown-field", dict(SUITE, device="cpu"), "device"),
    ("name-list", dict(SUITE, name=["s"]), "name"),
]


def suite_cases() -> list[Cli]:
    return [Cli(f"suite-{label}", ("validate", "{tmp}/suite.yaml", "--no-run", "--out", "{tmp}/r.jsonl"), ("suite", names),
                {"suite.yaml": yaml.safe_dump(s).encode()}) for label, s, names in SUITES]


W = {"model": "smollm2-135m", "seq": 64}
API = [  # the Python API's entry points given what they cannot use: (id, call, args, names)
    ("largest-fitting-batchsize", "largest_fitting", (W, "batchsize"), "batch"),
    ("largest-fitting-null-field", "largest_fitting", (W, None), "field"),
    ("largest-fitting-list-field", "largest_fitting", (W, ["batch"]), "field"),
    ("largest-fitting-limit-zero", "largest_fitting", (W, "batch", 0), "limit"),
    ("largest-fitting-limit-text", "largest_fitting", (W, "batch", "8"), "limit"),
    ("largest-fitting-bad-workload", "largest_fitting", ({"batch": 0}, "batch"), "batch"),
    ("largest-fitting-text-workload", "largest_fitting", ("w.yaml", "batch"), "workload"),
    ("predict-text", "predict", ("w.yaml",), "workload"),
    ("predict-int", "predict", (5,), "workload"),
    ("predict-none", "predict", (None,), "workload"),
    ("predict-int-keys", "predict", ({1: 2},), "field names are text"),
    ("predict-roofline-less-model", "predict", ({"model": {"hidden_size": 64}},), "missing key(s)"),
    ("load-model-int", "load_model", (5,), "model"),
    ("load-model-long", "load_model", ("m" * 5000,), "model"),
    ("load-model-list", "load_model", (["tinyllama-1.1b"],), "model"),
    ("load-hardware-int", "load_hardware", (5,), "hardware"),
    ("load-hardware-zero", "load_hardware", ("0GiB",), "hardware"),
    ("load-hardware-huge", "load_hardware", ("9" * 400 + "GiB",), "hardware"),
    ("load-hardware-many-at", "load_hardware", ("@" * 10_000,), "hardware"),
]


def api_cases() -> list[Api]:
    return [Api(*a) for a in API]


def all_cases() -> tuple[list[Cli], list[Api]]:
    config_cli, config_api = config_cases()
    workload_cli, workload_api = workload_cases()
    cli = config_cli + workload_cli + flag_cases() + file_cases() + profile_cases() + suite_cases()
    return cli, config_api + workload_api + api_cases()
