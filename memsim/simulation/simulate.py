"""Predict a traced step on a device under one or more policies → :class:`Report`.

The device names its backend (x86 CPU, aarch64 CPU, CUDA) and thread count: the trace is first re-costed for
them (:func:`memsim.backends.views.for_backend`), whatever machine traced it. Then, per policy, the step's
storages are re-costed (:mod:`memsim.simulation.policies`) and replayed through the device's allocator model
to a steady state; :mod:`memsim.simulation.verdict` decides whether it fits, how robustly, and the largest
batch such that every smaller one fits too.

``device_peak_bytes = allocator reserved peak (steady state, no limit) + runtime bytes + OS reserve``.

Example:
    >>> import memsim, models_zoo
    >>> trace = memsim.trace(models_zoo.create("small_cnn"), models_zoo.spec("small_cnn").example_inputs(8))
    >>> rep = simulate(trace, device="jetson-nano", policy="bitmap,none", sparsity=0.5)
    >>> rep.fits, rep.results["bitmap"].peak_bytes < rep.results["none"].peak_bytes, rep.backend
    (True, True, 'cuda')
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from memsim.backends.kinds import VALIDATION, Backend, Validation
from memsim.backends.views import for_backend
from memsim.core.choices import choose
from memsim.simulation.allocator import AllocatorKind
from memsim.simulation.verdict import DeviceCost, device_cost, max_batch
from memsim.simulation.verdict import fits as step_fits
from memsim.simulation import devices
from memsim.core.categories import Category
from memsim.core.errors import InputError
from memsim.core.names import tensor_label
from memsim.simulation.plan import Plan, make_plan
from memsim.simulation.policies import CostedTimeline, Policy, SparsityModel, apply_policy, parse_policies
from memsim.core.trace import Breakdown, Trace

# The codec runs at about 0.6x a memcpy (memsim bench codec) and a memcpy moves each byte twice (read +
# write), so it processes dense bytes at ~0.3x the memory bandwidth; on a board the estimate scales with it.
CODEC_BANDWIDTH_FRACTION = 0.3


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
    cost: DeviceCost | None = None
    max_batch_method: str = ""
    plan: "Plan | None" = None

    def set_max_batch(self, size: int | None, method: str, batch: int | None) -> None:
        """Record the max batch size and make ``fits`` at ``batch`` agree with it: a CI gate must pass at every
        batch up to the max batch size and fail above it, whatever the replay at one batch says near the
        boundary (where scaling and fragmentation make single replays disagree by a batch or two)."""
        self.max_batch_size, self.max_batch_method = size, method
        if size is not None and batch is not None:
            self.fits = batch <= size
            if self.cost is not None:
                self.cost.fits = self.fits
                self.cost.robust = self.cost.robust and self.fits

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
            "verdict": self.cost.verdict if self.cost is not None else ("fits" if self.fits else "does not fit"),
            "robust": bool(self.cost.robust) if self.cost is not None else self.fits,
            "releases": self.cost.releases if self.cost is not None else 0,
            "allocated_bytes": self.allocated_bytes,
            "reserved_bytes": self.reserved_bytes,
            "max_batch_method": self.max_batch_method,
            **({"plan": self.plan.to_dict()} if self.plan is not None else {}),
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
    backend: str = "x86"
    threads: int = 1
    validation: Validation | None = None
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
    def verdict(self) -> str:
        """The main policy's verdict in words ("fits", "fits only by releasing cached segments (3 releases)", ...)."""
        return self.main.cost.verdict if self.main.cost is not None else ("fits" if self.fits else "does not fit")

    @property
    def backend_info(self) -> dict:
        """Which kernels the prediction is for, and how well that backend's model was validated."""
        v = self.validation
        return {"name": self.backend, "threads": self.threads, "validated": bool(v and v.validated),
                "validation": v.summary if v else "", "notes": list(self.notes)}

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
            "backend": self.backend_info,
            "verdict": self.verdict,
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
             batch_size: int | None = None, max_batch: bool = True, backend: str | None = None) -> Report:
    """Predict one training step of ``trace`` on ``device`` under ``policy``.

    Args:
        trace: from :func:`memsim.trace` or :meth:`memsim.Trace.load` (made on any machine).
        device: catalog name (``memsim devices``), a :class:`memsim.simulation.devices.Device`, or None for this
            host.
        policy: a :class:`memsim.core.policy.Policy` name, ``"all"``, or a list; the first is the report's.
        sparsity: zero fraction of sparse activations (float), ``{module prefix: fraction}``, or the result
            of :func:`memsim.measure_sparsity`; None = dense (the codec then only gains on exact zeros).
        margin: fraction of the budget kept free (0.1 = fit within 90%).
        batch_size: simulate another batch size (needs a trace with batch scaling).
        max_batch: search the largest batch such that every batch up to it fits, per policy (when the trace
            has batch scaling).
        backend: run the device's ``"cpu"`` side (a Jetson training on its Arm cores), or force a backend
            ("x86", "aarch64", "cuda"); default: the device's.

    Returns: a :class:`Report` (sizes in bytes) that says for which backend it holds and how well that
    backend's model was validated.
    """
    if not isinstance(trace, Trace):
        raise InputError(f"simulate needs a memsim.Trace, got {type(trace).__name__}")
    if not 0.0 <= float(margin) < 1.0:
        raise InputError(f"bad margin {margin!r}: must be in [0, 1)")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise InputError(f"bad batch size {batch_size!r}: must be a positive integer")
    dev = with_backend(resolve_device(device), backend)
    view = for_backend(trace, dev.backend, dev.threads, dev.cuda_capability)
    vt = view.trace
    policies = parse_policies(policy)
    model = SparsityModel(sparsity)
    can_scale = all(t.per_sample_bytes is not None for t in vt.timeline.tensors) and vt.batch_size
    results = {}
    for i, p in enumerate(policies):
        # the report's own policy gets the exact every-batch check; the others a cheaper bisection
        results[str(p)] = _evaluate(vt, dev, p, model, margin, batch_size, max_batch and bool(can_scale),
                                    exact=i == 0)
    notes = list(view.notes)
    if view.measured_on_host:
        notes.insert(0, "kernel scratch measured on this host's " + str(dev.backend) + " kernels")
    return Report(trace=vt, device=dev, policy=str(policies[0]), results=results,
                  batch_size=batch_size or vt.batch_size, margin=float(margin), sparsity=model.label, notes=notes,
                  backend=str(dev.backend), threads=dev.threads, validation=VALIDATION[dev.backend])


def with_backend(dev, backend: str | None):
    """``dev`` as run by ``backend``: None keeps its own, "cpu" is its CPU side (:meth:`Device.cpu_side`), and a
    backend name ("x86", "aarch64", "cuda") must be the device's own or its CPU's."""
    if backend is None:
        return dev
    name = str(backend).strip().lower()
    if name == "cpu":
        return dev.cpu_side()
    wanted = choose(Backend, name, "backend", more="cpu")
    if wanted is dev.backend:
        return dev
    if dev.cpu_backend is wanted:
        return dev.cpu_side()
    valid = [str(dev.backend)] + ([str(dev.cpu_backend), "cpu"] if dev.cpu_backend else [])
    raise InputError(f"device {dev.name!r} does not run backend {name!r}; valid for it: {', '.join(valid)}")


def _evaluate(trace, dev, policy, model, margin, batch_size, search, exact: bool = True) -> PolicyResult:
    plan = make_plan(trace, dev, model, margin=margin, batch_size=batch_size) if policy is Policy.PLAN else None
    kinds = plan.kinds if plan is not None and plan.policy is Policy.PLAN else None
    priced = plan.policy if plan is not None else policy
    costed = apply_policy(trace, priced, model, batch_size, kinds=kinds)
    cost = device_cost(costed, dev, margin)
    bandwidth = float(getattr(dev, "bandwidth_bytes_per_s", 0) or 0)
    codec_seconds = 2 * costed.codec_bytes / (CODEC_BANDWIDTH_FRACTION * bandwidth) if bandwidth else 0.0
    result = PolicyResult(policy=policy, costed=costed, peak_bytes=costed.peak_bytes,
                        allocated_bytes=cost.allocated_bytes, reserved_bytes=cost.reserved_bytes,
                        device_peak_bytes=cost.device_peak_bytes, fits=cost.fits,
                        headroom_bytes=cost.usable_bytes - cost.device_peak_bytes, max_batch_size=None,
                        extra_flops=int(costed.extra_flops), codec_seconds=codec_seconds,
                        lossy=not policy.lossless, cost=cost, plan=plan)
    if search:
        found = _max_batch(trace, dev, priced, model, margin, exact, kinds)
        result.set_max_batch(found.size, found.method, batch_size or trace.batch_size)
    return result


def _max_batch(trace, dev, policy, model, margin, exact: bool, kinds=None):
    """Largest batch such that every batch from 1 to it fits (:func:`memsim.simulation.verdict.max_batch`);
    with ``kinds``, under that plan's fixed choices."""
    fixed = int(dev.runtime_bytes) + int(dev.os_reserved_bytes)
    capacity = int(dev.total_bytes * (1.0 - margin)) - fixed

    def fits_at(b: int) -> bool:
        return step_fits(apply_policy(trace, policy, model, b, kinds=kinds), dev, margin)

    def peak_at(b: int) -> int:
        return apply_policy(trace, policy, model, b, kinds=kinds).peak_bytes

    return max_batch(fits_at, peak_at, capacity, monotone=dev.allocator is AllocatorKind.CPU, exact=exact)
