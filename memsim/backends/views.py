"""A trace as another backend would run it: the shared storages kept, the kernel-dependent parts re-costed.

:func:`for_backend` returns a :class:`BackendView`: a :class:`~memsim.core.trace.Trace` whose tensor records
are those of the traced step with

* every kernel call's workspace (and backend-sized outputs) sized by that backend's kernel model at its thread
  count — the host's probes when the backend and thread count are the tracing machine's, otherwise the
  backend's rules, so no host-only scratch appears in another backend's prediction;
* for CUDA, what CUDA kernels store differently from the CPU ones the trace followed: dropout keeps a bool
  mask instead of the CPU's float noise; Adam/AdamW take PyTorch's foreach implementation (one list-wide
  ``sqrt(exp_avg_sq)`` temporary instead of per-parameter ones); cuBLAS holds one workspace per handle (the
  forward thread and autograd's backward thread) for the whole run.

Views are cached with the trace (``Trace.derived``), so simulating several policies costs the view once.

Example:
    >>> import torch, memsim
    >>> tr = memsim.trace(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Dropout()), torch.randn(8, 64))
    >>> cuda = for_backend(tr, Backend.CUDA, threads=1, cuda_capability=(8, 7))
    >>> any("cuBLAS" in t.name for t in cuda.trace.timeline.tensors), cuda.trace.peak_bytes > tr.peak_bytes
    (True, True)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from memsim.backends.kinds import Backend, host_backend
from memsim.core.categories import Category, Phase
from memsim.core.timeline import TensorRecord, Timeline

#: cuBLAS workspace per handle under PyTorch's default CUBLAS_WORKSPACE_CONFIG (CublasHandlePool.cpp:
#: ":4096:8" = 32 MiB on compute capability 9.x, 10.x and 12.x, ":4096:2:16:8" = 8,519,680 B otherwise).
CUBLAS_WORKSPACE_BYTES = 4096 * 1024 * 2 + 16 * 1024 * 8
CUBLAS_WORKSPACE_BYTES_LARGE = 4096 * 1024 * 8
_MATMUL_OPS = ("aten.mm.", "aten.addmm.", "aten.bmm.", "aten.baddbmm.", "aten.addbmm.", "aten._addmm_activation.")


@dataclass
class BackendView:
    """A trace re-costed for ``backend`` at ``threads`` threads; ``notes`` say what was assumed."""

    backend: Backend
    threads: int
    trace: object
    notes: list[str] = field(default_factory=list)
    measured_on_host: bool = False


def for_backend(trace, backend: Backend, threads: int, cuda_capability: tuple | None = None) -> BackendView:
    """``trace`` as ``backend`` with ``threads`` CPU threads would run it (cached per argument set)."""
    key = f"backend:{backend}:{threads}:{cuda_capability}"
    return trace.derived(key, lambda tr: _build(tr, Backend(backend), int(threads), cuda_capability))


def _build(trace, backend: Backend, threads: int, cuda_capability) -> BackendView:
    host = trace.meta.get("host") or {}
    host_kind = host_backend(host)
    host_threads = int(host.get("threads", 0) or 0)
    view = BackendView(backend, threads, trace)
    if not trace.kernel_calls and backend is not Backend.CUDA:
        view.measured_on_host = backend is host_kind
        return view
    sizes = {t.id: t.nbytes for t in trace.timeline.tensors}
    slopes = {t.id: t.per_sample_bytes for t in trace.timeline.tensors}
    if backend is host_kind:
        view.measured_on_host = True
        if host_threads and threads != host_threads and trace.kernel_calls:
            view.notes.append(f"kernel scratch measured on the tracing host with {host_threads} threads; the "
                              f"device runs {threads}")
    else:
        _cost_kernel_calls(trace, backend, threads, sizes, slopes, view.notes)
    extra: list[TensorRecord] = []
    if backend is Backend.CUDA:
        extra = _cuda_rewrites(trace, sizes, slopes, cuda_capability, view.notes)
    view.trace = _with_sizes(trace, sizes, slopes, extra, backend, threads)
    return view


def _costs_by_tensor(call, costs: dict) -> dict[int, int]:
    """``{tensor id: bytes}`` of a call's records from a kernel model's ``{"workspace": b, position: b}``."""
    out = {}
    for key, nbytes in costs.items():
        if key == "workspace":
            if call.workspace >= 0:
                out[call.workspace] = int(nbytes)
        elif 0 <= int(key) < len(call.outputs) and call.outputs[int(key)] >= 0:
            out[call.outputs[int(key)]] = int(nbytes)
    return out


def _cost_kernel_calls(trace, backend, threads, sizes, slopes, notes) -> None:
    """Size every call's workspace (and backend-sized outputs) with the backend's rules, at the traced batch
    and, when the trace knows how it scales, at its scaling batch (for the per-sample bytes)."""
    from memsim.backends.rules import kernel_model

    model = kernel_model(backend)
    notes.extend(model.notes)
    other = trace.meta.get("scaling_batch")
    for call in trace.kernel_calls:
        here = _costs_by_tensor(call, model.cost(call, threads))
        there = {}
        if other and call.batch_size is not None and other != call.batch_size:
            there = _costs_by_tensor(call, model.cost(call.at_batch(other), threads))
        for tid, nbytes in here.items():
            sizes[tid] = nbytes
            if slopes.get(tid) is not None and tid in there:
                slopes[tid] = (nbytes - there[tid]) // (call.batch_size - other)


def _cuda_rewrites(trace, sizes, slopes, capability, notes) -> list[TensorRecord]:
    """What the CUDA kernels store differently from the CPU trace (module docstring); new records for the
    cuBLAS workspaces and foreach Adam's list temporary."""
    tl = trace.timeline
    ops = tl.ops
    graph = trace.graph
    n_masks = 0
    for t in tl.tensors:   # CPU dropout: empty_like -> bernoulli_ -> div_ (float noise, saved by MulBackward0)
        if t.op.startswith("aten.empty_like.") and t.uses and ops[t.uses[0]].name.startswith("aten.bernoulli_.") \
                and any(graph.nodes[n].get("name") == "MulBackward0" for n in t.saved_by if n in graph.nodes):
            item = max(t.nbytes // max(_numel(t.shape), 1), 1)
            sizes[t.id] = t.nbytes // item
            if slopes.get(t.id) is not None:
                slopes[t.id] //= item
            n_masks += 1
    if n_masks:
        notes.append(f"{n_masks} dropout masks stored as bool (CUDA's native_dropout) instead of float noise")
    extra: list[TensorRecord] = []
    next_id = len(tl.tensors)
    last = max(tl.n_ops - 1, 0)
    if str(trace.meta.get("optimizer")) in ("adam", "adamw"):
        opt_ops = [i for i, o in enumerate(ops) if Phase(o.phase) is Phase.OPTIMIZER]
        grads = [t for t in tl.tensors if t.category == Category.GRADIENT]
        if opt_ops and grads:
            for t in tl.tensors:
                if t.category == Category.TEMPORARY and Phase(ops[t.birth].phase) is Phase.OPTIMIZER:
                    sizes[t.id] = 0
                    slopes[t.id] = 0 if slopes.get(t.id) is not None else None
            total = sum(-(-g.nbytes // 512) * 512 for g in grads)
            extra.append(TensorRecord(next_id, total, "float32", (total // 4,), Category.TEMPORARY, opt_ops[0],
                                      opt_ops[-1], "", "aten._foreach_sqrt.default",
                                      "foreach Adam sqrt(exp_avg_sq) list", per_sample_bytes=0
                                      if any(t.per_sample_bytes is not None for t in tl.tensors) else None))
            next_id += 1
            notes.append("Adam/AdamW as PyTorch runs them on CUDA (foreach): one list-wide temporary")
    large = capability is not None and int(capability[0]) in (9, 10, 12)
    per_handle = CUBLAS_WORKSPACE_BYTES_LARGE if large else CUBLAS_WORKSPACE_BYTES
    scaled = all(t.per_sample_bytes is not None for t in tl.tensors) and bool(tl.tensors)
    for phase, label in ((Phase.FORWARD, "forward thread"), (Phase.BACKWARD, "backward thread")):
        if any(Phase(o.phase) is phase and o.name.startswith(_MATMUL_OPS) for o in ops):
            extra.append(TensorRecord(next_id, per_handle, "uint8", (per_handle,), Category.WORKSPACE, 0, last, "",
                                      "", f"cuBLAS workspace ({label})", per_sample_bytes=0 if scaled else None))
            next_id += 1
    return extra


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _with_sizes(trace, sizes, slopes, extra, backend, threads):
    tensors = []
    for t in trace.timeline.tensors:
        if sizes[t.id] != t.nbytes or slopes[t.id] != t.per_sample_bytes:
            t = dataclasses.replace(t, nbytes=int(sizes[t.id]), per_sample_bytes=slopes[t.id])
        tensors.append(t)
    tensors.extend(extra)
    meta = dict(trace.meta, backend=str(backend), backend_threads=threads)
    return type(trace)(timeline=Timeline(ops=trace.timeline.ops, tensors=tensors), graph=trace.graph, meta=meta,
                       kernel_calls=trace.kernel_calls)
