"""One rule set for the tensors autograd saves: how each may be stored and what that costs.

The simulator (:mod:`memsim.simulation.policies`) and the runtime (:mod:`memsim.runtime.hooks`,
:mod:`memsim.runtime.recompute`) both read this module, so a prediction and a training run never disagree on
a rule. Per autograd node and saved slot:

- **mask**: the backward reads the saved tensor only through a comparison, so 1 bit per element and the two
  values are enough (:func:`mask_bytes`): a ReLU's own result (``threshold_backward(grad, result, 0)``), the
  input clone an in-place hardtanh/ReLU6 saves (``hardtanh_backward`` compares it with min/max), and tensors
  made outside autograd whose non-zeros all hold one value (CPU dropout noise ``{0, 1/(1-p)}``).
  LeakyReLU, ELU and threshold-with-value are *not* masks: their backward needs the values.
- **narrow integers**: MaxPool's int64 indices fit the narrowest integer type holding their range.
- **recompute**: the output of a cheap op (:data:`RECOMPUTABLE_OPS`) is not stored when every tensor it is
  computed from is kept anyway (saved by some node, a parameter, or itself recomputable): backward runs the
  op again. Expensive ops (convolution, matmul, attention) are never recomputed: their outputs are the
  anchors.
- **bitmap**: anything else may be stored as the sparse-bitmap codec's format when that is smaller.

Example:
    >>> mask_bytes(1000, 4)
    133
    >>> recomputable_output("aten.native_batch_norm.default", 0), recomputable_output("aten.convolution.default", 0)
    (True, False)
"""
from __future__ import annotations

#: Autograd nodes whose own saved result is used only as a mask by their backward.
MASK_RESULT_NODES = frozenset({"ReluBackward0"})
#: Autograd nodes that may save a fresh clone of their input used only as a mask (in-place hardtanh/ReLU6).
MASK_INPUT_CLONE_NODES = frozenset({"HardtanhBackward0"})
#: Nodes whose saved tensor is a 0/value noise made outside autograd (CPU dropout), stored as a mask when its
#: non-zeros all hold the same value; CUDA's native dropout saves a bool mask, a mask already.
MASK_NOISE_NODES = frozenset({"MulBackward0", "NativeDropoutBackward0"})

#: Cheap ops whose outputs ``recompute`` rebuilds in backward: aten op (overload stripped) -> the output
#: indices that may be recomputed. Batch norm recomputes from its input and the saved batch statistics, never
#: touching BN's running state; max-pool rebuilds its values and indices together.
RECOMPUTABLE_OPS: dict[str, frozenset[int]] = {
    "aten.relu": frozenset({0}), "aten.relu_": frozenset({0}),
    "aten.hardtanh": frozenset({0}), "aten.hardtanh_": frozenset({0}),
    "aten.gelu": frozenset({0}),
    "aten.native_batch_norm": frozenset({0}),
    "aten.add": frozenset({0}), "aten.add_": frozenset({0}),
    "aten.max_pool2d_with_indices": frozenset({0, 1}),
    "aten.clone": frozenset({0}),
}

#: The FLOPs recomputation costs per output element of each recomputable op (elementwise work). Batch norm
#: applies the statistics the forward saved (one multiply-add: the CPU runtime, float32/float64, contiguous or
#: channels-last); elsewhere (CUDA, other dtypes and layouts) the runtime collects the batch statistics again,
#: about 6 per element, which this table does not count.
RECOMPUTE_FLOPS_PER_ELEMENT = {
    "aten.relu": 1, "aten.relu_": 1, "aten.hardtanh": 2, "aten.hardtanh_": 2, "aten.gelu": 8,
    "aten.native_batch_norm": 2, "aten.add": 1, "aten.add_": 1, "aten.max_pool2d_with_indices": 9,
    "aten.clone": 0,
}


def op_packet(op_name: str) -> str:
    """``aten.relu_.default`` -> ``aten.relu_`` (the overload does not change a rule).

    >>> op_packet("aten.add.Tensor")
    'aten.add'
    """
    parts = op_name.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else op_name


def recomputable_output(op_name: str, output_index: int) -> bool:
    """True when output ``output_index`` of ``op_name`` (``aten.<op>.<overload>`` or without overload) is one
    ``recompute`` may rebuild in backward."""
    return output_index in RECOMPUTABLE_OPS.get(op_packet(op_name), ())


def mask_bytes(numel: int, itemsize: int) -> int:
    """Bytes a mask costs: 1 bit per element, rounded up to bytes, plus the two values it rebuilds
    (``itemsize`` bytes each), exactly what :class:`memsim.runtime.store.Bits` holds."""
    return (numel + 7) // 8 + 2 * itemsize  # also elementwise on numpy arrays


#: Integer types a saved integer tensor may be narrowed to, narrowest first: (dtype name, lowest, highest).
NARROW_INT_RANGES = (("uint8", 0, 255), ("int8", -128, 127), ("int16", -(2 ** 15), 2 ** 15 - 1),
                     ("uint16", 0, 2 ** 16 - 1), ("int32", -(2 ** 31), 2 ** 31 - 1))


def narrow_int_name(lo: int, hi: int, itemsize: int, allow_uint16: bool = True) -> str | None:
    """The narrowest integer dtype name holding ``[lo, hi]`` that is smaller than ``itemsize`` bytes, or None.
    ``allow_uint16=False`` skips uint16 (few CUDA kernels handle it).

    >>> narrow_int_name(0, 255, 8), narrow_int_name(0, 256, 8), narrow_int_name(0, 70000, 8), narrow_int_name(0, 9, 1)
    ('uint8', 'int16', 'int32', None)
    """
    sizes = {"uint8": 1, "int8": 1, "int16": 2, "uint16": 2, "int32": 4}
    for name, lo_ok, hi_ok in NARROW_INT_RANGES:
        if name == "uint16" and not allow_uint16:
            continue
        if lo_ok <= lo and hi <= hi_ok and sizes[name] < itemsize:
            return name
    return None


def index_width(max_index: int, allow_uint16: bool = True) -> int:
    """Bytes per MaxPool index (values ``0..max_index``) once narrowed from int64 (8 when none is narrower).

    >>> index_width(255), index_width(256), index_width(70000)
    (1, 2, 4)
    """
    name = narrow_int_name(0, max_index, 8, allow_uint16)
    return {"uint8": 1, "int8": 1, "int16": 2, "uint16": 2, "int32": 4}.get(name, 8)
