"""Real training with compressed saved activations (the paper's method, applied for real).

::

    with memsim.compressed_activations(policy="bitmap"):
        loss = loss_fn(model(x))
        loss.backward()

Inside the block every tensor autograd saves for the backward pass goes through
``torch.autograd.graph.saved_tensors_hooks``: when its sparse-bitmap encoding is smaller than the dense
tensor it is stored encoded (native codec on the CPU, torch ops on other devices) and decoded again when
the backward needs it. Loss, gradients and updated weights are bit-identical to training without it.

Policies (:class:`Policy`), all lossless, bit-identical:

- ``bitmap``: the paper's method. A saved tensor is stored as bitmap + packed non-zeros when that is smaller.
- ``bitmap+mask``: also store 1 bit per element where 1 bit is all the backward needs: the result a ReLU saves
  for itself (its backward only asks ``result > 0``), and tensors whose non-zeros all hold the same value
  (CPU dropout's saved noise ``{0, 1/(1-p)}``, bool masks).
- ``bitmap+indices``: also store integer tensors (MaxPool's int64 indices) in the narrowest integer dtype that
  holds their value range.
- ``bitmap+mask+indices``: both extras.
- ``recompute``: saved outputs of cheap ops are not stored at all; backward runs the op again (below). What is
  still stored goes through ``bitmap+mask+indices``.

How ``recompute`` works (:mod:`memsim.runtime.recompute`): the block also enters a ``TorchDispatchMode`` that
records, for each call of a cheap op (:data:`memsim.core.saved_rules.RECOMPUTABLE_OPS`: ReLU, ReLU6/hardtanh,
GELU, batch norm's output, residual add, max-pool values and indices, the clone an in-place ReLU6 saves), a
recipe keyed by the output's storage and version (an in-place op's recipe refers to the recipe of the version
it overwrote). When a saved tensor has a recipe whose inputs are all kept anyway (stored by these hooks: a
convolution output batch norm saved, recomputed themselves, or parameters), only the recipe is kept (0 bytes;
record kind ``"recompute"``), holding the entries of its inputs. Backward reruns the ops under ``no_grad``,
in-place ones in place on the fresh intermediate; batch norm applies the batch statistics the forward saved
and never touches the running ones (they are updated once, by the forward; its output is bit-identical). A
residual chain (ResNet block outputs through the adds of a stage) is rebuilt from the stage's first block,
deepest input first; the last two recomputed results are cached, each until its last saver has unpacked it.

Limits of ``recompute``: an input nobody saved (a convolution output followed only by a ReLU, as in VGG and
SqueezeNet) leaves the result stored; ops outside the rules (SiLU, hardswish, LayerNorm) are stored; inputs
smaller than ``min_bytes`` are not entries, so their users are stored; an in-place write to a dense-stored input
is caught only inside the block (the dependent tensor is then stored before the write); a long residual
chain costs extra elementwise work (quadratic in the blocks of a stage, halved by the cache); every op of the
block goes through the dispatch mode (Python, a few microseconds each).

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
from memsim.core.saved_rules import MASK_INPUT_CLONE_NODES, MASK_RESULT_NODES

#: Default of ``min_bytes``: smaller saved tensors are not worth a Python call each (bytes).
DEFAULT_MIN_BYTES = 16 * 1024
#: Policy recompute: how many recomputed results are kept for the next unpack: the last one asked for (a
#: ReLU result is read by the next convolution's backward and then by the ReLU's) and the last one computed as
#: another's input (a residual chain asks for block k, then k-1).
_CACHE_SIZE = 2


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
        PLANNED: kept dense because the plan (``compressed_activations(plan)``) says so.
    """

    COMPRESSED = "compressed"
    NOT_SMALLER = "not smaller"
    PARAMETER = "parameter"
    EXCLUDED = "excluded"
    SMALL = "small"
    UNSUPPORTED = "unsupported"
    PLANNED = "planned dense"


@dataclass
class SavedRecord:
    """One unique saved storage (counted once however many nodes save it).

    Attributes:
        producer: the autograd node that produced it (``type(t.grad_fn).__name__``, e.g. ``ReluBackward0``),
            or ``"leaf"`` for tensors without one (inputs, parameters, buffers, dropout noise).
        dtype: its dtype as a string.
        dense_bytes: bytes of the dense tensor (bytes).
        stored_bytes: bytes the hooks hold for it (bytes); equal to ``dense_bytes`` when kept dense.
        kind: representation: "dense", "bitmap", "bits", "narrow-int", or "recompute" (not stored at all:
            backward runs the cheap op that made it again; ``stored_bytes`` 0).
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

    @property
    def recomputed_count(self) -> int:
        """Unique saved storages not stored at all but recomputed in backward (policy ``recompute``)."""
        return sum(1 for r in self.records if r.kind == "recompute")

    @property
    def recomputed_bytes(self) -> int:
        """Dense bytes of the saved storages recomputed in backward instead of stored (bytes)."""
        return sum(r.dense_bytes for r in self.records if r.kind == "recompute")

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


class _Entry:
    """One stored storage (or view region): an exact representation, or only a mask one."""

    __slots__ = ("exact", "mask", "record", "packs", "unpacks", "__weakref__")

    def __init__(self, exact=None, mask=None, record=None):
        self.exact, self.mask, self.record = exact, mask, record
        # pack calls that returned this entry, and unpack calls so far: once every saver has unpacked, a
        # recomputed result is not asked for again in this backward and leaves the cache
        self.packs, self.unpacks = 1, 0

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

    def __init__(self, policy: Policy, min_bytes: int, encoder: Encoder, exclude_keys: set, stats,
                 recorder=None, plan=None):
        from collections import OrderedDict

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
        # policy recompute: the RecipeRecorder of the block, and the last recomputed results
        # (id(Recomputed) -> (weakref to it, op output)), at most _CACHE_SIZE, dropped when the entry dies
        self.recorder = recorder
        # a plan: (PlanRules, ProducerMap): the storage kind chosen per producer of a saved tensor
        self.plan = plan
        self._cache: OrderedDict = OrderedDict()
        self._recompute_depth = 0

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

            entry = _Entry()
            planned = self.plan[0].kind(self.plan[1].of(t)) if self.plan is not None else None
            # policy recompute: an output of a cheap op whose inputs are all kept anyway is not stored
            recomputed = (self._recomputed(t, whole) if self.recorder is not None and planned in (None, "recompute")
                          else None)
            if recomputed is None:
                flat = self._flat(t, whole)
                candidate = self._mask_candidate(t) if planned != "dense" else None
            if planned == "dense":  # an entry all the same: recomputed tensors may be rebuilt from it
                entry.exact, kind_reason = Dense(flat), ("dense", Reason.PLANNED)
            elif recomputed is not None:
                entry.exact, kind_reason = recomputed, ("recompute", Reason.COMPRESSED)
                self._watch_dense_inputs(entry)
            elif candidate is not None:
                # maybe only a mask is needed: the next pack call tells (see settle); until then the dense
                # tensor is held, which costs nothing extra: the op running next still uses it
                entry.exact, kind_reason, need = Dense(flat), ("dense", Reason.NOT_SMALLER), _MASK
                self._pending = (entry, candidate, key, flat)
            else:
                entry.exact, kind_reason = self._encode_exact(flat, t.grad_fn is None)
            self._remember(key, entry, storage)
            if self.stats is not None:
                entry.record = SavedRecord(self._producer(t), str(t.dtype).replace("torch.", ""),
                                           t.numel() * itemsize, entry.nbytes, kind_reason[0],
                                           kind_reason[1].value)
                self.stats.records.append(entry.record)
        else:
            if entry.exact is None:  # held only as a mask so far; this saver needs the values
                entry.exact, kind_reason = self._encode_exact(self._flat(t, whole), t.grad_fn is None)
                entry.mask = None  # the exact copy answers mask users too
                self._update_record(entry, kind_reason)
            if entry.record is not None:
                entry.record.savers += 1
            entry.packs += 1
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
        from memsim.runtime.checkpointing import probing

        self._probe, self._probe_hit = entry, False
        try:
            with probing():   # a save held by a checkpointed block must not run the block again to answer
                getattr(node, attribute)
        except RuntimeError:  # already freed by a backward, or held by checkpoint (ProbeAborted)
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
        if name in MASK_RESULT_NODES:
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

    # -- recompute (policy recompute; memsim.runtime.recompute) ----------------------------------------
    def pack_quietly(self, t):
        """:meth:`pack` with the recorder off, so the hooks' own ops are never taken for the model's."""
        recorder = self.recorder
        recorder.recording, was = False, recorder.recording
        try:
            return self.pack(t)
        finally:
            recorder.recording = was

    def _recomputed(self, t, whole: bool):
        """A :class:`~memsim.runtime.recompute.Recomputed` for ``t`` when a recipe made its storage version and
        every tensor the recipe needs is kept anyway, else None."""
        from memsim.runtime.recompute import Recomputed, build_plan

        recipe = self.recorder.lookup(t)
        if recipe is None:
            return None
        plan = build_plan(recipe, self._find_entry)
        return Recomputed(self, plan, t, whole) if plan is not None else None

    def _watch_dense_inputs(self, entry) -> None:
        """A dense-stored input of ``entry``'s plan shares its storage with the live tensor: if an op is about
        to overwrite it, store ``entry`` after all (recomputed now, while the inputs still hold their values)."""
        import weakref

        from memsim.runtime.recompute import plan_leaves
        from memsim.runtime.store import Dense

        for leaf in plan_leaves(entry.exact.plan):
            rep = leaf.entry.exact
            if isinstance(rep, Dense):
                flat = rep.flat
                key = (flat.untyped_storage().data_ptr(), flat.untyped_storage().nbytes(), leaf.version,
                       flat.dtype)
                ref = weakref.ref(entry)
                self.recorder.watch(key, ref, lambda ref=ref: self._store_instead(ref()))

    def _store_instead(self, entry) -> None:
        """Turn a recomputed ``entry`` (if still alive and recomputed) into a stored one."""
        if entry is None or entry.exact is None or entry.exact.kind != "recompute":
            return
        rep = entry.exact
        flat = rep.restore()
        self._cache.pop(id(rep), None)
        entry.exact, kind_reason = self._encode_exact(flat, False)
        self._update_record(entry, kind_reason)

    def _find_entry(self, ref):
        """(entry, whole) of a live entry holding the exact values of ``ref``'s storage version: stored (a
        dense one only while its storage still has that version) or recomputed itself; else (None, False)."""
        from memsim.runtime.store import Dense

        for key, whole in ((ref.key, True), ((*ref.key, ref.offset, ref.size, ref.stride), False)):
            found = self.entries.get(key)
            entry = found[0]() if found is not None else None
            # the very storage the op read (its pointer may belong to a new storage by now; a recomputed or
            # encoded entry outlives its storage), and exact values (not only a mask)
            if entry is None or found[1] != ref.storage or entry.exact is None:
                continue
            if isinstance(entry.exact, Dense) and entry.exact.flat._version != ref.key[2]:
                continue
            return entry, whole
        return None, False

    def _restore_leaf(self, leaf):
        """The tensor a plan's :class:`~memsim.runtime.recompute.EntryLeaf` stands for (read only)."""
        from memsim.runtime.recompute import Modified
        from memsim.runtime.store import Dense

        rep = leaf.entry.exact
        if rep.kind == "recompute":
            out = self.recompute(rep)
            if rep.whole:
                return out.as_strided(leaf.size, leaf.stride, leaf.offset)
            return out.as_strided(rep.size, rep.stride, rep.offset)
        if isinstance(rep, Dense) and rep.flat._version != leaf.version:
            raise Modified("memsim recompute: a saved tensor needed to recompute another one was modified by an "
                           "inplace operation before backward")
        return self.unpack(_Packed(leaf.entry, leaf.size, leaf.stride, leaf.offset, _EXACT, leaf.whole))

    def recompute(self, rep):
        """The output of ``rep``'s op, run again (or the cached result of its last run)."""
        import weakref

        import torch

        from memsim.runtime.recompute import run_plan

        cache = self._cache
        hit = cache.get(id(rep))
        if hit is not None and hit[0]() is rep:
            cache.move_to_end(id(rep))
            return hit[2]
        recorder = self.recorder
        was = recorder.recording if recorder is not None else False
        if recorder is not None:
            recorder.recording = False
        # a result computed as another one's input (the previous block of a residual chain) is asked for
        # next; it gets its own cache slot so that the tensors in between do not push it out
        inner = self._recompute_depth > 0
        self._recompute_depth += 1
        try:
            with torch.no_grad():
                out = run_plan(rep.plan, self._restore_leaf)
        finally:
            self._recompute_depth -= 1
            if recorder is not None:
                recorder.recording = was

        def evict(_ref, key=id(rep)):
            found = cache.get(key)
            if found is not None and found[0] is _ref:
                del cache[key]

        for key, (_, was_inner, _) in list(cache.items()):   # one slot for each kind (_CACHE_SIZE in all)
            if was_inner == inner:
                del cache[key]
        cache[id(rep)] = (weakref.ref(rep, evict), inner, out)
        return out

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
        if (self.policy.uses_mask and nnz > 0 and not flat.is_complex() and source_is_leaf
                and rs.Bits.encoded_size(flat) < nbytes):
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
        if self._pending is not None:  # the backward has begun: no later pack can tell about the candidate
            self.settle(None)
        if isinstance(packed, torch.Tensor):
            return packed
        entry = packed.entry
        rep = entry.exact
        if rep is not None and rep.kind == "recompute":
            out = self.recompute(rep).as_strided(packed.size, packed.stride, 0 if rep.whole else rep.offset)
            entry.unpacks += 1
            if entry.unpacks >= entry.packs:   # its last saver: no need to hold the result any longer
                self._cache.pop(id(rep), None)
            return out
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
            if (type(node).__name__ in MASK_INPUT_CLONE_NODES and node.next_functions
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
            "bitmap+mask+indices", "recompute" (cheap ops' outputs rebuilt in backward; see module docstring),
            "plan" (with ``plan``), or a plan itself (:class:`memsim.simulation.plan.Plan`, e.g.
            ``memsim.profile(model, x, device="jetson-nano", policy="plan").results["plan"].plan``, or its
            ``to_dict()``): each saved tensor is kept dense, encoded or recomputed as the plan chose for the
            module and op that made it (matched by :class:`memsim.runtime.producers.ProducerMap`), and the
            blocks the plan checkpoints run under ``torch.utils.checkpoint`` inside the block
            (:mod:`memsim.runtime.checkpointing`; module paths of ``exclude`` when it is a module, else of
            the first module called).
        plan: the plan for ``policy="plan"``.
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
                 encoder: Any = Encoder.AUTO, exclude: Iterable | Any = None, collect_stats: bool = False,
                 plan: Any = None):
        self.plan_rules = None
        if not isinstance(policy, (str, Policy)) and policy is not None:
            plan, policy = policy, Policy.PLAN
        if str(policy) == Policy.PLAN.value:
            from memsim.runtime.planned import PlanRules

            if plan is None:
                raise InputError("policy 'plan' needs the plan: pass plan=memsim.profile(model, inputs, "
                                 "device=..., policy='plan').results['plan'].plan (or the plan as the policy)")
            self.plan_rules = PlanRules.from_plan(plan)
            policy = Policy.RECOMPUTE  # the plan picks among its options per tensor
        self.policy = choose(Policy, policy, "policy")
        if not self.policy.in_runtime:
            raise InputError(f"policy {self.policy.value!r} is a what-if of the simulator only; "
                             "compressed_activations applies: "
                             + ", ".join(p.value for p in Policy if p.in_runtime) + ", plan (with plan=)")
        self.encoder = choose(Encoder, encoder, "encoder")
        if not isinstance(min_bytes, int) or isinstance(min_bytes, bool) or min_bytes < 0:
            raise InputError(f"min_bytes must be a non-negative integer number of bytes, got {min_bytes!r}")
        self.min_bytes = min_bytes
        self.exclude = exclude
        self.stats: CompressionStats | None = CompressionStats() if collect_stats else None
        self._hooks_cm = None
        self._recorder = None
        self._producers = None
        self._checkpointer = None

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
        recorder = producers = None
        if self.policy is Policy.RECOMPUTE:
            from memsim.runtime.recompute import RecipeRecorder

            recorder = RecipeRecorder()
        root = self.exclude if isinstance(self.exclude, torch.nn.Module) else None
        if self.plan_rules is not None:
            from memsim.runtime.producers import ProducerMap

            producers = ProducerMap(root)
            producers.__enter__()
        checkpointer = None
        if self.plan_rules is not None and self.plan_rules.checkpoint_blocks:
            from memsim.runtime.checkpointing import BlockCheckpointer

            checkpointer = BlockCheckpointer(self.plan_rules.checkpoint_blocks, root)
            try:
                checkpointer.__enter__()
            except BaseException:
                producers.__exit__(None, None, None)
                raise
        hooks = _Hooks(self.policy, self.min_bytes, self.encoder, self._exclude_keys(), self.stats, recorder,
                       (self.plan_rules, producers) if producers is not None else None)
        self._producers = producers
        cm = torch.autograd.graph.saved_tensors_hooks(hooks.pack if recorder is None else hooks.pack_quietly,
                                                      hooks.unpack)
        if recorder is not None:
            recorder.__enter__()
        try:
            cm.__enter__()
        except BaseException:
            if recorder is not None:
                recorder.__exit__(None, None, None)
            if producers is not None:
                producers.__exit__(None, None, None)
            if checkpointer is not None:
                checkpointer.__exit__(None, None, None)
            raise
        self._hooks, self._hooks_cm, self._recorder, self._checkpointer = hooks, cm, recorder, checkpointer
        return self

    def __exit__(self, *exc) -> None:
        cm, self._hooks_cm = self._hooks_cm, None
        hooks, self._hooks = self._hooks, None
        recorder, self._recorder = self._recorder, None
        try:
            if hooks._pending is not None:
                hooks.settle(None)
        finally:
            try:
                cm.__exit__(*exc)
            finally:
                if recorder is not None:
                    recorder.__exit__(*exc)
                    recorder.clear()   # plans made so far hold no recipe; later ops are not ours
                producers, self._producers = self._producers, None
                checkpointer, self._checkpointer = self._checkpointer, None
                try:
                    if producers is not None:
                        producers.__exit__(*exc)
                finally:
                    if checkpointer is not None:
                        checkpointer.__exit__(*exc)


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
