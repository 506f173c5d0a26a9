"""Kernel models: for a :class:`~memsim.backends.calls.KernelCall`, the bytes a backend's kernels add at that op.

``kernel_model(backend).cost(call, threads)`` returns ``{"workspace": bytes}`` and, for kernels whose outputs
are backend-sized, ``{output position: bytes}``. The host's own kernels are not costed here: they were
measured when tracing (:mod:`memsim.backends.host`).

Example:
    >>> from memsim.backends.tensor_info import TensorInfo
    >>> from memsim.backends.calls import KernelCall, CONVOLUTION
    >>> x = TensorInfo((2, 16, 8, 8), (1024, 64, 8, 1), "float32")
    >>> w = TensorInfo((16, 16, 3, 3), (144, 9, 3, 1), "float32")
    >>> call = KernelCall(0, CONVOLUTION, (x, w, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1))
    >>> kernel_model(Backend.CUDA).cost(call, threads=1)
    {'workspace': 0}
"""
from __future__ import annotations

from memsim.backends.calls import CONVOLUTION, CONVOLUTION_BACKWARD, MATMUL_OPS, KernelCall
from memsim.backends.kinds import Backend


class CudaKernels:
    """cuDNN's workspaces cannot be known without a GPU (PyTorch's v8 API picks the engine at run time and
    falls back to another when a workspace does not fit): 0, their lower bound, is used. LSTM layers keep the
    trace's oneDNN workspace tensor as a stand-in for cuDNN's reserve."""

    notes = ("cuDNN convolution workspaces are not known without a GPU: assumed 0 (their lower bound)",)

    def cost(self, call: KernelCall, threads: int) -> dict:
        return {"workspace": 0}     # convolutions at their lower bound; cuBLAS keeps its own workspace


class X86Kernels:
    """x86 scratch for a trace made on another CPU architecture: not measurable there; the tracing host's
    measured scratch stands in (said in the report)."""

    notes = ("x86 kernels not measured: the trace was made on another CPU architecture, whose kernel scratch "
             "is used instead",)

    def cost(self, call: KernelCall, threads: int) -> dict:
        return {"workspace": int(call.host.get("workspace", 0)), **{int(k): v for k, v in
                                                                    call.host.get("outputs", {}).items()}}


class Aarch64Kernels:
    """PyTorch's aarch64 CPU kernels: ACL forward convolutions and oneDNN's reference gemm backward with one
    scratch buffer per thread (rules in :mod:`memsim.backends.aarch64`, fitted to emulated measurements)."""

    def __init__(self):
        try:
            from memsim.backends import aarch64
        except ImportError:
            aarch64 = None
        self._rules = aarch64
        self.notes = () if aarch64 is not None else (
            "no aarch64 convolution rules in this installation: their scratch is taken as 0",)

    def cost(self, call: KernelCall, threads: int) -> dict:
        r = self._rules
        if r is None:
            return {"workspace": 0}
        if call.op == CONVOLUTION:
            return {"workspace": int(r.conv_forward_scratch(*_conv_args(call.args), threads=threads))}
        if call.op == CONVOLUTION_BACKWARD:
            return {"workspace": int(r.conv_backward_scratch(*call.args, threads=threads))}
        if call.op in MATMUL_OPS:
            return {"workspace": int(r.matmul_scratch(call.op, call.args))}
        return {"workspace": int(call.host.get("workspace", 0)), **{int(k): v for k, v in
                                                                    call.host.get("outputs", {}).items()}}


def _conv_args(args: tuple) -> tuple:
    """aten.convolution's arguments with the bias tensor turned into whether it is defined."""
    x, w, bias, *rest = args
    return (x, w, bias is not None, *rest)


def kernel_model(backend: Backend):
    """The kernel model of ``backend`` (see the module docstring)."""
    backend = Backend(backend)
    if backend is Backend.CUDA:
        return CudaKernels()
    if backend is Backend.AARCH64:
        return Aarch64Kernels()
    return X86Kernels()
