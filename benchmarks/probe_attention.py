"""Probe what attention really does: every scaled_dot_product_attention call (shapes, mask,
enable_gqa), the CUDA kernels that ran, the bytes autograd saved and the forward/backward peaks,
for a catalog model cut to a few layers. Run it on a GPU and on a CPU (fake tensors under memsim's
CUDA semantics) and compare the two lines: where they differ, the trace is not CUDA's program.

    python benchmarks/probe_attention.py gemma-2-2b --layers 2 --seq 6008 [--task prefill]
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections import Counter

import torch
import torch.nn.functional as F


def _describe(t):
    if t is None:
        return None
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "stride": list(t.stride())}


@contextlib.contextmanager
def sdpa_calls(log: list):
    inner = F.scaled_dot_product_attention

    def logged(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        log.append({"q": _describe(q), "k": _describe(k), "mask": _describe(attn_mask),
                    "is_causal": is_causal, "enable_gqa": enable_gqa})
        return inner(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                     enable_gqa=enable_gqa)

    F.scaled_dot_product_attention = logged
    try:
        yield
    finally:
        F.scaled_dot_product_attention = inner


@contextlib.contextmanager
def saved_bytes(counter: dict):
    """Unique storages autograd saves during the forward (what backward keeps alive)."""
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        seen[id(st)] = (st, st.nbytes(), tuple(t.shape), str(t.dtype).replace("torch.", ""))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield
    counter["saved_bytes"] = sum(n for _, n, _, _ in seen.values())
    counter["saved_by_shape"] = Counter(f"{s}:{d}" for _, _, s, d in seen.values()).most_common(12)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--task", choices=["train", "prefill"], default="train")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--sm", type=int, default=90, help="on a CPU: the compute capability to emulate (90: H100)")
    args = ap.parse_args()

    from memsim.catalog import raw_config
    from memsim.executors.trace import build_model, DTYPES

    config = dict(raw_config(args.model), num_hidden_layers=args.layers)
    if "layer_types" in config:
        config["layer_types"] = config["layer_types"][: args.layers]
    cuda = torch.cuda.is_available()
    out = {"model": args.model, "layers": args.layers, "batch": args.batch, "seq": args.seq, "task": args.task,
           "device": torch.cuda.get_device_name() if cuda else "cpu (fake tensors, CUDA semantics)",
           "torch": torch.__version__,
           "sm": "%d%d" % torch.cuda.get_device_capability() if cuda else args.sm}
    calls: list = []
    with contextlib.ExitStack() as stack:
        if cuda:
            torch.set_default_device("cuda")
        else:
            from torch._subclasses.fake_tensor import FakeTensorMode
            from memsim.executors.cuda_semantics import cuda_dispatch
            from memsim.executors.storage_tracker import StorageTracker

            stack.enter_context(FakeTensorMode())
            tracker = stack.enter_context(StorageTracker())
            stack.enter_context(cuda_dispatch(args.sm))
        model = build_model(config, "sdpa", args.dtype)
        if args.task == "prefill":
            for p in model.parameters():
                p.requires_grad_(False)
        ids = torch.randint(0, config["vocab_size"], (args.batch, args.seq))
        stack.enter_context(sdpa_calls(calls))

        def allocated():
            return torch.cuda.memory_allocated() if cuda else tracker.live_bytes

        def reset():
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            else:
                tracker.reset_peak()

        def peak():
            return torch.cuda.max_memory_allocated() if cuda else tracker.peak_bytes

        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) if cuda else contextlib.nullcontext()
        base = allocated()
        reset()
        with prof:
            if args.task == "train":
                counter: dict = {}
                with saved_bytes(counter):
                    loss = model(input_ids=ids, labels=ids).loss
                out.update(counter)
                out["forward_peak"] = peak() - base
                out["after_forward"] = allocated() - base
                reset()
                loss.backward()
                del loss
                out["backward_peak"] = peak() - base
            else:
                with torch.no_grad():
                    o = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                del o
                out["forward_peak"] = peak() - base
        if cuda:
            names = Counter(e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
            attn = {n[:120]: c for n, c in names.items()
                    if any(w in n.lower() for w in ("flash", "fmha", "attention", "cudnn", "softmax", "sdpa"))}
            out["attention_kernels"] = attn
    out["sdpa_calls"] = calls[: args.layers]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
