"""Policy ``plan``: for each saved tensor, the storage that fits a device's budget with the least extra work.

The ladder, cheapest first (each rung only when the previous ones do not fit):

1. everything dense (``none``);
2. bitmaps, 1-bit masks and narrow MaxPool indices, tensor by tensor, largest saving per encoded byte first
   (the codec streams memory, about 0.3x the memory bandwidth, and costs no FLOPs);
3. recompute the outputs of cheap ops (:mod:`memsim.core.saved_rules`), largest saving per recomputed FLOP
   first;
4. block checkpointing (``checkpoint``) when even that does not fit.

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

from memsim.core.policy import Policy
from memsim.core.trace import Trace
from memsim.simulation.policies import (KIND_CODEC, KIND_DENSE, KIND_MASK, KIND_NAMES, KIND_NARROW,
                                        KIND_RECOMPUTE, SparsityModel, _context, apply_policy, dense_sizes,
                                        storage_options)
from memsim.simulation.verdict import device_cost

#: The rungs of the ladder, in the order they are tried.
RUNGS = ("none", "encode", "recompute", "checkpoint")


@dataclass
class Plan:
    """The chosen storage of every saved activation of one trace (``KIND_*`` per tensor id).

    Attributes:
        kinds: int8 array, one ``memsim.simulation.policies.KIND_*`` per tensor id of the (backend view of
            the) trace.
        rung: the last rung of the ladder used: "none", "encode", "recompute" or "checkpoint" (then the step
            runs under ``checkpoint`` and ``kinds`` is all dense).
        fits: whether the plan fits the device at the planned batch.
        device: the device's catalog name; batch_size: the batch planned for.
        entries: one dict per changed tensor: label, module, op, output_index, shape, kind, dense_bytes,
            stored_bytes (bytes) — what the plan does, in words a person and the runtime can match.
    """

    kinds: np.ndarray
    rung: str
    fits: bool
    device: str
    batch_size: int
    entries: list[dict] = field(default_factory=list)

    @property
    def policy(self) -> Policy:
        """The policy whose options the plan picks from (``checkpoint`` on the last rung)."""
        return Policy.CHECKPOINT if self.rung == "checkpoint" else Policy.PLAN

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
                "summary": self.summary(), "entries": self.entries}


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
    if robust(apply_policy(trace, Policy.CHECKPOINT, model, batch_size)):
        kinds = np.zeros(ctx.n, dtype=np.int8)
        return done("checkpoint", True)
    return done("recompute", False)


def _bisect_prefix(base: np.ndarray, order: list[int], kind_of: np.ndarray, fits) -> np.ndarray | None:
    """``base`` with the shortest prefix of ``order`` set to ``kind_of`` that fits, or None if all of it does not."""
    def with_prefix(k: int) -> np.ndarray:
        out = base.copy()
        chosen = order[:k]
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


def _entries(trace: Trace, kinds: np.ndarray, sizes: np.ndarray, options: dict) -> list[dict]:
    from memsim.core.names import tensor_label

    tensors = trace.timeline.tensors
    out = []
    for i in np.nonzero(kinds != KIND_DENSE)[0]:
        t = tensors[int(i)]
        k = int(kinds[i])
        out.append({"label": tensor_label(t, trace), "module": t.module, "op": t.op,
                    "output_index": t.output_index, "shape": list(t.shape), "kind": KIND_NAMES[k],
                    "dense_bytes": int(sizes[i]), "stored_bytes": int(min(options[k][i], sizes[i]))})
    return out
