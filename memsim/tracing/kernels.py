"""Record the backend-dependent ops of a step as :class:`~memsim.backends.calls.KernelCall` s.

The recorder calls :meth:`KernelCallRecorder.on_op` after every op. For an op in
:data:`memsim.backends.calls.KERNEL_OPS` it stores the op's arguments (shapes, strides, dtypes and flags; no
data) and adds one ``Category.WORKSPACE`` storage at that op, empty for now: after the step the host's kernels
are probed (:mod:`memsim.backends.host`) to size it, and any other backend model can size it again later.
One workspace per call even when it stays empty, so traces at two batch sizes keep the same storages.
"""
from __future__ import annotations

from memsim.backends.calls import KERNEL_OPS, RNN_LAYER, KernelCall, describe

#: Label of each kernel call's workspace storage (its ``TensorRecord.name``).
WORKSPACE_LABELS = {
    "aten.convolution.default": "conv_fwd_scratch",
    "aten.convolution_backward.default": "conv_bwd_scratch",
    "aten.mkldnn_rnn_layer.default": "lstm_fwd_scratch",
    "aten.mkldnn_rnn_layer_backward.default": "lstm_bwd_scratch",
    "aten.addmm.default": "matmul_scratch",
    "aten.mm.default": "matmul_scratch",
    "aten.bmm.default": "matmul_scratch",
    "aten.baddbmm.default": "matmul_scratch",
}


class KernelCallRecorder:
    """Collects the kernel calls of one trace (``calls``, in op order); see the module docstring."""

    def __init__(self):
        self.calls: list[KernelCall] = []

    def on_op(self, recorder, index, func, args, kwargs, out) -> None:
        name = str(func)
        if name not in KERNEL_OPS:
            return
        import torch

        outputs = out if isinstance(out, (tuple, list)) else (out,)
        out_ids = tuple(recorder.index_of(t) if isinstance(t, torch.Tensor) else -1 for t in outputs)
        out_ids = tuple(-1 if i is None else i for i in out_ids)
        workspace = recorder.add_workspace(0, index, WORKSPACE_LABELS[name], recorder.ops[index].module)
        call = KernelCall(op_index=index, op=name, args=describe(tuple(args)), workspace=workspace,
                          outputs=out_ids)
        if name == RNN_LAYER and not args[15]:      # inference: no workspace tensor to size
            call.outputs = out_ids[:3] + (-1,)
        self.calls.append(call)
