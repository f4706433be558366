"""A recomputed layer (torch.utils.checkpoint, non-reentrant, transformers 5's default), as its backward
runs it (torch/utils/checkpoint.py, torch 2.13):

- autograd reaches the layer's last nodes first; those that saved nothing (the residual add, and
  the cast of its gradient to the branch's dtype) run before anything is recomputed;
- the first saved tensor backward unpacks reruns the layer's forward with grad, and the rerun stops
  (_StopRecomputationError) as soon as the last tensor the forward saved is saved again: the op
  that saves it has its inputs saved before its kernel runs, so neither its output nor any later
  op's is made, and unwinding the rerun frees what it made that nothing saved;
- the rest of the layer's backward then runs on the recomputed tensors.
"""

from __future__ import annotations

from ..tape import Event, Node, T, Tape


def last_saving(nodes: list[Node]) -> int:
    """The index of the last node that saves a tensor (-1: none)."""
    return max((i for i, n in enumerate(nodes) if n.saved), default=-1)


def stop_early(rt: Tape) -> list[Event]:
    """Takes the rerun's events off `rt` (a full forward of the layer), for `backward`: those up to
    the last saving node's output, then the frees that unwinding makes (of what the rerun allocated
    before the stop, what the full forward freed after it)."""
    events, nodes, rt.events = rt.events, rt.nodes, []
    stop = last_saving(nodes)
    if stop < 0:
        return events
    key = nodes[stop].output.storage.key
    cut = next((i for i, e in enumerate(events) if len(e) > 3 and e[2] > 0 and e[3] == key), None)
    if cut is None:  # its output is a view of an earlier tensor: nothing the rerun skips is known
        return events
    made_before = {e[3] for e in events[:cut] if len(e) > 3 and e[2] > 0}
    unwound = [e for e in events[cut:] if len(e) > 3 and e[2] < 0 and e[3] in made_before]
    return events[:cut] + unwound


def backward(rt: Tape, seeds: dict[int, T], recompute: list[Event]) -> None:
    """The layer's backward on `rt` (its nodes are the rerun's): the nodes after the last saving
    one, then the rerun's `recompute` events, then the rest."""
    nodes, stop = rt.nodes, last_saving(rt.nodes)
    rt.nodes = nodes[stop + 1:]
    pending = rt.backward(seeds)
    rt.events += recompute
    rt.nodes = nodes[:stop + 1]
    rt.backward(pending)
    rt.nodes = nodes
