"""Real training with compressed saved activations (the paper's method, applied for real).

::

    with memsim.compressed_activations(policy="bitmap"):
        loss = loss_fn(model(x))
        loss.backward()

Inside the block every tensor autograd saves for the backward pass goes through
``torch.autograd.graph.saved_tensors_hooks``: when its sparse-bitmap encoding is smaller than the dense
tensor it is stored encoded (native codec on the CPU, torch ops on other devices) and decoded again when
the backward needs it. Loss, gradients and updated weights are bit-identical to training without it.

Policies (:class:`Policy`), all lossless:

- ``bitmap``: the paper's method. A saved tensor is stored as bitmap + packed non-zeros when that is smaller.
- ``bitmap+mask``: also store 1 bit per element where 1 bit is all the backward needs: the result a ReLU saves
  for itself (its backward only asks ``result > 0``), and tensors whose non-zeros all hold the same value
  (CPU dropout's saved noise ``{0, 1/(1-p)}``, bool masks).
- ``bitmap+indices``: also store integer tensors (MaxPool's int64 indices) in the narrowest integer dtype that
  holds their value range.
- ``bitmap+mask+indices``: both extras.

When memory is really saved (read this before expecting a number):

- Only when the dense tensor is freed. The hooks store a compressed copy; the dense storage goes away only when
  nothing else references it. In a plain forward pass an activation dies when the next layers are done with
  it, so the compressed copy replaces it. Tensors the caller keeps (inputs, buffers, a ``features`` output
  they hold on to) stay dense *and* gain a compressed copy: pass them in ``exclude`` (a module's parameters
  and buffers, or tensors).
- Views: a saved view that spans its whole storage (a reshape, a transpose, ``flatten``) is stored as its
  storage, once, shared by every view of it. A view of part of a storage (a slice, a ``chunk``) is stored on
  its own; the base stays alive as long as anything else holds it, so the saving then depends on the base
  being freed.
- Storages are shared: an in-place ReLU's output is saved by the ReLU and by the next convolution; it is
  encoded once (key: storage and version counter) and both nodes decode from the same buffer.
- Parameters (any ``nn.Parameter`` and any leaf tensor that requires grad) are never compressed: they stay
  alive anyway. Tensors smaller than ``min_bytes`` are left alone (buffers such as BatchNorm statistics).
- Encoded bytes are held by the packed objects autograd keeps; they are released when autograd drops them
  (after the node's backward, or when the graph dies), never inside unpack, so ``retain_graph=True`` and
  double backward work.

How the mask policy knows a tensor is used only as a mask: the hooks only see tensors, not the node saving
them, so a candidate (a ReLU's first save of its own result; a fresh clone that an in-place ReLU6 saves for
``hardtanh_backward``) is held for one more pack call, then proven by reading the saving node's saved tensor
back through the unpack hook (it must be this very entry). Anything unproven is stored exactly.

Known limitations:

- Only ReLU (its result) and in-place hardtanh/ReLU6 (its input clone) are recognised as mask-only users;
  LeakyReLU, ELU, threshold with a value, and MaxPool's saved input (used only for its shape) are stored
  exactly. Most ReLU results are also saved by the next convolution, which needs the values: then the
  bitmap is kept and the mask dropped (ResNet, VGG features gain nothing from the mask; MobileNetV2's
  ReLU6 clones are where it pays).
- CUDA tensors are encoded with torch ops on the GPU (no host round trip; ``nonzero`` synchronises the
  stream once per saved tensor). This path is tested only where a GPU is available.
- Saved tensors whose bitmap would not be smaller stay dense: convolution outputs saved by BatchNorm have
  almost no zeros, and they are about half of a ResNet's saved bytes.

Example:
    >>> import torch, memsim
    >>> model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
    >>> with memsim.compressed_activations(policy="bitmap", min_bytes=0, collect_stats=True) as ctx:
    ...     model(torch.randn(128, 64)).sum().backward()
    >>> ctx.stats.compressed_bytes < ctx.stats.dense_bytes
    True
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable

from memsim.core.choices import choose
from memsim.core.errors import InputError
from memsim.core.policy import Policy

#: Default of ``min_bytes``: smaller saved tensors are not worth a Python call each (bytes).
DEFAULT_MIN_BYTES = 16 * 1024


class Encoder(str, Enum):
    """Which encoder builds the bitmap.

    Members:
        AUTO: the native codec for CPU tensors, torch ops for tensors on other devices (CUDA).
        NATIVE: the native codec (:mod:`memsim.codec`); CPU tensors only.
        TORCH: torch ops on the tensor's own device (the CUDA path; also runs on the CPU).
    """

    AUTO = "auto"
    NATIVE = "native"
    TORCH = "torch"

    def __str__(self) -> str:
        return self.value


class Reason(str, Enum):
    """Why a saved tensor was stored the way it was (the ``reason`` of a :class:`SavedRecord`).

    Members:
        COMPRESSED: stored in a smaller representation (see the record's ``kind``).
        NOT_SMALLER: its bitmap would not be smaller than the dense tensor (too few zeros).
        PARAMETER: a parameter (or leaf that requires grad); alive anyway.
        EXCLUDED: listed in ``exclude``.
        SMALL: below ``min_bytes``.
        UNSUPPORTED: sparse/quantized/nested layout or a tensor subclass; left as is.
    """

    COMPRESSED = "compressed"
    NOT_SMALLER = "not smaller"
    PARAMETER = "parameter"
    EXCLUDED = "excluded"
    SMALL = "small"
    UNSUPPORTED = "unsupported"


@dataclass
class SavedRecord:
    """One unique saved storage (counted once however many nodes save it).

    Attributes:
        producer: the autograd node that produced it (``type(t.grad_fn).__name__``, e.g. ``ReluBackward0``),
            or ``"leaf"`` for tensors without one (inputs, parameters, buffers, dropout noise).
        dtype: its dtype as a string.
        dense_bytes: bytes of the dense tensor (bytes).
        stored_bytes: bytes the hooks hold for it (bytes); equal to ``dense_bytes`` when kept dense.
        kind: representation: "dense", "bitmap", "bits", "narrow-int".
        reason: a :class:`Reason` value.
        savers: how many pack calls shared it.
    """

    producer: str
    dtype: str
    dense_bytes: int
    stored_bytes: int
    kind: str
    reason: str
    savers: int = 1


@dataclass
class CompressionStats:
    """What the hooks did, per unique saved storage (filled when ``collect_stats=True``).

    Example:
        >>> import torch, memsim
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
        >>> with memsim.compressed_activations(min_bytes=0, collect_stats=True) as ctx:
        ...     model(torch.randn(32, 64)).sum().backward()
        >>> sorted(ctx.stats.by_producer()["ReluBackward0"])
        ['count', 'dense_bytes', 'dense_kept_bytes', 'stored_bytes']
    """

    records: list[SavedRecord] = field(default_factory=list)

    @property
    def dense_bytes(self) -> int:
        """Bytes of all unique saved tensors, parameters excluded (bytes)."""
        return sum(r.dense_bytes for r in self.records if r.reason != Reason.PARAMETER.value)

    @property
    def compressed_bytes(self) -> int:
        """Bytes held for them under the policy, parameters excluded (bytes)."""
        return sum(r.stored_bytes for r in self.records if r.reason != Reason.PARAMETER.value)

    def by_producer(self) -> dict[str, dict[str, int]]:
        """Per producing op: count, dense bytes, stored bytes, and bytes kept dense (bytes)."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "dense_bytes": 0,
                                                              "stored_bytes": 0, "dense_kept_bytes": 0})
        for r in self.records:
            if r.reason == Reason.PARAMETER.value:
                continue
            row = out[r.producer]
            row["count"] += 1
            row["dense_bytes"] += r.dense_bytes
            row["stored_bytes"] += r.stored_bytes
            if r.kind == "dense":
                row["dense_kept_bytes"] += r.dense_bytes
        return dict(out)

    def by_reason(self) -> dict[str, int]:
        """Dense bytes per :class:`Reason` (bytes), parameters excluded."""
        out: dict[str, int] = defaultdict(int)
        for r in self.records:
            if r.reason != Reason.PARAMETER.value:
                out[r.reason] += r.dense_bytes
        return dict(out)

    def table(self) -> str:
        """A text table of :meth:`by_producer`, largest first (MiB)."""
        from memsim.output.tables import table

        mib = 1024 * 1024
        rows = [[name, r["count"], f"{r['dense_bytes'] / mib:.1f}", f"{r['stored_bytes'] / mib:.1f}",
                 f"{r['dense_kept_bytes'] / mib:.1f}"]
                for name, r in sorted(self.by_producer().items(), key=lambda kv: -kv[1]["dense_bytes"])]
        rows.append(["total", "", f"{self.dense_bytes / mib:.1f}", f"{self.compressed_bytes / mib:.1f}", ""])
        return table(["producer", "count", "dense MiB", "stored MiB", "kept dense MiB"], rows, right={1, 2, 3, 4})


# ---------------------------------------------------------------------------------------------------------
# packing

_EXACT, _MASK = 0, 1
# autograd nodes whose only saved tensor is their own result, used by their backward only through a
# comparison (threshold_backward(grad, result, 0) tests result <= 0)
_MASK_RESULT_NODES = frozenset({"ReluBackward0"})


class _Entry:
    """One stored storage (or view region): an exact representation, or only a mask one."""

    __slots__ = ("exact", "mask", "record", "__weakref__")

    def __init__(self, exact=None, mask=None, record=None):
        self.exact, self.mask, self.record = exact, mask, record

    def restore(self, need: int):
        if self.exact is not None:
            return self.exact.restore()
        return self.mask.restore()

    @property
    def nbytes(self) -> int:
        return (self.exact or self.mask).nbytes


class _Packed:
    """What autograd keeps for one saved tensor: a shared entry and how to rebuild the view."""

    __slots__ = ("entry", "size", "stride", "offset", "need", "whole")

    def __init__(self, entry, size, stride, offset, need, whole):
        self.entry, self.size, self.stride, self.offset = entry, size, stride, offset
        self.need, self.whole = need, whole


def _dense_layout(t) -> bool:
    """True when ``t``'s elements occupy ``numel`` consecutive slots in some dimension order."""
    return _dense_layout_of(t.shape, t.stride())


class _Hooks:
    """The pack/unpack pair of one ``compressed_activations`` block."""

    def __init__(self, policy: Policy, min_bytes: int, encoder: Encoder, exclude_keys: set, stats):
        from torch.multiprocessing.reductions import StorageWeakRef

        self.policy, self.min_bytes, self.encoder = policy, min_bytes, encoder
        self.exclude_keys = exclude_keys
        self.stats = stats
        self._weak = StorageWeakRef
        # (storage pointer, version, dtype, region) -> (weakref to _Entry, StorageWeakRef keeping the
        # pointer from being reused by a new storage while the key exists)
        self.entries: dict = {}
        # id(ReLU node) -> StorageWeakRef of its result: nodes whose own result was already packed
        self.mask_nodes_seen: dict = {}
        self._inserts = 0
        # (entry, candidate, key, flat) of the previous pack, when it may need only a mask (see settle)
        self._pending = None
        self._probe, self._probe_hit = None, False

    # -- pack ---------------------------------------------------------------------------------------
    def pack(self, t):
        import torch

        if self._pending is not None:
            self.settle(t)
        reason = self._skip_reason(t, torch)
        if reason is not None:
            if self.stats is not None:
                self._record_skip(t, reason)
            return t
        storage = t.untyped_storage()
        itemsize = t.element_size()
        whole = (t.storage_offset() == 0 and t.numel() * itemsize == storage.nbytes() and _dense_layout(t))
        if whole:
            key = (storage.data_ptr(), storage.nbytes(), t._version, t.dtype)
        else:
            key = (storage.data_ptr(), storage.nbytes(), t._version, t.dtype, t.storage_offset(),
                   tuple(t.shape), tuple(t.stride()))
        found = self.entries.get(key)
        entry = found[0]() if found is not None else None
        if entry is not None and found[1].expired():
            entry = None
        need = _EXACT
        if entry is None:
            from memsim.runtime.store import Dense

            flat = self._flat(t, whole)
            entry = _Entry()
            candidate = self._mask_candidate(t)
            if candidate is not None:
                # maybe only a mask is needed: the next pack call tells (see settle); until then the dense
                # tensor is held, which costs nothing extra: the op running next still uses it
                entry.exact, kind_reason, need = Dense(flat), ("dense", Reason.NOT_SMALLER), _MASK
                self._pending = (entry, candidate, key, flat)
            else:
                entry.exact, kind_reason = self._encode_exact(flat, t.grad_fn is None)
            self._remember(key, entry, storage)
            if self.stats is not None:
                entry.record = SavedRecord(self._producer(t), str(t.dtype).replace("torch.", ""),
                                           flat.numel() * itemsize, entry.nbytes, kind_reason[0],
                                           kind_reason[1].value)
                self.stats.records.append(entry.record)
        else:
            if entry.exact is None:  # held only as a mask so far; this saver needs the values
                entry.exact, kind_reason = self._encode_exact(self._flat(t, whole), t.grad_fn is None)
                entry.mask = None  # the exact copy answers mask users too
                self._update_record(entry, kind_reason)
            if entry.record is not None:
                entry.record.savers += 1
        return _Packed(entry, tuple(t.shape), tuple(t.stride()), 0, need, whole)

    def settle(self, next_t) -> None:
        """Decide the pending candidate of the previous pack call, knowing the tensor packed next
        (``None`` at the end of the block).

        - A ReLU's own result: if the next pack saves the same storage (the next layer keeps the values
          anyway), encode it exactly now; otherwise 1 bit per element.
        - A fresh clone: in-place hardtanh (ReLU6) saves ``self.clone()`` right before running, and its
          backward only compares it with min/max. The next tensor packed is usually the hardtanh's result
          (or a view of it): its graph leads to a HardtanhBackward0 whose input edge is the clone's input
          edge. Reading that node's saved ``self`` through our unpack hook proves it holds this very entry;
          then 1 bit per element. Otherwise (a user's clone) exact.

        Both proofs go through the saving node itself (:meth:`_saved_by`), so a save made under other hooks
        is never mistaken for ours.
        """
        entry, candidate, key, flat = self._pending
        self._pending = None
        kind, detail = candidate
        mask = None
        if kind == "relu":
            same = (next_t is not None and next_t.untyped_storage().data_ptr() == key[0]
                    and next_t._version == key[2])
            if not same and self._saved_by(detail, "_saved_result", entry):
                mask = self._relu_mask(flat)
        elif next_t is not None:
            node = _find_hardtanh(next_t.grad_fn, detail)
            if node is not None and self._saved_by(node, "_saved_self", entry):
                mask = self._hardtanh_mask(flat, node._saved_min_val, node._saved_max_val)
        if mask is not None:
            entry.mask, entry.exact = mask, None
            self._update_record(entry, ("bits", Reason.COMPRESSED))
        else:
            entry.exact, kind_reason = self._encode_exact(flat, False)
            self._update_record(entry, kind_reason)

    def _saved_by(self, node, attribute: str, entry) -> bool:
        """True when ``node``'s saved tensor ``attribute`` is held by ``entry`` (reading the attribute calls
        the unpack hook of whoever packed it; ours answers with an empty tensor and notes the entry). This
        rules out a save made under other hooks (a nested block, the user's own saved_tensors_hooks)."""
        self._probe, self._probe_hit = entry, False
        try:
            getattr(node, attribute)
        except RuntimeError:  # already freed by a backward
            return False
        finally:
            self._probe = None
        return self._probe_hit

    @staticmethod
    def _update_record(entry, kind_reason) -> None:
        if entry.record is not None:
            entry.record.stored_bytes = entry.nbytes
            entry.record.kind, entry.record.reason = kind_reason[0], kind_reason[1].value

    def _mask_candidate(self, t):
        """("relu", None) for a ReLU saving its own result, ("clone", input node) for a fresh clone that an
        in-place hardtanh may be saving, else None. Only under a mask policy, floating tensors, no views."""
        if not self.policy.uses_mask or t._base is not None or not t.is_floating_point():
            return None
        node = t.grad_fn
        name = type(node).__name__ if node is not None else ""
        if name in _MASK_RESULT_NODES:
            return ("relu", node) if self._is_own_relu_result(t) else None
        if name == "CloneBackward0" and t._version == 0 and node.next_functions:
            source = node.next_functions[0][0]
            if source is not None:
                return ("clone", source)
        return None

    def _skip_reason(self, t, torch):
        base = t._base if t._base is not None else t
        if isinstance(base, torch.nn.Parameter) or (base.is_leaf and base.requires_grad):
            return Reason.PARAMETER  # a parameter or a view of one (Linear saves weight.t())
        if (type(t) is not torch.Tensor or t.layout != torch.strided or t.is_quantized or t.is_nested
                or t.is_meta or t.numel() == 0):
            return Reason.UNSUPPORTED
        if self.encoder is Encoder.NATIVE and t.device.type != "cpu":
            return Reason.UNSUPPORTED
        if t.numel() * t.element_size() < self.min_bytes:
            return Reason.SMALL
        if self.exclude_keys and t.untyped_storage().data_ptr() in self.exclude_keys:
            return Reason.EXCLUDED
        return None

    def _record_skip(self, t, reason):
        # parameters are saved by every layer that uses them; count each storage once
        key = ("skip", t.untyped_storage().data_ptr(), t._version)
        found = self.entries.get(key)
        if found is not None and found[0]() is not None:
            found[0]().record.savers += 1
            return
        nbytes = t.numel() * t.element_size()
        entry = _Entry(record=SavedRecord(self._producer(t), str(t.dtype).replace("torch.", ""), nbytes,
                                          nbytes, "dense", reason.value))
        self.stats.records.append(entry.record)
        # keep the marker alive for the block (records only; no tensor is held)
        self.entries[key] = (lambda e=entry: e, _NeverExpired)

    @staticmethod
    def _producer(t) -> str:
        return type(t.grad_fn).__name__ if t.grad_fn is not None else f"leaf {str(t.dtype).replace('torch.', '')}"

    @staticmethod
    def _flat(t, whole: bool):
        if whole:
            # the whole storage as one flat run of t.dtype, shared by every view that spans it
            return t.detach().as_strided((t.numel(),), (1,), 0)
        return t.detach().reshape(-1).contiguous() if not t.is_contiguous() else t.detach().reshape(-1)

    def _is_own_relu_result(self, t) -> bool:
        """True when this pack is the ReLU node saving its own result (the first pack of a tensor whose
        grad_fn is that node: autograd saves a result right after creating the node, before any other op
        can see the tensor). Later packs of the same tensor come from other ops and need exact values."""
        node = t.grad_fn
        seen = self.mask_nodes_seen.get(id(node))
        if seen is not None and not seen.expired():
            return False
        self.mask_nodes_seen[id(node)] = self._weak(t.untyped_storage())
        self._inserts += 1
        if self._inserts % 4096 == 0:  # forget nodes whose result storage died (their tensors are gone)
            self.mask_nodes_seen = {k: v for k, v in self.mask_nodes_seen.items() if not v.expired()}
        return True

    def _remember(self, key, entry, storage):
        import weakref

        entries = self.entries

        def forget(_ref, key=key):
            found = entries.get(key)
            if found is not None and found[0] is _ref:
                del entries[key]

        entries[key] = (weakref.ref(entry, forget), self._weak(storage))

    # -- encoders --------------------------------------------------------------------------------------
    def _use_native(self, flat) -> bool:
        if self.encoder is Encoder.AUTO:
            return (flat.device.type == "cpu" and _native_codec_available()
                    and str(flat.dtype).replace("torch.", "") in _NATIVE_DTYPES)
        return self.encoder is Encoder.NATIVE and str(flat.dtype).replace("torch.", "") in _NATIVE_DTYPES

    @staticmethod
    def _relu_mask(flat):
        import torch

        from memsim.runtime.store import Bits

        # bit = not (x <= 0): exactly the elements threshold_backward lets the gradient through (NaN too)
        return Bits.encode(flat.le(0), torch.ones((), dtype=flat.dtype, device=flat.device),
                           torch.zeros((), dtype=flat.dtype, device=flat.device), invert=True)

    @staticmethod
    def _hardtanh_mask(flat, lo: float, hi: float):
        """Bits for hardtanh_backward, which zeroes the gradient where ``x <= lo or x >= hi``; None when
        no value of the dtype lies strictly between ``lo`` and ``hi`` to stand for "inside"."""
        import torch

        from memsim.runtime.store import Bits

        zero = torch.tensor(lo, dtype=flat.dtype, device=flat.device)
        one = torch.tensor((lo + hi) / 2, dtype=flat.dtype, device=flat.device)
        if not (float(zero) == lo and lo < float(one) < hi):
            return None
        outside = flat.le(lo).logical_or_(flat.ge(hi))
        return Bits.encode(outside, one, zero, invert=True)

    def _encode_exact(self, flat, source_is_leaf: bool = True):
        """The smallest exact representation of ``flat`` allowed by the policy, and (kind, reason)."""
        import torch

        from memsim.runtime import store as rs

        nbytes = flat.numel() * flat.element_size()
        is_int = not (flat.is_floating_point() or flat.is_complex() or flat.dtype == torch.bool)
        if is_int and self.policy.uses_indices:
            lo, hi = torch.aminmax(flat)
            narrow = rs.narrow_dtype(int(lo), int(hi), flat.element_size(), flat.device.type == "cpu")
            if narrow is not None:
                return rs.NarrowInt.encode(flat, narrow), ("narrow-int", Reason.COMPRESSED)
        native = self._use_native(flat)
        bits = rs.as_bits_view(flat)
        if native:
            from memsim import codec

            nnz = int(codec.count_nonzero(flat))
        else:
            nnz = int(bits.count_nonzero())
            if flat.is_complex():
                nnz = int(bits.view(-1, 2).ne(0).any(1).count_nonzero())
        if self.policy.uses_mask and nnz > 0 and not flat.is_complex() and source_is_leaf:
            # only tensors made outside autograd (dropout noise, masks) are tried: a layer's output is
            # never two-valued in practice, and the test costs two passes over the data
            two_valued = self._two_valued(flat, bits, nnz)
            if two_valued is not None:
                return two_valued, ("bits", Reason.COMPRESSED)
        encoder = rs.NativeBitmap if native else rs.TorchBitmap
        if encoder.encoded_size(flat, nnz) >= nbytes:
            return rs.Dense(flat), ("dense", Reason.NOT_SMALLER)
        return encoder.encode(flat, nnz), ("bitmap", Reason.COMPRESSED)

    @staticmethod
    def _two_valued(flat, bits, nnz):
        """Bits when every non-zero element of ``flat`` has the same bit pattern (a dropout mask), else None."""
        import torch

        from memsim.runtime.store import Bits

        lo, hi = torch.aminmax(bits)
        value = hi if int(hi) != 0 else lo
        if int(bits.eq(value).count_nonzero()) != nnz:
            return None
        one = bits[:0].new_full((), int(value)).view(flat.dtype) if flat.dtype != torch.bool \
            else torch.ones((), dtype=torch.bool, device=flat.device)
        return Bits.encode(bits.ne(0), one, torch.zeros((), dtype=flat.dtype, device=flat.device))

    # -- unpack -----------------------------------------------------------------------------------------
    def unpack(self, packed):
        import torch

        if self._probe is not None:  # a _saved_by question, not a backward
            self._probe_hit = self._probe_hit or (isinstance(packed, _Packed) and packed.entry is self._probe)
            return torch.empty(0)
        if isinstance(packed, torch.Tensor):
            return packed
        flat = packed.entry.restore(packed.need)
        if packed.whole:
            return flat.as_strided(packed.size, packed.stride, packed.offset)
        out = flat.view(packed.size)
        if tuple(out.stride()) != packed.stride and _dense_layout_of(packed.size, packed.stride):
            out = torch.empty_strided(packed.size, packed.stride, dtype=out.dtype, device=out.device).copy_(out)
        return out


def _find_hardtanh(start, source, depth: int = 3):
    """A HardtanhBackward0 node whose input edge is ``source``, searched from ``start`` back through at
    most ``depth`` levels of the graph (the next layer may save a view of the hardtanh's result)."""
    frontier = [start]
    for _ in range(depth):
        nxt = []
        for node in frontier:
            if node is None:
                continue
            if (type(node).__name__ == "HardtanhBackward0" and node.next_functions
                    and node.next_functions[0][0] is source):
                return node
            nxt.extend(f for f, _ in node.next_functions[:2])
        frontier = nxt[:8]
    return None


def _dense_layout_of(size, stride) -> bool:
    """True when a tensor of this size and stride fills ``numel`` consecutive slots in some order."""
    dims = sorted((st, sz) for sz, st in zip(size, stride) if sz != 1)
    expected = 1
    for st, sz in dims:
        if st != expected:
            return False
        expected *= sz
    return True


class _NeverExpired:
    @staticmethod
    def expired() -> bool:
        return False


# ---------------------------------------------------------------------------------------------------------
# public face

class compressed_activations:
    """Context manager: inside it, autograd's saved tensors are stored compressed (see module docstring).

    Args:
        policy: a :class:`Policy` or its value: "bitmap" (default), "bitmap+mask", "bitmap+indices",
            "bitmap+mask+indices".
        min_bytes: saved tensors smaller than this are left alone (bytes; default 16 KiB).
        encoder: a :class:`Encoder` or its value: "auto" (default), "native", "torch".
        exclude: tensors or modules whose storages must never be compressed (e.g. the model, so its
            buffers are skipped; the inputs you keep alive anyway).
        collect_stats: fill :attr:`stats` (:class:`CompressionStats`) with one record per unique saved
            storage; off by default because records accumulate over a long block.

    Raises :class:`memsim.core.errors.InputError` for an unknown policy/encoder or a negative ``min_bytes``.
    Nested blocks work (the innermost one applies); leaving a block, normally or by an exception, removes
    exactly its hooks.

    Example:
        >>> import torch, memsim
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
        >>> with memsim.compressed_activations(policy="bitmap+mask", exclude=model):
        ...     model(torch.randn(32, 64)).sum().backward()
    """

    def __init__(self, policy: Any = Policy.BITMAP, min_bytes: int = DEFAULT_MIN_BYTES,
                 encoder: Any = Encoder.AUTO, exclude: Iterable | Any = None, collect_stats: bool = False):
        self.policy = choose(Policy, policy, "policy")
        if not self.policy.in_runtime:
            raise InputError(f"policy {self.policy.value!r} is a what-if of the simulator only; "
                             "compressed_activations applies: "
                             + ", ".join(p.value for p in Policy if p.in_runtime))
        self.encoder = choose(Encoder, encoder, "encoder")
        if not isinstance(min_bytes, int) or isinstance(min_bytes, bool) or min_bytes < 0:
            raise InputError(f"min_bytes must be a non-negative integer number of bytes, got {min_bytes!r}")
        self.min_bytes = min_bytes
        self.exclude = exclude
        self.stats: CompressionStats | None = CompressionStats() if collect_stats else None
        self._hooks_cm = None

    def _exclude_keys(self) -> set:
        import torch

        keys: set = set()
        if self.exclude is None:
            return keys
        items = [self.exclude] if isinstance(self.exclude, (torch.Tensor, torch.nn.Module)) else self.exclude
        for item in items:
            if isinstance(item, torch.nn.Module):
                for t in (*item.parameters(), *item.buffers()):
                    keys.add(t.untyped_storage().data_ptr())
            elif isinstance(item, torch.Tensor):
                keys.add(item.untyped_storage().data_ptr())
            else:
                raise InputError(f"exclude must hold tensors or modules, got {type(item).__name__}")
        return keys

    def __enter__(self) -> "compressed_activations":
        import torch

        if self._hooks_cm is not None:
            raise RuntimeError("this compressed_activations block is already active; make a new one")
        _require_native_codec(self.encoder)
        hooks = _Hooks(self.policy, self.min_bytes, self.encoder, self._exclude_keys(), self.stats)
        self._hooks = hooks
        self._hooks_cm = torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack)
        self._hooks_cm.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        cm, self._hooks_cm = self._hooks_cm, None
        hooks, self._hooks = self._hooks, None
        try:
            if hooks._pending is not None:
                hooks.settle(None)
        finally:
            cm.__exit__(*exc)


def _native_codec_available() -> bool:
    """True when :mod:`memsim.codec` (the native extension) imports; "auto" uses torch ops otherwise."""
    global _NATIVE_OK
    if _NATIVE_OK is None:
        try:
            from memsim import codec

            _NATIVE_OK = all(hasattr(codec, f) for f in ("encode", "decode", "encoded_size", "count_nonzero"))
        except ImportError:
            _NATIVE_OK = False
    return _NATIVE_OK


_NATIVE_OK: bool | None = None
#: dtypes the native codec encodes; others (complex, uint16...) use the torch-ops bitmap
_NATIVE_DTYPES = frozenset({"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16",
                            "float32", "float64"})


def _require_native_codec(encoder: Encoder) -> None:
    if encoder is Encoder.NATIVE and not _native_codec_available():
        raise InputError("encoder 'native' needs the native codec (memsim.codec), which is not available; "
                         "valid choices: auto, native, torch")
