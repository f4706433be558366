"""Report: the answer, as a pydantic model whose JSON is a documented contract."""

from __future__ import annotations

from pydantic import BaseModel

from .allocator import CUDA_CONTEXT_BYTES
from .tape import CATEGORIES


class TierPeak(BaseModel):
    allocated_bytes: int  # torch.cuda.max_memory_allocated(): live tensors, 512-byte rounded
    reserved_bytes: int  # torch.cuda.max_memory_reserved(): the caching allocator's segments
    device_bytes: int  # what nvidia-smi shows for the process: reserved + CUDA context


class Report(BaseModel):
    fits: bool
    peak: dict[str, TierPeak]
    breakdown_bytes: dict[str, int]  # at the instant of the peak, allocated bytes by category
    capacity_bytes: dict[str, int]
    headroom_bytes: dict[str, int]  # capacity - device bytes (negative: it does not fit)
    phase_at_peak: str
    model: str
    hardware: str
    task: str
    batch: int
    seq: int
    parameters: int
    notes: list[str] = []

    def fragmented(self) -> bool:
        """It does not fit though its live tensors do, with the CUDA context, and every other tier
        has room: the caching allocator's segments, split and cached, are what run out."""
        gpu = self.peak["gpu"]
        return (not self.fits and gpu.allocated_bytes + CUDA_CONTEXT_BYTES <= self.capacity_bytes["gpu"]
                and all(h >= 0 for tier, h in self.headroom_bytes.items() if tier != "gpu"))

    def to_json(self, **kw) -> str:
        return self.model_dump_json(indent=kw.pop("indent", 2), **kw)

    def breakdown_frame(self):
        """The breakdown as a pandas DataFrame: category, bytes, GiB, share of the peak."""
        import pandas as pd

        total = sum(self.breakdown_bytes.values()) or 1
        rows = [
            {"category": c, "bytes": self.breakdown_bytes.get(c, 0), "GiB": self.breakdown_bytes.get(c, 0) / 2**30,
             "share": self.breakdown_bytes.get(c, 0) / total}
            for c in CATEGORIES
        ]
        return pd.DataFrame(rows)
