"""aarch64 CPU kernel model: the scratch PyTorch 2.13's aarch64 CPU kernels allocate inside convolutions.

Pure Python (no torch): tensors are :class:`~memsim.backends.tensor_info.TensorInfo`. Each function returns the
bytes to add at the op, as a ``Category.WORKSPACE`` record, so that *the op's inputs + outputs + scratch*
equal the largest live bytes the real kernel reaches inside the op — the convention of
:mod:`memsim.tracing.cpu` and :mod:`memsim.backends.host`: ``scratch = peak above the op's start - bytes
still allocated at its end``.

Where the numbers come from
---------------------------
Measured with PyPI's torch 2.13.0 aarch64 wheel (oneDNN v3.12.0 commit 80afa71 built with the Arm Compute
Library, NVPL BLAS) under qemu-user 7.2 (``QEMU_CPU=cortex-a76``) by ``memsim/measure/emulation/measure_cases.py
convs``: 1,096 ``aten.convolution`` / ``aten.convolution_backward`` calls (a grid of channels 2-128, kernels
1/3/4/5/7/8/16, strides 1-16, padding, dilation 2, groups 2/3/4 and depthwise, Conv1d, batch 1/2/4/8, five
output masks) at 1, 2 and 4 threads, each with its allocation sequence and (``ONEDNN_VERBOSE=1``) the
implementation oneDNN picked. Fixture: ``tests/fixtures/aarch64/conv_kernels.json``. The backward
formulas are oneDNN's own scratchpad booking (``src/cpu/gemm_convolution_utils.cpp`` at that commit, the
``!is_nspc`` branches), checked against every measured call.

Which kernel runs (ATen ``ConvParams::use_mkldnn``, the same rule as on x86, verified on the whole grid):
oneDNN when ``(strided or dilated or N >= 16 or not 1x1 or threads > 1) and (groups > 1 or (kh > 3 and
kw > 3) or N > 1 or N*C*H*W > 20480)``; otherwise ATen's ``slow_conv2d`` (im2col; ``groups == 1`` and no
dilation), ``slow_conv_dilated2d`` (dilation) or, for groups, one call per group and a concatenation.
Inside oneDNN:

forward (ACL for most shapes, measured ``acl`` implementations):

* ``indirect_gemm:acl`` (3-D/4-D, no dilation, kernel not 1x1, groups 1): ideep reorders the input to NHWC
  (``X`` bytes) and the weights to OHWI (``W``), ACL computes an NHWC output (``Y``); after X and W are
  freed the output is reordered back to NCHW and copied once more: live ``X + W + Y [+ ws]``, then ``3Y``.
  Scratch = ``max(X + W + Y + ws, 3Y) - Y``. ``ws`` is 0 except when arm_gemm picks its interleaved 8x12
  kernel (seen only for IC = 16, OC = 24, not for IC = 3, OC = 24 nor OC = 8/16/32/40/64/96: guessed
  rule ``OC % 12 == 0 and OC % 16 != 0 and IC % 16 == 0``): then
  ``ws = N * round_up(OH*OW, 8) * k_block * 4 + 4224 + 768 * threads`` with ``k_block`` arm_gemm's
  K blocking for a 32 KiB L1 (``K = IC*kh*kw`` split into ``ceil(K / 341)`` equal blocks).
* ``gemm:acl`` (1x1 kernels — only when oneDNN is chosen, i.e. strided, N >= 16 or threads > 1 — and
  dilated kernels): ``ws = im2col + Y + 128 per buffer``, im2col = ``N*OH*OW*IC*kh*kw*4`` bytes
  (none for a 1x1, stride-1, unpadded kernel); then X, W, Y as above.
* ``depthwise_convolution:acl`` (groups == IC == OC): ``ws = 8192 + 4*C*(kh*kw+1)`` (packed weights + bias)
  ``+ threads * 4*(9*C*(W+2p) + 11*C + 116)`` (per-thread working space, fitted exactly on the three 3x3
  stride-1 shapes measured; the one 5x5 and the one stride-2 shape measured are 21% over / 12% under it).
  Scratch = ``max(ws + X + W + Y, 3Y) - Y``.
* ``gemm:ref`` (grouped, not depthwise): im2col columns per thread, no reorders: scratch
  ``max(S + Y, 2Y) - Y`` with ``S = nthr * IC/G*kh*kw*OH*OW*4 + 128``, ``nthr`` by oneDNN's
  outer-threading rule (below; fwd variant).

backward (always oneDNN's reference im2col gemm, ``gemm:ref``, NCHW):

* backward data: ``S_d = nthr_d * im2col + 128`` bytes (nothing when im2col is empty), im2col =
  ``IC/G * kh*kw * OH*OW * 4`` bytes per thread (0 for 1x1, stride 1, same size); ``nthr_d = threads`` when
  oneDNN's *outer threading* holds — ``(OH*OW/T < 512 or kh*kw < 64) and (N != 1 or G > 2) and
  (eff(N*G) >= eff(ceil(IH*IW/4) * ceil(IC/4)) or IH*IW*IC*OC/T < 65536)`` with ``eff(w) = w /
  round_up(w, T)`` — else 1. Live: ``dX + S_d``, then a transient second ``dX``.
* backward weights (and bias): ``S_w = 4 * nthr_w * W + 128 + nthr_w * im2col + 128`` (oneDNN books
  ``nthr * weights_d.size()`` *floats* for the weight reduction although ``size()`` is in bytes, hence 4x),
  ``nthr_w = threads`` when ``OH*OW/T < 256 and (N != 1 or G > 2)`` and the estimate fits the scratchpad
  limit ``min(1 GiB, 15*T*(X+W+Y))``, else 1. Live: ``dX + dW + S_w + dB``, then ``dX + 2dW + 2dB``.
* Scratch = the largest phase minus ``dX + dW + dB`` (the outputs of the mask), plus a contiguous copy of a
  non-contiguous grad_output.
* The im2col buffer is shrunk (``os_block``) when it would exceed the scratchpad limit, as oneDNN does.

ATen's own kernels (taken when oneDNN is not; grouped 1x1 convolutions at 1 thread and batch < 16 run one
slow kernel per group and concatenate, scratch = the outputs once more): ``slow_conv2d`` forward/backward hold one im2col buffer of
``N*IC*kh*kw*OH*OW*4`` bytes (none for a plain 1x1; in the backward only when the weight gradient is
asked for), identical to x86; ``slow_conv_dilated2d`` holds one
sample's columns (+ a bias-sized buffer in the backward).

Matrix products (:func:`matmul_scratch`; measured by a probe of addmm/mm/bmm shapes under emulation and by
``measure_cases.py ops``): with a *transposed* second operand — ``x @ W.t()``, i.e. every ``nn.Linear``
forward — ``aten.addmm``/``aten.mm`` copy it first: scratch = ``K*round_up(N, 4)*4`` bytes (the weight,
N padded to 4; ``+1152`` when M == 1), at 1 and 4 threads alike (27 shapes x 2 thread counts exact); ``aten.bmm``/``aten.baddbmm`` copy one batch slice (``K*N*4``). A
contiguous or a transposed *first* operand costs nothing, as on x86. (NVPL BLAS is torch's BLAS in this
wheel.)

Other ops: LSTM (the aarch64 build also runs ``aten.mkldnn_rnn_layer``; same workspace bytes), batch/group/
layer norm, pooling, interpolation, SDPA, embedding, dropout and cross-entropy allocate the same bytes as on
x86 (``measure_cases.py ops`` at 1 and 4 threads; the whole-step peaks of the transformer, GRU, LSTM and
BiLSTM cases are byte-identical to x86 at 1, 2 and 4 threads). ``aten.gru``'s fused CPU kernel holds 38 KiB
more inside the op in the survey (its inner products copy their transposed weights); memsim traces GRU as
its decomposition, whose addmm/mm calls get the rule above.

Known limits
------------
* Threads 1, 2 and 4 measured; other counts follow the same formulas but are not validated.
* fp32 NCHW-contiguous inputs only; bf16/fp16, channels-last, transposed convolutions and 3-D convolutions
  return 0 (not modelled). NEON only: an SVE CPU (Neoverse V1/V2, Graviton 3) changes oneDNN's ``simd_w``
  and ACL's kernels.
* ACL's interleaved-kernel choice is a guess from one channel count (OC = 24); the depthwise per-thread
  working space is a fit on 3x3 kernels (see above).
* NNPACK (``_nnpack_spatial_convolution``, N >= 16 inference paths) is not modelled; training never took it
  in the measurements.
* The CPU model (A72/A76/A57) does not change these numbers (checked: whole-step peaks identical).
"""
from __future__ import annotations

import math

from memsim.backends.tensor_info import TensorInfo

__all__ = ["conv_backend", "conv_forward_scratch", "conv_backward_scratch", "forward_impl", "matmul_scratch",
           "MATMUL_OPS"]

#: oneDNN's scratchpad registry pads each booked buffer by this many bytes (``default_alignment``).
SCRATCH_ALIGN = 128
#: NEON fp32 lanes (oneDNN ``simd_w`` on a 128-bit vector machine).
SIMD_W = 4
#: oneDNN's ``gemm_thrld`` (outer vs inner threading) in elements.
GEMM_THRLD = 64 * 1024
#: arm_gemm's K block for its 8x12 interleaved fp32 kernel with a 32 KiB L1: (32768 / 2) / (4 * 12).
ACL_K_BLOCK_MAX = 341


# ---- shapes ----

class _Conv:
    """A convolution's geometry in oneDNN's terms (Conv1d seen as 2-D with height 1)."""

    def __init__(self, x: TensorInfo, w: TensorInfo, stride, padding, dilation, groups: int):
        xs, ws = tuple(x.shape), tuple(w.shape)
        nd = len(xs) - 2
        stride, padding, dilation = _expand(stride, nd), _expand(padding, nd), _expand(dilation, nd)
        if nd == 1:
            xs, ws = (xs[0], xs[1], 1, xs[2]), (ws[0], ws[1], 1, ws[2])
            stride, padding, dilation = (1, *stride), (0, *padding), (1, *dilation)
        self.nd = nd
        self.n, self.ic_total, self.ih, self.iw = xs
        self.oc_total, self.ic, self.kh, self.kw = ws
        self.g = int(groups)
        self.oc = self.oc_total // max(self.g, 1)
        self.sh, self.sw = stride
        self.ph, self.pw = padding
        self.dh, self.dw = dilation
        self.oh = (self.ih + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1
        self.ow = (self.iw + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1
        self.item = x.itemsize
        self.ks = self.kh * self.kw
        self.os = self.oh * self.ow
        self.is_ = self.ih * self.iw
        self.x_bytes = self.n * self.ic_total * self.is_ * self.item
        self.w_bytes = self.oc_total * self.ic * self.ks * self.item
        self.y_bytes = self.n * self.oc_total * self.os * self.item

    @property
    def dilated(self) -> bool:
        return self.dh != 1 or self.dw != 1

    @property
    def strided(self) -> bool:
        return self.sh != 1 or self.sw != 1

    @property
    def depthwise(self) -> bool:
        return self.g > 1 and self.ic == 1 and self.oc == 1

    def im2col_elems(self) -> int:
        """oneDNN's per-thread ``im2col_sz`` (elements): 0 for a 1x1, stride-1 conv of the same size."""
        if self.oh == self.ih and self.ow == self.iw and not self.strided and self.ks == 1:
            return 0
        return self.ic * self.ks * self.os


def _expand(v, nd: int) -> tuple:
    if isinstance(v, int):
        return (v,) * nd
    v = tuple(int(a) for a in v)
    return v * nd if len(v) == 1 and nd > 1 else v


def _supported(x: TensorInfo, w: TensorInfo, transposed: bool) -> bool:
    return (x.dim() in (3, 4) and w.dim() == x.dim() and not transposed and x.dtype == "float32"
            and x.is_contiguous())


def conv_backend(x: TensorInfo, w: TensorInfo, stride, padding, dilation, transposed: bool, groups: int,
                 threads: int) -> str | None:
    """Which kernel ATen runs: "mkldnn" (oneDNN+ACL), "slow2d", "dilated2d", "grouped" (one call per group)
    or None (a case this model does not cover: transposed, non-fp32, non-contiguous, 3-D)."""
    if not _supported(x, w, transposed):
        return None
    c = _Conv(x, w, stride, padding, dilation, groups)
    first = c.strided or c.dilated or c.n >= 16 or c.kw != 1 or c.kh != 1 or threads > 1
    second = c.g > 1 or (c.kw > 3 and c.kh > 3) or c.n > 1 or c.n * c.ic_total * c.ih * c.iw > 20480
    if first and second:
        return "mkldnn"
    if c.g > 1:
        return "grouped"
    return "dilated2d" if c.dilated else "slow2d"


def forward_impl(x: TensorInfo, w: TensorInfo, stride, padding, dilation, groups: int) -> str:
    """oneDNN's forward implementation for an fp32 NCHW convolution on this build (as ONEDNN_VERBOSE names
    it): "depthwise_convolution:acl", "gemm:ref" (grouped), "gemm:acl" (1x1 or dilated) or
    "indirect_gemm:acl"."""
    c = _Conv(x, w, stride, padding, dilation, groups)
    if c.depthwise:
        return "depthwise_convolution:acl"
    if c.g > 1:
        return "gemm:ref"
    if c.ks == 1 or c.dilated:
        return "gemm:acl"
    return "indirect_gemm:acl"


# ---- oneDNN gemm:ref threading (gemm_convolution_utils.cpp, !is_nspc) ----

def _eff(work: int, threads: int) -> float:
    return work / (math.ceil(work / threads) * threads) if work > 0 else 0.0


def _scratch_limit(c: _Conv, threads: int) -> int:
    return min(1 << 30, 15 * threads * (c.x_bytes + c.w_bytes + c.y_bytes))


def _nthr_fwd(c: _Conv, threads: int) -> int:
    """Threads holding an im2col buffer in the grouped forward. oneDNN's cache-blocking path (taken when
    there are columns and ``N*G*OH*OW >= T*simd_w``) always threads the outer loop; it may also shrink the
    buffer (os/ic blocks from an L2 cost model), which this ignores (measured: at most 2x over, for one
    2-group batch-1 shape at 4 threads)."""
    if threads <= 1:
        return 1
    if c.im2col_elems() and c.n * c.g * c.os >= threads * SIMD_W:
        return threads
    outer = _eff(c.g * c.n, threads)
    inner = _eff(math.ceil(c.os / SIMD_W) * math.ceil(c.oc / SIMD_W), threads)
    ok = (c.os // threads < 512 and (c.n != 1 or c.g > 2)
          and ((inner > 0 and outer / inner >= 1.0) or c.os * c.ic * c.oc // threads < GEMM_THRLD))
    return threads if ok else 1


def _nthr_bwd_data(c: _Conv, threads: int) -> int:
    if threads <= 1:
        return 1
    outer = _eff(c.g * c.n, threads)
    inner = _eff(math.ceil(c.is_ / SIMD_W) * math.ceil(c.ic / SIMD_W), threads)
    ok = ((c.os // threads < 512 or c.ks < 64) and (c.n != 1 or c.g > 2)
          and ((inner > 0 and outer / inner >= 1.0) or c.is_ * c.ic * c.oc // threads < GEMM_THRLD))
    return threads if ok else 1


def _nthr_bwd_weights(c: _Conv, threads: int) -> int:
    if threads <= 1:
        return 1
    estimate = 4 * threads * c.w_bytes + 4 * threads * c.ic * c.ks * SIMD_W
    ok = estimate < _scratch_limit(c, threads) and c.os // threads < 256 and (c.n != 1 or c.g > 2)
    return threads if ok else 1


def _booked(*sizes: int) -> int:
    """Bytes of a oneDNN scratchpad holding these buffers (each non-empty one padded by 128 B)."""
    return sum(s + SCRATCH_ALIGN for s in sizes if s > 0)


def _col_bytes(c: _Conv, nthr: int, other: int) -> int:
    """``nthr`` im2col buffers, shrunk like oneDNN when they would overflow the scratchpad limit."""
    col = c.im2col_elems()
    if not col:
        return 0
    total = nthr * col * 4
    available = _scratch_limit(c, nthr if nthr > 1 else 1) - other
    if available < total:
        max_os_block = available // (4 * nthr * (col // c.os))
        os_block = max(SIMD_W, int(max_os_block * 0.1))
        total = nthr * c.ic * c.ks * os_block * 4
    return total


def _bwd_data_scratch(c: _Conv, threads: int) -> int:
    return _booked(_col_bytes(c, _nthr_bwd_data(c, threads), 0))


def _bwd_weights_scratch(c: _Conv, threads: int) -> int:
    nthr = _nthr_bwd_weights(c, threads)
    reduction = 4 * nthr * c.w_bytes
    return _booked(reduction, _col_bytes(c, nthr, reduction + SCRATCH_ALIGN))


# ---- forward ----

def _acl_interleaved_ws(c: _Conv, threads: int) -> int:
    """arm_gemm's interleaved 8x12 kernel working space (only picked for some channel counts, see above)."""
    if not (c.oc % 12 == 0 and c.oc % 16 != 0 and c.ic % 16 == 0):
        return 0
    k = c.ic * c.ks
    blocks = math.ceil(k / ACL_K_BLOCK_MAX)
    k_block = math.ceil(k / blocks)
    return c.n * (math.ceil(c.os / 8) * 8) * k_block * 4 + 4224 + 768 * threads


def _depthwise_ws(c: _Conv, threads: int) -> int:
    packed = 8192 + 4 * c.oc_total * (c.ks + 1)
    per_thread = 4 * (9 * c.oc_total * (c.iw + 2 * c.pw) + 11 * c.oc_total + 116)
    return packed + threads * per_thread


def _slow2d_cols(c: _Conv) -> int:
    if c.ks == 1 and not c.strided and c.ph == 0 and c.pw == 0:
        return 0
    return c.n * c.ic_total * c.ks * c.os * c.item


def conv_forward_scratch(x: TensorInfo, w: TensorInfo, bias_defined: bool, stride, padding, dilation,
                         transposed: bool, output_padding, groups: int, threads: int) -> int:
    """Scratch bytes of ``aten.convolution`` (aten's argument order) on PyTorch 2.13's aarch64 CPU kernels
    with ``threads`` intra-op threads; 0 for cases the model does not cover (see the module docstring)."""
    backend = conv_backend(x, w, stride, padding, dilation, transposed, groups, threads)
    if backend is None:
        return 0
    c = _Conv(x, w, stride, padding, dilation, groups)
    X, W, Y = c.x_bytes, c.w_bytes, c.y_bytes
    if backend == "slow2d":
        return _slow2d_cols(c)
    if backend == "dilated2d":
        return c.ic_total * c.ks * c.os * c.item
    if backend == "grouped":
        return Y
    impl = forward_impl(x, w, stride, padding, dilation, groups)
    if impl == "gemm:ref":
        nthr = _nthr_fwd(c, threads)
        s = _booked(nthr * c.im2col_elems() * 4)
        return max(s + Y, 2 * Y) - Y
    if impl == "depthwise_convolution:acl":
        ws = _depthwise_ws(c, threads)
    elif impl == "gemm:acl":
        im2col = 0 if (c.ks == 1 and not c.strided and c.ph == 0 and c.pw == 0) else c.n * c.os * c.ic * c.ks * 4
        ws = _booked(im2col, Y)
    else:
        ws = _acl_interleaved_ws(c, threads)
    return max(ws + X + W + Y, 3 * Y) - Y


# ---- backward ----

def conv_backward_scratch(grad_out: TensorInfo, x: TensorInfo, w: TensorInfo, bias_sizes, stride, padding,
                          dilation, transposed: bool, output_padding, groups: int, output_mask,
                          threads: int) -> int:
    """Scratch bytes of ``aten.convolution_backward`` (aten's argument order) on PyTorch 2.13's aarch64 CPU
    kernels with ``threads`` intra-op threads; 0 for cases the model does not cover."""
    backend = conv_backend(x, w, stride, padding, dilation, transposed, groups, threads)
    if backend is None:
        return 0
    c = _Conv(x, w, stride, padding, dilation, groups)
    mask = tuple(bool(m) for m in output_mask)
    g_copy = 0 if grad_out.is_contiguous() else grad_out.nbytes
    dx = c.x_bytes if mask[0] else 0
    dw = c.w_bytes if mask[1] else 0
    db = c.oc_total * c.item if (mask[2] and bias_sizes is not None) else 0
    if backend == "slow2d":
        # columns only for the weight gradient (measured: none for output_mask (True, False, False))
        extra = _slow2d_cols(c) if mask[1] else 0
        return extra + g_copy
    if backend == "dilated2d":
        extra = c.ic_total * c.ks * c.os * c.item if (mask[0] or mask[1]) else 0
        return extra + db + g_copy
    if backend == "grouped":
        # one call per group, then the per-group gradients are concatenated: they are alive next to the
        # outputs (measured exactly at batch 1; at batch 4 the weight-only masks measured 16 KiB more)
        return dx + dw + db + g_copy
    phases = [0]
    if mask[0]:
        phases += [dx + _bwd_data_scratch(c, threads), 2 * dx]
    if mask[1] or db:
        s_w = _bwd_weights_scratch(c, threads)
        phases += [dx + dw + s_w + db, dx + 2 * dw + 2 * db]
    return max(max(phases) - (dx + dw + db), 0) + g_copy


# ---- matrix products ----

#: Ops :func:`matmul_scratch` knows.
MATMUL_OPS = ("aten.addmm.default", "aten.mm.default", "aten.bmm.default", "aten.baddbmm.default")


def _transposed_2d(t: TensorInfo) -> bool:
    """A column-major 2-D operand (a ``.t()`` of a contiguous matrix), sizes > 1."""
    if t.dim() != 2 or t.is_contiguous():
        return False
    rows, cols = t.shape
    return t.stride[0] == 1 and t.stride[1] == rows and rows > 1 and cols > 1


def matmul_scratch(op: str, args: tuple) -> int:
    """Scratch bytes of an fp32 ``aten.addmm``/``mm``/``bmm``/``baddbmm`` call (aten's argument order) on
    the aarch64 build: a contiguous copy of a transposed second operand (one batch slice for bmm)."""
    if op in ("aten.addmm.default",):
        mat1, mat2 = args[1], args[2]
    elif op == "aten.mm.default":
        mat1, mat2 = args[0], args[1]
    elif op == "aten.bmm.default":
        mat1, mat2 = args[0], args[1]
    elif op == "aten.baddbmm.default":
        mat1, mat2 = args[1], args[2]
    else:
        return 0
    if not isinstance(mat2, TensorInfo) or mat2.dtype != "float32":
        return 0
    if mat2.dim() == 3:
        b, k, n = mat2.shape
        if mat2.stride[1] == 1 and mat2.stride[2] == k and k > 1 and n > 1:
            return k * n * mat2.itemsize
        return 0
    if not _transposed_2d(mat2):
        return 0
    k, n = mat2.shape
    extra = 1152 if isinstance(mat1, TensorInfo) and mat1.dim() == 2 and mat1.shape[0] == 1 else 0
    return k * (-(-n // 4) * 4) * mat2.itemsize + extra
