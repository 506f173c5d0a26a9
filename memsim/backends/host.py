"""The host's CPU kernels, measured: each distinct kernel call runs once on real zeros under the profiler.

Which scratch a CPU kernel allocates depends on the library's choices for this CPU (oneDNN blocks channels by
8 with AVX2 and by 16 with AVX-512, and picks other implementations), the thread count and the torch
release. Instead of rules for each, memsim runs the real kernel: for every distinct
:class:`~memsim.backends.calls.KernelCall` of a trace it builds zero tensors of the same shapes, strides and
dtype, calls the op under ``torch.profiler`` (``profile_memory=True``) and reads, from the allocator events
inside the op, the largest bytes above the op's start (``peak``) and what stays allocated at its end
(``net``, the outputs). The call's workspace is ``peak - net``: added to the op's inputs and outputs it gives
the largest live bytes the real kernel reaches (the timeline's convention, :mod:`memsim.core.timeline`).

Cost is bounded: a probe whose real tensors would exceed ``MEMSIM_PROBE_LIMIT`` bytes (default 96 MiB) runs
at two smaller batch sizes close to the traced one and is extrapolated linearly in the batch (the kernel's
scratch is a per-sample part plus a fixed part; oneDNN changes implementation at some batch sizes, so the two
probe batches are taken as close to the traced batch as the limit allows). Results are cached on disk per
host (:func:`host_signature`: CPU, ISA, threads, torch version), in ``<cache dir>/probes/``, so a second
trace of the same model probes nothing.

Example:
    >>> x = TensorInfo((2, 16, 16, 16), (4096, 256, 16, 1), "float32")
    >>> w = TensorInfo((16, 16, 3, 3), (144, 9, 3, 1), "float32")
    >>> call = KernelCall(0, CONVOLUTION, (x, w, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1))
    >>> HostKernels(cache_directory=None).cost([call])
    >>> call.host["workspace"] > 0          # oneDNN reorders or im2col columns, in bytes
    True
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from pathlib import Path

from memsim.backends.calls import (CONVOLUTION, CONVOLUTION_BACKWARD, MATMUL_OPS, RNN_LAYER, RNN_LAYER_BACKWARD,
                                   KernelCall)
from memsim.backends.tensor_info import TensorInfo

PROBE_LIMIT_ENV = "MEMSIM_PROBE_LIMIT"
#: Largest real tensor bytes one probe may allocate before it is extrapolated from smaller batches.
DEFAULT_PROBE_LIMIT = 96 << 20
PROBE_FORMAT = 1


def probe_limit() -> int:
    """Bytes of real tensors one probe may allocate (``MEMSIM_PROBE_LIMIT``, default 96 MiB)."""
    from memsim.core.units import parse_size

    value = os.environ.get(PROBE_LIMIT_ENV)
    return parse_size(value) if value else DEFAULT_PROBE_LIMIT


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu part", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_signature() -> dict:
    """What decides the host's kernel scratch: architecture, CPU model, the ISA ATen and oneDNN use, the
    thread count and the torch version (a probe cache is valid only for exactly this)."""
    import torch

    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - older torch
        capability = "unknown"
    return {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "capability": capability,
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")),
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "format": PROBE_FORMAT,
    }


class ProbeCache:
    """Probe results on disk, one JSON file per :func:`host_signature` (merged on write, replaced
    atomically, so concurrent processes at worst probe twice)."""

    def __init__(self, signature: dict, directory: Path | None):
        self.signature = signature
        digest = hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:20]
        self.path = directory / "probes" / f"{digest}.json" if directory is not None else None
        self.entries: dict[str, list] = {}
        self._dirty = False
        if self.path is not None and self.path.is_file():
            try:
                self.entries = dict(json.loads(self.path.read_text())["entries"])
            except (OSError, ValueError, KeyError, TypeError):
                self.entries = {}

    def get(self, key: str):
        return self.entries.get(key)

    def put(self, key: str, value) -> None:
        self.entries[key] = value
        self._dirty = True

    def save(self) -> None:
        if not self._dirty or self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            on_disk = {}
            if self.path.is_file():
                try:
                    on_disk = dict(json.loads(self.path.read_text())["entries"])
                except (OSError, ValueError, KeyError, TypeError):
                    on_disk = {}
            on_disk.update(self.entries)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"signature": self.signature, "entries": on_disk}, separators=(",", ":")))
            tmp.replace(self.path)
            self._dirty = False
        except OSError:
            pass  # a read-only cache only costs the next trace its probes


# ---- running one kernel for real ----

def _real(info: TensorInfo, batch: int | None = None, dim: int = 0):
    """Zeros with ``info``'s shape, strides and dtype (expanded strides allowed), at another batch size
    along ``dim`` when ``batch`` is given."""
    import torch

    if batch is not None:
        info = info.with_batch(batch, dim)
    span = 1 + sum((s - 1) * st for s, st in zip(info.shape, info.stride)) if info.numel else 0
    dtype = getattr(torch, info.dtype)
    return torch.zeros(span, dtype=dtype).as_strided(info.shape, info.stride)


# Each probe runs its op(s) at once, inside one profiler session shared by all the probes of a trace (a
# session costs ~25 ms to start and stop, more than most probes), and returns the aten op names whose
# allocations it needs plus a function turning their (peak, net) pairs into its numbers.

def _probe_convolution(call: KernelCall, batch: int):
    import torch

    x, w, bias = call.args[0], call.args[1], call.args[2]
    rest = [list(a) if isinstance(a, tuple) else a for a in call.args[3:]]
    rx, rw = _real(x, batch), _real(w)
    rb = _real(bias) if isinstance(bias, TensorInfo) else None
    out = torch.ops.aten.convolution(rx, rw, rb, *rest)
    del out, rx, rw, rb
    return ["aten::convolution"], lambda found: [max(found[0][0] - found[0][1], 0)]


def _probe_convolution_backward(call: KernelCall, batch: int):
    import torch

    g, x, w = call.args[0], call.args[1], call.args[2]
    rest = [list(a) if isinstance(a, tuple) else a for a in call.args[3:]]
    rg, rx, rw = _real(g, batch), _real(x, batch), _real(w)
    out = torch.ops.aten.convolution_backward(rg, rx, rw, *rest)
    del out, rg, rx, rw
    return ["aten::convolution_backward"], lambda found: [max(found[0][0] - found[0][1], 0)]


def _rnn_batch_dim(call: KernelCall) -> int:
    return call.batch_dims()[0][1]


def _probe_rnn_layer(call: KernelCall, batch: int):
    """(workspace tensor bytes, forward scratch, backward scratch) of one oneDNN LSTM layer, run forward
    and backward (the backward needs the forward's workspace), for training."""
    import torch

    args = call.args
    inp, weights, hx, cx = args[0], args[1:5], args[5], args[6]
    reverse, batch_sizes, mode, hidden, layers, biases, bidir, batch_first = args[7:15]
    bdim = _rnn_batch_dim(call)
    r_inp = _real(inp, batch, bdim)
    r_w = [_real(t) for t in weights]
    r_hx, r_cx = _real(hx, batch, 0), _real(cx, batch, 0)
    aten = torch.ops.aten
    y, hy, cy, ws = aten.mkldnn_rnn_layer(r_inp, *r_w, r_hx, r_cx, reverse, list(batch_sizes), mode, hidden,
                                          layers, biases, bidir, batch_first, True)
    grads = (torch.zeros_like(y), torch.zeros_like(hy), torch.zeros_like(cy))
    back = aten.mkldnn_rnn_layer_backward(r_inp, *r_w, r_hx, r_cx, y, hy, cy, *grads, reverse, mode, hidden,
                                          layers, biases, True, bidir, list(batch_sizes), batch_first, ws)
    ws_bytes = ws.untyped_storage().nbytes()
    del back, y, hy, cy, ws, grads

    def finish(found):
        (fp, fn), (bp, bn) = found
        return [ws_bytes, max(fp - fn, 0), max(bp - bn, 0)]

    return ["aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward"], finish


def _probe_matmul(call: KernelCall, batch):
    import torch

    name = call.op.split(".")[1]
    args = [_real(a) if isinstance(a, TensorInfo) else a for a in call.args]
    out = getattr(torch.ops.aten, name)(*args)
    del out, args
    return [f"aten::{name}"], lambda found: [max(found[0][0] - found[0][1], 0)]


def run_probes(requests: list[tuple[KernelCall, int | None]]) -> list[list[int]]:
    """Run every ``(call, batch)`` probe in one profiler session; their numbers, in order."""
    from collections import deque

    from torch.utils._python_dispatch import _disable_current_modes

    from memsim.measure.profiler import memory_profile, op_allocations

    pending = []
    with _disable_current_modes(), memory_profile() as profiled:
        for call, batch in requests:
            pending.append(_PROBES[call.op](call, batch))
    queues: dict[str, deque] = {}
    out = []
    for names, finish in pending:
        found = []
        for name in names:
            if name not in queues:
                queues[name] = deque(op_allocations(profiled.prof, name))
            found.append(queues[name].popleft() if queues[name] else (0, 0))
        out.append(finish(found))
    return out


def _rnn_forward_args(call: KernelCall) -> KernelCall:
    """The forward call an RNN backward call belongs to (same input, weights, states and flags)."""
    if call.op == RNN_LAYER:
        return call
    a = call.args
    # backward: input, w1..w4, hx, cx, output, hy, cy, grads x3, reverse, mode, hidden, layers, biases, train,
    # bidirectional, batch_sizes, batch_first, workspace
    fwd = (a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[13], a[20], a[14], a[15], a[16], a[17], a[19], a[21], True)
    return KernelCall(op_index=call.op_index, op=RNN_LAYER, args=fwd, batch=call.batch)


# ---- which batches to probe ----

def _batch_dims(call: KernelCall) -> list[tuple[int, int]]:
    return call.batch_dims()


def call_batch(call: KernelCall) -> int:
    """The batch size a call ran at (its first batched argument's batch dimension)."""
    return call.batch_size


def _probe_bytes(call: KernelCall, batch: int) -> int:
    """A rough bound on the real bytes one probe allocates at ``batch`` (arguments, results, scratch)."""
    own = call_batch(call)
    batched = {i for i, _ in _batch_dims(call)}
    total = 0
    for i, a in enumerate(call.args):
        if isinstance(a, TensorInfo):
            total += a.nbytes * batch // max(own, 1) if i in batched else a.nbytes
    factor = 10 if call.op in (RNN_LAYER, RNN_LAYER_BACKWARD) else 4
    return factor * total


def _min_batch(call: KernelCall, target: int) -> int:
    """Smallest batch whose kernel choice matches ``target``'s: ATen takes its own im2col convolution at
    batch 1 on small inputs and, with one thread, for unstrided 1x1 convolutions below batch 16
    (``ConvParams::use_mkldnn``), so probes for larger batches stay above those thresholds."""
    if call.op not in (CONVOLUTION, CONVOLUTION_BACKWARD):
        return 1
    import torch

    w = call.args[1] if call.op == CONVOLUTION else call.args[2]
    stride = call.args[3] if call.op == CONVOLUTION else call.args[4]
    pointwise = all(k == 1 for k in w.shape[2:]) and all(s == 1 for s in stride)
    if target >= 16 and pointwise and torch.get_num_threads() == 1:
        return 16
    return 2 if target >= 2 else 1


def probe_plan(call: KernelCall, limit: int) -> list[int]:
    """The batch sizes to probe for ``call``: its own batch when that fits ``limit`` bytes, else the two
    largest batches below it that do (at least ``_min_batch`` apart from the traced one's kernel choice)."""
    target = call_batch(call)
    if target <= 2 or _probe_bytes(call, target) <= limit:
        return [target]
    low = _min_batch(call, target)
    b2 = target - 1
    while b2 > low + 1 and _probe_bytes(call, b2) > limit:
        b2 = max(low + 1, b2 * 3 // 4)
    b1 = max(low, min(b2 - 1, math.ceil(b2 * 3 / 4)))
    return [b1, b2]


def _key(call: KernelCall, batch: int) -> str:
    dims = dict(_batch_dims(call))
    args = []
    for i, a in enumerate(call.args):
        if isinstance(a, TensorInfo):
            a = a.with_batch(batch, dims[i]) if i in dims else a
            args.append([list(a.shape), list(a.stride), a.dtype])
        elif isinstance(a, tuple) and any(isinstance(x, TensorInfo) for x in a):
            args.append("tensors")
        else:
            args.append(a)
    return json.dumps([call.op, args], separators=(",", ":"), default=str)


_PROBES = {CONVOLUTION: _probe_convolution, CONVOLUTION_BACKWARD: _probe_convolution_backward,
           RNN_LAYER: _probe_rnn_layer, **{op: _probe_matmul for op in MATMUL_OPS}}


class HostKernels:
    """The host CPU's kernels as a backend model: probes, cached in memory and on disk.

    ``cost(calls)`` sets, for every call, ``call.host["workspace"]`` (bytes of scratch at the op) and, for
    oneDNN LSTM layers, ``call.host["outputs"]`` = ``{output position: bytes}`` (the workspace tensor the
    fake kernel leaves empty).
    """

    def __init__(self, cache_directory: Path | None | str = "default"):
        if cache_directory == "default":
            from memsim.workflow.cache import cache_dir

            cache_directory = cache_dir()
        self.signature = host_signature()
        self.cache = ProbeCache(self.signature, Path(cache_directory) if cache_directory else None)
        self.limit = probe_limit()
        self.probes_run = 0

    def _measure(self, call: KernelCall, batch: int | None) -> list[int]:
        key = _key(call, batch)
        hit = self.cache.get(key)
        if hit is None:
            hit = run_probes([(call, batch)])[0]
            self.cache.put(key, hit)
            self.probes_run += 1
        return hit

    def _requests(self, call: KernelCall) -> list[tuple[KernelCall, int | None]]:
        """The probes ``call`` needs (what :meth:`values` will measure)."""
        if call.op in MATMUL_OPS:
            on_x86 = self.signature["machine"] in ("x86_64", "AMD64", "amd64")
            return [] if on_x86 else [(call, None)]
        probe_call = _rnn_forward_args(call) if call.op == RNN_LAYER_BACKWARD else call
        return [(probe_call, b) for b in probe_plan(probe_call, self.limit)]

    def prefetch(self, calls: list[KernelCall]) -> None:
        """Run every probe the calls need that the cache lacks, together in one profiler session."""
        missing: dict[str, tuple] = {}
        for call in calls:
            for probe_call, batch in self._requests(call):
                key = _key(probe_call, batch)
                if self.cache.get(key) is None and key not in missing:
                    missing[key] = (probe_call, batch)
        if missing:
            for key, values in zip(missing, run_probes(list(missing.values()))):
                self.cache.put(key, values)
            self.probes_run += len(missing)

    def _matmul(self, call: KernelCall) -> int:
        if self.signature["machine"] in ("x86_64", "AMD64", "amd64"):
            return 0
        return self._measure(call, None)[0]

    def values(self, call: KernelCall) -> list[int]:
        """The probe's numbers for ``call`` at its own batch (measured there, or extrapolated linearly from
        the two batches :func:`probe_plan` picks)."""
        probe_call = _rnn_forward_args(call) if call.op == RNN_LAYER_BACKWARD else call
        target = call_batch(probe_call)
        plan = probe_plan(probe_call, self.limit)
        if len(plan) == 1:
            return self._measure(probe_call, plan[0])
        (b1, b2), v1, v2 = plan, self._measure(probe_call, plan[0]), self._measure(probe_call, plan[1])
        return [max(0, a + (b - a) * (target - b1) // (b2 - b1)) for a, b in zip(v1, v2)]

    def cost(self, calls: list[KernelCall]) -> None:
        """Fill ``call.host`` for every call (bytes); saves new probes to the disk cache. Matrix products
        allocate nothing hidden on x86 (measured over the zoo's shapes), so they are probed only on other
        CPUs."""
        try:
            self.prefetch(calls)
            for call in calls:
                if call.op in MATMUL_OPS:
                    call.host = {"workspace": self._matmul(call)}
                    continue
                values = self.values(call)
                if call.op == RNN_LAYER:
                    call.host = {"workspace": values[1], "outputs": {3: values[0]}}
                elif call.op == RNN_LAYER_BACKWARD:
                    call.host = {"workspace": values[2] + _rnn_grad_copies(call)}
                else:
                    call.host = {"workspace": values[0]}
        finally:
            self.cache.save()


def _rnn_grad_copies(call: KernelCall) -> int:
    """Bytes the oneDNN LSTM backward adds before it runs: a contiguous copy of a strided incoming gradient
    (batch_first layers receive a transposed one) and zeros for undefined ones (an unused hy or cy). The
    probe passes contiguous gradients, so these come from the shapes."""
    extra = 0
    output, hy, cy = call.args[7], call.args[8], call.args[9]
    for grad, like in ((call.args[10], output), (call.args[11], hy), (call.args[12], cy)):
        if grad is None:
            extra += like.nbytes
        elif not grad.is_contiguous():
            extra += grad.nbytes
    return extra
