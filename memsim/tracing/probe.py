"""Moved: the probes live in :mod:`memsim.backends.host` (kept here until the package layout settles)."""
from memsim.backends.host import _op_allocations  # noqa: F401
