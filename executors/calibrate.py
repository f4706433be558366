"""`memsim calibrate`: microbenchmarks of the local device, written as a measured profile.

What a roofline needs and a datasheet does not say: the matrix-product throughput actually reached
per shape and dtype (small products do not reach peak), the device's copy bandwidth, host-device
transfers (pinned and pageable, both directions, 1 MiB to 4 GiB) and disk writes and reads. Each
figure is a median of timed repetitions after warm-up; GPU work is timed with CUDA events, host
work with perf_counter. The profile (memsim.calibration.MeasuredProfile) carries its provenance.
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
from pathlib import Path

import torch

from memsim.calibration import ATTENTION_BATCH_HEADS, MATMUL_SHAPES, TRANSFER_SIZES, MeasuredProfile

from .host_costs import launches
from .timing import cuda_median, device_median, graph_median, host_median, sm_clock_mhz

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
COPY_SIZES = [2**20 * 4**i for i in range(7)]  # 1 MiB .. 4 GiB
DISK_SIZES = [2**26, 2**28, 2**30]  # 64 MiB .. 1 GiB
PAGEABLE_BUFFERS = 5


# A step reads each layer's weights and most activations from HBM, not from the L2 (50 MB on an
# H100, 60 MB on an H200): operands that fit in it are timed rotating over copies of this many bytes.
ROTATE_BYTES = 256 * 2**20
MAX_COPIES = 64


def _copies(make, nbytes: int) -> list:
    """Copies of make()'s operands (`nbytes` each), enough that one pass over them exceeds
    ROTATE_BYTES: one for operands larger than that."""
    return [make() for _ in range(min(MAX_COPIES, max(1, -(-ROTATE_BYTES // max(nbytes, 1)))))]


def matmuls(dtypes=("bf16", "fp16", "fp32"), progress=lambda msg: None) -> list[dict]:
    """x [m, k] @ w [n, k].T (an nn.Linear's product) for every shape of MATMUL_SHAPES, timed in
    CUDA graphs (a small product launched from Python would time the host) over rotating copies
    of its operands (_rotating: from HBM, as in a step)."""
    rows = []
    for name in dtypes:
        dtype = DTYPES[name]
        for m, n, k in MATMUL_SHAPES:
            progress(f"matmul {name} {m}x{n}x{k}")
            operands = _copies(lambda: (torch.randn(m, k, device="cuda", dtype=dtype), torch.randn(n, k, device="cuda", dtype=dtype)),
                               (m + n) * k * dtype.itemsize)
            cycle = itertools.cycle(operands)

            def product():
                a, b = next(cycle)
                return torch.mm(a, b.t())

            flops = 2 * m * n * k
            reps = max(3, min(20, int(2e12 / flops)))
            inner = 20 if flops < 1e10 else 5 if flops < 1e11 else 1
            s = graph_median(product, reps, inner=len(operands) * -(-inner // len(operands)))
            rows.append(dict(dtype=name, m=m, n=n, k=k, seconds=s, flops_per_s=flops / s, sm_clock_mhz=sm_clock_mhz()))
            del operands, cycle
            torch.cuda.empty_cache()
    return rows


ATTENTION_SEQS = (1024, 2048, 4096, 8192)


def attention(progress=lambda msg: None) -> list[dict]:
    """scaled_dot_product_attention as transformers calls it, bf16, at batch 4 x 16 heads x
    ATTENTION_SEQS tokens: causal (no mask) and with a boolean mask (as Gemma-2's sliding layers
    pass), forward and backward, for head dims 64, 128 and 256. FLOPs are counted as memsim counts
    them: two products over the score matrix, half of it when causal; backward 2.5 times the
    forward's. Timed in CUDA graphs: timed from Python, the short calls timed the host's issue of
    the call and of autograd's backward too (their rates put TinyLlama's attention at 1024 tokens
    at 3.8x the kernels' time the profiler measured)."""
    import torch.nn.functional as F

    rows = []
    b, h = 4, ATTENTION_BATCH_HEADS // 4
    for s in ATTENTION_SEQS:
        for hd in (64, 128, 256):
            for masked in (False, True):
                progress(f"attention s {s} hd {hd}{' masked' if masked else ''}")
                q, k, v = (torch.randn(b, h, s, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
                mask = torch.ones(s, s, device="cuda", dtype=torch.bool).tril()[None, None] if masked else None
                flops = 4 * b * h * s * s * hd * (1.0 if masked else 0.5)
                out = None

                def fwd():
                    nonlocal out
                    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=not masked)

                grad = torch.randn(b, h, s, hd, device="cuda", dtype=torch.bfloat16)

                def fwd_bwd():
                    fwd()
                    out.backward(grad)

                inner = 20 if flops < 1e10 else 3
                t_fwd, t_both = (device_median(f, reps=10, inner=inner) for f in (fwd, fwd_bwd))
                common = dict(head_dim=hd, masked=masked, seq=s, batch_heads=b * h)
                rows.append(dict(common, direction="forward", flops_per_s=flops / t_fwd))
                rows.append(dict(common, direction="backward", flops_per_s=2.5 * flops / max(t_both - t_fwd, 1e-9)))
                del q, k, v, grad, out, mask
    return rows


def _layout_kernels(n: int, dtype=torch.bfloat16) -> dict:
    """One kernel of each memory layout (memsim.calibration.MEMORY_LAYOUTS) whose main tensor has
    `n` bytes, as a decoder layer runs it, with the bytes the tape counts for it (each distinct
    input once, plus the output): {layout: (fn, bytes)}. `dtype`: the tensors' that a bf16
    model's are (torch.float32 for FP32_LAYOUTS' fp32 points); the norm's fp32 ones stay fp32."""
    fp32 = torch.float32
    hidden, heads, head_dim, kv_heads = 4096, 32, 128, 8
    size = torch.empty(0, dtype=dtype).element_size()
    rows = max(n // (size * hidden), 1)
    x = torch.randn(rows, hidden, device="cuda", dtype=dtype)
    y = torch.randn_like(x)
    w = torch.randn(hidden, device="cuda", dtype=dtype)
    x32 = x.float()
    r32 = torch.randn(rows, 1, device="cuda", dtype=fp32)
    # RoPE's operands: q as q_proj.view(b, s, h, d).transpose(1, 2), cos broadcast over heads.
    seq = max(n // (size * heads * head_dim), 1)
    q = torch.randn(1, seq, heads, head_dim, device="cuda", dtype=dtype).transpose(1, 2)
    cos = torch.randn(1, 1, seq, head_dim, device="cuda", dtype=dtype)
    half = head_dim // 2
    # A KV cache of n bytes ([b, kv, tokens, d]) grown by one token, and the prefill's cat of a
    # transposed K into the (empty) cache.
    tokens = max(n // (size * 16 * kv_heads * head_dim), 1)
    cache = torch.randn(16, kv_heads, tokens, head_dim, device="cuda", dtype=dtype)
    new = torch.randn(16, kv_heads, 1, head_dim, device="cuda", dtype=dtype)
    k_t = torch.randn(1, seq, heads, head_dim, device="cuda", dtype=dtype).transpose(1, 2)
    empty = k_t.new_empty(1, heads, 0, head_dim)
    pieces = [torch.randn(max(n // size // 64, 1), device="cuda", dtype=dtype) for _ in range(64)]  # a parameter list
    nb = x.nbytes
    return {
        "contiguous": (lambda: x * y, 3 * nb),
        "broadcast": (lambda: w * x, 2 * nb + w.nbytes),
        "broadcast_rows": (lambda: x32 * r32, 2 * x32.nbytes + r32.nbytes),
        "strided": (lambda: q * cos, 2 * q.nbytes + cos.nbytes),
        "cast": (lambda: x.to(fp32), nb + x32.nbytes),
        "copy_strided": (lambda: q.contiguous(), 2 * q.nbytes),
        "reduce": (lambda: x32.mean(-1, keepdim=True), x32.nbytes + r32.nbytes),
        "cat": (lambda: torch.cat([cache, new], dim=-2), 2 * cache.nbytes + 2 * new.nbytes),
        "cat_strided": (lambda: torch.cat([-q[..., half:], q[..., :half]], dim=-1), 2 * q.nbytes),
        "cat_into_empty": (lambda: torch.cat([empty, k_t], dim=-2), 2 * k_t.nbytes),
        "foreach": (lambda: torch._foreach_mul_(pieces, 0.999), 2 * sum(t.nbytes for t in pieces)),
    }


def memory_kernels(progress=lambda msg: None) -> dict:
    """Bandwidths of the memory-bound kernels a decoder runs, by layout: TensorIterator runs
    contiguous same-dtype inputs in its vectorized kernel, and broadcast, strided (RoPE on a
    transposed q) and dtype-casting ones in slower general kernels; cat of a contiguous cache
    differs from cat of strided halves. Each at MEMORY_SIZES (its main tensor's bytes: L2-resident
    up to HBM-bound), bytes counted as the tape counts them (memsim/tape.py: inputs + output),
    timed in CUDA graphs (device time, without the host's launch gaps) over copies that rotate
    past the L2."""
    from memsim.calibration import FP32_LAYOUTS, MEMORY_SIZES

    layouts, largest = [], {}
    for dtype, measured in ((torch.bfloat16, None), (torch.float32, FP32_LAYOUTS)):
        size = torch.empty(0, dtype=dtype).element_size()
        for n in sorted(MEMORY_SIZES):
            progress(f"memory kernels {n} B, {dtype}")
            # A kernel of a set touches about three tensors of n bytes: copies of the set rotate past the L2.
            kernel_sets = _copies(lambda: _layout_kernels(n, dtype), 3 * n)
            copies = len(kernel_sets)
            for layout, (_, nbytes) in kernel_sets[0].items():
                if measured is not None and layout not in measured:
                    continue
                cycle = itertools.cycle([ks[layout][0] for ks in kernel_sets])
                inner = 20 if n <= 2**25 else 4
                t = graph_median(lambda: next(cycle)(), reps=10, inner=copies * -(-inner // copies))
                layouts.append(dict(layout=layout, bytes=nbytes, seconds=t, bytes_per_s=nbytes / t, dtype_bytes=size))
                if measured is None:
                    largest[layout] = nbytes / t
            del kernel_sets
            torch.cuda.empty_cache()
    return dict(elementwise_bytes_per_s=largest["contiguous"], cat_bytes_per_s=largest["cat"], layouts=layouts)


SECTIONS = ("matmul", "attention", "memory_kernels", "device_copy", "transfer", "disk", "launch")


def update(profile: MeasuredProfile, sections, disk_folder: str | None = None, progress=lambda msg: None) -> MeasuredProfile:
    """Measure `sections` again on this device and replace them in `profile` (same device only)."""
    from .run import provenance

    if not torch.cuda.is_available():
        from memsim.errors import InputError

        raise InputError("calibrate: needs a CUDA device (torch.cuda.is_available() is False here)")
    prov = provenance(True)
    if prov.device != profile.provenance.device:
        from memsim.errors import InputError

        raise InputError(f"calibrate --update: the profile is of '{profile.provenance.device}', this device is '{prov.device}'")
    run = {"matmul": lambda: matmuls(progress=progress), "attention": lambda: attention(progress),
           "memory_kernels": lambda: memory_kernels(progress), "device_copy": lambda: device_copies(progress),
           "transfer": lambda: transfers(progress=progress), "disk": lambda: disk(disk_folder, progress),
           "launch": lambda: launches(progress)}
    fields = {name: run[name]() for name in sections}
    return replaced(profile, fields, prov)


def replaced(profile: MeasuredProfile, fields: dict, prov) -> MeasuredProfile:
    """`profile` with the sections in `fields` measured again by the run `prov` describes; the
    sections not measured again keep the provenance they were measured with."""
    kept = {name: profile.section_provenance.get(name, profile.provenance) for name in SECTIONS if name not in fields}
    by_section = {name: p.model_dump() for name, p in kept.items()} | {name: prov.model_dump() for name in fields}
    return MeasuredProfile(**{**profile.model_dump(), **fields, "provenance": prov.model_dump(), "section_provenance": by_section})


def device_copies(progress=lambda msg: None) -> list[dict]:
    """dst.copy_(src) on the device: each byte read once and written once."""
    rows = []
    for n in COPY_SIZES:
        progress(f"device copy {n} B")
        src = torch.empty(n, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        s = cuda_median(lambda: dst.copy_(src), reps=10)
        rows.append(dict(bytes=n, seconds=s, bytes_per_s=2 * n / s))
        del src, dst
    return rows


def transfers(sizes=TRANSFER_SIZES, progress=lambda msg: None, refine: bool = True) -> list[dict]:
    """Host to device and back, from pinned and from pageable host memory, as tensor.copy_ does,
    at `sizes` and, with `refine`, between them where a line through two sizes misses
    (calibration.refine_sizes). A pageable copy's speed depends on where the kernel put the
    buffer's pages (measured on a KVM guest: the same size ran up to 29% apart in two processes),
    so each size is timed on PAGEABLE_BUFFERS freshly allocated buffers and the median taken."""
    from memsim.calibration import refine_sizes

    directions = ("host_to_device", "device_to_host")
    rows = []
    for pinned in (True, False):
        def measure(n: int) -> tuple[float, float]:
            progress(f"transfer {'pinned' if pinned else 'pageable'} {n} B")
            times = _transfer_times(n, pinned)
            return tuple(statistics.median(times[d]) for d in directions)

        timed = {n: measure(n) for n in sizes}
        if refine:
            timed = refine_sizes(timed, measure)
        for n in sorted(timed):
            for direction, s in zip(directions, timed[n]):
                rows.append(dict(direction=direction, pinned=pinned, bytes=n, seconds=s, bytes_per_s=n / s))
    return rows


def _transfer_times(n: int, pinned: bool) -> dict[str, list[float]]:
    """Seconds of n-byte copies each way, a median per host buffer (one pinned, PAGEABLE_BUFFERS
    pageable ones)."""
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    reps = 20 if n <= 2**26 else 7 if n <= 2**29 else 3  # a 4 GiB pageable copy takes 0.45 s
    buffers = 1 if pinned else PAGEABLE_BUFFERS if n <= 2**29 else 3
    times: dict[str, list[float]] = {"host_to_device": [], "device_to_host": []}
    for _ in range(buffers):
        host = torch.empty(n, dtype=torch.uint8, pin_memory=pinned)
        host.fill_(1)  # touch every page, as real data would
        times["host_to_device"].append(cuda_median(lambda: dev.copy_(host, non_blocking=pinned), reps))
        times["device_to_host"].append(cuda_median(lambda: host.copy_(dev, non_blocking=pinned), reps))
        del host
    del dev
    return times


def disk(folder: str | None = None, progress=lambda msg: None) -> list[dict]:
    """Sequential write (then fsync) and read of a file, with its pages dropped from the page cache
    before reading (posix_fadvise DONTNEED), so the read comes from the disk."""
    rows = []
    buf = os.urandom(2**24)
    with tempfile.TemporaryDirectory(dir=folder) as d:
        path = Path(d) / "calibrate.bin"
        for n in DISK_SIZES:
            progress(f"disk {n} B")

            def write():
                with open(path, "wb", buffering=0) as f:
                    for _ in range(n // len(buf)):
                        f.write(buf)
                    os.fsync(f.fileno())

            def read():
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    while os.read(fd, 2**24):
                        pass
                finally:
                    os.close(fd)

            w = host_median(write, reps=3)
            r = host_median(read, reps=3)
            rows += [dict(op="write", bytes=n, seconds=w, bytes_per_s=n / w), dict(op="read", bytes=n, seconds=r, bytes_per_s=n / r)]
    return rows


def calibrate(name: str, base: str = "", quick: bool = False, disk_folder: str | None = None,
              progress=lambda msg: None) -> MeasuredProfile:
    """Run every microbenchmark on the local CUDA device; `quick`: bf16 products only, no disk."""
    from .run import provenance

    if not torch.cuda.is_available():
        from memsim.errors import InputError

        raise InputError("calibrate: needs a CUDA device (torch.cuda.is_available() is False here)")
    props = torch.cuda.get_device_properties(0)
    return MeasuredProfile(
        name=name,
        base=base,
        provenance=provenance(True),
        compute_capability=f"{props.major}.{props.minor}",
        total_memory_bytes=props.total_memory,
        matmul=matmuls(("bf16",) if quick else ("bf16", "fp16", "fp32"), progress),
        device_copy=device_copies(progress),
        attention=attention(progress),
        memory_kernels=memory_kernels(progress),
        transfer=transfers(progress=progress),
        disk=[] if quick else disk(disk_folder, progress),
        launch=launches(progress),
    )
