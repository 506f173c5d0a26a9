"""Trace one training step of a PyTorch model without running it: ``memsim.tracing.trace``.

How: the model is copied onto fake CPU tensors (FakeTensorMode; parameters and buffers are swapped through
deepcopy's memo, so real weights are never copied, and meta-device models work); the optimizer state is
created as torch's first step would create it; then one steady-state step runs under a recording
FakeTensorMode subclass (:mod:`memsim.tracing.recorder`) that logs every aten op the program dispatches
(name, phase, module path, FLOPs) and every storage once (views and in-place results share a storage), born
at the op that made it and dead when the storage object is freed (a weakref callback, so cost grows with
ops, not with live tensors). Repeated ops are answered from a shape-keyed cache in front of FakeTensorMode's
own. Before backward the autograd graph is walked (:mod:`memsim.tracing.graph`) to learn which storages each
node saves. Ops whose hidden allocations depend on the kernels (convolutions, oneDNN LSTM layers) are
recorded as kernel calls (:mod:`memsim.tracing.kernels`); after the step each distinct one runs once for real
on the host, on zeros, under the profiler (:mod:`memsim.backends.host`, cached on disk), to size its scratch.

Recorded semantics (what a simulator must know):
    * Parameters, buffers, inputs and optimizer state have ``birth=0`` and ``death=n_ops-1``.
    * A gradient is born at the backward op that made it (AccumulateGrad usually steals that buffer) and
      dies at ``zero_grad(set_to_none=True)``, the last ops of the step.
    * In-place ops and views create no new storage; ``TensorRecord.op`` is the op that allocated it.
    * Workspaces (``Category.WORKSPACE``) have ``birth == death`` = the op whose kernel allocates them.
    * Storages saved for backward are ``ACTIVATION`` with ``saved_by`` = graph node ids; the model output and
      the loss are ``OUTPUT`` unless saved; everything else made during the step is ``TEMPORARY``.
    * A storage is born at the op that allocated it and dies at the last op before its storage is freed;
      memory at op ``i`` counts everything alive while op ``i`` runs (inputs, outputs, its workspace), which
      is also when the profiler sees the real peak.
    * ``OpRecord`` is one op the program dispatched (the fake mode's own decompositions are folded into it);
      ``TensorRecord.uses`` lists the ops that read the storage.

Known limitations:
    * Values are not known: ``.item()`` / ``bool(tensor)`` on a traced tensor read 1 (True), so value-dependent
      control flow follows that branch; ops whose output *shape* depends on values (``nonzero``,
      ``masked_select``, boolean indexing, ``unique``) raise :class:`memsim.core.errors.ModelError`.
    * Tensors a model creates lazily in its first forward and caches on itself count from the op that made
      them, not from the start of the step (the real steady-state step has them from the start).
    * Optimizer state is created by a step with zero gradients for every trainable parameter; state of
      parameters that get no gradient in the traced step is dropped (as a real first step would not make it).
    * Tensors held as plain (unregistered) module attributes are deep-copied for real, and counted as
      pre-existing ``BUFFER`` storages named "(untracked)" when the step reads them.
    * Only the hidden allocations of recorded kernel calls (convolutions, oneDNN LSTM) are predicted; the
      probes measure this host's kernels at its thread count (what ``Trace.peak_bytes`` is for).
    * Python garbage (reference cycles) is assumed freed when the last reference goes, as refcounting does.
    * A probe whose real tensors would exceed ``MEMSIM_PROBE_LIMIT`` (96 MiB) runs at two smaller batches and
      is extrapolated linearly; oneDNN can switch implementation between those batches and the traced one.
    * Scalars the CPU kernels create internally (a few bytes per op) are not counted, nor oneDNN's
      per-thread weight-gradient reduction buffers (KiBs to ~100 KiB per convolution, depending on the
      thread count): about 1% of the peak for a tiny CNN at batch 1, invisible for the zoo models.
"""
from __future__ import annotations

from memsim.tracing.tracer import trace

__all__ = ["trace"]
