"""Byte sizes: parse what users type ("3.5GiB", "512 MB", "10%") and print sizes readably.

Example:
    >>> parse_size("3.5GiB")
    3758096384
    >>> format_bytes(3758096384)
    '3.50 GiB'
"""
from __future__ import annotations

import re

from memsim.core.errors import InputError

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int | float) -> int:
    """Bytes in a size string: a number with an optional unit (B, KB/MB/GB/TB = powers of 1000,
    KiB/MiB/GiB/TiB = powers of 1024; case-insensitive). Raises InputError naming the valid units."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise InputError(f"bad size {text!r}: expected a number and a unit such as '4GB', '3.5GiB' or '512MiB'")
        value, unit = float(m.group(1)), m.group(2).lower()
    if unit not in _UNITS:
        raise InputError(f"bad size {text!r}: unknown unit {unit!r}; valid units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB")
    size = value * _UNITS[unit]
    if size <= 0:
        raise InputError(f"bad size {text!r}: must be greater than zero")
    return int(round(size))


def parse_fraction(text: str | float) -> float:
    """A fraction in [0, 1) from "10%", "0.1" or 0.1. Raises InputError outside that range."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise InputError(f"bad fraction {text!r}: expected a number such as '10%' or '0.1'") from None
    if not 0.0 <= value < 1.0:
        raise InputError(f"bad fraction {text!r}: must be at least 0% and below 100%")
    return value


def format_bytes(n: float, binary: bool = True) -> str:
    """A byte count for people: ``format_bytes(1536) == '1.50 KiB'`` (``binary=False``: powers of 1000)."""
    base, units = (1024, ["B", "KiB", "MiB", "GiB", "TiB"]) if binary else (1000, ["B", "KB", "MB", "GB", "TB"])
    sign = "-" if n < 0 else ""
    n = abs(float(n))
    for unit in units:
        if n < base or unit == units[-1]:
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.2f} {unit}"
        n /= base
    raise AssertionError("unreachable")


def count_of(n: int, noun: str) -> str:
    """``n`` followed by ``noun``, plural unless ``n`` is 1 (English nouns that take an 's').

    >>> count_of(1, "thread"), count_of(4, "thread")
    ('1 thread', '4 threads')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
