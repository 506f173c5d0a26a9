"""Lossless sparse-bitmap compression of tensors: the Python face of the native codec (``memsim._bitmap``).

A tensor is stored as a 64-byte header, one bit per element saying "non-zero" and the non-zero values packed
in element order. A value is zero only when all of its bits are zero, so ``-0.0``, NaN payloads, ``inf`` and
denormals survive the round trip bit for bit. The encoded size depends only on the element count ``n``, the
number of non-zeros ``nnz`` and the item size::

    encoded_size = 64 + 8 * ceil(n / 64) + nnz * itemsize          (bytes)

The byte layout is documented in ``native/format.h`` and ``native/README.md``.

Example::

    >>> import torch, memsim.codec as codec
    >>> x = torch.relu(torch.randn(4, 1024))
    >>> buf = codec.encode(x)                       # numpy uint8 array (bytes-like)
    >>> len(buf) == codec.encoded_size(x.numel(), codec.count_nonzero(x), x.dtype)
    True
    >>> torch.equal(codec.decode(buf), x)
    True

Speed notes. The kernels are vectorised (AVX-512 and AVX2 on x86, NEON on aarch64, a portable scalar path
everywhere) and release the GIL. Wider is not assumed to be faster: by default (``Isa.AUTO``) the first call
of each operation and element size times every kernel family this CPU runs on a small tensor (well under a
millisecond) and keeps the fastest for the process; :func:`selected_kernels` says what was chosen. Force one
family with ``MEMSIM_CODEC_ISA=scalar|avx2|avx512|neon`` or :func:`set_isa`. Contiguous CPU tensors and numpy
arrays are read without a copy; the native module takes only typed arrays (CPU, C-contiguous, matching dtype),
never addresses. Writing into fresh memory costs page faults, which for large tensors are a sizeable part of
the time: reuse buffers with ``encode(x, out=buf)`` (size it with :func:`max_encoded_size`) and
``decode(buf, out=t)`` when the same shapes come back again and again.

Only the functions of this module are the public API; ``memsim._bitmap`` is an implementation detail.
"""
from __future__ import annotations

import enum
import functools
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from memsim import _bitmap
from memsim.core.dtypes import itemsize
from memsim.core.errors import InputError

HEADER_BYTES: int = _bitmap.HEADER_BYTES
"""Size of the fixed header of every encoding (bytes)."""
FORMAT_VERSION: int = _bitmap.FORMAT_VERSION
"""Version byte written in the header; a decoder rejects other versions."""
MAX_DIMS: int = _bitmap.MAX_DIMS
"""Largest number of dimensions an encoded tensor may have."""
ISA_ENV_VAR = "MEMSIM_CODEC_ISA"


class DType(enum.IntEnum):
    """Element types the codec stores; the value is the dtype code written in the header (byte 5).

    - BOOL, UINT8, INT8: 1 byte
    - INT16, FLOAT16, BFLOAT16: 2 bytes
    - INT32, FLOAT32: 4 bytes
    - INT64, FLOAT64: 8 bytes
    """

    BOOL = 1
    UINT8 = 2
    INT8 = 3
    INT16 = 4
    INT32 = 5
    INT64 = 6
    FLOAT16 = 7
    BFLOAT16 = 8
    FLOAT32 = 9
    FLOAT64 = 10

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return itemsize(self.name.lower())

    @property
    def torch_dtype(self):
        """The matching ``torch.dtype``."""
        import torch

        return getattr(torch, self.name.lower())


_NUMPY_CODES = {
    np.dtype(np.bool_): DType.BOOL, np.dtype(np.uint8): DType.UINT8, np.dtype(np.int8): DType.INT8,
    np.dtype(np.int16): DType.INT16, np.dtype(np.float16): DType.FLOAT16, np.dtype(np.int32): DType.INT32,
    np.dtype(np.float32): DType.FLOAT32, np.dtype(np.int64): DType.INT64, np.dtype(np.float64): DType.FLOAT64,
}
# numpy storage for a decoded tensor: numpy has no bfloat16, so its bits go into uint16.
_NUMPY_STORAGE = {code: dt.type for dt, code in _NUMPY_CODES.items()} | {DType.BFLOAT16: np.uint16}


class Isa(str, enum.Enum):
    """Kernel families (:func:`available_isas` says which this CPU runs) and the automatic choice among them.

    - AUTO: the default; per operation and element size, the family measured fastest on this CPU at first use
    - SCALAR: portable C++, any CPU (the reference)
    - AVX2: x86-64 with AVX2 (Haswell / Zen and later)
    - AVX512: x86-64 with AVX-512 F/BW/VL; 1- and 2-byte elements use VBMI2 kernels on CPUs with VBMI2 (Ice
      Lake, Zen 4 and later) and the AVX2 kernels on the others (Skylake-SP)
    - NEON: aarch64 (Jetson, Raspberry Pi 4/5)
    """

    AUTO = "auto"
    SCALAR = "scalar"
    AVX2 = "avx2"
    AVX512 = "avx512"
    NEON = "neon"


class Op(str, enum.Enum):
    """Codec operations that have one kernel per element size (each chosen separately in ``Isa.AUTO``).

    - ENCODE: :func:`encode`
    - DECODE: :func:`decode`
    - COUNT_NONZERO: :func:`count_nonzero`
    """

    ENCODE = "encode"
    DECODE = "decode"
    COUNT_NONZERO = "count_nonzero"


def dtype_code(dtype: Any) -> DType:
    """The :class:`DType` of a ``torch.dtype``, numpy dtype or name such as ``"float32"``.

    >>> dtype_code("bfloat16")
    <DType.BFLOAT16: 8>
    """
    if isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.").lower()
        name = {"bool_": "bool", "half": "float16", "float": "float32", "double": "float64"}.get(name, name)
        if name.upper() in DType.__members__:
            return DType[name.upper()]
    elif type(dtype).__module__ == "torch":  # a torch.dtype, without importing torch here
        code = _torch_codes().get(dtype)
        if code is not None:
            return code
    else:
        try:
            code = _NUMPY_CODES.get(np.dtype(dtype).newbyteorder("="))
        except TypeError:
            code = None
        if code is not None:
            return code
    raise InputError(f"unsupported dtype {dtype!r}; valid: {', '.join(d.name.lower() for d in DType)}")


@functools.lru_cache(maxsize=1)
def _torch_codes() -> dict:
    torch = _torch()
    return {getattr(torch, code.name.lower()): code for code in DType}


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "layout")


_torch_module = None


def _torch():
    """The torch module, imported on first use (saved traces are re-simulated without torch)."""
    global _torch_module
    if _torch_module is None:
        import torch

        _torch_module = torch
    return _torch_module


def _torch_as_numpy(t: Any) -> np.ndarray:
    """A numpy view of a contiguous CPU tensor's memory (no copy; bfloat16 as int16: numpy has no bfloat16)."""
    torch = _torch()
    if t.requires_grad:
        t = t.detach()
    if t.dtype is torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy()


def _prepare(x: Any) -> tuple[np.ndarray, DType]:
    """A C-contiguous CPU numpy array over ``x``'s memory (a copy only when ``x`` is not already one), and its
    dtype code. The native module accepts nothing else: typed arrays only, no addresses."""
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        x = np.asarray(x)
        code = dtype_code(x.dtype)
        if not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        return x, code
    if _is_torch(x):
        torch = _torch()
        code = _torch_codes().get(x.dtype) or dtype_code(x.dtype)  # the latter raises with the valid choices
        if x.layout is not torch.strided:
            raise InputError(f"only dense (strided) tensors can be encoded, got layout {x.layout}")
        if not x.is_cpu:
            x = x.detach().cpu()
        if x.is_conj() or x.is_neg():
            x = x.resolve_conj().resolve_neg()
        if not x.is_contiguous():
            x = x.contiguous()
        return _torch_as_numpy(x), code
    raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _out_bytes(out: Any) -> tuple[np.ndarray, Any]:
    """A writable 1-D uint8 numpy view of all of ``out``'s bytes, and the same bytes as the type to return.

    ``out`` may have any dtype: it is storage, used byte for byte (a float32 tensor of n elements holds 4n
    bytes of encoding). It must be contiguous and writable: a copy would silently receive the encoding."""
    if _is_torch(out):
        torch = _torch()
        if not out.is_cpu or out.layout is not torch.strided:
            raise ValueError(f"out must be a dense CPU tensor, got {out.device} {out.layout}")
        if not out.is_contiguous():
            raise ValueError("out must be contiguous")
        flat = out.detach() if out.requires_grad else out
        if flat.dim() != 1:
            flat = flat.reshape(-1)
        if flat.dtype is not torch.uint8:
            flat = flat.view(torch.uint8)
        return flat.numpy(), flat
    if isinstance(out, np.ndarray):
        if not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
        if not out.flags.writeable:
            raise TypeError("expected a writable contiguous buffer for out, got a read-only array")
        flat = out.reshape(-1).view(np.uint8)
        return flat, flat
    try:
        view = memoryview(out)
    except TypeError:
        raise TypeError(f"out must be a writable contiguous buffer, got {type(out).__name__}") from None
    if view.readonly:
        raise TypeError(f"expected a writable contiguous buffer for out, got read-only {type(out).__name__}")
    if not view.c_contiguous:
        raise ValueError("out must be C-contiguous")
    view = view.cast("B")
    return np.frombuffer(view, dtype=np.uint8), view


def encode(x: Any, out: Any = None):
    """Encode a tensor or array losslessly.

    Args:
        x: a ``torch.Tensor`` (CPU is read in place; other devices are copied to the CPU first) or a numpy
            array, any shape up to 8 dims, dtype one of :class:`DType`. Non-contiguous input is copied first.
        out: optional writable, contiguous buffer to encode into, e.g. one of :func:`max_encoded_size` bytes
            that is reused between calls: a bytearray, a numpy array or a CPU torch tensor of any dtype (its
            memory is used as bytes).

    Returns:
        Without ``out``: a 1-D numpy uint8 array of exactly ``encoded_size(numel, nnz, dtype)`` bytes
        (bytes-like: ``len()``, buffer protocol, ``bytes(buf)``). With ``out``: the used prefix of ``out``'s
        bytes, as a 1-D uint8 view of the same type (numpy array, torch tensor; a memoryview for other
        buffers), so ``len(result)`` is the encoded size whatever ``out``'s dtype.

    Raises:
        ValueError: ``out`` is too small (the message says how many bytes are needed) or not contiguous.
        TypeError: ``out`` is read-only or not a buffer.

    >>> import numpy as np
    >>> len(encode(np.array([0.0, 1.5, 0.0], dtype=np.float32)))
    76
    """
    arr, code = _prepare(x)
    if out is None:
        return _bitmap.encode(arr, int(code), None)
    target, result = _out_bytes(out)
    size = _bitmap.encode(arr, int(code), target)
    return result[:size]  # bytes, whatever out's dtype


def _as_buffer(buf: Any) -> np.ndarray:
    """A contiguous 1-D uint8 numpy view of an encoded buffer (a copy only if it is not contiguous)."""
    if _is_torch(buf):
        import torch

        if buf.dtype != torch.uint8:
            raise TypeError(f"an encoded tensor must be torch.uint8, got {buf.dtype}")
        buf = buf.detach().cpu().contiguous().reshape(-1).numpy()
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8:
            raise TypeError(f"an encoded array must be uint8, got {buf.dtype}")
        return np.ascontiguousarray(buf.reshape(-1))
    try:
        view = memoryview(buf)
    except TypeError:
        raise TypeError(f"expected a bytes-like encoded buffer, got {type(buf).__name__}") from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


@dataclass(frozen=True)
class EncodedInfo:
    """What an encoded buffer's header says: dtype, shape, non-zero count and total size (bytes)."""

    dtype: DType
    shape: tuple[int, ...]
    nnz: int
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def info(buf: Any) -> EncodedInfo:
    """Read an encoding's header (checks the header and the total length, not the bitmap).

    >>> info(encode(np.zeros((2, 3), np.int16)))
    EncodedInfo(dtype=<DType.INT16: 4>, shape=(2, 3), nnz=0, nbytes=72)
    """
    buf = _as_buffer(buf)
    code, shape, nnz = _bitmap.header(buf)
    return EncodedInfo(DType(code), tuple(shape), nnz, buf.nbytes)


def decode(buf: Any, out: Any = None):
    """Decode an encoding made by :func:`encode` into a ``torch.Tensor`` of the original dtype and shape.

    Args:
        buf: any bytes-like object (bytes, bytearray, memoryview, numpy uint8 array, torch uint8 tensor).
        out: optional preallocated C-contiguous CPU ``torch.Tensor`` (or numpy array) of the encoded dtype
            and shape to write into; avoids allocating (and page-faulting) fresh memory each call.

    Returns:
        ``out`` if given, else a new tensor.

    Raises:
        ValueError: the buffer is truncated, corrupt or not a memsim encoding (the message says why), or
            ``out`` does not match the encoded dtype/shape or is not contiguous. The decoder never reads or
            writes out of bounds, whatever the buffer holds.

    >>> import torch
    >>> decode(encode(torch.tensor([0.0, -0.0, 2.0]))).tolist()
    [0.0, -0.0, 2.0]
    """
    torch = _torch()
    buf = _as_buffer(buf)
    if out is None:
        # Native memory, 64-byte aligned, with transparent huge pages when large (torch.empty has neither and
        # numpy aligns to 16 bytes only): 512x fewer page faults, each page decoded while the kernel's zeroing
        # of it is still in cache (native/codec.cpp, decode_into_fresh).
        arr = _bitmap.decode_new(buf)
        result = torch.from_numpy(arr)
        return result.view(torch.bfloat16) if _bitmap.header(buf)[0] == DType.BFLOAT16 else result
    code, shape, _ = _bitmap.header(buf)
    dtype = DType(code)
    _check_out(out, dtype, tuple(shape))
    _bitmap.decode(buf, _torch_as_numpy(out) if isinstance(out, torch.Tensor) else out)
    return out


def _check_out(out: Any, dtype: DType, shape: tuple[int, ...]) -> None:
    torch = _torch()
    if isinstance(out, torch.Tensor):
        if (out.is_cpu and out.layout is torch.strided and _torch_codes().get(out.dtype) is dtype
                and out.shape == shape and out.is_contiguous()):
            return  # the common case, without building the list of problems
        problems = []
        if out.device.type != "cpu":
            problems.append(f"device {out.device} (must be cpu)")
        if out.layout != torch.strided:
            problems.append(f"layout {out.layout}")
        got_dtype = out.dtype
        contiguous = out.layout == torch.strided and out.is_contiguous()
    elif isinstance(out, np.ndarray):
        problems = [] if out.flags.writeable else ["read-only array"]
        got_dtype = out.dtype
        contiguous = out.flags.c_contiguous
    else:
        raise TypeError(f"out must be a torch.Tensor or numpy.ndarray, got {type(out).__name__}")
    try:
        got_code = dtype_code(got_dtype)
    except InputError:
        got_code = None
    if got_code != dtype:
        problems.append(f"dtype {got_dtype} (encoded: {dtype.name.lower()})")
    if tuple(out.shape) != shape:
        problems.append(f"shape {tuple(out.shape)} (encoded: {shape})")
    if not contiguous:
        problems.append("not contiguous")
    if problems:
        raise ValueError("out does not fit the encoded tensor: " + "; ".join(problems))


def encoded_size(numel: int, nnz: int, dtype: Any) -> int:
    """Exact size in bytes of the encoding of ``numel`` elements of which ``nnz`` are non-zero.

    Equals ``len(encode(x))`` for every ``x`` with that many elements and non-zeros.

    >>> encoded_size(1024, 512, "float32")
    2240
    """
    numel, nnz = int(numel), int(nnz)
    if numel < 0 or not 0 <= nnz <= numel:
        raise InputError(f"need 0 <= nnz <= numel, got numel={numel}, nnz={nnz}")
    return HEADER_BYTES + 8 * ((numel + 63) // 64) + nnz * dtype_code(dtype).itemsize


def max_encoded_size(numel: int, dtype: Any) -> int:
    """Largest possible encoding of ``numel`` elements (all non-zero), in bytes: a safe ``out`` size."""
    return encoded_size(numel, numel, dtype)


def count_nonzero(x: Any) -> int:
    """Number of elements whose bits are not all zero (so ``-0.0`` and NaN count), computed natively.

    >>> count_nonzero(np.array([0.0, -0.0, np.nan], dtype=np.float32))
    2
    """
    arr, _ = _prepare(x)
    return _bitmap.count_nonzero(arr)


# Above this many elements size_curve encodes a representative tensor of this size instead of the full one.
SIZE_CURVE_MAX_NUMEL = 1 << 16


def size_curve(shape: Sequence[int], dtype: Any, sparsities: Iterable[float]) -> list[int]:
    """Encoded sizes (bytes) of a tensor of ``shape``/``dtype`` at each sparsity (fraction of zeros, 0..1).

    Each size comes from encoding, with the native codec, a synthetic tensor with exactly
    ``nnz = numel - round(sparsity * numel)`` non-zeros spread evenly, so it equals
    ``encoded_size(numel, nnz, dtype)``. The format's size depends only on numel and nnz (not on the shape
    or where the non-zeros are), so tensors of more than :data:`SIZE_CURVE_MAX_NUMEL` elements are not
    materialised: a representative tensor of that many elements at the same sparsity is encoded, its size
    checked against :func:`encoded_size`, and the formula gives the full size. Results are cached per
    (numel, dtype, sparsities): the simulator can call this for every tensor of a model for microseconds.

    >>> size_curve((1024,), "float32", [0.0, 0.5, 1.0])
    [4288, 2240, 192]
    """
    shape_t = tuple(int(d) for d in shape)
    if len(shape_t) > MAX_DIMS or any(d < 0 for d in shape_t):
        raise InputError(f"shape must have at most {MAX_DIMS} non-negative dims, got {shape_t}")
    sp = tuple(float(s) for s in sparsities)
    bad = [s for s in sp if not 0.0 <= s <= 1.0]
    if bad:
        raise InputError(f"sparsities must be in [0, 1], got {bad}")
    return list(_size_curve(math.prod(shape_t), dtype_code(dtype), sp))


@functools.lru_cache(maxsize=65536)
def _size_curve(numel: int, code: DType, sparsities: tuple[float, ...]) -> tuple[int, ...]:
    sizes = []
    for s in sparsities:
        nnz = numel - round(s * numel)
        if numel <= SIZE_CURVE_MAX_NUMEL:
            sizes.append(_encode_synthetic(numel, nnz, code))
            continue
        rep_numel = SIZE_CURVE_MAX_NUMEL
        rep_nnz = rep_numel - round(s * rep_numel)
        if _encode_synthetic(rep_numel, rep_nnz, code) != encoded_size(rep_numel, rep_nnz, code):
            raise AssertionError("codec size differs from its documented formula")
        sizes.append(encoded_size(numel, nnz, code))
    return tuple(sizes)


@functools.lru_cache(maxsize=4096)
def _encode_synthetic(numel: int, nnz: int, code: DType) -> int:
    """Encoded size of ``numel`` elements of which exactly ``nnz`` (evenly spread) are non-zero."""
    data = np.zeros(numel, dtype=_NUMPY_STORAGE[code])
    if nnz:
        data[(np.arange(nnz, dtype=np.int64) * numel) // nnz] = 1
    return len(_bitmap.encode(data, int(code)))


def available_isas() -> list[Isa]:
    """Kernel families this CPU can run, widest first (always ends with ``Isa.SCALAR``; never ``Isa.AUTO``)."""
    return [Isa(name) for name in _bitmap.available_isas()]


def isa() -> Isa:
    """``Isa.AUTO`` (the default: per operation and element size, the fastest family measured on this CPU) or
    the family forced by ``MEMSIM_CODEC_ISA`` or :func:`set_isa`."""
    return Isa(_bitmap.isa())


def set_isa(name: str | Isa) -> None:
    """Use the kernels of family ``name`` from now on, or ``"auto"`` (process-wide).

    Raises InputError if unknown or not supported by this CPU."""
    value = name.value if isinstance(name, Isa) else str(name).lower()
    valid = [Isa.AUTO.value, *_bitmap.available_isas()]
    if value not in valid:
        raise InputError(f"codec instruction set {name!r} not available here; valid: {', '.join(valid)}")
    _bitmap.set_isa(value)


ITEMSIZES = (1, 2, 4, 8)


def selected_kernels() -> dict[Op, dict[int, str]]:
    """The kernel that runs now for each operation and element size (bytes), named by its source unit:
    ``"avx512"``, ``"avx512vbmi2"`` (the 1- and 2-byte AVX-512 kernels), ``"avx2"``, ``"neon"`` or
    ``"scalar"``. In ``Isa.AUTO`` mode this runs the first-use measurement of every slot not measured yet
    (a few milliseconds in all).

    >>> sorted(selected_kernels()[Op.ENCODE])
    [1, 2, 4, 8]
    """
    return {op: {e: _bitmap.kernel_unit(op.value, e) for e in ITEMSIZES} for op in Op}


@dataclass(frozen=True)
class Calibration:
    """What ``Isa.AUTO`` measured for one operation and element size at first use: the family chosen and each
    candidate family's throughput (GB/s of dense data, best of several rounds on a small in-cache tensor with
    50% zeros)."""

    op: Op
    itemsize: int
    chosen: Isa
    gbps: dict[Isa, float]


def calibration(op: str | Op, itemsize: int) -> Calibration:
    """The first-use measurement of ``Isa.AUTO`` for ``op`` and ``itemsize`` (runs it if it has not run)."""
    try:
        op = Op(op)
    except ValueError:
        raise InputError(f"unknown codec operation {op!r}; valid: {', '.join(o.value for o in Op)}") from None
    if itemsize not in ITEMSIZES:
        raise InputError(f"itemsize must be one of {ITEMSIZES}, got {itemsize!r}")
    chosen, speeds = _bitmap.calibration(op.value, itemsize)
    return Calibration(op, itemsize, Isa(chosen), {Isa(k): v for k, v in speeds.items()})


def _apply_env_isa() -> None:
    forced = os.environ.get(ISA_ENV_VAR)
    if forced:
        try:
            set_isa(forced)
        except InputError as e:
            warnings.warn(f"{ISA_ENV_VAR}: {e}; using {_bitmap.isa()}", RuntimeWarning, stacklevel=3)


_apply_env_isa()


# --- numcodecs-style codec objects --------------------------------------------------------------------------

class BitmapCodec:
    """The codec as an object with an id and a config, in the style of numcodecs.

    >>> codec = get_codec({"id": "memsim.bitmap"})
    >>> codec.get_config()
    {'id': 'memsim.bitmap', 'version': 1}
    """

    codec_id = "memsim.bitmap"

    def encode(self, buf: Any):
        """Same as :func:`memsim.codec.encode`."""
        return encode(buf)

    def decode(self, buf: Any, out: Any = None):
        """Same as :func:`memsim.codec.decode`."""
        return decode(buf, out)

    def get_config(self) -> dict:
        return {"id": self.codec_id, "version": FORMAT_VERSION}

    @classmethod
    def from_config(cls, config: dict) -> "BitmapCodec":
        version = config.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise InputError(f"BitmapCodec format version {version!r} not supported; valid: {FORMAT_VERSION}")
        return cls()

    def __repr__(self) -> str:
        return "BitmapCodec()"


_REGISTRY: dict[str, type] = {}


def register_codec(cls: type, codec_id: str | None = None) -> None:
    """Make ``get_codec({"id": codec_id, ...})`` build ``cls.from_config(config)``."""
    _REGISTRY[codec_id or cls.codec_id] = cls


def get_codec(config: dict) -> Any:
    """Build a registered codec from its config dict (``{"id": ..., ...}``)."""
    codec_id = config.get("id")
    if codec_id not in _REGISTRY:
        raise InputError(f"unknown codec id {codec_id!r}; valid: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[codec_id].from_config(dict(config))


register_codec(BitmapCodec)
