"""A traced training step: the liveness timeline, the autograd graph and what was traced.

Loading and re-simulating a saved trace needs neither torch nor the model.

Example:
    >>> import os, tempfile, torch, memsim
    >>> tr = memsim.trace(torch.nn.Linear(64, 64), torch.randn(8, 64))
    >>> path = os.path.join(tempfile.mkdtemp(), "step.json.gz")
    >>> tr.save(path); Trace.load(path).peak_bytes == tr.peak_bytes
    True
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from memsim.core.categories import Category
from memsim.core.errors import InputError
from memsim.core.timeline import TensorRecord, Timeline

TRACE_FORMAT = "memsim-trace"
TRACE_VERSION = 2


@dataclass
class Breakdown:
    """What is alive at one op: bytes per category, the largest modules and tensors."""

    index: int
    total_bytes: int
    by_category: dict[Category, int]
    top_modules: list[tuple[str, int]]
    top_tensors: list[TensorRecord]


@dataclass
class Trace:
    """One traced training step.

    Attributes:
        timeline: ops and storages with their lifetimes (:class:`memsim.core.timeline.Timeline`).
        graph: autograd graph; nodes are backward functions (attributes ``name``, ``module``, ``saved``:
            list of tensor ids, ``op``: index of the forward op that created the node, ``param``: the
            parameter name on AccumulateGrad nodes), edges point from a node to the nodes its gradient
            flows into.
        meta: what was traced: ``model``, ``batch_size``, ``inputs`` (shapes/dtypes), ``optimizer``,
            ``torch_version``, ``memsim_version``, ``host`` (the
            machine whose kernels were probed: :func:`memsim.backends.host.host_signature`).
        kernel_calls: the ops whose scratch depends on the backend
            (:class:`memsim.backends.calls.KernelCall`), each sized for the host in ``call.host``.
    """

    timeline: Timeline
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    meta: dict = field(default_factory=dict)
    kernel_calls: list = field(default_factory=list)
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, key: str, make):
        """A value computed from this trace once and kept with it (``make(trace)`` on first use), such as the
        per-tensor arrays every policy needs; :meth:`attach_scaling`, the only mutation, forgets them all."""
        if key not in self._derived:
            self._derived[key] = make(self)
        return self._derived[key]

    @property
    def peak_bytes(self) -> int:
        """Peak live tensor bytes over the step (bytes)."""
        return self.timeline.peak_bytes

    @property
    def batch_size(self) -> int | None:
        return self.meta.get("batch_size")

    def breakdown_at(self, index: int, top: int = 10) -> Breakdown:
        """Bytes per category and the ``top`` largest modules and tensors alive at op ``index``."""
        tl = self.timeline
        live = tl.live_at(index)
        by_module = list(tl.bytes_by_module(index).items())[:top]
        return Breakdown(
            index=index,
            total_bytes=sum(t.nbytes for t in live),
            by_category=tl.bytes_by_category(index),
            top_modules=by_module,
            top_tensors=live[:top],
        )

    def breakdown_at_peak(self, top: int = 10) -> Breakdown:
        """:meth:`breakdown_at` the op where the step peaks."""
        return self.breakdown_at(self.timeline.peak_index, top)

    def attach_scaling(self, other: "Trace") -> "Trace":
        """Learn which storages grow with the batch from a trace of the same step at another batch size.

        Both traces must have the same op sequence; each storage gets ``per_sample_bytes`` =
        (bytes here − bytes there) / (batch here − batch there). Returns ``self``.
        """
        a, b = self.timeline, other.timeline
        if self.batch_size is None or other.batch_size is None or self.batch_size == other.batch_size:
            raise InputError("attach_scaling needs two traces at different, known batch sizes")
        if len(a.tensors) != len(b.tensors) or [o.name for o in a.ops] != [o.name for o in b.ops]:
            raise InputError("the two traces differ in their ops: the step depends on the batch size in a "
                             "way memsim cannot scale linearly")
        db = self.batch_size - other.batch_size
        self._derived.clear()  # derived per-trace arrays depend on the scaling
        self.meta["scaling_batch"] = other.batch_size
        for ta, tb in zip(a.tensors, b.tensors):
            ta.per_sample_bytes = (ta.nbytes - tb.nbytes) // db
        return self

    def figure(self, **kwargs):
        """Plotly figure of memory over the step (see :func:`memsim.output.figures.timeline_figure`)."""
        from memsim.output import figures as viz

        return viz.timeline_figure(self, **kwargs)

    # ---- persistence ----
    def to_dict(self) -> dict:
        return {
            "format": TRACE_FORMAT,
            "version": TRACE_VERSION,
            "meta": self.meta,
            "timeline": self.timeline.to_dict(),
            "graph": nx.node_link_data(self.graph, edges="edges"),
            "kernel_calls": [c.to_json() for c in self.kernel_calls],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Trace":
        if not isinstance(data, dict) or data.get("format") != TRACE_FORMAT:
            raise InputError("not a memsim trace file (missing 'format': 'memsim-trace')")
        if data.get("version") != TRACE_VERSION:
            raise InputError(f"trace format version {data.get('version')!r} is not supported "
                             f"(this memsim reads version {TRACE_VERSION})")
        try:
            from memsim.backends.calls import KernelCall

            graph = nx.node_link_graph(data["graph"], edges="edges")
            calls = [KernelCall.from_json(c) for c in data.get("kernel_calls", [])]
            return cls(timeline=Timeline.from_dict(data["timeline"]), graph=graph, meta=data.get("meta", {}),
                       kernel_calls=calls)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"corrupt memsim trace file: {e}") from None

    def save(self, path: str | Path) -> None:
        """Write the trace as JSON (gzip-compressed when the path ends in ``.gz``)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), separators=(",", ":"))
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        """Read a trace written by :meth:`save`; raises :class:`memsim.core.errors.InputError` on a bad file."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"trace file not found: {path}")
        try:
            raw = path.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            data = json.loads(raw)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read trace file {path}: {e}") from None
        return cls.from_dict(data)
