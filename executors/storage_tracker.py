"""Track live tensor storages through the dispatcher: exact allocated bytes without a GPU.

Works on real and on fake tensors (FakeTensorMode): every op's output storages are recorded when
they first appear and released through a weakref finalizer when the last tensor viewing them dies,
which is when a caching allocator would get the block back.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

# c10/cuda/CUDACachingAllocator.cpp: kMinBlockSize = 512, every request is rounded up to it.
CUDA_BLOCK_BYTES = 512


def cuda_rounded(nbytes: int) -> int:
    """Bytes the CUDA caching allocator counts as allocated for a request of `nbytes`."""
    return max(CUDA_BLOCK_BYTES, -(-nbytes // CUDA_BLOCK_BYTES) * CUDA_BLOCK_BYTES) if nbytes else 0


@dataclass
class Event:
    op: str
    delta_bytes: int  # rounded as the CUDA allocator counts; negative for a free
    live_bytes: int  # after this event
    phase: str
    key: int  # stable id of the storage


@dataclass
class StorageTracker(TorchDispatchMode):
    """Dispatch mode recording allocations; `phase` labels events (forward, backward, optimizer...)."""

    phase: str = "setup"
    live_bytes: int = 0
    peak_bytes: int = 0
    peak_index: int = -1
    events: list[Event] = field(default_factory=list)
    record_events: bool = True

    def __post_init__(self):
        super().__init__()
        self._seen = WeakIdKeyDictionary()
        self._live: dict[int, int] = {}
        self._next_key = 0
        self._peak_from = 0  # the first event the peak counts (reset_peak moves it)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.track(t, str(func.overloadpacket))
        return out

    def track(self, t: torch.Tensor, op: str = "external") -> None:
        st = t.untyped_storage()
        if st in self._seen:
            return
        nbytes = cuda_rounded(st.nbytes())
        key = self._next_key
        self._next_key += 1
        self._seen[st] = key
        self._live[key] = nbytes
        self._record(op, nbytes, key)
        weakref.finalize(st, self._free, key, op)

    def _free(self, key: int, op: str) -> None:
        nbytes = self._live.pop(key, 0)
        if nbytes:
            self._record(op, -nbytes, key)

    def _record(self, op: str, delta: int, key: int) -> None:
        self.live_bytes += delta
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes
            self.peak_index = len(self.events)
        if self.record_events:
            self.events.append(Event(op, delta, self.live_bytes, self.phase, key))

    def key_of(self, t: torch.Tensor) -> int | None:
        return self._seen.get(t.untyped_storage())

    def live_keys(self) -> dict[int, int]:
        return dict(self._live)

    def exclude_host(self, tensors) -> None:
        """Leave out storages that would live on the host on a GPU run (the CPU `step` scalars of
        non-fused optimizers): recompute the peak from the event log without them."""
        drop = {self.key_of(t) for t in tensors} - {None}
        if not drop:
            return
        live = peak = 0
        at = -1
        for i, e in enumerate(self.events):
            if e.key not in drop:
                live += e.delta_bytes
            if i >= self._peak_from - 1 and live > peak:  # from the level at reset_peak on
                peak, at = live, i
        self.peak_bytes, self.peak_index = peak, at

    def reset_peak(self) -> None:
        self.peak_bytes = self.live_bytes
        self.peak_index = len(self.events) - 1
        self._peak_from = len(self.events)
