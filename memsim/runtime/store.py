"""How one saved activation is stored between forward and backward (used by :mod:`memsim.runtime.hooks`).

Each class below holds one representation of a flat run of elements and can rebuild it exactly:

- :class:`Dense`: the tensor itself (not worth compressing, or not ours to compress).
- :class:`NativeBitmap`: the native sparse-bitmap codec (:mod:`memsim.codec`), CPU tensors.
- :class:`TorchBitmap`: the same bitmap idea written with torch ops, for tensors on any device (CUDA): the
  packed bits and the non-zero values stay on the tensor's device.
- :class:`Bits`: one bit per element plus the two values the elements take (a ReLU result used only as a
  mask by its backward, a dropout mask whose non-zeros are all the same value, a bool mask).
- :class:`NarrowInt`: an integer tensor stored in the smallest integer dtype that holds its value range
  (MaxPool's int64 indices fit in int16 for a 112x112 plane).

"Zero" always means all bits zero (-0.0 and NaN payloads are kept exactly), as in the native codec.
Every buffer is a torch tensor allocated by torch's allocator, so the profiler's memory timeline (the
ground truth of ``memsim bench runtime``) sees the compressed bytes too.

Example:
    >>> x = torch.relu(torch.randn(1000))
    >>> rep = TorchBitmap.encode(x)
    >>> torch.equal(rep.restore(), x), rep.nbytes < x.nbytes
    (True, True)
"""
from __future__ import annotations

import torch

from memsim.core.saved_rules import mask_bytes, narrow_int_name

# bit i of byte k holds element 8k+i (numpy's bitorder="little")
_BIT_WEIGHTS = {}


def _bit_weights(device) -> torch.Tensor:
    key = str(device)
    if key not in _BIT_WEIGHTS:
        _BIT_WEIGHTS[key] = (2 ** torch.arange(8, dtype=torch.int32)).to(torch.uint8).to(device)
    return _BIT_WEIGHTS[key]


_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def as_bits_view(flat: torch.Tensor) -> torch.Tensor:
    """``flat`` (1-D, contiguous) reinterpreted as same-width integers, so "non-zero" means "some bit set"."""
    if flat.dtype == torch.bool:
        return flat.view(torch.uint8)
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    return flat.view(_INT_VIEW[flat.element_size()])


def pack_bool(pred: torch.Tensor, invert: bool = False) -> torch.Tensor:
    """Pack a flat bool tensor (its negation with ``invert``) into ``ceil(n/8)`` uint8 bytes on its device
    (little bit order; padding bits are unspecified)."""
    if pred.device.type == "cpu":
        import numpy as np

        packed = np.packbits(pred.numpy(), bitorder="little")
        if invert:
            np.invert(packed, out=packed)
        # copied into torch-owned memory by numpy: a torch op never sees a numpy-backed tensor, which the
        # profiler's memory timeline would count as a pre-existing storage for the whole step
        out = torch.empty(packed.shape[0], dtype=torch.uint8)
        out.numpy()[:] = packed
        return out
    return _pack_bool_torch(pred.logical_not() if invert else pred)


def _pack_bool_torch(pred: torch.Tensor) -> torch.Tensor:
    """:func:`pack_bool` with torch ops only, on any device (CUDA)."""
    n = pred.numel()
    pad = (-n) % 8
    if pad:
        pred = torch.cat([pred, pred.new_zeros(pad)])
    return (pred.view(-1, 8).view(torch.uint8) * _bit_weights(pred.device)).sum(1, dtype=torch.uint8)


def unpack_bool(bits: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_bool`: a flat bool tensor of ``n`` elements."""
    if bits.device.type == "cpu":
        import numpy as np

        # numpy's unpackbits is ~30x faster than the torch ops below; copied into torch-owned memory (see
        # pack_bool); the numpy temporary lives only for the copy
        out = torch.empty(n, dtype=torch.bool)
        out.numpy().view(np.uint8)[:] = np.unpackbits(bits.numpy(), count=n, bitorder="little")
        return out
    return _unpack_bool_torch(bits, n)


def _unpack_bool_torch(bits: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`unpack_bool` with torch ops only, on any device (CUDA)."""
    return (bits.unsqueeze(1) & _bit_weights(bits.device)).ne(0).view(-1)[:n]


class Dense:
    """The tensor kept as it is. ``nbytes`` counts it although it may be shared with others."""

    kind = "dense"
    __slots__ = ("flat",)

    def __init__(self, flat: torch.Tensor):
        self.flat = flat

    @property
    def nbytes(self) -> int:
        return self.flat.numel() * self.flat.element_size()

    def restore(self) -> torch.Tensor:
        return self.flat


class NativeBitmap:
    """The native codec's encoding of a flat CPU tensor (header + bitmap + packed non-zeros)."""

    kind = "bitmap"
    __slots__ = ("buf",)

    def __init__(self, buf):
        self.buf = buf

    @staticmethod
    def encoded_size(flat: torch.Tensor, nnz: int) -> int:
        from memsim import codec

        return int(codec.encoded_size(flat.numel(), nnz, flat.dtype))

    @classmethod
    def encode(cls, flat: torch.Tensor, nnz: int) -> "NativeBitmap":
        """Encode ``flat`` (``nnz`` non-zeros) into a uint8 torch tensor (torch's allocator, so profiled)."""
        from memsim import codec

        buf = torch.empty(cls.encoded_size(flat, nnz), dtype=torch.uint8)
        codec.encode(flat, out=buf)
        return cls(buf)

    @property
    def nbytes(self) -> int:
        return int(self.buf.numel())

    def restore(self) -> torch.Tensor:
        from memsim import codec

        # decode into memory from torch's allocator (not the codec's numpy default), so the profiler that
        # measures the peak sees the decoded tensor as it sees every other backward allocation
        info = codec.info(self.buf.numpy())
        out = torch.empty(info.numel, dtype=info.dtype.torch_dtype)
        return codec.decode(self.buf.numpy(), out=out)


class TorchBitmap:
    """Bitmap of non-zeros plus packed non-zero values, built with torch ops on the tensor's device."""

    kind = "bitmap"
    __slots__ = ("bits", "values", "numel", "dtype")

    def __init__(self, bits, values, numel, dtype):
        self.bits, self.values, self.numel, self.dtype = bits, values, numel, dtype

    @staticmethod
    def encoded_size(flat: torch.Tensor, nnz: int) -> int:
        return (flat.numel() + 7) // 8 + nnz * flat.element_size()

    @classmethod
    def encode(cls, flat: torch.Tensor, nnz: int | None = None) -> "TorchBitmap":
        nz = as_bits_view(flat).ne(0)
        if flat.is_complex():  # a complex element is non-zero if either half is
            nz = nz.view(-1, 2).any(1)
        return cls(pack_bool(nz), flat[nz], flat.numel(), flat.dtype)

    @property
    def nbytes(self) -> int:
        return self.bits.numel() + self.values.numel() * self.values.element_size()

    def restore(self) -> torch.Tensor:
        out = torch.zeros(self.numel, dtype=self.dtype, device=self.bits.device)
        out[unpack_bool(self.bits, self.numel)] = self.values
        return out


_NUMPY_FLOAT = (torch.float16, torch.float32, torch.float64)


class Bits:
    """One bit per element and the two values elements take: ``where(bit, one, zero)``.

    Lossless for the data when the tensor only holds those two values (a dropout mask); lossless for the
    gradient when the backward uses the tensor only through a comparison (a ReLU result used as
    ``result > 0``), which :mod:`memsim.runtime.hooks` decides per saving node.
    """

    kind = "bits"
    __slots__ = ("bits", "numel", "one", "zero", "dtype")

    def __init__(self, bits, numel, one, zero, dtype):
        self.bits, self.numel, self.one, self.zero, self.dtype = bits, numel, one, zero, dtype

    @staticmethod
    def encoded_size(flat: torch.Tensor) -> int:
        return mask_bytes(flat.numel(), flat.element_size())

    @classmethod
    def encode(cls, pred: torch.Tensor, one: torch.Tensor, zero: torch.Tensor, invert: bool = False) -> "Bits":
        """``pred``: flat bool (negated with ``invert``); ``one``/``zero``: 0-d tensors of the dtype to rebuild."""
        return cls(pack_bool(pred, invert), pred.numel(), one, zero, one.dtype)

    @property
    def nbytes(self) -> int:
        return self.bits.numel() + 2 * self.one.element_size()

    def restore(self) -> torch.Tensor:
        # bits * one is exact when zero is +0.0 and one is finite and positive (1 * v = v, 0 * v = +0.0)
        scalable = (self.dtype.is_floating_point and self.zero.view(_INT_VIEW[self.zero.element_size()]).item() == 0
                    and bool(torch.isfinite(self.one)) and float(self.one) > 0)
        if scalable and self.bits.device.type == "cpu" and self.dtype in _NUMPY_FLOAT:
            import numpy as np

            # one numpy pass from the bits straight into torch-owned memory (about 2x the torch ops)
            out = torch.empty(self.numel, dtype=self.dtype)
            bits01 = np.unpackbits(self.bits.numpy(), count=self.numel, bitorder="little")
            np.multiply(bits01, self.one.numpy(), out=out.numpy(), casting="unsafe")
            return out
        mask = unpack_bool(self.bits, self.numel)
        if scalable:
            return mask.to(self.dtype).mul_(self.one)
        return torch.where(mask, self.one, self.zero)


def narrow_dtype(lo: int, hi: int, itemsize: int, allow_uint16: bool = True):
    """The narrowest integer dtype holding ``[lo, hi]`` that is smaller than ``itemsize`` bytes, or None.
    ``allow_uint16=False`` skips uint16 (few CUDA kernels handle it)."""
    name = narrow_int_name(lo, hi, itemsize, allow_uint16)
    return getattr(torch, name) if name is not None else None


class NarrowInt:
    """An integer tensor stored in a narrower integer dtype (values unchanged)."""

    kind = "narrow-int"
    __slots__ = ("values", "dtype")

    def __init__(self, values, dtype):
        self.values, self.dtype = values, dtype

    @classmethod
    def encode(cls, flat: torch.Tensor, narrow) -> "NarrowInt":
        return cls(flat.to(narrow), flat.dtype)

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size()

    def restore(self) -> torch.Tensor:
        return self.values.to(self.dtype)
