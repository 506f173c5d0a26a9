"""Measure how sparse the activations saved for backward really are, with the native codec.

A real forward pass runs at a small batch (the user's weights and data when given) under
``torch.autograd.graph.saved_tensors_hooks``; every saved storage is counted once, its non-zeros counted
and its encoding sized by the native codec. Results are keyed by the storage's producer — (module path,
aten op) — which is how :class:`memsim.core.trace.Trace` names its activations, so they apply to a trace at any
batch size.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    >>> sp = measure_sparsity(model, torch.randn(16, 32))
    >>> 0.3 < sp.lookup("1", "aten.relu.default") < 0.7        # about half of a ReLU's outputs are zero
    True
"""
from __future__ import annotations

import copy
import json
import sys
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from memsim.core.errors import InputError, ModelError


@dataclass
class SavedTensorStat:
    """One saved storage seen during the measured forward passes (sizes in bytes)."""

    module: str
    op: str
    dtype: str
    numel: int
    nnz: int
    dense_bytes: int
    encoded_bytes: int
    saved_by: list[str] = field(default_factory=list)
    output_index: int = 0  # which output of ``op`` (batch norm: 0 its output, 1 and 2 its statistics)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nnz / self.numel if self.numel else 0.0


@dataclass
class MeasuredSparsity:
    """Per-storage measurements and their aggregate per (module, op); see :meth:`lookup`."""

    stats: list[SavedTensorStat]
    batches: int = 1
    random_data: bool = False

    def __post_init__(self):
        self._by_key: dict[tuple[str, str, str, int], list[int]] = {}
        self._by_op: dict[tuple[str, str, int], list[int]] = {}
        for s in self.stats:
            for table, key in ((self._by_key, (s.module, s.op, s.dtype, s.output_index)),
                               (self._by_op, (s.op, s.dtype, s.output_index))):
                acc = table.setdefault(key, [0, 0])
                acc[0] += s.numel
                acc[1] += s.nnz

    def lookup(self, module: str, op: str, dtype: str = "float32", output_index: int = 0) -> float:
        """Zero fraction of ``dtype`` storages produced by ``op`` in ``module`` (falls back to the op's
        average over all modules, then 0.0 = dense). Multi-output ops (BatchNorm's statistics, MaxPool's
        indices) are told apart by dtype and weighted by size, so the big output dominates."""
        acc = (self._by_key.get((module, op, dtype, output_index))
               or self._by_op.get((op, dtype, output_index)))
        if not acc or acc[0] == 0:
            return 0.0
        return 1.0 - acc[1] / acc[0]

    @property
    def mean_sparsity(self) -> float:
        """Zero fraction over all saved elements (weighted by size)."""
        numel = sum(s.numel for s in self.stats)
        return 1.0 - sum(s.nnz for s in self.stats) / numel if numel else 0.0

    @property
    def dense_bytes(self) -> int:
        return sum(s.dense_bytes for s in self.stats)

    @property
    def encoded_bytes(self) -> int:
        """Bytes if every saved storage took the smaller of its dense and encoded forms."""
        return sum(min(s.encoded_bytes, s.dense_bytes) for s in self.stats)

    def per_module(self) -> dict[str, float]:
        """Zero fraction per module path."""
        acc: dict[str, list[int]] = {}
        for s in self.stats:
            a = acc.setdefault(s.module, [0, 0])
            a[0] += s.numel
            a[1] += s.nnz
        return {m: 1.0 - nnz / n for m, (n, nnz) in acc.items() if n}

    def to_dict(self) -> dict:
        return {"batches": self.batches, "random_data": self.random_data, "stats": [asdict(s) for s in self.stats]}

    @classmethod
    def from_dict(cls, data: dict) -> "MeasuredSparsity":
        return cls([SavedTensorStat(**s) for s in data["stats"]], data.get("batches", 1), data.get("random_data", False))

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path) -> "MeasuredSparsity":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"cannot read sparsity file {path}: {e}") from None


def measure_sparsity(model, inputs, *, loss_fn=None, progress: bool | None = None,
                     random_data: bool = False) -> MeasuredSparsity:
    """Run real forward passes and measure each saved activation with the native codec.

    Args:
        model: an ``nn.Module`` with real weights on the CPU (a deep copy runs, so BatchNorm statistics and
            the module itself are left untouched).
        inputs: one batch (a tensor or tuple of tensors) or an iterable of batches (a DataLoader or list);
            keep batches small — this allocates real memory.
        loss_fn: unused by the measurement (only the forward pass saves activations); accepted so the
            call mirrors :func:`memsim.trace`.
        progress: show a progress bar over batches (default: when there is more than one and stderr is a tty).
        random_data: say the data is random: a warning notes that trained networks are sparser.

    Returns: :class:`MeasuredSparsity` (sizes in bytes).
    """
    import torch

    from memsim import codec

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"measure_sparsity needs an nn.Module, got {type(model).__name__}")
    if any(p.is_meta for p in model.parameters()):
        raise InputError("measure_sparsity needs real weights: the model is on the meta device")
    batches = [inputs] if isinstance(inputs, (torch.Tensor, tuple)) else inputs
    if not isinstance(batches, Iterable):
        raise InputError(f"inputs must be a tensor, a tuple of tensors or an iterable of batches, got "
                         f"{type(inputs).__name__}")
    if random_data:
        warnings.warn("measuring sparsity on random data with random or given weights: trained networks on "
                      "real data are usually sparser, so this under-estimates what the codec saves",
                      stacklevel=2)
    work = copy.deepcopy(model)
    work.train()
    params = {p.untyped_storage().data_ptr() for p in work.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in work.buffers()}
    stats: list[SavedTensorStat] = []

    batches = list(batches) if not hasattr(batches, "__len__") else batches
    show = progress if progress is not None else (len(batches) > 1 and sys.stderr.isatty())
    count = 0
    for batch in batches:
        args = batch if isinstance(batch, tuple) else (batch,)
        stats.extend(_measure_one(work, args, params, codec))
        count += 1
        if show:
            print(f"\rmeasuring sparsity: batch {count}/{len(batches)}", end="", file=sys.stderr, flush=True)
    if show and count:
        print(file=sys.stderr)
    if count == 0:
        raise InputError("no batches given to measure_sparsity")
    return MeasuredSparsity(stats, batches=count, random_data=random_data)


def _measure_one(model, args, params, codec) -> list[SavedTensorStat]:
    import torch
    from torch.multiprocessing.reductions import StorageWeakRef

    from memsim.runtime.producers import ProducerMap

    producers = ProducerMap(model)
    producers.skip |= params

    seen: dict[int, StorageWeakRef] = {}
    stats: list[SavedTensorStat] = []

    def pack(t):
        if isinstance(t, torch.nn.Parameter):
            return t
        ptr = t.untyped_storage().data_ptr()
        # Inputs and other storages made outside the forward are never activations: skip them.
        made = producers.of(t)
        if ptr in params or made is None or t.device.type != "cpu":
            return t
        if ptr in seen and not seen[ptr].expired():  # this storage was measured already
            return t
        module, op, position = made
        base = t.detach()
        numel = base.numel()
        seen[ptr] = StorageWeakRef(t.untyped_storage())
        stats.append(SavedTensorStat(module=module, op=op, dtype=str(t.dtype).replace("torch.", ""), numel=numel,
                                    nnz=int(codec.count_nonzero(base)), dense_bytes=numel * t.element_size(),
                                    encoded_bytes=len(codec.encode(base)), output_index=position))
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), producers:
            out = model(*args)
    except Exception as e:  # a user's model failing is a user error, reported with where it failed
        raise ModelError(f"forward pass failed in module {producers.current_module or '(root)'!r}: "
                         f"{type(e).__name__}: {e}") from e
    del out
    return stats
