"""Moved: the probes live in :mod:`memsim.backends.host`, op-level accounting in :mod:`memsim.measure.profiler`
(kept here until the aarch64 emulation scripts have moved too)."""
from memsim.measure.profiler import op_allocations as _op_allocations  # noqa: F401
