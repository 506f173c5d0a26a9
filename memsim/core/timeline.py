"""The liveness timeline of one training step: which tensor storages are alive at which op.

Pure data (numpy, no torch), so a saved trace can be re-simulated without importing torch.

Model: ops are numbered 0..n_ops-1 in one global order (forward, loss, backward, optimizer). A storage
with ``birth=b`` and ``death=d`` is alive at every op ``i`` with ``b <= i <= d``: it is allocated while op
``b`` runs and freed once op ``d`` has finished. Memory at op ``i`` is the sum of live storages' bytes, so a
kernel workspace (``birth == death``) is counted at its op together with that op's inputs and outputs.
Storages alive before the step (parameters, buffers, optimizer state, inputs) have ``birth=0``; those still
alive after it have ``death=n_ops-1``.

Example:
    >>> tl = Timeline(ops=[OpRecord("aten.mm.default", Phase.FORWARD)] * 3,
    ...               tensors=[TensorRecord(0, 400, "float32", (10, 10), Category.PARAMETER, 0, 2),
    ...                        TensorRecord(1, 40, "float32", (10,), Category.TEMPORARY, 1, 1)])
    >>> tl.peak_bytes, tl.peak_index
    (440, 1)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable

import numpy as np

from memsim.core.categories import Category, Phase


@dataclass
class OpRecord:
    """One executed op: its aten name, phase, the module path that ran it ('' for none) and its
    floating-point operations (torch.utils.flop_counter's formulas; 0 where it has none)."""

    name: str
    phase: Phase
    module: str = ""
    flops: int = 0


@dataclass
class TensorRecord:
    """One tensor storage (views and in-place results share it, so it is counted once).

    Attributes:
        id: index of this record in ``Timeline.tensors``.
        nbytes: size of the storage in bytes.
        dtype: torch dtype name without the ``torch.`` prefix ("float32").
        shape: shape of the tensor that created the storage.
        category: what it holds (:class:`Category`).
        birth, death: first and last op index at which it is alive (inclusive).
        module: path of the module whose forward created it ("layer1.0.conv1"), '' for none.
        op: aten op that produced it ("aten.convolution.default"), '' for storages that pre-exist.
        name: a readable name for named tensors ("layer1.0.conv1.weight", "input[0]", "exp_avg:fc.weight").
        saved_by: ids of the autograd-graph nodes (``Trace.graph``) that save this storage for backward.
        uses: op indices that read this storage.
        per_sample_bytes: bytes that grow with each extra sample of the batch, when known (see
            ``Trace.attach_scaling``); ``None`` when the trace was made at one batch size only.
        output_index: which output of ``op`` made the storage (max-pool: 0 values, 1 indices).
        writes: op indices of the in-place ops that wrote this storage (``relu_``, ``add_``: the storage
            is their first argument), a subset of ``uses``.
    """

    id: int
    nbytes: int
    dtype: str
    shape: tuple
    category: Category
    birth: int
    death: int
    module: str = ""
    op: str = ""
    name: str = ""
    saved_by: tuple = ()
    uses: tuple = ()
    per_sample_bytes: int | None = None
    output_index: int = 0
    writes: tuple = ()


_TENSOR_FIELDS = [f for f in TensorRecord.__dataclass_fields__]


@dataclass
class Timeline:
    """The ops of one step and the storages alive across them; see the module docstring for the model."""

    ops: list[OpRecord]
    tensors: list[TensorRecord] = field(default_factory=list)

    # ---- derived arrays (cached; a Timeline is treated as immutable once built) ----
    @cached_property
    def _columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(self.tensors)
        nbytes = np.fromiter((t.nbytes for t in self.tensors), dtype=np.int64, count=n)
        birth = np.fromiter((t.birth for t in self.tensors), dtype=np.int64, count=n)
        death = np.fromiter((t.death for t in self.tensors), dtype=np.int64, count=n)
        cats = list(Category)
        index = {c: i for i, c in enumerate(cats)}
        cat = np.fromiter((index[Category(t.category)] for t in self.tensors), dtype=np.int64, count=n)
        return nbytes, birth, death, cat

    @property
    def n_ops(self) -> int:
        return len(self.ops)

    def memory_curve(self, nbytes: np.ndarray | None = None) -> np.ndarray:
        """Live bytes at each op (int64 array of length ``n_ops``).

        ``nbytes`` overrides the per-storage sizes (same order as ``tensors``), which is how policies and
        batch-size scaling re-cost a timeline without rebuilding it.
        """
        size, birth, death, _ = self._columns
        if nbytes is not None:
            size = np.asarray(nbytes, dtype=np.int64)
        return _interval_sum(self.n_ops, birth, death, size)

    def category_curves(self) -> dict[Category, np.ndarray]:
        """Live bytes at each op, split by category (only categories that occur)."""
        size, birth, death, cat = self._columns
        return category_interval_sums(self.n_ops, birth, death, size, cat)

    @cached_property
    def peak_index(self) -> int:
        """Index of the first op at which live bytes reach their maximum."""
        curve = self.memory_curve()
        return int(np.argmax(curve)) if len(curve) else 0

    @cached_property
    def peak_bytes(self) -> int:
        """The largest number of live bytes at any op of the step."""
        curve = self.memory_curve()
        return int(curve.max()) if len(curve) else 0

    def live_at(self, index: int) -> list[TensorRecord]:
        """Storages alive at op ``index``, largest first."""
        _, birth, death, _ = self._columns
        ids = np.nonzero((birth <= index) & (death >= index))[0]
        return sorted((self.tensors[i] for i in ids), key=lambda t: -t.nbytes)

    def bytes_by_category(self, index: int) -> dict[Category, int]:
        """Live bytes per category at op ``index`` (every category present, zeros included)."""
        out = {c: 0 for c in Category}
        for t in self.live_at(index):
            out[Category(t.category)] += t.nbytes
        return out

    def bytes_by_module(self, index: int, depth: int | None = None) -> dict[str, int]:
        """Live bytes per owning module path at op ``index``; ``depth`` truncates paths ("layer1.0")."""
        out: dict[str, int] = {}
        for t in self.live_at(index):
            key = t.module or "(none)"
            if depth is not None and t.module:
                key = ".".join(t.module.split(".")[:depth])
            out[key] = out.get(key, 0) + t.nbytes
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def phase_spans(self) -> list[tuple[Phase, int, int]]:
        """Contiguous runs of ops per phase as ``(phase, first_op, last_op)``."""
        spans: list[tuple[Phase, int, int]] = []
        for i, op in enumerate(self.ops):
            phase = Phase(op.phase)
            if spans and spans[-1][0] == phase:
                spans[-1] = (phase, spans[-1][1], i)
            else:
                spans.append((phase, i, i))
        return spans

    # ---- serialisation (columnar, compact for 100k-op traces) ----
    def to_dict(self) -> dict:
        ops = {
            "name": [o.name for o in self.ops],
            "phase": [str(o.phase) for o in self.ops],
            "module": [o.module for o in self.ops],
            "flops": [o.flops for o in self.ops],
        }
        tensors = {}
        for f in _TENSOR_FIELDS:
            col = [getattr(t, f) for t in self.tensors]
            if f == "category":
                col = [str(c) for c in col]
            elif f in ("shape", "saved_by", "uses", "writes"):
                col = [list(v) for v in col]
            tensors[f] = col
        return {"ops": ops, "tensors": tensors}

    @classmethod
    def from_dict(cls, data: dict) -> "Timeline":
        o = data["ops"]
        flops = o.get("flops") or [0] * len(o["name"])
        ops = [OpRecord(n, Phase(p), m, f) for n, p, m, f in zip(o["name"], o["phase"], o["module"], flops)]
        t = data["tensors"]
        n = len(t["id"])
        tensors = []
        for i in range(n):
            kw = {f: t[f][i] for f in _TENSOR_FIELDS if f in t}
            kw["category"] = Category(kw["category"])
            for f in ("shape", "saved_by", "uses", "writes"):
                if f in kw:
                    kw[f] = tuple(kw[f])
            tensors.append(TensorRecord(**kw))
        return cls(ops=ops, tensors=tensors)


def _interval_sum(n: int, birth: np.ndarray, death: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Sum of ``size`` over intervals [birth, death] at every index 0..n-1 (difference array + cumsum)."""
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, birth, size)
    np.add.at(diff, death + 1, -size)
    return np.cumsum(diff[:n])


def category_interval_sums(n: int, birth: np.ndarray, death: np.ndarray, size: np.ndarray,
                           category: np.ndarray) -> dict[Category, np.ndarray]:
    """:func:`_interval_sum` per category (``category`` holds indices into ``list(Category)``)."""
    out = {}
    for i, c in enumerate(Category):
        mask = category == i
        if mask.any():
            out[c] = _interval_sum(n, birth[mask], death[mask], size[mask])
    return out


def allocation_events(timeline: Timeline, nbytes: Iterable[int] | None = None) -> list[tuple[int, int, int]]:
    """The step as an allocator sees it: ``(op_index, tensor_id, +bytes)`` on allocation and
    ``(op_index, tensor_id, -bytes)`` on free, in order (allocations of an op before its frees).

    Storages alive before the step are allocated first (in id order) at op 0. Used to replay the step
    through an allocator model (``memsim.simulation.allocator``).
    """
    sizes = list(nbytes) if nbytes is not None else [t.nbytes for t in timeline.tensors]
    born: dict[int, list[int]] = {}
    dies: dict[int, list[int]] = {}
    for t in timeline.tensors:
        born.setdefault(t.birth, []).append(t.id)
        dies.setdefault(t.death, []).append(t.id)
    events = []
    for i in range(timeline.n_ops):
        for tid in born.get(i, ()):
            events.append((i, tid, sizes[tid]))
        for tid in dies.get(i, ()):
            if i < timeline.n_ops - 1:
                events.append((i, tid, -sizes[tid]))
    return events
