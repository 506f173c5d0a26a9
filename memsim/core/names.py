"""Tensors described as people think of them: "layer1.0.conv3 output, saved by bn3", "maxpool indices".

A trace knows, for every storage, the module that made it, the aten op and which of its outputs, and the
autograd nodes that save it; :func:`tensor_label` turns that into a short phrase for the CLI, the HTML
report, the JSON (``label``) and the figures' hover text.

Example:
    >>> from memsim.core.timeline import TensorRecord
    >>> from memsim.core.categories import Category
    >>> t = TensorRecord(3, 800, "int64", (2, 64, 56, 56), Category.ACTIVATION, 5, 90, module="maxpool",
    ...                  op="aten.max_pool2d_with_indices.default", output_index=1)
    >>> tensor_label(t)
    'maxpool indices'
    >>> op_name("aten.native_batch_norm.default")
    'native_batch_norm'
"""
from __future__ import annotations

from memsim.core.categories import Category

#: Extra outputs of ops whose meaning is not "the result": (op name, output index) → what it holds.
_SPECIAL_OUTPUTS = {
    ("max_pool2d_with_indices", 1): ("pool", "indices"),
    ("max_pool3d_with_indices", 1): ("pool", "indices"),
    ("native_batch_norm", 1): ("bn", "batch mean"),
    ("native_batch_norm", 2): ("bn", "batch inverse std"),
    ("_native_batch_norm_legit", 1): ("bn", "batch mean"),
    ("_native_batch_norm_legit", 2): ("bn", "batch inverse std"),
    ("native_group_norm", 1): ("norm", "group mean"),
    ("native_group_norm", 2): ("norm", "group inverse std"),
    ("native_layer_norm", 1): ("norm", "mean"),
    ("native_layer_norm", 2): ("norm", "inverse std"),
    ("native_dropout", 1): ("drop", "dropout mask"),
    ("_scaled_dot_product_flash_attention_for_cpu", 1): ("attn", "attention logsumexp"),
    ("mkldnn_rnn_layer", 3): ("rnn", "LSTM workspace"),
}

#: Words by which a module's name shows it runs an op (so "layer1.0.conv3 output" needs no op name).
_OP_HINTS = {
    "convolution": ("conv", "downsample", "proj", "patch", "stem"),
    "native_batch_norm": ("bn", "norm", "downsample"),
    "addmm": ("fc", "linear", "head", "proj", "classifier", "mlp", "lin", "dense", "qkv", "out"),
    "max_pool2d_with_indices": ("pool",),
    "relu": ("relu", "act"),
    "native_layer_norm": ("ln", "norm"),
    "embedding": ("emb", "wte", "wpe", "tok", "pos"),
}

_WORKSPACES = {
    "conv_fwd_scratch": "convolution scratch (forward)",
    "conv_bwd_scratch": "convolution scratch (backward)",
    "lstm_fwd_scratch": "LSTM scratch (forward)",
    "lstm_bwd_scratch": "LSTM scratch (backward)",
}

_STATE_WORDS = {"momentum_buffer": "momentum", "exp_avg": "Adam first moment", "exp_avg_sq": "Adam second moment",
                "max_exp_avg_sq": "AMSGrad max moment", "step": "step count"}


def op_name(op: str) -> str:
    """The short name of an aten op: "aten.convolution.default" → "convolution"."""
    parts = op.split(".")
    return parts[1] if len(parts) >= 2 and parts[0] in ("aten", "prims", "prim") else op


def _leaf(module: str) -> str:
    return module.rpartition(".")[2]


def _relative(path: str, base: str) -> str:
    """``path`` without the parent path it shares with ``base`` ("layer1.0.bn3" next to "layer1.0.conv3" →
    "bn3"), unless what is left would be a bare index ("1"), which says nothing on its own."""
    parent = base.rpartition(".")[0]
    if parent and path.startswith(parent + ".") and not path[len(parent) + 1].isdigit():
        return path[len(parent) + 1:]
    return path or "(top level)"


#: Words for ops in labels (the aten name otherwise).
_OP_WORDS = {"convolution": "conv", "native_batch_norm": "batch-norm", "addmm": "linear", "mm": "matmul",
             "bmm": "batched matmul", "_log_softmax": "log-softmax", "_softmax": "softmax",
             "_safe_softmax": "softmax", "native_layer_norm": "layer-norm", "native_group_norm": "group-norm",
             "hardtanh": "ReLU6", "relu": "ReLU", "gelu": "GELU", "silu": "SiLU", "clone": "copy",
             "max_pool2d_with_indices": "max-pool", "nll_loss_forward": "NLL loss", "add": "add", "cat": "concat",
             "embedding": "embedding", "mean": "mean"}


def _made_by(t, where: str) -> str:
    """What the storage is, from its module (or ``where`` it ran at the top level), op and output position."""
    module = t.module or where
    op = op_name(t.op)
    special = _SPECIAL_OUTPUTS.get((op, t.output_index))
    leaf = _leaf(t.module).lower()
    if special is not None:
        hint, what = special
        return f"{module} {what}" if hint in leaf else f"{module} {_OP_WORDS.get(op, op)} {what}"
    if any(h in leaf for h in _OP_HINTS.get(op, ())) or not op:
        return f"{module} output"
    return f"{module} {_OP_WORDS.get(op, op)} output"


def tensor_label(t, trace=None) -> str:
    """A short description of :class:`~memsim.core.timeline.TensorRecord` ``t`` for people; with its
    ``trace``, activations say which modules save them and top-level tensors where they ran (the loss,
    the optimizer)."""
    category = Category(t.category)
    graph = trace.graph if trace is not None else None
    where = "(top level)"
    if trace is not None and not t.module and 0 <= t.birth < trace.timeline.n_ops:
        where = {"loss": "loss", "optimizer": "optimizer", "backward": "backward"}.get(
            str(trace.timeline.ops[t.birth].phase), "(top level)")
    if category in (Category.PARAMETER, Category.BUFFER):
        return t.name if t.name != "(untracked)" else f"{t.module or '(top level)'} plain tensor attribute"
    if category is Category.INPUT:
        return f"{t.name or 'input'} (the batch)"
    if category is Category.OPTIMIZER_STATE:
        key, _, param = t.name.partition(":")
        return f"{param or t.module} {_STATE_WORDS.get(key, key)}"
    if category is Category.GRADIENT:
        return f"{t.name.partition(':')[2] or t.module} gradient"
    if category is Category.WORKSPACE:
        return f"{t.module or '(top level)'} {_WORKSPACES.get(t.name, t.name or 'kernel scratch')}"
    label = _made_by(t, where)
    if category is Category.ACTIVATION and graph is not None:
        savers = []
        for node in t.saved_by:
            if node in graph.nodes:
                module = str(graph.nodes[node].get("module", ""))
                saver = "itself" if module == t.module and module else _relative(module, t.module)
                saver = where if saver == "(top level)" else saver
                if saver not in savers:
                    savers.append(saver)
        if savers:
            shown = savers[:3] + ([f"{len(savers) - 3} more"] if len(savers) > 3 else [])
            label += ", saved by " + (" and ".join(shown) if len(shown) <= 2 else ", ".join(shown))
    elif category is Category.TEMPORARY and t.op:
        label = label.replace(" output", " result")
    return label
