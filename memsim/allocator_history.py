"""Torch's own recorded allocator history, replayed through memsim's CachingAllocator.

A history is what torch.cuda.memory._record_memory_history keeps (its snapshot's device trace),
reduced to (action, address, bytes) for the actions that change the pools: alloc, free_completed,
segment_alloc, segment_free and oom (the request that failed). Each free returns the very block its
address was given, so what is tested is the allocator model alone, not the Program's order:
whether it makes the same segments, reaches the same peak and runs out where torch did. Beside it,
the large requests of a history's step and of the Program's, to set torch's order beside memsim's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .allocator import GPU_CATEGORIES, CachingAllocator, OutOfMemory, rounded
from .predict import build_program, step_config

ACTIONS = ("alloc", "free_completed", "segment_alloc", "segment_free", "oom")
LARGE = 64 * 2**20  # requests at least this large are the ones fragmentation turns on


@dataclass
class HistoryReplay:
    fits: bool  # False: the allocator ran out (torch's verdict is whether the history has an oom)
    torch_fits: bool
    peak_reserved: int
    segments: list[int] = field(default_factory=list)  # the allocator's new segments, in order
    torch_segments: list[int] = field(default_factory=list)  # torch's segment_alloc sizes, in order

    @property
    def agrees(self) -> bool:
        return self.fits == self.torch_fits and self.segments == self.torch_segments


def replay_history(events: list, limit: int | None) -> HistoryReplay:
    """Each recorded request through the allocator under `limit`, up to the end or to torch's oom
    (which is tried too)."""
    alloc, blocks = CachingAllocator(limit), {}
    ours: list[int] = []
    theirs = [size for action, _, size in events if action == "segment_alloc"]
    torch_fits = not any(action == "oom" for action, _, _ in events)
    for action, addr, size in events:
        if action in ("alloc", "oom"):
            lowest = alloc.next_addr  # a new segment is placed below the others: its size is the step down
            try:
                block = alloc.malloc(size)
            except OutOfMemory:
                return HistoryReplay(False, torch_fits, alloc.peak_reserved, ours, theirs[:len(ours)])
            if alloc.next_addr != lowest:
                ours.append(lowest - alloc.next_addr)
            if action == "oom":
                return HistoryReplay(True, torch_fits, alloc.peak_reserved, ours, theirs[:len(ours)])
            blocks[addr] = block
        elif action == "free_completed" and addr in blocks:
            alloc.free(blocks.pop(addr))
        elif action == "segment_free":
            alloc.release_cached()  # torch frees segments only by releasing every free one
    return HistoryReplay(True, torch_fits, alloc.peak_reserved, ours, theirs)


def large_requests(events: list, lo: int, hi: int) -> list[tuple[str, int]]:
    """('+' or '-', bytes) of the requests at least LARGE bytes between two step marks."""
    sizes, out = {}, []
    for action, addr, size in events[lo:hi]:
        if action == "alloc":
            sizes[addr] = size
            if size >= LARGE:
                out.append(("+", size))
        elif action == "free_completed" and sizes.get(addr, 0) >= LARGE:
            out.append(("-", sizes.pop(addr)))
    return out


def program_requests(workload) -> list[tuple[str, int]]:
    """The same for one non-resident step of memsim's Program (allocator.rounded sizes)."""
    out = []
    for seg in build_program(step_config(workload)).segments:
        if seg.resident:
            continue
        for _ in range(seg.repeat):
            for nbytes, cat, sign, *_ in seg.events:
                if sign and cat in GPU_CATEGORIES and rounded(nbytes) >= LARGE:
                    out.append(("+" if sign > 0 else "-", rounded(nbytes)))
    return out
