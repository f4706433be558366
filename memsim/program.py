"""A Program: ordered segments of allocation events, each possibly repeated (one per layer).

Repetition keeps a prediction's cost independent of depth: a 126-layer model is simulated by
walking one layer's events and extending the running totals in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .tape import COST, Event, OpCost


@dataclass
class Segment:
    name: str  # phase label: forward, backward, optimizer, decode...
    events: list[Event]
    repeat: int = 1
    resident: bool = False  # allocated before the step and held through it (weights)
    lazy: bool = False  # resident, but first allocated here by the first step (optimizer state)

    def costs(self) -> list[OpCost]:
        """The kernels' work this segment records (OpCost events), in order; memory walks skip them."""
        return [e[0] for e in self.events if not e[2] and e[1] == COST]


@dataclass
class Program:
    segments: list[Segment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Categories whose tensors left at the end of a step live on into the next (a decode step's
    # grown KV cache); everything else the step allocated dies with it (outputs, a prefill's cache).
    carries: tuple[str, ...] = ()

    def add(self, name: str, events: list[Event], repeat: int = 1) -> None:
        if repeat > 0 and events:
            self.segments.append(Segment(name, list(events), repeat))

    def static(self, name: str, nbytes: int, category: str) -> None:
        """One block allocated before the step and held through it (a library's workspace)."""
        if nbytes:
            self.segments.append(Segment(name, [(int(nbytes), category, 1)], resident=True))

    def resident(self, name: str, sizes: list[int], category: str, repeat: int = 1, lazy: bool = False) -> None:
        """Tensors held through the step, one allocation each (`repeat` times: one per layer).
        `lazy`: the first step creates them where this segment stands (optimizer state at the
        first step()); from then on they are resident like the rest."""
        if repeat > 0 and sizes:
            self.segments.append(Segment(name, [(int(n), category, 1) for n in sizes if n], repeat, True, lazy))

    def in_step_order(self) -> list[Segment]:
        """A steady-state step: the resident segments first, then the step's own."""
        return [s for s in self.segments if s.resident] + [s for s in self.segments if not s.resident]
