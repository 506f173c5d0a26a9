"""Probes: run one real CPU kernel on zeros of the traced shapes to learn what it allocates.

Used only for kernels whose hidden allocations come from a library's internal layout that no shape formula
captures well (oneDNN's LSTM workspace). The probe runs outside the tracer's fake mode, once per distinct
shape (callers cache), under the profiler; its real tensors are bounded by ``limit_bytes`` (beyond that it
probes batch 1 and 2 and extrapolates linearly in the batch).
"""
from __future__ import annotations


def _op_allocations(prof, op_name: str) -> list[tuple[int, int]]:
    """(peak above the start, net at the end) for each call of ``op_name`` in a profile, in order."""
    from torch._C._profiler import _EventType

    out = []

    def allocs(e, acc):
        if e.typed[0] == _EventType.Allocation:
            acc.append((e.start_time_ns, e.typed[1].alloc_size))
            return
        for c in e.children:
            allocs(c, acc)

    def visit(e):
        if e.name == op_name:
            acc: list = []
            allocs(e, acc)
            acc.sort()
            live = peak = 0
            for _, size in acc:
                live += size
                peak = max(peak, live)
            out.append((peak, live))
            return
        for c in e.children:
            visit(c)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        visit(root)
    return out


def _rnn_probe_once(args, batch: int | None) -> tuple[int, int, int]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    inp, weights, hx, cx = args[0], args[1:5], args[5], args[6]
    reverse, batch_sizes, mode, hidden, layers, biases, bidir, batch_first, train = args[7:16]
    bdim = 0 if batch_first else 1

    def real(t, batch_dim=None):
        shape = list(t.shape)
        if batch is not None and batch_dim is not None:
            shape[batch_dim] = batch
        return torch.zeros(shape, dtype=t.dtype)

    r_inp = real(inp, bdim)
    r_w = [real(w) for w in weights]
    r_hx, r_cx = real(hx, 0), real(cx, 0)
    aten = torch.ops.aten
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = aten.mkldnn_rnn_layer(r_inp, *r_w, r_hx, r_cx, reverse, batch_sizes, mode, hidden, layers, biases,
                                    bidir, batch_first, True)
        y, hy, cy, ws = out
        grads = (torch.zeros_like(y), torch.zeros_like(hy), torch.zeros_like(cy))
        back = aten.mkldnn_rnn_layer_backward(r_inp, *r_w, r_hx, r_cx, y, hy, cy, *grads, reverse, mode, hidden,
                                              layers, biases, True, bidir, batch_sizes, batch_first, ws)
        del back
    ws_bytes = ws.untyped_storage().nbytes()
    fwd = _op_allocations(prof, "aten::mkldnn_rnn_layer")
    bwd = _op_allocations(prof, "aten::mkldnn_rnn_layer_backward")
    fwd_extra = fwd[0][0] - fwd[0][1] if fwd else 0
    bwd_extra = bwd[0][0] - bwd[0][1] if bwd else 0
    return ws_bytes, max(fwd_extra, 0), max(bwd_extra, 0)


def probe_mkldnn_rnn_layer(args, limit_bytes: int) -> tuple[int, int, int]:
    """(workspace tensor bytes, forward scratch bytes, backward scratch bytes) of one oneDNN LSTM layer call
    with the shapes of ``args`` (the fake call's arguments), for training."""
    from torch.utils._python_dispatch import _disable_current_modes

    inp = args[0]
    batch_first = args[14]
    batch = inp.shape[0 if batch_first else 1]
    hidden = args[10]
    # the real tensors of one probe: input, output, states and the grads, ~ 10 x (input + output)
    estimate = 10 * (inp.numel() // max(inp.shape[-1], 1)) * (inp.shape[-1] + 4 * hidden) * inp.element_size()
    with _disable_current_modes():
        if estimate <= limit_bytes or batch <= 2:
            return _rnn_probe_once(args, None)
        one = _rnn_probe_once(args, 1)
        two = _rnn_probe_once(args, 2)
    return tuple(a + (b - a) * (batch - 1) for a, b in zip(one, two))
