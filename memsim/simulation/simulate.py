"""Replay a traced step on a device under one or more policies → :class:`Report`.

The device's share: the allocator model rounds and caches the step's allocations
(``memsim.simulation.allocator.replay``), the runtime (CUDA context or a Python process with torch imported) and the
OS take their part, and what is left is compared with the device's memory.

``device_peak_bytes = allocator reserved peak + runtime bytes + OS reserve``;
``fits``: replaying the step (twice, the second from the first one's cache) never fails to find memory
within ``budget_bytes * (1 - margin)`` minus runtime and OS, the allocator freeing its cache as PyTorch does.

Example:
    >>> import memsim, models_zoo
    >>> trace = memsim.trace(models_zoo.create("small_cnn"), models_zoo.spec("small_cnn").example_inputs(8))
    >>> rep = simulate(trace, device="jetson-nano", policy="bitmap", sparsity=0.5)
    >>> rep.fits, rep.peak_bytes < trace.peak_bytes
    (True, True)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from memsim.simulation import allocator as allocator_model
from memsim.simulation import devices
from memsim.core.categories import Category
from memsim.core.errors import InputError
from memsim.core.names import tensor_label
from memsim.simulation.policies import CostedTimeline, Policy, SparsityModel, apply_policy, parse_policies
from memsim.core.trace import Breakdown, Trace

# The codec runs at about 0.6x a memcpy (memsim bench codec) and a memcpy moves each byte twice (read +
# write), so it processes dense bytes at ~0.3x the memory bandwidth; on a board the estimate scales with it.
CODEC_BANDWIDTH_FRACTION = 0.3
MAX_BATCH_LIMIT = 1 << 16


@dataclass
class PolicyResult:
    """Peak and price of one policy.

    Attributes (bytes unless stated): peak_bytes (live tensors), allocated_bytes / reserved_bytes (the
    allocator model's peaks), device_peak_bytes (reserved + runtime + OS), fits, headroom_bytes (budget
    minus device peak; negative when it does not fit), max_batch_size (None when the trace has no batch
    scaling), extra_flops (recomputation), codec_seconds (estimated encode + decode time on the device),
    lossy.
    """

    policy: Policy
    costed: CostedTimeline
    peak_bytes: int
    allocated_bytes: int
    reserved_bytes: int
    device_peak_bytes: int
    fits: bool
    headroom_bytes: int
    max_batch_size: int | None
    extra_flops: int
    codec_seconds: float
    lossy: bool

    def row(self) -> dict:
        return {
            "policy": str(self.policy),
            "peak_bytes": self.peak_bytes,
            "device_peak_bytes": self.device_peak_bytes,
            "fits": self.fits,
            "headroom_bytes": self.headroom_bytes,
            "max_batch_size": self.max_batch_size,
            "extra_flops": self.extra_flops,
            "codec_seconds": round(self.codec_seconds, 6),
            "lossy": self.lossy,
        }


@dataclass
class Report:
    """What :func:`simulate` found: the first policy's figures as attributes, every policy in ``results``."""

    trace: Trace
    device: "devices.Device"
    policy: str
    results: dict[str, PolicyResult]
    batch_size: int | None
    margin: float = 0.0
    sparsity: str = "none"
    notes: list[str] = field(default_factory=list)
    cache: str = "off"
    _baseline: PolicyResult | None = field(default=None, repr=False, compare=False)

    @property
    def main(self) -> PolicyResult:
        return self.results[self.policy]

    @property
    def policies(self) -> list[str]:
        return list(self.results)

    peak_bytes = property(lambda self: self.main.peak_bytes, doc="Peak live tensor bytes under the policy.")
    device_peak_bytes = property(lambda self: self.main.device_peak_bytes,
                                 doc="Peak bytes the device needs: allocator reserved + runtime + OS.")
    fits = property(lambda self: self.main.fits,
                    doc="The step's allocations fit within the budget (after margin, runtime and OS).")
    headroom_bytes = property(lambda self: self.main.headroom_bytes, doc="budget − device peak (bytes).")
    max_batch_size = property(lambda self: self.main.max_batch_size,
                              doc="Largest batch that fits under the policy (None without batch scaling).")

    @property
    def budget_bytes(self) -> int:
        """The device's memory (bytes): its RAM, or the ``--budget`` given."""
        return int(self.device.total_bytes)

    @property
    def usable_bytes(self) -> int:
        """The budget after the margin (bytes)."""
        return int(self.budget_bytes * (1.0 - self.margin))

    @property
    def tensor_budget_bytes(self) -> int:
        """Live-tensor bytes that fit under the budget once runtime, OS and the allocator's overhead at the
        peak are taken off (the budget line on tensor-byte plots)."""
        main = self.main
        overhead = main.device_peak_bytes - main.peak_bytes
        return int(self.usable_bytes - overhead)

    def memory_curve(self, policy: str | None = None) -> np.ndarray:
        """Live tensor bytes per op under ``policy`` (default: the report's; "none" for the baseline)."""
        return self._result(policy).costed.memory_curve()

    def category_curves(self, policy: str | None = None) -> dict[Category, np.ndarray]:
        return self._result(policy).costed.category_curves()

    def _result(self, policy):
        key = self.policy if policy is None else str(policy)
        if key in self.results:
            return self.results[key]
        if key != "none":
            raise InputError(f"policy {key!r} was not simulated; simulated: {', '.join(self.results)}")
        if self._baseline is None:  # the plots overlay the baseline: cost it once, on first use
            self._baseline = _evaluate(self.trace, self.device, Policy.NONE, None, self.margin, self.batch_size,
                                       False)
        return self._baseline

    def live_at(self, index: int, policy: str | None = None) -> list[tuple[int, int, Category]]:
        """``(tensor id, bytes, category)`` alive at op ``index`` under ``policy`` (stored and restored
        forms of one tensor are separate entries), largest first."""
        return self._result(policy).costed.live_at(index)

    @property
    def breakdown(self) -> Breakdown:
        """What is alive at the peak under the report's policy (bytes per category, modules, tensors)."""
        index = self.main.costed.peak_index
        rows = self.live_at(index)
        tensors = self.trace.timeline.tensors
        by_cat = {c: 0 for c in Category}
        by_module: dict[str, int] = {}
        per_tensor: dict[int, int] = {}
        for tid, nbytes, cat in rows:
            by_cat[cat] += nbytes
            mod = tensors[tid].module or "(none)"
            by_module[mod] = by_module.get(mod, 0) + nbytes
            per_tensor[tid] = per_tensor.get(tid, 0) + nbytes
        top = sorted(per_tensor.items(), key=lambda kv: -kv[1])[:10]
        top_tensors = [dataclasses.replace(tensors[tid], nbytes=nb) for tid, nb in top]
        return Breakdown(index=index, total_bytes=sum(r[1] for r in rows), by_category=by_cat,
                         top_modules=sorted(by_module.items(), key=lambda kv: -kv[1])[:10], top_tensors=top_tensors)

    def table_rows(self) -> list[dict]:
        """One dict per policy: policy, peak_bytes, device_peak_bytes, fits, headroom_bytes, max_batch_size,
        extra_flops, codec_seconds, lossy."""
        return [r.row() for r in self.results.values()]

    def figure(self, **kwargs):
        """Plotly figure of memory over the step (see :func:`memsim.output.figures.timeline_figure`)."""
        from memsim.output import figures as viz

        return viz.timeline_figure(self, **kwargs)

    def to_dict(self) -> dict:
        """The stable JSON form (documented in README)."""
        bd = self.breakdown
        meta = self.trace.meta
        return {
            "model": meta.get("model"),
            "batch_size": self.batch_size,
            "optimizer": meta.get("optimizer"),
            "device": self.device.name,
            "policy": self.policy,
            "sparsity": self.sparsity,
            "peak_bytes": self.peak_bytes,
            "device_peak_bytes": self.device_peak_bytes,
            "budget_bytes": self.budget_bytes,
            "margin": self.margin,
            "fits": self.fits,
            "headroom_bytes": self.headroom_bytes,
            "max_batch_size": self.max_batch_size,
            "breakdown": {str(c): b for c, b in bd.by_category.items()},
            "top_modules": [{"module": m, "bytes": b} for m, b in bd.top_modules],
            "top_tensors": [{"name": t.name or t.op, "label": tensor_label(t, self.trace), "module": t.module,
                             "category": str(t.category), "shape": list(t.shape), "dtype": t.dtype,
                             "bytes": t.nbytes} for t in bd.top_tensors],
            "policies": self.table_rows(),
            "cache": self.cache,
        }


def resolve_device(device) -> "devices.Device":
    """A Device from a catalog name, a Device, or None (no device: an unlimited budget is not useful, so
    None means the host's own memory)."""
    if device is None:
        return devices.host()
    if isinstance(device, str):
        return devices.get(device)
    return device


def simulate(trace: Trace, device="jetson-nano", policy="none", sparsity=None, *, margin: float = 0.0,
             batch_size: int | None = None, max_batch: bool = True) -> Report:
    """Predict one training step of ``trace`` on ``device`` under ``policy``.

    Args:
        trace: from :func:`memsim.trace` or :meth:`memsim.Trace.load`.
        device: catalog name (``memsim devices``), a :class:`memsim.simulation.devices.Device`, or None for this host.
        policy: a :class:`memsim.simulation.policies.Policy` name, ``"all"``, or a list; the first is the report's.
        sparsity: zero fraction of sparse activations (float), ``{module prefix: fraction}``, or the result
            of :func:`memsim.measure_sparsity`; None = dense (the codec then only gains on exact zeros).
        margin: fraction of the budget kept free (0.1 = fit within 90%).
        batch_size: simulate another batch size (needs a trace with batch scaling).
        max_batch: search the largest batch that fits per policy (when the trace has batch scaling).

    Returns: a :class:`Report`; sizes in bytes.
    """
    if not isinstance(trace, Trace):
        raise InputError(f"simulate needs a memsim.Trace, got {type(trace).__name__}")
    if not 0.0 <= float(margin) < 1.0:
        raise InputError(f"bad margin {margin!r}: must be in [0, 1)")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise InputError(f"bad batch size {batch_size!r}: must be a positive integer")
    dev = resolve_device(device)
    policies = parse_policies(policy)
    model = SparsityModel(sparsity)
    can_scale = all(t.per_sample_bytes is not None for t in trace.timeline.tensors) and trace.batch_size
    results = {}
    for p in policies:
        results[str(p)] = _evaluate(trace, dev, p, model, margin, batch_size, max_batch and bool(can_scale))
    return Report(trace=trace, device=dev, policy=str(policies[0]), results=results,
                  batch_size=batch_size or trace.batch_size, margin=float(margin), sparsity=model.label)


def _device_cost(costed: CostedTimeline, dev, usable: int) -> tuple[int, int, int, bool]:
    """(allocated peak, reserved peak, device peak, fits) in bytes for a costed timeline on ``dev``.

    The allocator replays two steps back to back (the second starts from the first one's cache, as in a
    training loop) with the memory left for it after runtime and OS as its capacity: like PyTorch, the
    CUDA model frees cached segments before giving up, so a step fits when no request fails.
    """
    fixed = int(dev.runtime_bytes) + int(dev.os_reserved_bytes)
    capacity = usable - fixed
    res = allocator_model.replay(costed.allocation_events(), dev.allocator, capacity_bytes=capacity if capacity > 0 else None,
                                 steps=2)
    device_peak = int(res.peak_reserved_bytes) + fixed
    return int(res.peak_allocated_bytes), int(res.peak_reserved_bytes), device_peak, res.fits and capacity > 0


def _evaluate(trace, dev, policy, model, margin, batch_size, search) -> PolicyResult:
    costed = apply_policy(trace, policy, model, batch_size)
    usable = int(dev.total_bytes * (1.0 - margin))
    allocated, reserved, device_peak, fits = _device_cost(costed, dev, usable)
    bandwidth = float(getattr(dev, "bandwidth_bytes_per_s", 0) or 0)
    codec_seconds = 2 * costed.codec_bytes / (CODEC_BANDWIDTH_FRACTION * bandwidth) if bandwidth else 0.0
    best = _max_batch(trace, dev, policy, model, usable, reserved / max(costed.peak_bytes, 1)) if search else None
    return PolicyResult(policy=policy, costed=costed, peak_bytes=costed.peak_bytes, allocated_bytes=allocated,
                        reserved_bytes=reserved, device_peak_bytes=device_peak, fits=fits,
                        headroom_bytes=usable - device_peak, max_batch_size=best,
                        extra_flops=int(costed.extra_flops), codec_seconds=codec_seconds,
                        lossy=not policy.lossless)


def _max_batch(trace, dev, policy, model, usable, overhead: float) -> int:
    """Largest batch size whose device peak fits in ``usable`` bytes (0 when even batch 1 does not).

    The allocator replay is the costly part, so the search runs on a cheap proxy first — the live-tensor
    peak plus the allocator and device overhead measured at the traced batch — and then replays the
    allocator only around the proxy's answer until the boundary is exact: fits(b) and not fits(b + 1).
    """
    fixed = int(dev.runtime_bytes) + int(dev.os_reserved_bytes)  # overhead: reserved / live at traced batch

    def proxy_fits(b: int) -> bool:
        return apply_policy(trace, policy, model, b).peak_bytes * overhead + fixed <= usable

    def fits(b: int) -> bool:
        return _device_cost(apply_policy(trace, policy, model, b), dev, usable)[3]

    return _boundary(fits, max(_largest(proxy_fits), 1))


def _boundary(fits, hint: int) -> int:
    """Largest b >= 1 with fits(b) for a monotone ``fits``, galloping out from ``hint`` (0 if none)."""
    if fits(hint):
        lo, step = hint, 1
        while lo + step <= MAX_BATCH_LIMIT and fits(lo + step):
            lo += step
            step *= 2
        hi = lo + step
        if hi > MAX_BATCH_LIMIT:
            return lo
    else:
        hi, step = hint, 1
        while hi - step >= 1 and not fits(hi - step):
            hi -= step
            step *= 2
        lo = hi - step
        if lo < 1:
            if not fits(1):
                return 0
            lo = 1
    while hi - lo > 1:  # invariant: fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _largest(pred) -> int:
    """Largest b in [0, MAX_BATCH_LIMIT] with pred(b) true for a monotone predicate (0 if pred(1) is false)."""
    if not pred(1):
        return 0
    lo, hi = 1, 2
    while hi <= MAX_BATCH_LIMIT and pred(hi):
        lo, hi = hi, hi * 2
    if hi > MAX_BATCH_LIMIT:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if pred(mid) else (lo, mid)
    return lo
