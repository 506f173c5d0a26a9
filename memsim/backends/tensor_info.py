"""A tensor as a kernel model sees it: shape, strides and dtype, without data and without torch.

Kernel calls recorded in a trace (:mod:`memsim.backends.calls`) describe their tensor arguments this way, so
that a saved trace can be re-costed for any backend without importing torch.

Example:
    >>> t = TensorInfo((8, 3, 32, 32), (3072, 1024, 32, 1), "float32")
    >>> t.numel, t.nbytes, t.is_contiguous()
    (24576, 98304, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from memsim.core.dtypes import itemsize


@dataclass(frozen=True)
class TensorInfo:
    """Shape, strides (in elements) and dtype name ("float32") of one tensor argument."""

    shape: tuple
    stride: tuple
    dtype: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return itemsize(self.dtype)

    @property
    def nbytes(self) -> int:
        """Bytes of the elements (a dense tensor of this shape)."""
        return self.numel * self.itemsize

    def dim(self) -> int:
        return len(self.shape)

    def is_contiguous(self) -> bool:
        """Row-major contiguous, with torch's rule that size-1 dimensions may have any stride."""
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.stride)):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True

    def with_batch(self, batch: int, dim: int = 0) -> "TensorInfo":
        """The same tensor with ``batch`` elements along ``dim`` (contiguous strides recomputed when the
        tensor was contiguous; otherwise strides scale the same way)."""
        shape = list(self.shape)
        old = shape[dim]
        shape[dim] = int(batch)
        if self.is_contiguous():
            return TensorInfo(tuple(shape), contiguous_strides(shape), self.dtype)
        stride = [s * batch // old if (s >= self.stride[dim] and i != dim and old) else s
                  for i, s in enumerate(self.stride)]
        return TensorInfo(tuple(shape), tuple(stride), self.dtype)

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "stride": list(self.stride), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict) -> "TensorInfo":
        return cls(tuple(data["shape"]), tuple(data["stride"]), str(data["dtype"]))


def contiguous_strides(shape) -> tuple:
    """Row-major strides (elements) of ``shape``."""
    out, acc = [], 1
    for size in reversed(list(shape)):
        out.append(acc)
        acc *= max(int(size), 1)
    return tuple(reversed(out))
