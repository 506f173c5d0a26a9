"""Policy ``plan``: for each saved tensor, the storage that fits a device's budget with the least extra work.

The ladder, cheapest first (each rung only when the previous ones do not fit):

1. everything dense (``none``);
2. bitmaps, 1-bit masks and narrow MaxPool indices, tensor by tensor, largest saving per encoded byte first
   (the codec streams memory, about 0.3x the memory bandwidth, and costs no FLOPs);
3. recompute the outputs of cheap ops (:mod:`memsim.core.saved_rules`), largest saving per recomputed FLOP
   first;
4. on top of that, block checkpointing (the blocks of ``checkpoint``, whole blocks run again in backward),
   largest saving per recomputed FLOP first, when even that does not fit.

"Fits" means robustly: within the budget with the device's uncertainty band to spare
(:mod:`memsim.simulation.verdict`). Within a rung the smallest prefix of the ordered tensors that fits is found
by bisection (the fit grows with the prefix). The chosen kinds are fixed per tensor, so the max batch reported for a plan is the max batch
*of that plan*.

Example:
    >>> import memsim, models_zoo
    >>> trace = memsim.trace(models_zoo.create("small_cnn"), models_zoo.spec("small_cnn").example_inputs(8))
    >>> from memsim.simulation import devices
    >>> plan = make_plan(trace, devices.get("jetson-nano"), sparsity=0.5)
    >>> plan.rung, sum(plan.counts().values()) > 0
    ('none', True)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memsim.core.categories import Phase
from memsim.core.policy import Policy
from memsim.core.trace import Trace
from memsim.simulation.policies import (KIND_CHECKPOINT, KIND_CODEC, KIND_DENSE, KIND_MASK, KIND_NAMES,
                                        KIND_NARROW, KIND_RECOMPUTE, SparsityModel, _context, apply_policy,
                                        block_forward_flops, dense_sizes, storage_options)
from memsim.simulation.verdict import device_cost

#: The rungs of the ladder, in the order they are tried.
RUNGS = ("none", "encode", "recompute", "checkpoint")


@dataclass
class Plan:
    """The chosen storage of every saved activation of one trace (``KIND_*`` per tensor id).

    Attributes:
        kinds: int8 array, one ``memsim.simulation.policies.KIND_*`` per tensor id of the (backend view of
            the) trace.
        rung: the last rung of the ladder used: "none", "encode", "recompute" or "checkpoint" (then
            ``checkpoint_blocks`` run again in backward, and ``kinds`` is ``KIND_CHECKPOINT`` inside them).
        fits: whether the plan fits the device at the planned batch.
        device: the device's catalog name; batch_size: the batch planned for.
        entries: one dict per changed tensor: label, module, op, output_index, shape, kind, dense_bytes,
            stored_bytes (bytes), and for kind "checkpoint" the block (module path) — what the plan does, in
            words a person and the runtime can match.
    """

    kinds: np.ndarray
    rung: str
    fits: bool
    device: str
    batch_size: int
    entries: list[dict] = field(default_factory=list)

    @property
    def policy(self) -> Policy:
        """The policy whose options the plan picks from."""
        return Policy.PLAN

    @property
    def checkpoint_blocks(self) -> list[str]:
        """Module paths of the blocks the plan checkpoints (their forward runs again in backward)."""
        return sorted({e["block"] for e in self.entries if e["kind"] == "checkpoint"})

    def counts(self) -> dict[str, int]:
        """Number of saved activations per storage kind ("dense", "bitmap", "mask", "narrow-int", "recompute")."""
        kinds, n = np.unique(self.kinds, return_counts=True)
        return {KIND_NAMES[int(k)]: int(c) for k, c in zip(kinds, n)}

    def summary(self) -> list[dict]:
        """Per kind: tensors, dense bytes and stored bytes (bytes), largest dense bytes first."""
        rows: dict[str, dict] = {}
        for e in self.entries:
            r = rows.setdefault(e["kind"], {"kind": e["kind"], "tensors": 0, "dense_bytes": 0, "stored_bytes": 0})
            r["tensors"] += 1
            r["dense_bytes"] += e["dense_bytes"]
            r["stored_bytes"] += e["stored_bytes"]
        return sorted(rows.values(), key=lambda r: -r["dense_bytes"])

    def to_dict(self) -> dict:
        return {"rung": self.rung, "fits": self.fits, "device": self.device, "batch_size": self.batch_size,
                "checkpoint_blocks": self.checkpoint_blocks, "summary": self.summary(), "entries": self.entries}


def make_plan(trace: Trace, device, sparsity=None, *, margin: float = 0.0, batch_size: int | None = None) -> Plan:
    """The plan for ``trace`` on ``device`` (a :class:`memsim.simulation.devices.Device` whose backend view
    ``trace`` already is; :func:`memsim.simulate` with ``policy="plan"`` does both).

    Args:
        sparsity: as for :func:`memsim.simulate`.
        margin: fraction of the budget kept free.
        batch_size: plan for this batch (default: the traced one).
    """
    model = sparsity if isinstance(sparsity, SparsityModel) else SparsityModel(sparsity)
    ctx = _context(trace)
    sizes = dense_sizes(trace, batch_size)
    options = storage_options(trace, Policy.PLAN, model, sizes)
    kinds = np.zeros(ctx.n, dtype=np.int8)

    def fits(k: np.ndarray) -> bool:
        return robust(apply_policy(trace, Policy.PLAN, model, batch_size, kinds=k))

    def peak(k: np.ndarray) -> int:
        return apply_policy(trace, Policy.PLAN, model, batch_size, kinds=k).peak_bytes

    def robust(costed) -> bool:  # fits with the device's uncertainty band to spare, not just narrowly
        return device_cost(costed, device, margin).robust

    def done(rung: str, ok: bool) -> Plan:
        return Plan(kinds, rung, ok, device.name, batch_size or trace.batch_size,
                    _entries(trace, kinds, sizes, options))

    if fits(kinds):
        return done("none", True)

    # rung 2: the cheapest exact encoding of each tensor, largest saving per encoded byte first
    encoded = np.full(ctx.n, np.iinfo(np.int64).max, dtype=np.int64)
    enc_kind = np.zeros(ctx.n, dtype=np.int8)
    for k in (KIND_CODEC, KIND_MASK, KIND_NARROW):
        if k in options:
            better = options[k] < encoded
            encoded[better], enc_kind[better] = options[k][better], k
    gain = np.where(encoded < sizes, sizes - np.minimum(encoded, sizes), 0)
    order = [int(i) for i in np.argsort(-(gain / np.maximum(sizes, 1)), kind="stable") if gain[i] > 0]
    kinds = _bisect_prefix(kinds, order, enc_kind, fits)
    if kinds is not None:
        return done("encode", True)
    kinds = np.zeros(ctx.n, dtype=np.int8)
    kinds[order] = enc_kind[order]

    # rung 3: recompute, largest saving per FLOP first
    held = np.where(kinds > 0, np.minimum(encoded, sizes), sizes)
    candidates = [i for i in np.nonzero(options.get(KIND_RECOMPUTE, np.zeros(0)) == 0)[0]]
    rate = {int(i): held[i] / max(1, ctx.recompute_flops.get(int(i), 1)) for i in candidates}
    order = sorted(rate, key=lambda i: -rate[i])
    recompute = np.full(ctx.n, KIND_RECOMPUTE, dtype=np.int8)
    found = _bisect_prefix(kinds, order, recompute, fits)
    if found is not None:
        kinds = found
        return done("recompute", True)
    kinds[order] = KIND_RECOMPUTE

    # rung 4: on top of all that, checkpoint whole blocks, largest saving per recomputed FLOP first
    members: dict[str, list[int]] = {}
    for i, b in ctx.blocks.items():
        members.setdefault(b, []).append(i)
    held = np.where(kinds == KIND_RECOMPUTE, 0, np.where(kinds > 0, np.minimum(encoded, sizes), sizes))
    rate = {b: held[ids].sum() / max(1, block_forward_flops(trace, {b}, batch_size))
            for b, ids in members.items() if held[ids].sum() > 0}
    blocks = sorted(rate, key=lambda b: -rate[b])
    checkpoint = np.full(ctx.n, KIND_CHECKPOINT, dtype=np.int8)
    leaves = _recompute_leaves(trace)
    fallback = np.where(encoded < sizes, enc_kind, KIND_DENSE).astype(np.int8)

    def stored_again(k: np.ndarray) -> np.ndarray:
        # a recompute outside the checkpointed blocks needs what it is rebuilt from kept: a value inside one
        # is not (checkpoint's own hooks hold it), so that tensor is stored after all, as the runtime does
        inside = set(np.nonzero(k == KIND_CHECKPOINT)[0].tolist())
        out = k.copy()
        for i in np.nonzero(k == KIND_RECOMPUTE)[0]:
            if leaves.get(int(i), set()) & inside:
                out[i] = fallback[i]
        return out

    found = _bisect_prefix(kinds, [members[b] for b in blocks], checkpoint, lambda k: fits(stored_again(k)))
    if found is not None:
        kinds = stored_again(found)
        return done("checkpoint", True)
    # nothing fits: the plan that comes closest, so the report says how far off the budget is
    every = kinds.copy()
    every[[i for b in blocks for i in members[b]]] = KIND_CHECKPOINT
    every = stored_again(every)
    if blocks and peak(every) < 0.99 * peak(kinds):   # not a sliver for a block's forward again
        kinds = every
        return done("checkpoint", False)
    return done("recompute", False)


def _bisect_prefix(base: np.ndarray, order: list, kind_of: np.ndarray, fits) -> np.ndarray | None:
    """``base`` with the shortest prefix of ``order`` set to ``kind_of`` that fits, or None if all of it does
    not. An item of ``order`` is a tensor id or a list of them (a block, changed together)."""
    def with_prefix(k: int) -> np.ndarray:
        out = base.copy()
        chosen = [j for item in order[:k] for j in (item if isinstance(item, list) else (item,))]
        out[chosen] = kind_of[chosen]
        return out

    if not order or not fits(with_prefix(len(order))):
        return None
    lo, hi = 0, len(order)  # fits(with_prefix(hi)) holds; the prefix of lo does not (base did not fit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(with_prefix(mid)):
            hi = mid
        else:
            lo = mid
    return with_prefix(hi)


def _recompute_leaves(trace: Trace) -> dict[int, set[int]]:
    """Per recomputable activation, the saved activations its recomputation reads (transitively through the
    recomputable ones it is rebuilt from): what must be kept for it to be recomputed."""
    ctx = _context(trace)
    tensors = trace.timeline.tensors
    # in-place writes after the forward pass (and the loss) do not make the value saved for backward
    forward_end = max((i for i, o in enumerate(trace.timeline.ops) if Phase(o.phase) in (Phase.FORWARD, Phase.LOSS)),
                      default=-1) + 1
    memo: dict[int, set[int]] = {}

    def leaves(i: int) -> set[int]:
        if i in memo:
            return memo[i]
        memo[i] = set()
        t = tensors[i]
        found: set[int] = set()
        for op in (t.birth, *(w for w in t.writes if w < forward_end)):
            for j in ctx.read_by.get(op, ()):
                if j != i and ctx.activation[j] and not ctx.recomputable[j]:
                    found.add(j)
        for j in ctx.recompute_inputs.get(i, ()):
            found |= {j} | leaves(j)
        memo[i] = found
        return found

    return {int(i): leaves(int(i)) for i in np.nonzero(ctx.recomputable)[0]}


def _entries(trace: Trace, kinds: np.ndarray, sizes: np.ndarray, options: dict) -> list[dict]:
    from memsim.core.names import tensor_label

    blocks = _context(trace).blocks
    tensors = trace.timeline.tensors
    out = []
    for i in np.nonzero(kinds != KIND_DENSE)[0]:
        t = tensors[int(i)]
        k = int(kinds[i])
        entry = {"label": tensor_label(t, trace), "module": t.module, "op": t.op,
                 "output_index": t.output_index, "shape": list(t.shape), "kind": KIND_NAMES[k],
                 "dense_bytes": int(sizes[i]), "stored_bytes": 0 if k == KIND_CHECKPOINT else int(min(options[k][i], sizes[i]))}
        if k == KIND_CHECKPOINT:
            entry["block"] = blocks[int(i)]
        out.append(entry)
    return out
