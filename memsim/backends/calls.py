"""Kernel calls: the ops of a trace whose memory depends on the backend that runs them.

Every backend shares the tensors of a step and their liveness; what differs between x86 CPU, aarch64 CPU and
CUDA kernels is the scratch a kernel allocates inside an op (oneDNN reorders, ACL/im2col buffers, cuDNN
workspaces) and, for a few kernels, the size of an output (oneDNN's LSTM workspace). The tracer records each
such op as a :class:`KernelCall` — the op, its arguments described without data (:class:`TensorInfo` for
tensors) and the tensor ids its memory lands in — so that a backend model can cost it later, for any
device, without torch (:mod:`memsim.backends`).

Example:
    >>> call = KernelCall(op_index=3, op="aten.convolution.default",
    ...                   args=(TensorInfo((2, 3, 8, 8), (192, 64, 8, 1), "float32"),), workspace=7)
    >>> KernelCall.from_json(call.to_json()) == call
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field

from memsim.backends.tensor_info import TensorInfo

CONVOLUTION = "aten.convolution.default"
CONVOLUTION_BACKWARD = "aten.convolution_backward.default"
RNN_LAYER = "aten.mkldnn_rnn_layer.default"
RNN_LAYER_BACKWARD = "aten.mkldnn_rnn_layer_backward.default"

#: Matrix products: no scratch on x86, a copy of a transposed operand on aarch64.
MATMUL_OPS = frozenset({"aten.addmm.default", "aten.mm.default", "aten.bmm.default", "aten.baddbmm.default"})
#: Ops recorded as kernel calls: those whose hidden allocations some backend model knows about.
KERNEL_OPS = frozenset({CONVOLUTION, CONVOLUTION_BACKWARD, RNN_LAYER, RNN_LAYER_BACKWARD}) | MATMUL_OPS


@dataclass
class KernelCall:
    """One backend-dependent op of a trace.

    Attributes:
        op_index: index of the op in ``Trace.timeline.ops``.
        op: aten op name ("aten.convolution.default").
        args: the op's positional arguments in aten's order; tensors as :class:`TensorInfo`, lists as
            tuples, ``None``, numbers, bools and strings as they are.
        workspace: id of the ``Category.WORKSPACE`` tensor record that holds this call's scratch (its bytes
            are the host's; a backend model replaces them).
        outputs: tensor record ids of the op's tensor outputs, in order (-1 for an output that is not a new
            storage), for kernels whose output size is backend-specific.
        batch: the traced batch size (the first argument's leading dimension or the RNN batch), used to
            re-cost the call at another batch size.
    """

    op_index: int
    op: str
    args: tuple
    workspace: int = -1
    outputs: tuple = ()
    batch: int | None = None
    host: dict = field(default_factory=dict)

    def batch_dims(self) -> list[tuple[int, int]]:
        """(argument index, dimension) of the batch in each batched tensor argument."""
        if self.op == CONVOLUTION:
            return [(0, 0)]
        if self.op == CONVOLUTION_BACKWARD:
            return [(0, 0), (1, 0)]
        if self.op in MATMUL_OPS:
            return []        # a matrix product's rows mix batch and other dims: re-costed at the traced shape only
        batch_first = self.args[14] if self.op == RNN_LAYER else self.args[21]
        return [(0, 0 if batch_first else 1), (5, 0), (6, 0)]

    @property
    def batch_size(self) -> int | None:
        """The batch the call ran at (its first batched argument's batch dimension; None for matrix products)."""
        dims = self.batch_dims()
        if not dims:
            return None
        index, dim = dims[0]
        return int(self.args[index].shape[dim])

    def at_batch(self, batch: int) -> "KernelCall":
        """The same call with every batched tensor argument at ``batch`` samples."""
        dims = dict(self.batch_dims())
        args = tuple(a.with_batch(batch, dims[i]) if i in dims and isinstance(a, TensorInfo) else a
                     for i, a in enumerate(self.args))
        return KernelCall(self.op_index, self.op, args, self.workspace, self.outputs, batch, {})

    def to_json(self) -> dict:
        return {"op_index": self.op_index, "op": self.op, "args": [_arg_to_json(a) for a in self.args],
                "workspace": self.workspace, "outputs": list(self.outputs), "batch": self.batch,
                "host": self.host}

    @classmethod
    def from_json(cls, data: dict) -> "KernelCall":
        return cls(op_index=int(data["op_index"]), op=str(data["op"]),
                   args=tuple(_arg_from_json(a) for a in data["args"]), workspace=int(data["workspace"]),
                   outputs=tuple(data.get("outputs", ())), batch=data.get("batch"), host=data.get("host", {}))


def _arg_to_json(a):
    if isinstance(a, TensorInfo):
        return {"tensor": a.to_json()}
    if isinstance(a, tuple):
        return {"tuple": [_arg_to_json(x) for x in a]}
    return a


def _arg_from_json(a):
    if isinstance(a, dict):
        if "tensor" in a:
            return TensorInfo.from_json(a["tensor"])
        if "tuple" in a:
            return tuple(_arg_from_json(x) for x in a["tuple"])
    return a


def describe(a):
    """An op argument as a :class:`KernelCall` stores it (tensors → :class:`TensorInfo`)."""
    import torch

    if isinstance(a, torch.Tensor):
        return TensorInfo(tuple(int(s) for s in a.shape), tuple(int(s) for s in a.stride()),
                          str(a.dtype).replace("torch.", ""))
    if isinstance(a, (list, tuple)):
        return tuple(describe(x) for x in a)
    if isinstance(a, (torch.SymInt, torch.SymFloat, torch.SymBool)):  # pragma: no cover - static shapes
        return int(a) if isinstance(a, torch.SymInt) else float(a) if isinstance(a, torch.SymFloat) else bool(a)
    if isinstance(a, (torch.dtype, torch.device, torch.memory_format, torch.layout)):
        return str(a)
    return a
