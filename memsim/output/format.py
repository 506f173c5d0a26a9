"""Numbers and names as every output shows them (terminal text, HTML, figures), in one place.

Example:
    >>> format_flops(3.2e9), format_seconds(0.0042), shape_text((8, 3, 224, 224)), escape("<lambda>")
    ('3.20 GFLOP', '4.2 ms', '8×3×224×224', '&lt;lambda&gt;')
"""
from __future__ import annotations

import html

from memsim.core.errors import InputError


def format_flops(n) -> str:
    """Floating-point operations for people ("-" for none)."""
    if not n:
        return "-"
    n = float(n)
    for scale, unit in ((1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"), (1e3, "kFLOP")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} FLOP"


def format_seconds(seconds) -> str:
    """A duration for people ("-" for none or zero)."""
    if not seconds:
        return "-"
    seconds = float(seconds)
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def shape_text(shape) -> str:
    """``8×3×224×224`` ("scalar" for a 0-d shape)."""
    return "×".join(str(s) for s in shape) or "scalar"


def escape(text) -> str:
    """Text made safe inside HTML and plotly hover labels (module names such as "<lambda>" stay readable)."""
    return html.escape(str(text), quote=True)


def is_report(obj) -> bool:
    """Whether ``obj`` is a simulation report (a policy's curves) rather than a bare trace."""
    return hasattr(obj, "trace") and hasattr(obj, "memory_curve")


def trace_of(obj):
    """The :class:`~memsim.core.trace.Trace` behind a trace or a report."""
    if is_report(obj):
        return obj.trace
    if hasattr(obj, "timeline"):
        return obj
    raise InputError(f"expected a memsim Trace or simulation Report, got {type(obj).__name__}")
