"""dtype names and their sizes, in one place (no torch needed).

memsim names a dtype as torch prints it without the ``torch.`` prefix ("float32", "bfloat16", "int64");
:func:`normalize` also accepts torch dtypes, numpy dtypes and torch's aliases ("float", "half", "long").

Example:
    >>> itemsize("float32"), itemsize("torch.bfloat16"), normalize("half")
    (4, 2, 'float16')
"""
from __future__ import annotations

from memsim.core.errors import InputError

#: Bytes per element of every dtype memsim knows.
ITEMSIZE: dict[str, int] = {
    "bool": 1, "uint8": 1, "int8": 1, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "int16": 2, "uint16": 2, "float16": 2, "bfloat16": 2,
    "int32": 4, "uint32": 4, "float32": 4,
    "int64": 8, "uint64": 8, "float64": 8, "complex64": 8,
    "complex128": 16,
}

_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
            "short": "int16", "cfloat": "complex64", "cdouble": "complex128", "bf16": "bfloat16",
            "fp16": "float16", "fp32": "float32", "fp64": "float64"}

#: Floating-point dtypes (the ones a half-precision policy may convert).
FLOATING = frozenset({"float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"})


def normalize(dtype) -> str:
    """The memsim name of ``dtype`` (a name, a torch dtype or a numpy dtype); unknown names pass through."""
    name = str(dtype).replace("torch.", "").strip().lower()
    return _ALIASES.get(name, name)


def itemsize(dtype) -> int:
    """Bytes per element of ``dtype``; unknown dtypes count as 4 bytes (the common case: float32)."""
    return ITEMSIZE.get(normalize(dtype), 4)


def require(dtype) -> str:
    """:func:`normalize`, raising :class:`memsim.core.errors.InputError` for a dtype memsim does not know."""
    name = normalize(dtype)
    if name not in ITEMSIZE:
        raise InputError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(sorted(ITEMSIZE))}")
    return name
