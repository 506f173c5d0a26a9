"""Does a step fit on a device, how sure is that, and what is the largest batch that fits — a verdict a CI gate
can rely on.

For one costed step (:class:`~memsim.simulation.policies.CostedTimeline`) on a device:

* **demand**: the allocator model replays training steps back to back, without any memory limit, until its
  cache no longer changes (steady state). Its peaks are the prediction: ``allocated`` is what
  ``torch.cuda.max_memory_allocated`` reports, ``reserved`` what ``max_memory_reserved`` (on the CPU: the
  resident heap). Device peak = reserved + runtime + OS reserve.
* **fits**: the device peak is within the usable budget, or, on CUDA, the step still gets all its memory when
  the replay is limited to the budget and PyTorch frees its cached segments and retries before failing ("fits
  only by releasing cached segments", with how many releases). A replay stops at its first failed request.
* **robust**: it also fits with ``Device.uncertainty_bytes`` less (the OS and runtime figures are estimates).
  Where it does not, the advice names the allocator setting that would make it fit (``max_split_size_mb``,
  ``expandable_segments``).
* **max batch size**: the largest ``b`` such that *every* batch from 1 to ``b`` fits, so the verdict is
  monotone by construction: ``memsim check`` fits at every ``b <= max_batch_size`` and not at
  ``max_batch_size + 1``. On the CPU allocator the fit is monotone in the batch (no cache), so a bisection is
  exact; on CUDA, fragmentation makes it non-monotone, so every batch is replayed up to
  :data:`EXACT_SCAN_LIMIT` (above it, a bisection, and the method says so).

Example:
    >>> import memsim, models_zoo
    >>> from memsim.simulation import devices
    >>> from memsim.simulation.policies import apply_policy
    >>> tr = memsim.trace(models_zoo.create("small_cnn"), models_zoo.spec("small_cnn").example_inputs(4))
    >>> cost = device_cost(apply_policy(tr, "none"), devices.get("jetson-nano"), margin=0.0)
    >>> cost.fits, cost.robust, cost.releases, cost.steady
    (True, True, 0, True)
"""
from __future__ import annotations

from dataclasses import dataclass, field

from memsim.simulation import allocator as allocator_model

#: On CUDA every batch up to this one is replayed for the max batch size; above it, a bisection.
EXACT_SCAN_LIMIT = 512
MAX_BATCH_LIMIT = 1 << 16
#: max_split_size_mb values tried when a step fits only narrowly (PyTorch requires more than 20 MiB).
SPLIT_SIZES_MB = (64, 128, 256, 512)


@dataclass
class DeviceCost:
    """One step on one device (bytes).

    Attributes:
        allocated_bytes, reserved_bytes: the allocator's steady-state peaks without a memory limit (demand).
        device_peak_bytes: reserved + runtime + OS reserve.
        usable_bytes: the budget after the margin.
        fits: the step gets all its memory within the usable budget (possibly by releasing cached segments).
        releases: cached segments released to fit (0 when demand fits outright).
        robust: it also fits with the device's uncertainty band less.
        steady: the replay reached a steady state (the cache stopped changing) within the steps allowed.
        advice: allocator settings that would make a narrow or failing fit robust, for people.
    """

    allocated_bytes: int
    reserved_bytes: int
    device_peak_bytes: int
    usable_bytes: int
    fits: bool
    releases: int
    robust: bool
    steady: bool
    advice: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """One phrase: "fits", "fits only by releasing cached segments (N releases)", "fits, but not robustly"
        or "does not fit"."""
        if not self.fits:
            return "does not fit"
        words = "fits" if not self.releases else f"fits only by releasing cached segments ({self.releases} releases)"
        return words if self.robust else words + ", but not with the OS/runtime uncertainty band"

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "fits": self.fits, "robust": self.robust, "releases": self.releases,
                "allocated_bytes": self.allocated_bytes, "reserved_bytes": self.reserved_bytes,
                "steady_state": self.steady, "advice": list(self.advice)}


def _replay(events, dev, capacity, **kw):
    return allocator_model.replay(events, dev.allocator, capacity_bytes=capacity, steps=None, **kw)


def _fits_within(events, dev, demand, capacity: int) -> tuple[bool, int]:
    """(fits, releases) of the step when the allocator may hold at most ``capacity`` bytes."""
    if capacity <= 0:
        return False, 0
    if demand.peak_reserved_bytes <= capacity:
        return True, 0
    if dev.allocator is allocator_model.AllocatorKind.CPU:
        return False, 0       # nothing cached to release: reserved follows what is live
    limited = _replay(events, dev, capacity)
    return limited.fits, limited.n_releases


def fits(costed, dev, margin: float) -> bool:
    """Whether the step gets all its memory within the usable budget (the cheap half of :func:`device_cost`)."""
    events = costed.allocation_events()
    fixed = int(dev.runtime_bytes) + int(dev.os_reserved_bytes)
    return _fits_within(events, dev, _replay(events, dev, None), int(dev.total_bytes * (1.0 - margin)) - fixed)[0]


def device_cost(costed, dev, margin: float) -> DeviceCost:
    """The verdict for one costed step on ``dev`` (see the module docstring)."""
    events = costed.allocation_events()
    fixed = int(dev.runtime_bytes) + int(dev.os_reserved_bytes)
    usable = int(dev.total_bytes * (1.0 - margin))
    demand = _replay(events, dev, None)
    fits, releases = _fits_within(events, dev, demand, usable - fixed)
    band = int(dev.uncertainty_bytes)
    robust = fits and _fits_within(events, dev, demand, usable - fixed - band)[0]
    cost = DeviceCost(int(demand.peak_allocated_bytes), int(demand.peak_reserved_bytes),
                      int(demand.peak_reserved_bytes) + fixed, usable, fits, releases, robust, demand.steady)
    if not robust and dev.allocator is allocator_model.AllocatorKind.CUDA_CACHING:
        cost.advice = _allocator_advice(events, dev, demand, usable - fixed - band)
    return cost


def _allocator_advice(events, dev, demand, capacity: int) -> list[str]:
    """Allocator settings under which the step would fit in ``capacity`` (the budget minus the band)."""
    if capacity <= 0 or demand.peak_allocated_bytes > capacity:
        return []
    for mb in SPLIT_SIZES_MB:
        r = allocator_model.replay(events, dev.allocator, capacity_bytes=capacity, steps=None,
                                   max_split_size_bytes=mb << 20)
        if r.fits:
            return [f"PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:{mb} would make it fit robustly"]
    # expandable segments grow one mapping instead of caching fixed segments: reserved stays close to allocated
    return ["PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True would likely make it fit robustly (its peak "
            "allocated memory fits; memsim does not model expandable segments exactly)"]


@dataclass
class MaxBatch:
    """The largest batch such that every batch from 1 to it fits; ``method`` says how it was established."""

    size: int
    method: str


def max_batch(fits_at, peak_at, capacity: int, monotone: bool, exact: bool = True) -> MaxBatch:
    """Largest ``b`` with ``fits_at(b')`` for every ``b'`` in 1..b.

    ``peak_at(b)`` is the live-tensor peak at batch ``b``, non-decreasing in ``b``: a batch whose tensors
    alone exceed ``capacity`` cannot fit, which bounds the search. ``monotone``: the fit itself is monotone
    (CPU allocator), so a bisection is exact. ``exact=False`` bisects a non-monotone fit too (cheaper, and
    the method says that smaller batches were not all checked).
    """
    if capacity <= 0 or not fits_at(1):
        return MaxBatch(0, "batch 1 does not fit")
    hi = _first(lambda b: peak_at(b) > capacity)           # no batch at or above hi fits
    if monotone:
        return MaxBatch(_last_true(fits_at, 1, hi), "bisection (the CPU allocator's fit grows monotonically)")
    if not exact:
        return MaxBatch(_last_true(fits_at, 1, hi), "bisection (not every smaller batch checked)")
    b = 1
    while b + 1 < hi and b + 1 <= EXACT_SCAN_LIMIT:
        if not fits_at(b + 1):
            return MaxBatch(b, "every batch from 1 checked")
        b += 1
    if b + 1 >= hi:
        return MaxBatch(b, "every batch from 1 checked")
    return MaxBatch(_last_true(fits_at, b, hi), f"every batch checked up to {EXACT_SCAN_LIMIT}, bisection above")


def _first(pred) -> int:
    """Smallest b >= 1 with pred(b) for a monotone predicate (MAX_BATCH_LIMIT + 1 when none)."""
    hi = 1
    while hi <= MAX_BATCH_LIMIT and not pred(hi):
        hi *= 2
    if hi > MAX_BATCH_LIMIT:
        return MAX_BATCH_LIMIT + 1
    lo = hi // 2          # pred(lo) false (or lo == 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if pred(mid) else (mid, hi)
    return hi


def _last_true(pred, lo: int, hi: int) -> int:
    """Largest b in [lo, hi) with pred(b), given pred(lo) and a monotone pred."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if pred(mid) else (lo, mid)
    return lo
