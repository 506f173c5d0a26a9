"""CPU backend rules: memory the real CPU kernels allocate that the fake kernels do not show.

Each rule was derived from ``torch.profiler`` allocation events of the real kernels (torch 2.13, x86-64 with
oneDNN; measured with the scripts behind ``tests/test_tracing_fidelity.py``). A rule adds
``Category.WORKSPACE`` records with ``birth == death`` = the op, sized so that the op's live bytes (its
inputs, its outputs and the workspace) equal the largest live bytes the real kernel reaches inside the op.

oneDNN convolution (``aten.convolution`` / ``aten.convolution_backward`` on 4-D fp32 NCHW tensors, when
ATen picks oneDNN — see :func:`uses_mkldnn_conv`): oneDNN computes in blocked layouts with channels padded
to a multiple of 8 (``nChw8c``), so each call reorders its operands into scratch buffers and the result back:

* forward: input reorder ``Xr`` (when IC >= 8), weight reorder ``Wr``, blocked output ``Yb``; then the
  plain output is allocated while ``Yb`` is alive. Extra over the output: ``max(Xr + Wr + Yb - Y, Yb)``.
* backward data: grad-output reorder ``Gr``, ``Wr``, blocked grad-input ``dXb``; then ``dXb + dX``.
* backward weights: ``dX + Gr + Xr + dWb + dBb``; then ``dX + dWb + dBb + dB + dW``.
  Extra over the outputs ``dX + dW + dB`` is the largest of those phases minus the outputs.
* a non-contiguous grad-output is first copied to a contiguous one (alive during the whole op).

* weight gradient of a large kernel (more than 7x7) on fewer than 8 input channels (ViT's patchify conv):
  oneDNN's gemm implementation, with per-thread scratch of ``4 x weight + one sample's im2col columns``
  (times ``torch.get_num_threads()`` of the tracing process).

ATen's own convolution (``slow_conv2d``, taken when oneDNN is not, e.g. batch 1 on small 3x3 feature maps
with fewer than 20480 input elements) unfolds the input into an im2col buffer of
``N x (IC*kh*kw) x (OH*OW)`` elements for the forward and one such buffer for the backward (none for a
1x1, stride 1, unpadded kernel).

oneDNN LSTM (``aten.mkldnn_rnn_layer`` and its backward): the fake kernel returns an empty workspace tensor,
the real one a oneDNN workspace (saved for backward) plus scratch; their sizes come from oneDNN's internal
layout, so they are *probed* (the backward also copies a strided incoming gradient to a contiguous one and
makes zeros for undefined ones, which the rule adds from the shapes): the real kernel runs once on zeros of the same shapes under the profiler
(cached per shape; a long layer is probed at batch 1 and 2 and extrapolated linearly in the batch).
"""
from __future__ import annotations

import math

#: oneDNN blocks channels by 8 for fp32 on this backend (measured: 2 → 8, 12 → 16, 20 → 24 channels).
CHANNEL_BLOCK = 8
#: Largest real tensor bytes a probe may allocate before it falls back to batch extrapolation.
PROBE_LIMIT_BYTES = 32 << 20


#: Kernels larger than this (in taps, kh*kw) on fewer than CHANNEL_BLOCK input channels take oneDNN's
#: gemm-based weight gradient (measured: 16x16 yes, 7x7 no).
GEMM_KERNEL_AREA = 49


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _pad(c: int) -> int:
    return int(math.ceil(c / CHANNEL_BLOCK) * CHANNEL_BLOCK)


def _mkldnn_eligible(x, w, stride, dilation, groups: int) -> bool:
    """ATen's ``ConvParams::use_mkldnn`` for fp32 CPU tensors."""
    import torch

    if not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled:
        return False
    if x.dtype != torch.float32:
        return False
    strided = any(s != 1 for s in stride)
    dilated = any(d != 1 for d in dilation)
    n, c, h, wd = x.shape
    kh, kw = w.shape[-2], w.shape[-1]
    if not (strided or dilated or n >= 16 or kw != 1 or kh != 1 or torch.get_num_threads() > 1):
        return False
    return groups > 1 or (kw > 3 and kh > 3) or n > 1 or n * c * h * wd > 20480


def conv_backend(x, w, stride, dilation, transposed: bool, groups: int) -> str | None:
    """Which CPU convolution kernel these operands get, for the cases a rule models: "mkldnn" (oneDNN, fp32
    NCHW-contiguous 4-D) or "slow2d" (ATen's im2col kernel: fp32 4-D, no groups, no dilation, when oneDNN
    is not picked); None for anything else (no rule, no workspace predicted)."""
    import torch

    if x.dim() != 4 or transposed or x.dtype != torch.float32 or not x.is_contiguous():
        return None
    if _mkldnn_eligible(x, w, stride, dilation, groups):
        return "mkldnn"
    if groups == 1 and all(d == 1 for d in dilation):
        return "slow2d"
    return None


def uses_mkldnn_conv(x, w, stride, dilation, transposed: bool, groups: int) -> bool:
    """Whether ATen's CPU convolution picks oneDNN for these operands and this rule models them."""
    return conv_backend(x, w, stride, dilation, transposed, groups) == "mkldnn"


def _slow2d_columns(x, w, out_hw, stride, padding) -> int:
    """Bytes of the im2col buffer ``_slow_conv2d_forward``/``_backward`` allocate (0 for a plain 1x1)."""
    kh, kw = w.shape[-2], w.shape[-1]
    if kh == 1 and kw == 1 and all(s == 1 for s in stride) and all(p == 0 for p in padding):
        return 0
    n, ic = x.shape[0], x.shape[1]
    return n * ic * kh * kw * out_hw[0] * out_hw[1] * x.element_size()


def _conv_forward_extra(x, w, y, groups: int) -> int:
    n, ic = x.shape[0], x.shape[1]
    oc = w.shape[0]
    item = x.element_size()
    k = w.shape[2] * w.shape[3]
    x_r = n * _pad(ic) * x.shape[2] * x.shape[3] * item if ic >= CHANNEL_BLOCK else 0
    w_r = _weight_reorder_bytes(w, ic, oc, k, groups, item)
    y_b = n * _pad(oc) * y.shape[2] * y.shape[3] * item
    y_bytes = y.numel() * item
    return max(x_r + w_r + y_b - y_bytes, y_b)


def _weight_reorder_bytes(w, ic: int, oc: int, k: int, groups: int, item: int) -> int:
    if groups > 1:
        return w.numel() * item
    if ic < CHANNEL_BLOCK:
        return oc * ic * k * item
    return _pad(oc) * _pad(ic) * k * item


def _conv_backward_extra(g, x, w, mask, groups: int) -> int:
    n, ic, h, wd = x.shape
    oc = w.shape[0]
    item = x.element_size()
    k = w.shape[2] * w.shape[3]
    oh, ow = g.shape[2], g.shape[3]
    g_copy = 0 if g.is_contiguous() else g.numel() * item
    g_r = n * _pad(oc) * oh * ow * item
    w_r = _weight_reorder_bytes(w, ic, oc, k, groups, item)
    dx = x.numel() * item if mask[0] else 0
    dx_b = n * _pad(ic) * h * wd * item if mask[0] else 0
    dw = w.numel() * item if mask[1] else 0
    db = oc * item if mask[2] else 0
    x_r = n * _pad(ic) * h * wd * item if ic >= CHANNEL_BLOCK else 0
    if mask[1] and not mask[0] and ic < CHANNEL_BLOCK and k > GEMM_KERNEL_AREA and groups == 1:
        # oneDNN's gemm-based weight gradient (large kernels on few input channels, e.g. a ViT patchify
        # conv): per thread, four weight-sized accumulators and one sample's im2col columns.
        cols = ic * k * oh * ow * item
        scratch = torch_threads() * (4 * w.numel() * item + cols)
        return scratch + g_copy
    phases = [0]
    if mask[0]:
        phases += [g_r + w_r + dx_b, dx_b + dx]
    if mask[1]:
        dw_b = w_r if ic >= CHANNEL_BLOCK or groups > 1 else dw
        phases += [dx + g_r + x_r + dw_b + db, dx + dw_b + db + db + dw]
    return max(max(phases) - (dx + dw + db), 0) + g_copy


class _As4d:
    """Shape-only stand-in for a 3-D (Conv1d) tensor seen as ATen's ``view4d`` sees it: (N, C, 1, L)."""

    def __init__(self, t):
        self.shape = tuple(t.shape[:2]) + (1,) + tuple(t.shape[2:])
        self.dtype = t.dtype
        self._item = t.element_size()
        self._contiguous = t.is_contiguous()

    def dim(self) -> int:
        return 4

    def numel(self) -> int:
        return math.prod(self.shape)

    def element_size(self) -> int:
        return self._item

    def is_contiguous(self) -> bool:
        return self._contiguous


def _conv_as_2d(tensors, stride, padding, dilation):
    """Conv1d runs as a 2-D convolution with a height of 1 (``view1d_as_2d``)."""
    if tensors[0].dim() != 3:
        return tensors, stride, padding, dilation
    return ([_As4d(t) for t in tensors], (1, *stride), (0, *padding), (1, *dilation))


class CpuRules:
    """Hidden allocations of PyTorch's CPU kernels (see the module docstring)."""

    def __init__(self):
        import torch

        aten = torch.ops.aten
        self._handlers = {
            aten.convolution.default: self._conv,
            aten.convolution_backward.default: self._conv_backward,
            aten.mkldnn_rnn_layer.default: self._rnn_forward,
            aten.mkldnn_rnn_layer_backward.default: self._rnn_backward,
        }
        self._rnn_cache: dict = {}

    def on_op(self, recorder, index, func, args, kwargs, out) -> None:
        handler = self._handlers.get(func)
        if handler is not None:
            handler(recorder, index, args, kwargs, out)

    # ---- oneDNN convolution ----
    def _conv(self, rec, index, args, kwargs, out) -> None:
        stride, padding, dilation, transposed, _, groups = args[3:9]
        (x, w, out), stride, padding, dilation = _conv_as_2d([args[0], args[1], out], stride, padding, dilation)
        backend = conv_backend(x, w, stride, dilation, transposed, groups)
        if backend == "mkldnn":
            extra, label = _conv_forward_extra(x, w, out, groups), "onednn_conv_fwd"
        elif backend == "slow2d":
            extra, label = _slow2d_columns(x, w, out.shape[2:], stride, padding), "im2col_conv_fwd"
        else:
            extra, label = 0, "conv_fwd"
        # One record per convolution even when empty, so traces at two batch sizes (which may pick different
        # kernels) keep the same storages for Trace.attach_scaling.
        rec.add_workspace(max(extra, 0), index, label, rec.ops[index].module)

    def _conv_backward(self, rec, index, args, kwargs, out) -> None:
        stride, padding, dilation, transposed, _, groups, mask = args[4:11]
        (g, x, w), stride, padding, dilation = _conv_as_2d(list(args[:3]), stride, padding, dilation)
        backend = conv_backend(x, w, stride, dilation, transposed, groups)
        if backend == "mkldnn":
            extra, label = _conv_backward_extra(g, x, w, mask, groups), "onednn_conv_bwd"
        elif backend == "slow2d":
            # one column buffer, shared by the input and weight gradients; grad_output made contiguous
            extra = _slow2d_columns(x, w, g.shape[2:], stride, padding) if (mask[0] or mask[1]) else 0
            extra += 0 if g.is_contiguous() else g.numel() * g.element_size()
            label = "im2col_conv_bwd"
        else:
            extra, label = 0, "conv_bwd"
        rec.add_workspace(max(extra, 0), index, label, rec.ops[index].module)

    # ---- oneDNN LSTM ----
    def _rnn_key(self, inp, weights, hidden_size, bidirectional, batch_first):
        return (tuple(inp.shape), str(inp.dtype), tuple(tuple(w.shape) for w in weights), int(hidden_size),
                bool(bidirectional), bool(batch_first))

    def _rnn_forward(self, rec, index, args, kwargs, out) -> None:
        from memsim.tracing.probe import probe_mkldnn_rnn_layer

        inp, weights = args[0], args[1:5]
        hidden_size, bidirectional, batch_first, train = args[10], args[13], args[14], args[15]
        key = self._rnn_key(inp, weights, hidden_size, bidirectional, batch_first)
        if key not in self._rnn_cache:
            self._rnn_cache[key] = probe_mkldnn_rnn_layer(args, PROBE_LIMIT_BYTES)
        ws_bytes, fwd_extra, _ = self._rnn_cache[key]
        if train and len(out) > 3:
            i = rec.index_of(out[3])
            if i is not None:
                rec.entries[i].nbytes = ws_bytes
        rec.add_workspace(max(fwd_extra, 0), index, "onednn_rnn_fwd", rec.ops[index].module)

    def _rnn_backward(self, rec, index, args, kwargs, out) -> None:
        inp, weights = args[0], args[1:5]
        hidden_size, bidirectional, batch_first = args[15], args[19], args[21]
        cached = self._rnn_cache.get(self._rnn_key(inp, weights, hidden_size, bidirectional, batch_first))
        extra = cached[2] if cached is not None else 0
        # The kernel makes the incoming gradients usable first: a contiguous copy of a strided grad_output
        # (batch_first layers receive a transposed one) and zeros for undefined ones (unused hy/cy).
        output, hy, cy = args[7], args[8], args[9]
        for grad, like in ((args[10], output), (args[11], hy), (args[12], cy)):
            if grad is None:
                extra += like.numel() * like.element_size()
            elif not grad.is_contiguous():
                extra += grad.numel() * grad.element_size()
        rec.add_workspace(max(extra, 0), index, "onednn_rnn_bwd", rec.ops[index].module)
