"""A Program: ordered segments of allocation events, each possibly repeated (one per layer).

Repetition keeps a prediction's cost independent of depth: a 126-layer model is simulated by
walking one layer's events and extending the running totals in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .tape import Event


@dataclass
class Segment:
    name: str  # phase label: forward, backward, optimizer, decode...
    events: list[Event]
    repeat: int = 1


@dataclass
class Program:
    segments: list[Segment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, events: list[Event], repeat: int = 1) -> None:
        if repeat > 0 and events:
            self.segments.append(Segment(name, list(events), repeat))

    def static(self, name: str, nbytes: int, category: str) -> None:
        """Memory allocated before the step and held through it (weights, optimizer state)."""
        if nbytes:
            self.segments.append(Segment(name, [(int(nbytes), category, 1)]))
