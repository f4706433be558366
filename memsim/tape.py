"""A symbolic autograd tape: what a PyTorch program allocates and frees, without torch.

A runtime profile writes the forward pass op by op, as the real implementation runs it: each op
allocates its outputs and, when grad flows, records a node holding the tensors autograd saves.
`backward()` then replays autograd's engine: nodes in reverse creation order (the order of its
ready queue for a single device), each allocating its inputs' gradients by a small recipe, then
dropping the incoming gradient and its saved tensors; a gradient that arrives twice is summed out
of place (autograd's InputBuffer), and a parameter's gradient is stolen into `.grad`.

Every allocation and free lands, in order, on `events` as (bytes, category, +1 | -1); the
simulator only sums those. Storages are reference counted like PyTorch's: views share one.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from dataclasses import dataclass, field, replace

from .params import cuda_rounded

# Breakdown categories: the report's contract.
WEIGHTS = "weights"
GRADIENTS = "gradients"
OPTIMIZER = "optimizer_state"
ACTIVATIONS = "activations"
KV_CACHE = "kv_cache"
TEMPORARIES = "temporaries"
WORKSPACE = "workspace"
CATEGORIES = (WEIGHTS, GRADIENTS, OPTIMIZER, ACTIVATIONS, KV_CACHE, TEMPORARIES, WORKSPACE)
# Memory tiers. An event's category names its tier when that is not the GPU's ("cpu:activations"):
# the GPU's tensors are the allocator's, the rest are counted apart (simulate(tier=...)).
GPU, MANAGED, CPU, NVME = "gpu", "managed", "cpu", "nvme"
TIERS = (GPU, MANAGED, CPU, NVME)  # managed: CUDA managed memory, outside the caching allocator


def on_tier(category: str, tier: str) -> str:
    """The event category of a `category` tensor held on `tier`."""
    return category if tier == GPU else f"{tier}:{category}"

# (bytes, category, +1 alloc / -1 free[, storage]); a kernel's work: (OpCost, COST, 0). The storage,
# where the tape knows it, lets the allocator replay free the very block a tensor was given.
Event = tuple[int, str, int] | tuple[int, str, int, int]
COST = "op"  # the category of a cost event; memory walks skip events whose sign is 0
_RECORD_COSTS = contextvars.ContextVar("memsim_record_costs", default=False)


@contextlib.contextmanager
def recording_costs():
    """Tapes made inside record their kernels' work (for the roofline); others, memory only, which
    keeps a memory prediction as fast as it was."""
    token = _RECORD_COSTS.set(True)
    try:
        yield
    finally:
        _RECORD_COSTS.reset(token)


_LEAF_GRAD_HOOK = contextvars.ContextVar("memsim_leaf_grad_hook", default=None)


@contextlib.contextmanager
def leaf_grad_hook(hook):
    """Tapes made inside call `hook(tape, parameter, grad_bytes)` once a parameter's gradient is
    accumulated (register_post_accumulate_grad_hook: an optimizer stepped in backward); the hook
    frees the gradient. None: no hook."""
    token = _LEAF_GRAD_HOOK.set(hook)
    try:
        yield
    finally:
        _LEAF_GRAD_HOOK.reset(token)


@dataclass(frozen=True)
class OpCost:
    """One kernel's work, for the roofline (memsim/roofline.py): the bytes it reads and writes, and
    its arithmetic. A matrix product carries its operands' bytes (x, w, out), from which the
    roofline recovers m, n and k with the compute dtype; attention carries its FLOPs."""

    name: str
    kind: str  # "matmul" (shape from operands) | "flops" | "attention" | "grouped" (explicit arithmetic) | "cat" | "memory"
    #          | "host" (no kernel: Python the host runs, host_calls) | "transfer" (a host-device copy: layout
    #          is its direction, device_to_host or host_to_device, into or out of pinned memory)
    bytes: int
    flops: float = 0.0
    operands: tuple[int, ...] = ()
    passes: int = 1  # products of the operands' size: a matmul's backward makes two
    backward_flops: float = 2.0  # a "flops" op's backward arithmetic, as a multiple of its forward's
    kernels: int = 1  # launches it stands for (an optimizer step's many)
    head_dim: int = 0  # attention: the kernel's head dim, whether it takes a mask (bias), its queries
    masked: bool = False
    seq: int = 0
    # A memory-bound kernel's access pattern (memsim.calibration.MEMORY_LAYOUTS): TensorIterator's
    # vectorized kernel for contiguous same-dtype operands, slower general ones otherwise.
    layout: str = "contiguous"
    dtype_bytes: int = 0  # a product's element size where it is not the step's compute dtype's (fp32 adapters)
    grads: str = ""  # a product's backward: the gradients it computes, "x" (input) and/or "w" (weight)
    group: tuple[int, int, int] = ()  # a grouped product's (grouped_mm) one group: m, n, k
    # What issues its kernels on the host: "" the step's modules and autograd (the host cost per
    # kernel measured on a calibration step), "op" one bare Python-level torch op per kernel (a
    # for-loop optimizer's: the cost of issuing a bare op, memsim calibrate's host_op_s).
    issued_by: str = ""
    # Python calls that issue no kernel (kind "host"): saved-tensor hooks (torch.autograd.graph.
    # saved_tensors_hooks) on each tensor autograd saves in a recomputed region, at the host cost
    # of one such call (host_time.HostCosts).
    host_calls: int = 0
    backward_kernels: int = 1  # attention: its backward's launches (sdpa_attention counts them)


def memory_layout(kind: str, in_bytes: list[int], out_bytes: int) -> str:
    """The layout of a kernel whose caller names none: a smaller input is broadcast, a smaller
    output is a reduction; a cat appends to a contiguous tensor."""
    if kind == "cat":
        return "cat"
    if any(0 < n < out_bytes for n in in_bytes):
        return "broadcast"
    if in_bytes and out_bytes < max(in_bytes):
        return "reduce"
    return "contiguous"


_STORAGE_KEYS = itertools.count(1)


@dataclass(eq=False)
class Storage:
    nbytes: int
    category: str
    refs: int = 0
    external: bool = False  # allocated and freed outside this tape (weights, a previous segment)
    key: int = field(default_factory=_STORAGE_KEYS.__next__)  # names it in its events


@dataclass(eq=False)
class T:
    """A tensor: a handle on a storage, with autograd's view of it."""

    name: str
    storage: Storage
    requires_grad: bool = False
    leaf: bool = False  # a parameter: its gradient goes to .grad
    has_grad: bool = False  # a parameter whose .grad already exists
    grad_pending: int = 0  # bytes of a gradient from another use, waiting in autograd's InputBuffer
    # That waiting gradient is a dense tensor of its own (a fused loss's), which the InputBuffer adds
    # the next one into in place (input_buffer.cpp, can_accumulate_inplace).
    pending_inplace: bool = False
    owns_grad: bool = False  # an op hands this weight a gradient tensor of its own (see pending_inplace)
    defers_grad: bool = False  # a tied weight's first use: its gradient waits for the other's (no hook yet)
    size: int = -1  # logical bytes (a slice is smaller than its storage); -1: the storage's

    @property
    def nbytes(self) -> int:
        return self.storage.nbytes if self.size < 0 else self.size


@dataclass(eq=False)
class Node:
    name: str
    inputs: list[T]
    output: T
    saved: list[T]
    recipe: tuple
    cost: OpCost | None = None  # the forward kernel's; backward's follows from it
    packed: list[int] = field(default_factory=list)  # bytes of saved tensors copied to another tier


@dataclass
class Tape:
    grad_enabled: bool = True
    events: list[Event] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    last_cost: OpCost | None = None
    costs: bool = field(default_factory=_RECORD_COSTS.get)  # record kernels' work (recording_costs)
    # Where autograd's saved tensors go: the GPU, or another tier through saved-tensor hooks
    # (torch.autograd.graph.save_on_cpu): packed as a copy there, unpacked to a GPU copy by backward.
    saved_tier: str = GPU
    on_leaf_grad: object = field(default_factory=_LEAF_GRAD_HOOK.get)  # see leaf_grad_hook

    # -- storages ----------------------------------------------------------------------------
    def new(self, name: str, nbytes: int, category: str = ACTIVATIONS) -> T:
        """Allocate a tensor the caller holds one reference to."""
        st = Storage(int(nbytes), category, refs=1)
        self.events.append((st.nbytes, category, 1, st.key))
        return T(name, st)

    def external(self, name: str, nbytes: int, category: str = ACTIVATIONS, requires_grad=False, leaf=False) -> T:
        """A tensor allocated outside this tape: a weight, or the previous segment's output."""
        return T(name, Storage(int(nbytes), category, refs=1, external=True), requires_grad, leaf)

    def incoming(self, name: str, nbytes: int, category: str = ACTIVATIONS, requires_grad=False) -> T:
        """A tensor a previous segment allocated and this one may free."""
        return T(name, Storage(int(nbytes), category, refs=1), requires_grad)

    def _hold(self, t: T) -> T:
        t.storage.refs += 1
        return t

    def drop(self, *ts: T | None) -> None:
        """Release one reference to each tensor's storage; free it when none is left."""
        for t in ts:
            if t is None:
                continue
            st = t.storage
            st.refs -= 1
            if st.refs == 0 and not st.external:
                self.events.append((st.nbytes, st.category, -1, st.key))

    def transient(self, nbytes: int, category: str = TEMPORARIES) -> None:
        """A tensor allocated and freed before anything else is (a kernel's scratch, a temporary
        of an expression)."""
        self.events += [(nbytes, category, 1), (nbytes, category, -1)]

    def release_later(self, t: T) -> int:
        """Drop a reference held by an object that dies later than this segment (a KV cache in
        training). Returns the bytes whose free is then owed to whoever ends that object's life:
        the whole storage, in its allocator blocks (several such frees are summed into one
        event), if that reference was the last, else 0 (a saved reference frees it)."""
        st = t.storage
        st.refs -= 1
        return cuda_rounded(st.nbytes) if st.refs == 0 and not st.external else 0

    # -- forward ----------------------------------------------------------------------------
    def op(self, name: str, inputs: list[T], out_nbytes: int, saves=(), recipe=None, extra_outputs=(),
           kind: str = "memory", flops: float = 0.0, category: str = ACTIVATIONS, backward_flops: float = 2.0,
           head_dim: int = 0, masked: bool = False, layout: str | None = None, dtype_bytes: int = 0, seq: int = 0,
           group: tuple[int, int, int] = ()):
        """Run an op: allocate its output (and extra, non-differentiable outputs such as a
        logsumexp), recording a node that keeps `saves` when grad flows through it, and the
        kernel's work: `kind` matmul (x @ w: inputs[0], inputs[1]; `dtype_bytes` where its dtype is
        not the step's), flops (`flops` of arithmetic, `backward_flops` times as much in backward),
        cat or memory (`layout`: how it accesses memory, else memory_layout's guess).

        `recipe` lists what its backward does, in order:
          ("grad", i[, nbytes])  allocate input i's gradient (of the input's size unless given)
          ("pass", i)            hand the incoming gradient to input i unchanged (add, views)
          ("tmp", nbytes[, cat]) allocate a temporary (a kernel workspace), freed when the node is done
          ("transient", nbytes)  a temporary freed before the node's next allocation
          ("saved", i, k)        hand saved tensor k to input i as its gradient (computed in the forward)
        """
        out = self.new(name, out_nbytes, category)
        extras = [self.new(f"{name}.{i}", n) for i, n in enumerate(extra_outputs)]
        if self.costs:
            distinct = list({id(x.storage): x.nbytes for x in inputs}.values())
            moved = sum(distinct) + out_nbytes + sum(extra_outputs)
            operands = (inputs[0].nbytes, inputs[1].nbytes, out_nbytes) if kind == "matmul" else ()
            layout = layout or memory_layout(kind, distinct, out_nbytes)
            self.last_cost = OpCost(name, kind, moved, flops, operands, 1, backward_flops, 1, head_dim, masked, seq, layout,
                                    dtype_bytes, group=group)
            self.events.append((self.last_cost, COST, 0))
        self._record(name, inputs, out, saves, recipe, self.last_cost)
        return (out, *extras) if extras else out

    def work(self, name: str, nbytes: int, kernels: int = 1, layout: str | None = None) -> None:
        """Kernels whose tensors are allocated (or too small to count) elsewhere: work for the
        roofline only, nothing for autograd or memory (index kernels, a mask's small pieces)."""
        if self.costs:
            self.events.append((OpCost(name, "memory", nbytes, kernels=kernels, layout=layout or "contiguous"), COST, 0))

    def view(self, name: str, x: T, nbytes: int = -1, recipe=(("pass", 0),)) -> T:
        """An op whose output shares its input's storage: a view, a slice (`nbytes` smaller, and
        backward allocating the input's full size), a transpose."""
        out = T(name, self._hold(x).storage, size=nbytes)
        self._record(name, [x], out, (), recipe, cost=None)
        return out

    def record(self, name: str, inputs: list[T], out: T, saves, recipe, cost: OpCost | None = None,
               layout: str = "contiguous", read: tuple[T, ...] = ()) -> None:
        """Record a node for an output allocated separately (ops with several outputs, ops
        saving their own output: `cost` is then that op's, tp.last_cost; in-place ops, whose
        kernel reads and writes `out`, and reads `read` with the given `layout`)."""
        if self.costs and cost is None and name != getattr(self.last_cost, "name", None):  # in place: a kernel of its own
            cost = OpCost(name, "memory", 2 * out.nbytes + sum(t.nbytes for t in read), layout=layout)
            self.events.append((cost, COST, 0))
        self._record(name, inputs, out, saves, recipe, cost or self.last_cost)

    def _record(self, name, inputs, out, saves, recipe, cost: OpCost | None) -> None:
        if not (self.grad_enabled and recipe is not None and any(t.requires_grad for t in inputs)):
            return
        out.requires_grad = True
        if self.saved_tier != GPU:
            self.nodes.append(Node(name, list(inputs), out, [], recipe, cost, [self._pack(s) for s in saves]))
            return
        for s in saves:
            self._hold(s)
        self.nodes.append(Node(name, list(inputs), out, list(saves), recipe, cost))

    def _transfer(self, name: str, nbytes: int, direction: str) -> None:
        if self.costs:
            self.events.append((OpCost(name, "transfer", nbytes, layout=direction), COST, 0))

    def _pack(self, t: T) -> int:
        """save_on_cpu's pack hook: a copy of the saved tensor on the saved tier (every saved
        tensor, weights included, each time a node saves it); the GPU's is not held."""
        self.events.append((t.nbytes, on_tier(ACTIVATIONS, self.saved_tier), 1))
        self._transfer(f"{t.name}.pack", t.nbytes, "device_to_host")
        return t.nbytes

    def _unpack(self, node: Node) -> None:
        """The unpack hook, as backward reaches the node: a GPU copy of each packed tensor."""
        node.saved = [self.new(f"{node.name}.unpacked", n) for n in node.packed]
        for n in node.packed:
            self._transfer(f"{node.name}.unpack", n, "host_to_device")

    # -- backward ---------------------------------------------------------------------------
    def backward(self, seeds: dict[int, T]) -> dict[int, T]:
        """Replay autograd over this tape's nodes from gradients of some outputs (keyed by id).

        Returns the gradients left for tensors no node here produced (a segment's inputs)."""
        pending: dict[int, T] = dict(seeds)
        for node in reversed(self.nodes):
            grad_out = pending.pop(id(node.output), None)
            if grad_out is None:
                continue
            if node.packed:
                self._unpack(node)
            temps: list[T] = []
            produced: list[tuple[T, T]] = []
            leaf_grads: list[tuple[T, T]] = []  # reach AccumulateGrad once this node is done
            for step in node.recipe:
                kind = step[0]
                if kind == "tmp":
                    cat = step[2] if len(step) > 2 else TEMPORARIES
                    temps.append(self.new(f"{node.name}.bwd_tmp", step[1], cat))
                    continue
                if kind == "saved":  # a gradient the forward computed and saved, handed over as it is
                    x = node.inputs[step[1]]
                    if x.requires_grad:
                        (leaf_grads if x.leaf else produced).append((x, self._hold(node.saved[step[2]])))
                    continue
                if kind == "transient":  # made and freed before the node's next allocation
                    self.transient(step[1])
                    continue
                x = node.inputs[step[1]]
                if not x.requires_grad:
                    continue
                if kind == "pass":
                    produced.append((x, self._hold(grad_out)))
                elif x.leaf:
                    nbytes = step[2] if len(step) > 2 else x.nbytes
                    leaf_grads.append((x, self.new(f"grad.{x.name}", nbytes, GRADIENTS)))
                else:
                    nbytes = step[2] if len(step) > 2 else x.nbytes
                    produced.append((x, self.new(f"grad.{x.name}", nbytes, TEMPORARIES)))
            if self.costs:
                self._backward_cost(node, grad_out, produced)
            self.drop(*temps)
            self.drop(grad_out)
            self.drop(*node.saved)
            node.saved = []
            self.events += [(n, on_tier(ACTIVATIONS, self.saved_tier), -1) for n in node.packed]
            node.packed = []
            for x, g in leaf_grads:
                self._accumulate_leaf(x, g)
            for x, g in produced:
                self._accumulate(pending, x, g)
        return pending

    def _backward_cost(self, node: Node, grad_out: T, produced: list) -> None:
        """Backward's kernels: a product's two (grad input, grad weight), an explicit-arithmetic op's
        `backward_flops` times its forward's, the rest their bytes."""
        moved = grad_out.nbytes + sum(t.nbytes for t in node.saved) + sum(g.nbytes for _, g in produced)
        fwd = node.cost or OpCost(node.name, "memory", 0)  # a node recorded without a kernel of its own
        kind = fwd.kind
        # A product's backward makes one product per operand that needs a gradient (x, w); any
        # backward launches a kernel per gradient it computes and per temporary it fills.
        grads = "".join("xw"[st[1]] for st in node.recipe if st[0] == "grad" and st[1] < 2 and node.inputs[st[1]].requires_grad)
        launches = sum(1 for st in node.recipe if st[0] == "tmp" or (st[0] == "grad" and node.inputs[st[1]].requires_grad))
        if not launches and kind in ("memory", "cat"):
            return  # gradients handed on unchanged or as views (add, cat, contiguous): no kernel
        product = kind == "matmul"
        cost = replace(fwd, name=f"{node.name}.bwd", bytes=moved, flops=fwd.backward_flops * fwd.flops,
                       passes=len(grads) if product else 1, grads=grads if product else "",
                       kernels=fwd.backward_kernels if kind == "attention" else max(launches, 1))
        self.events.append((cost, COST, 0))

    def _accumulate(self, pending: dict[int, T], x: T, g: T) -> None:
        prev = pending.get(id(x))
        if prev is None:
            pending[id(x)] = g
            return
        total = self.new(f"grad.{x.name}.sum", max(prev.nbytes, g.nbytes), TEMPORARIES)
        if self.costs:  # autograd's InputBuffer adds the two out of place
            self.events.append((OpCost(f"grad.{x.name}.sum", "memory", prev.nbytes + g.nbytes + total.nbytes), COST, 0))
        self.drop(g, prev)
        pending[id(x)] = total

    def _accumulate_leaf(self, p: T, g: T) -> None:
        # torch/csrc/autograd/functions/accumulate_grad.h: with .grad unset (zero_grad's default
        # set_to_none=True) the gradient is stolen, no copy. A parameter used twice in the step
        # (a tied embedding and head) has its first gradient waiting in autograd's InputBuffer:
        # that one, mm's transposed grad_weight, cannot be added into in place
        # (input_buffer.cpp, can_accumulate_inplace), so the sum is a third tensor, then stolen.
        held = g.nbytes  # the bytes .grad now holds
        if p.grad_pending and p.pending_inplace:
            if self.costs:
                self.events.append((OpCost(f"grad.{p.name}.add_", "memory", p.grad_pending + g.nbytes), COST, 0))
            self.drop(g)
            held, p.grad_pending = p.grad_pending, 0
        elif p.grad_pending:
            total = self.new(f"grad.{p.name}.sum", max(g.nbytes, p.grad_pending), GRADIENTS)  # then .grad
            if self.costs:
                self.events.append((OpCost(f"grad.{p.name}.sum", "memory", p.grad_pending + g.nbytes + total.nbytes), COST, 0))
            self.events.append((p.grad_pending, GRADIENTS, -1))  # the first use's gradient
            self.drop(g)
            held, p.grad_pending = total.nbytes, 0
        elif p.has_grad:  # a .grad from an earlier backward: added in place
            self.drop(g)
            return
        p.has_grad = True
        if self.on_leaf_grad is not None and not p.defers_grad:
            self.on_leaf_grad(self, p, held)  # stepped and zeroed: .grad is None again
            p.has_grad = False
