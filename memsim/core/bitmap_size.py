"""The size of the codec's encoding, as arithmetic: what the simulator needs, without the native extension.

The format (``native/README.md``) is a 64-byte header, one bit per element padded to 64-bit words and the
non-zero values packed, so its size depends only on the element count, the non-zero count and the item
size. ``tests/test_codec*.py`` hold :func:`encoded_size` against ``len(memsim.codec.encode(x))``.

Example:
    >>> encoded_size(1024, 512, 4), encoded_size_at(1024, "float32", 0.5)
    (2240, 2240)
"""
from __future__ import annotations

from memsim.core.dtypes import itemsize

#: Bytes of the header in front of every encoding.
HEADER_BYTES = 64


def encoded_size(numel: int, nnz: int, item_bytes: int) -> int:
    """Bytes of the encoding of ``numel`` elements of ``item_bytes`` each, ``nnz`` of them non-zero."""
    return HEADER_BYTES + 8 * ((int(numel) + 63) // 64) + int(nnz) * int(item_bytes)


def encoded_size_at(numel: int, dtype: str, sparsity: float) -> int:
    """Bytes of the encoding of ``numel`` elements of ``dtype`` with a fraction ``sparsity`` of zeros
    (``nnz = numel - round(sparsity * numel)``, as :func:`memsim.codec.size_curve` counts)."""
    numel = int(numel)
    return encoded_size(numel, numel - round(float(sparsity) * numel), itemsize(dtype))
