"""What-if policies: re-cost one traced step as if saved activations were stored differently.

A policy never re-traces. It turns the trace's storages into *intervals* (birth, death, bytes) — splitting
a saved activation into its dense life in the forward pass, its stored form until backward, and the dense
copy restored for its backward node — and reports its price next to its peak.

Policies (:class:`Policy`):

===================  ========  ===================================================================
policy               lossless  what changes
===================  ========  ===================================================================
none                 yes       nothing: the step as traced
bitmap               yes       the paper: a saved activation is stored as sparse bitmap +
                               non-zeros when the codec makes it smaller
bitmap+mask+indices  yes       bitmap, plus: a tensor saved only for a mask (ReLU, Hardtanh/ReLU6,
                               Dropout backward) is stored as 1 bit per element; MaxPool indices
                               in the narrowest integer type that holds the input plane (the same
                               name and rules as ``memsim.compressed_activations``)
fp16 / bf16          NO        saved float32 activations stored in half precision
recompute            yes       outputs of cheap ops (batch-norm apply, ReLU/ReLU6/GELU, residual add,
                               max-pool) are not stored when their inputs are kept anyway; backward
                               rebuilds them (rules: :mod:`memsim.core.saved_rules`); the rest as
                               bitmap+mask+indices
plan                 yes       per tensor, the choices of :mod:`memsim.simulation.plan` (``kinds=``)
checkpoint           yes       activation checkpointing per block: a block keeps only its input;
                               its activations are recomputed in backward (one extra forward)
===================  ========  ===================================================================

Example:
    >>> import memsim, models_zoo
    >>> trace = memsim.trace(models_zoo.create("small_cnn"), models_zoo.spec("small_cnn").example_inputs(8))
    >>> costed = apply_policy(trace, "bitmap", sparsity=0.5)
    >>> costed.peak_bytes < trace.peak_bytes
    True

Known limitations: a restored dense copy is modelled alive from the first to the last backward op that
reads the storage (two saving nodes far apart are counted as one long copy, an over-estimate); the stored
form is modelled alive from the storage's birth (pack happens at the op that saves it, usually the birth op
or the next one).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from memsim.core.categories import Category, Phase
from memsim.core.bitmap_size import HEADER_BYTES, encoded_size_at
from memsim.core.dtypes import itemsize
from memsim.core.choices import choose, split_list
from memsim.core.errors import InputError
from memsim.core.policy import Policy
from memsim.core.saved_rules import (MASK_INPUT_CLONE_NODES, MASK_NOISE_NODES, MASK_RESULT_NODES,
                                     RECOMPUTE_FLOPS_PER_ELEMENT, index_width, mask_bytes, op_packet,
                                     recomputable_output)
from memsim.core.timeline import _interval_sum, category_interval_sums
from memsim.core.trace import Trace


def parse_policies(value: str | Policy | list) -> list[Policy]:
    """Policies from user input: one name, ``"all"``, a comma-separated string or a list.

    >>> parse_policies("none,bitmap")
    [<Policy.NONE: 'none'>, <Policy.BITMAP: 'bitmap'>]
    """
    if isinstance(value, Policy):
        return [value]
    out: list[Policy] = []
    for item in split_list(value if isinstance(value, (list, tuple)) else str(value)):
        if item.lower() == "all":  # every fixed policy; a plan is asked for by name (it searches)
            out.extend(p for p in Policy if p not in out and p is not Policy.PLAN)
            continue
        p = choose(Policy, item, "policy", more="all")
        if p not in out:
            out.append(p)
    if not out:
        raise InputError("no policy given; valid policies: " + ", ".join(p.value for p in Policy))
    return out


# ---------------------------------------------------------------------------------------------------
# Sparsity: which fraction of a saved activation's elements are zero.

# Nodes saving the output of an op that creates zeros: the float sparsity applies to these tensors.
SPARSE_PRODUCER_NODES = {"ReluBackward0", "ThresholdBackward0", "HardtanhBackward0", "Relu6Backward0",
                         "NativeDropoutBackward0"}
SPARSE_PRODUCER_OPS = ("relu", "threshold", "hardtanh", "relu6", "dropout")

class SparsityModel:
    """Zero fraction of each saved activation of a trace.

    Built from a float (applied to activations produced by zero-creating ops: ReLU family and Dropout;
    others are taken as dense), a dict ``{module path prefix: fraction}`` (longest prefix wins, same
    producer rule), or a :class:`memsim.measure.sparsity.MeasuredSparsity` (per module and op, measured on real data).
    """

    def __init__(self, value=None):
        self.value = value
        if isinstance(value, bool) or (value is not None and not isinstance(value, (int, float, dict))
                                       and not hasattr(value, "lookup")):
            raise InputError(f"bad sparsity {value!r}: expected a fraction in [0, 1], a dict "
                             "{module prefix: fraction} or the result of memsim.measure_sparsity")
        if isinstance(value, (int, float)):
            _check_fraction(value)
        if isinstance(value, dict):
            for k, v in value.items():
                _check_fraction(v, where=f" for module {k!r}")

    @property
    def label(self) -> str:
        if self.value is None:
            return "none"
        if isinstance(self.value, (int, float)):
            return f"{float(self.value):g}"
        if isinstance(self.value, dict):
            return "per-module"
        return "measured"

    def of(self, trace: Trace, t) -> float:
        """Zero fraction assumed for TensorRecord ``t`` of ``trace``."""
        v = self.value
        if v is None:
            return 0.0
        if hasattr(v, "lookup"):
            return float(v.lookup(t.module, t.op, t.dtype, t.output_index))
        if not _is_sparse_producer(trace, t):
            return 0.0
        if isinstance(v, dict):
            best, frac = -1, 0.0
            for prefix, f in v.items():
                if (t.module == prefix or t.module.startswith(prefix + ".") or prefix == "") and len(prefix) > best:
                    best, frac = len(prefix), float(f)
            return frac
        return float(v)


def _check_fraction(v, where: str = "") -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= float(v) <= 1.0:
        raise InputError(f"bad sparsity {v!r}{where}: must be a number between 0 and 1")


def _saving_node_names(trace: Trace, t) -> list[str]:
    g = trace.graph
    return [str(g.nodes[n].get("name", "")) for n in t.saved_by if n in g.nodes]


def _is_sparse_producer(trace: Trace, t) -> bool:
    if any(name in SPARSE_PRODUCER_NODES for name in _saving_node_names(trace, t)):
        return True
    return any(k in t.op for k in SPARSE_PRODUCER_OPS)


# ---------------------------------------------------------------------------------------------------
# Costed timeline: the intervals a policy leaves.


@dataclass
class CostedTimeline:
    """Storages after a policy, as intervals over the trace's ops (arrays of equal length).

    ``source`` is the TensorRecord id each interval comes from; ``extra_flops`` the recomputation a policy
    adds; ``codec_bytes`` the dense bytes it encodes (each is decoded once in backward).
    """

    policy: Policy
    n_ops: int
    birth: np.ndarray
    death: np.ndarray
    nbytes: np.ndarray
    category: np.ndarray  # index into list(Category)
    source: np.ndarray
    extra_flops: int = 0
    codec_bytes: int = 0
    converted_bytes: int = 0  # dense bytes cast to half precision (fp16/bf16)
    kinds: np.ndarray | None = None  # KIND_* per tensor id: how each storage is held
    stored_bytes: np.ndarray | None = None  # bytes held per tensor id between forward and backward
    notes: list[str] = field(default_factory=list)

    def memory_curve(self) -> np.ndarray:
        """Live bytes at each op under this policy."""
        return _interval_sum(self.n_ops, self.birth, self.death, self.nbytes)

    def category_curves(self) -> dict[Category, np.ndarray]:
        """Live bytes at each op under this policy, per category."""
        return category_interval_sums(self.n_ops, self.birth, self.death, self.nbytes, self.category)

    @property
    def peak_index(self) -> int:
        curve = self.memory_curve()
        return int(np.argmax(curve)) if len(curve) else 0

    @property
    def peak_bytes(self) -> int:
        curve = self.memory_curve()
        return int(curve.max()) if len(curve) else 0

    def live_at(self, index: int) -> list[tuple[int, int, Category]]:
        """``(tensor id, bytes, category)`` of intervals alive at op ``index``, largest first."""
        m = np.nonzero((self.birth <= index) & (self.death >= index))[0]
        cats = list(Category)
        rows = [(int(self.source[i]), int(self.nbytes[i]), cats[int(self.category[i])]) for i in m]
        return sorted(rows, key=lambda r: -r[1])

    def allocation_events(self) -> list[tuple[int, int, int]]:
        """``(op, interval id, ±bytes)`` in allocator order: at each op its allocations, then its frees
        (storages alive at the end of the step are never freed)."""
        n = len(self.birth)
        ids = np.arange(n, dtype=np.int64)
        freed = self.death < self.n_ops - 1
        op = np.concatenate([self.birth, self.death[freed]])
        is_free = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(int(freed.sum()), dtype=np.int64)])
        which = np.concatenate([ids, ids[freed]])
        delta = np.concatenate([self.nbytes, -self.nbytes[freed]])
        order = np.lexsort((which, is_free, op))
        return list(zip(op[order].tolist(), which[order].tolist(), delta[order].tolist()))


def dense_sizes(trace: Trace, batch_size: int | None = None) -> np.ndarray:
    """Bytes of every storage at ``batch_size`` (the traced batch when None; needs scaling otherwise)."""
    ctx = _context(trace)
    if batch_size is None or batch_size == trace.batch_size:
        return ctx.size0.copy()
    if ctx.per_sample is None:
        raise InputError("this trace was made at one batch size; trace two batch sizes "
                         "(Trace.attach_scaling) to simulate another batch size")
    return np.maximum(ctx.size0 + ctx.per_sample * (batch_size - trace.batch_size), 0)


# Ops that make an alias without reading data: they do not keep a storage's data in use.
_NON_READING_OPS = ("aten.detach.", "aten.alias.", "aten._unsafe_view.", "aten.view.", "aten.t.",
                    "aten.expand.", "aten.as_strided.", "aten.transpose.", "aten.permute.", "aten.unsqueeze.",
                    "aten.squeeze.", "aten._reshape_alias.", "aten.reshape.", "aten.slice.", "aten.select.")


class _Context:
    """Per-trace arrays every policy needs, computed once per trace (indexed by tensor id)."""

    def __init__(self, trace: Trace):
        tl = trace.timeline
        tensors = tl.tensors
        n = len(tensors)
        cats = list(Category)
        self.n = n
        self.size0 = np.fromiter((t.nbytes for t in tensors), dtype=np.int64, count=n)
        self.per_sample = (np.fromiter((t.per_sample_bytes for t in tensors), dtype=np.int64, count=n)
                           if n and all(t.per_sample_bytes is not None for t in tensors) else None)
        self.birth = np.fromiter((t.birth for t in tensors), dtype=np.int64, count=n)
        self.death = np.fromiter((t.death for t in tensors), dtype=np.int64, count=n)
        self.category = np.fromiter((cats.index(Category(t.category)) for t in tensors), dtype=np.int64, count=n)
        self.itemsize = np.fromiter((itemsize(t.dtype) for t in tensors), dtype=np.int64, count=n)
        self.is_float32 = np.fromiter((t.dtype == "float32" for t in tensors), dtype=bool, count=n)
        self.activation = self.category == cats.index(Category.ACTIVATION)
        forward = [Phase(o.phase) in (Phase.FORWARD, Phase.LOSS) for o in tl.ops]
        reads = [not o.name.startswith(_NON_READING_OPS) for o in tl.ops]
        self.fwd_end = self.birth.copy()
        self.bwd_first = np.full(n, -1, dtype=np.int64)
        self.bwd_last = np.full(n, -1, dtype=np.int64)
        self.mask_only = np.zeros(n, dtype=bool)
        self.index_width = np.zeros(n, dtype=np.int64)
        self.sparse_producer = np.zeros(n, dtype=bool)
        self.read_by: dict[int, list[int]] = {}  # op index -> ids of the storages it reads
        for t in tensors:
            for u in t.uses:
                self.read_by.setdefault(u, []).append(t.id)
        for t in tensors:
            if not self.activation[t.id]:
                continue
            fwd = [u for u in t.uses if forward[u] and reads[u]]
            bwd = [u for u in t.uses if not forward[u]]
            if fwd:
                self.fwd_end[t.id] = max(t.birth, max(fwd))
            if bwd:
                self.bwd_first[t.id], self.bwd_last[t.id] = min(bwd), max(bwd)
            names = _saving_node_names(trace, t)
            self.mask_only[t.id] = bool(names) and all(_mask_only_save(tl, self.read_by, t, nm) for nm in names)
            if t.dtype == "int64" and any(nm.startswith("MaxPool") for nm in names):
                self.index_width[t.id] = _index_width(trace, t)
            elif t.dtype == "int64" and any(nm.startswith("EmbeddingBackward") for nm in names):
                self.index_width[t.id] = _embedding_index_width(trace, t)
            self.sparse_producer[t.id] = _is_sparse_producer(trace, t)
        self.blocks = _checkpoint_blocks(trace)
        self.recompute_inputs, self.recompute_flops, self.recompute_intermediates = _recompute_plan(trace, self)
        self.recomputable = np.zeros(n, dtype=bool)
        self.recomputable[list(self.recompute_inputs)] = True
        self._sparsity: dict[int, tuple[object, np.ndarray]] = {}

    def sparsity(self, trace: Trace, model: SparsityModel) -> np.ndarray:
        """Zero fraction per tensor under ``model`` (0 for non-activations)."""
        key = id(model.value)
        hit = self._sparsity.get(key)
        if hit is not None and hit[0] is model.value:
            return hit[1]
        out = np.zeros(self.n)
        for i in np.nonzero(self.activation)[0]:
            out[i] = model.of(trace, trace.timeline.tensors[i])
        self._sparsity[key] = (model.value, out)
        return out


def _mask_only_save(tl, read_by: dict, t, node_name: str) -> bool:
    """Whether a save of storage ``t`` by autograd node ``node_name`` needs only a mask
    (:mod:`memsim.core.saved_rules`): a ReLU's own result, the input clone of an in-place hardtanh, or
    dropout noise (made by ``bernoulli_`` outside autograd)."""
    if node_name in MASK_RESULT_NODES:
        return True
    if node_name in MASK_INPUT_CLONE_NODES:
        # the runtime proves the clone is hardtanh's through the next layer saving hardtanh's result
        return op_packet(t.op) == "aten.clone" and any(
            tl.tensors[j].saved_by for j in read_by.get(t.birth, ()) if j != t.id)
    if node_name in MASK_NOISE_NODES:
        return any(op_packet(tl.ops[w].name) == "aten.bernoulli_" for w in t.writes)
    return False


def _recompute_plan(trace: Trace, ctx: "_Context"
                    ) -> tuple[dict[int, list[int]], dict[int, int], dict[int, set[int]]]:
    """Which saved activations ``recompute`` rebuilds in backward (:mod:`memsim.core.saved_rules`).

    Returns ``{tensor id: ids of the recomputable storages it is computed from}`` for every recomputable
    storage, ``{tensor id: FLOPs of recomputing it once, its recomputable inputs included}`` (at the
    traced batch), and ``{tensor id: those inputs needed at another version than the one saved}`` (the
    runtime rebuilds them as intermediates of the plan, not as entries of their own). A storage qualifies when the op that made it and every in-place op that wrote it in the
    forward pass are cheap ops, and every other storage those ops read is kept anyway: a parameter, buffer
    or input, an activation some autograd node saves, or itself recomputable (saved or not: a downsample
    branch's batch-norm output feeds the residual add without being saved).
    """
    tl = trace.timeline
    tensors, ops = tl.tensors, tl.ops
    reads = ctx.read_by
    forward = {i for i, o in enumerate(ops) if Phase(o.phase) in (Phase.FORWARD, Phase.LOSS)}
    forward_writes = {t.id: [w for w in t.writes if w in forward] for t in tensors if t.writes}
    # (storage id, number of in-place writes its value has had) -> the storages it is rebuilt from
    memo: dict[tuple[int, int], list[int] | None] = {}
    flops: dict[tuple[int, int], int] = {}
    other_version: dict[tuple[int, int], set[int]] = {}

    def chain(i: int, before: int) -> list[int] | None:
        """How storage ``i``'s value as read by op ``before`` is rebuilt (its maker and the in-place
        writes before that op), or None when it cannot be."""
        t = tensors[i]
        writes = [w for w in forward_writes.get(i, ()) if w < before]
        key = (i, len(writes))
        if key in memo:
            return memo[key]
        memo[key] = None  # no cycles: a value is never computed from itself
        if not (t.op and recomputable_output(t.op, t.output_index)
                and all(recomputable_output(ops[w].name, 0) for w in writes)):
            return None
        inputs: list[int] = []
        rebuilt: list[tuple[int, int]] = []  # the (storage, writes) values rebuilt on the way
        for op in (t.birth, *writes):
            for j in reads.get(op, ()):
                if j == i:
                    continue
                if not ctx.activation[j] and Category(tensors[j].category) is not Category.TEMPORARY:
                    continue  # parameters, buffers, inputs: alive anyway
                if chain(j, op) is not None:
                    inputs.append(j)
                    rebuilt.append((j, sum(1 for w in forward_writes.get(j, ()) if w < op)))
                # kept anyway: saved, and not overwritten in place after this op read it
                elif not (ctx.activation[j] and tensors[j].saved_by
                          and not any(w > op for w in forward_writes.get(j, ()))):
                    return None
        memo[key] = sorted(set(inputs))
        other_version[key] = {j for j, w in rebuilt if w != len(forward_writes.get(j, ()))}
        numel = t.nbytes // max(1, itemsize(t.dtype))
        flops[key] = (sum(RECOMPUTE_FLOPS_PER_ELEMENT.get(op_packet(ops[o].name), 1) for o in (t.birth, *writes))
                      * numel + sum(flops[k] for k in set(rebuilt)))
        return memo[key]

    end = len(ops)
    found = {t.id: chain(t.id, end) for t in tensors if t.saved_by}
    final = {i: (i, len(forward_writes.get(i, ()))) for i in found}
    return ({i: v for i, v in found.items() if v is not None},
            {i: flops[final[i]] for i, v in found.items() if v is not None},
            {i: other_version[final[i]] for i, v in found.items() if v is not None})


def _context(trace: Trace) -> _Context:
    return trace.derived("policy_context", _Context)


def _codec_sizes(trace: Trace, ctx: _Context, sparsity: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Encoded bytes of each activation at the zero fractions given (the codec format's size arithmetic)
    at the traced shape, scaled to ``sizes`` (the format's size is linear in numel at a fixed sparsity)."""
    out = np.full(ctx.n, np.iinfo(np.int64).max, dtype=np.int64)
    header = HEADER_BYTES
    tensors = trace.timeline.tensors
    for i in np.nonzero(ctx.activation)[0]:
        numel0 = int(ctx.size0[i] // ctx.itemsize[i])
        if numel0 == 0:
            continue
        c0 = encoded_size_at(numel0, tensors[i].dtype, round(float(sparsity[i]), 4))
        out[i] = header + ((c0 - header) * int(sizes[i])) // int(ctx.size0[i])
    return out


#: Storage kinds of :func:`apply_policy` (``CostedTimeline.kinds``): how each saved activation is held.
KIND_DENSE, KIND_CODEC, KIND_MASK, KIND_NARROW, KIND_CAST, KIND_CHECKPOINT, KIND_RECOMPUTE = range(7)
KIND_NAMES = {KIND_DENSE: "dense", KIND_CODEC: "bitmap", KIND_MASK: "mask", KIND_NARROW: "narrow-int",
              KIND_CAST: "half", KIND_CHECKPOINT: "checkpoint", KIND_RECOMPUTE: "recompute"}
_BIG = np.iinfo(np.int64).max


def storage_options(trace: Trace, policy: Policy, model: SparsityModel, sizes: np.ndarray) -> dict[int, np.ndarray]:
    """Bytes each activation would be stored in under every kind ``policy`` allows (int64 max where a kind
    does not apply), ``{kind: bytes per tensor id}``, at the dense ``sizes`` given."""
    ctx = _context(trace)
    act = ctx.activation & (sizes > 0)
    numel = sizes // ctx.itemsize
    out: dict[int, np.ndarray] = {}

    def option(applies, size):
        return np.where(applies, size, _BIG).astype(np.int64)

    if policy.uses_bitmap:
        out[KIND_CODEC] = option(act, _codec_sizes(trace, ctx, ctx.sparsity(trace, model), sizes))
    if policy.uses_mask:
        out[KIND_MASK] = option(act & ctx.mask_only, mask_bytes(numel, ctx.itemsize))
    if policy.uses_indices:
        out[KIND_NARROW] = option(act & (ctx.index_width > 0), numel * ctx.index_width)
    if policy in (Policy.FP16, Policy.BF16):
        out[KIND_CAST] = option(act & ctx.is_float32, sizes // 2)
    if policy in (Policy.RECOMPUTE, Policy.PLAN):
        out[KIND_RECOMPUTE] = option(act & ctx.recomputable, np.zeros(ctx.n, dtype=np.int64))
    return out


def apply_policy(trace: Trace, policy: Policy | str, sparsity=None, batch_size: int | None = None,
                 kinds: np.ndarray | None = None) -> CostedTimeline:
    """Intervals and price of one policy on ``trace`` (optionally scaled to ``batch_size``).

    A stored activation becomes three intervals: dense from its birth to its last forward read, the stored
    form from its birth to its death, and the dense copy restored (decoded or recomputed) for backward from
    its first to its last backward read. Each activation takes the smallest form ``policy`` allows, or, with
    ``kinds`` (a plan: one ``KIND_*`` per tensor id), the form given there when it is smaller than dense.
    """
    policy = policy if isinstance(policy, Policy) else parse_policies(policy)[0]
    model = sparsity if isinstance(sparsity, SparsityModel) else SparsityModel(sparsity)
    ctx = _context(trace)
    tl = trace.timeline
    sizes = dense_sizes(trace, batch_size)
    n = ctx.n
    stored = np.full(n, _BIG, dtype=np.int64)
    kind = np.zeros(n, dtype=np.int8)
    out = CostedTimeline(policy, tl.n_ops, *(np.zeros(0, np.int64) for _ in range(5)))
    for k, size in storage_options(trace, Policy.PLAN if kinds is not None else policy, model, sizes).items():
        better = (size < stored) if kinds is None else (kinds == k)
        stored[better] = size[better]
        kind[better] = k
    keep = (kind > 0) & (stored < sizes)
    kind[~keep] = 0

    recompute_start = np.zeros(n, dtype=np.int64)
    if policy is Policy.CHECKPOINT and ctx.blocks:
        checkpointed = np.fromiter(ctx.blocks.keys(), dtype=np.int64)
    elif kinds is not None:
        checkpointed = np.nonzero((kinds == KIND_CHECKPOINT) & ctx.activation)[0]
    else:
        checkpointed = np.zeros(0, dtype=np.int64)
    if len(checkpointed):
        kind[checkpointed] = KIND_CHECKPOINT
        blocks = _checkpoint_windows(ctx, checkpointed, recompute_start, tl.n_ops)
        out.extra_flops += block_forward_flops(trace, blocks, batch_size)
        out.notes.append(f"{len(blocks)} checkpointed blocks")

    dense = kind == 0
    packed = (kind > 0) & (kind != KIND_CHECKPOINT)
    restored = packed & (ctx.bwd_first >= 0)
    chain_birth, chain_size, chain_src = _recompute_transients(ctx, kind == KIND_RECOMPUTE, sizes)
    if (kind == KIND_RECOMPUTE).any():
        scale = sizes / np.maximum(ctx.size0, 1)
        out.extra_flops += int(sum(ctx.recompute_flops[int(i)] * scale[i] * max(1, len(tl.tensors[i].saved_by))
                                   for i in np.nonzero(kind == KIND_RECOMPUTE)[0]))
        out.notes.append(f"{int((kind == KIND_RECOMPUTE).sum())} saved activations recomputed in backward")
    recompute = kind == KIND_CHECKPOINT
    changed = ~dense
    ids = np.arange(n, dtype=np.int64)
    parts = [
        (ctx.birth[dense], ctx.death[dense], sizes[dense], ids[dense]),
        (ctx.birth[changed], ctx.fwd_end[changed], sizes[changed], ids[changed]),
        (ctx.birth[packed], ctx.death[packed], stored[packed], ids[packed]),
        (ctx.bwd_first[restored], ctx.bwd_last[restored], sizes[restored], ids[restored]),
        (recompute_start[recompute], ctx.death[recompute], sizes[recompute], ids[recompute]),
        (chain_birth, chain_birth, chain_size, chain_src),
    ]
    birth = np.concatenate([p[0] for p in parts])
    death = np.concatenate([p[1] for p in parts])
    nbytes = np.concatenate([p[2] for p in parts])
    source = np.concatenate([p[3] for p in parts])
    valid = (nbytes > 0) & (death >= birth)
    out.birth, out.death, out.nbytes, out.source = birth[valid], death[valid], nbytes[valid], source[valid]
    out.category = ctx.category[out.source]
    out.kinds = kind
    out.stored_bytes = np.where(kind == KIND_DENSE, sizes, np.where(kind == KIND_CHECKPOINT, 0, stored))
    out.codec_bytes = int(sizes[kind == KIND_CODEC].sum())
    out.converted_bytes = int(sizes[kind == KIND_CAST].sum())
    return out


def _recompute_transients(ctx: _Context, recomputed: np.ndarray, sizes: np.ndarray):
    """(op, bytes, tensor id) of the inputs rebuilt on the way when a recomputed storage is computed from
    other recomputed storages, one interval per backward op.

    Two kinds, as the runtime holds them (:mod:`memsim.runtime.recompute`):

    - a recomputed entry of its own (a residual block output rebuilt from the previous block's): the runtime
      caches it for its own savers, so it is alive through the op;
    - an intermediate (a value nobody saved, or another version of a saved storage: the batch-norm output an
      in-place ReLU6's clone copies): alive only while the op unpacks its saved tensors, before it allocates
      its outputs. There the op's memory is ``max(live - outputs + intermediates, live)``, so they count
      ``max(0, intermediates - outputs)`` bytes at that op (counting them beside the outputs overstated
      MobileNetV2's batch-8 peak by one 36.8 MiB activation).
    """
    held: dict[int, int] = {}
    passing: dict[int, int] = {}
    first_src: dict[int, int] = {}
    for i in np.nonzero(recomputed & (ctx.bwd_first >= 0))[0]:
        op = int(ctx.bwd_first[i])
        for j in ctx.recompute_inputs.get(int(i), ()):
            if not ctx.activation[j] or j in ctx.recompute_intermediates.get(int(i), ()):
                passing[op] = passing.get(op, 0) + int(sizes[j])
            elif recomputed[j]:
                held[op] = held.get(op, 0) + int(sizes[j])
            else:
                continue
            first_src.setdefault(op, j)
    if not first_src:
        return (np.zeros(0, dtype=np.int64),) * 3
    at = np.asarray(sorted(first_src), dtype=np.int64)
    outputs = np.bincount(np.clip(ctx.birth, 0, None), weights=sizes, minlength=int(at.max()) + 1)
    extra = [held.get(int(op), 0) + max(0, passing.get(int(op), 0) - int(outputs[op])) for op in at]
    return at, np.asarray(extra, dtype=np.int64), np.asarray([first_src[int(op)] for op in at], dtype=np.int64)


def _index_width(trace: Trace, t) -> int:
    """Bytes per MaxPool index when stored in the narrowest integer type holding the input plane's indices."""
    g = trace.graph
    plane = None
    for node in t.saved_by:
        for other in g.nodes[node].get("saved", []) if node in g.nodes else []:
            o = trace.timeline.tensors[other]
            if o.id != t.id and o.dtype != "int64" and len(o.shape) >= 2:
                plane = int(np.prod(o.shape[-2:]))
    if plane is None:
        return 4
    return index_width(plane - 1)


def _embedding_index_width(trace: Trace, t) -> int:
    """Bytes per token index saved by an embedding, narrowed to hold the table's rows (the runtime narrows
    by the values it sees, which never exceed them); 0 (not narrowed) when the table is not found."""
    tl = trace.timeline
    for u in t.uses:
        if tl.ops[u].name.startswith("aten.embedding."):
            rows = [w.shape[0] for w in tl.tensors if u in w.uses and w.id != t.id and len(w.shape) == 2]
            if rows:
                width = index_width(int(rows[0]) - 1)
                return width if width < 8 else 0
    return 0


def _checkpoint_windows(ctx: _Context, ids: np.ndarray, recompute_start: np.ndarray, n_ops: int) -> set[str]:
    """Set ``recompute_start`` of each checkpointed activation in ``ids`` to the op where backward first
    unpacks anything of its block (the whole block's forward is run again then); the blocks, by path."""
    start: dict[str, int] = {}
    for i in ids:
        if ctx.bwd_first[i] >= 0:
            b = ctx.blocks[int(i)]
            start[b] = min(start.get(b, n_ops), int(ctx.bwd_first[i]))
    for i in ids:
        recompute_start[i] = start.get(ctx.blocks[int(i)], ctx.death[i])
    return {ctx.blocks[int(i)] for i in ids}


def block_forward_flops(trace: Trace, blocks: set[str], batch_size: int | None = None) -> int:
    """FLOPs of the forward ops run inside ``blocks`` (module paths), scaled to ``batch_size``: what
    checkpointing them adds to a step.

    >>> import memsim, models_zoo
    >>> tr = memsim.trace(models_zoo.create("small_cnn"), models_zoo.spec("small_cnn").example_inputs(2))
    >>> block_forward_flops(tr, set()) == 0
    True
    """
    flops = sum(o.flops for o in trace.timeline.ops
                if Phase(o.phase) is Phase.FORWARD and _block_of(o.module, blocks))
    scale = (batch_size or trace.batch_size) / max(1, trace.batch_size)
    return int(flops * scale)


def _block_of(module: str, blocks: set[str]) -> str | None:
    for b in blocks:
        if module == b or module.startswith(b + "."):
            return b
    return None


def _checkpoint_blocks(trace: Trace) -> dict[int, str]:
    """Activation id → block path, with blocks at the module depth whose count is closest to
    sqrt(#saved activations) (the classic sqrt(n) checkpointing trade-off)."""
    acts = [t for t in trace.timeline.tensors if Category(t.category) is Category.ACTIVATION and t.module]
    if not acts:
        return {}
    target = math.sqrt(len(acts))
    best = None
    for depth in range(1, 1 + max(len(t.module.split(".")) for t in acts)):
        groups = {".".join(t.module.split(".")[:depth]) for t in acts}
        score = abs(len(groups) - target)
        if len(groups) >= 2 and (best is None or score < best[0]):
            best = (score, depth)
    if best is None:
        return {}
    depth = best[1]
    out = {}
    for t in acts:
        parts = t.module.split(".")
        if len(parts) >= depth:
            out[t.id] = ".".join(parts[:depth])
    # A block's output is the next block's checkpointed input: it stays stored.
    ops = trace.timeline.ops
    for t in acts:
        b = out.get(t.id)
        if b is not None and any(Phase(ops[u].phase) is Phase.FORWARD and _block_of(ops[u].module, {b}) is None
                                 for u in t.uses):
            del out[t.id]
    # The last block's activations are needed right away by backward: checkpointing it only costs FLOPs.
    last = max(out.values(), key=lambda b: max(t.birth for t in acts if out.get(t.id) == b), default=None)
    return {k: v for k, v in out.items() if v != last}
