"""The autograd graph of the traced step: walk ``grad_fn.next_functions`` before backward runs.

Each node's saved tensors are read through its ``_saved_*`` attributes (``saved_tensors`` for custom
``autograd.Function`` nodes) and mapped to storages, which is how activations learn which nodes save them.
No node object is kept after the walk (holding them would keep a custom Function's ``ctx`` attributes alive
and shift their death times); backward nodes are recognised later by their sequence number.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import deque

import networkx as nx

_SAVED_ATTRS: dict[type, list[str]] = {}
_NO_SEQ = (1 << 64) - 1   # AccumulateGrad has no sequence number


def _saved_attr_names(node) -> list[str]:
    names = _SAVED_ATTRS.get(type(node))
    if names is None:
        names = [a for a in dir(node) if a.startswith("_saved_")]
        _SAVED_ATTRS[type(node)] = names
    return names


def _saved_tensors(node) -> list:
    import torch

    out = []
    for attr in _saved_attr_names(node):
        try:
            value = getattr(node, attr)
        except Exception:  # noqa: BLE001 - an undefined or released saved variable
            continue
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            out.extend(v for v in value if isinstance(v, torch.Tensor))
    if not out and hasattr(node, "saved_tensors"):        # custom autograd.Function (ctx.save_for_backward)
        try:
            out.extend(t for t in node.saved_tensors if isinstance(t, torch.Tensor))
        except Exception:  # noqa: BLE001
            pass
    return out


def walk_graph(root, recorder, param_names: dict[int, str]) -> nx.DiGraph:
    """Build the graph reachable from ``root`` (the loss's ``grad_fn``) and tell the recorder about it.

    Fills ``recorder.node_of_seq`` / ``recorder.node_module`` (for backward-op module paths) and each saved
    storage entry's ``saved_by``. Node attributes: ``name`` (backward function), ``module`` (path of the
    module whose forward created it), ``saved`` (storage entry indices; renumbered by the tracer), ``op``
    (index of the forward op that created it, -1 if unknown), ``param`` (AccumulateGrad: parameter name).
    Edges point from a node to the nodes its gradient flows into.
    """
    graph = nx.DiGraph()
    if root is None:
        return graph
    ops, op_seq = recorder.ops, recorder.op_seq
    ids: dict[int, int] = {}       # id(node object) -> node id, valid during the walk (objects are held)
    held = []
    queue = deque([root])
    ids[id(root)] = 0
    held.append(root)
    while queue:
        node = queue.popleft()
        nid = ids[id(node)]
        seq = node._sequence_nr()
        module, op_index, param = "", -1, ""
        if seq != _NO_SEQ:
            # The node got number ``seq`` just before its forward op dispatched: the first op that saw a
            # sequence number above ``seq`` made it.
            op_index = bisect_right(op_seq, seq)
            if op_index < len(ops):
                module = ops[op_index].module
            else:
                op_index = -1
            recorder.node_of_seq[seq] = nid
        var = getattr(node, "variable", None)
        if var is not None:
            param = param_names.get(id(var), "")
            module = recorder.param_module.get(id(var), "")
        recorder.node_module[nid] = module
        saved = []
        for t in _saved_tensors(node):
            index = recorder.index_of(t)
            if index is not None and index not in saved:
                saved.append(index)
                recorder.entries[index].saved_by.append(nid)
        graph.add_node(nid, name=type(node).__name__, module=module, saved=saved, op=op_index, param=param)
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            if id(nxt) not in ids:
                ids[id(nxt)] = len(ids)
                held.append(nxt)
                queue.append(nxt)
            graph.add_edge(nid, ids[id(nxt)])
    held.clear()
    return graph
