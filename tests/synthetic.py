"""A hand-built trace of a chain of ReLU layers, with a known timeline, for simulator tests."""
import networkx as nx

from memsim.core.categories import Category, Phase
from memsim.core.timeline import OpRecord, TensorRecord, Timeline
from memsim.core.trace import Trace


def chain_trace(layers: int = 4, act_bytes: int = 4_000_000, batch_size: int = 8, param_bytes: int = 1_000_000) -> Trace:
    """Forward: op i (i < layers) makes activation i (a ReLU output saved by node i) and a temporary.
    Backward: op layers+j reads activation layers-1-j, which then dies; its gradient lives until the
    optimizer op. Every activation and temporary scales with the batch; parameters do not."""
    ops = [OpRecord("aten.relu.default", Phase.FORWARD, f"layer{i}", flops=1000) for i in range(layers)]
    ops += [OpRecord("aten.threshold_backward.default", Phase.BACKWARD, f"layer{layers - 1 - j}") for j in range(layers)]
    ops += [OpRecord("aten.add_.Tensor", Phase.OPTIMIZER)]
    n = len(ops)
    tensors = []
    g = nx.DiGraph()

    def add(**kw):
        tensors.append(TensorRecord(id=len(tensors), **kw))
        return tensors[-1]

    per_sample = act_bytes // batch_size
    for i in range(layers):
        add(nbytes=param_bytes, dtype="float32", shape=(param_bytes // 4,), category=Category.PARAMETER,
            birth=0, death=n - 1, module=f"layer{i}", name=f"layer{i}.weight", per_sample_bytes=0)
    for i in range(layers):
        bwd = layers + (layers - 1 - i)
        t = add(nbytes=act_bytes, dtype="float32", shape=(batch_size, act_bytes // 4 // batch_size),
                category=Category.ACTIVATION, birth=i, death=bwd, module=f"layer{i}", op="aten.relu.default",
                saved_by=(f"n{i}",), uses=tuple(u for u in (i + 1, bwd) if u < layers or u == bwd),
                per_sample_bytes=per_sample)
        g.add_node(f"n{i}", name="ReluBackward0", module=f"layer{i}", saved=[t.id])
        add(nbytes=act_bytes // 2, dtype="float32", shape=(act_bytes // 8,), category=Category.TEMPORARY,
            birth=i, death=i, module=f"layer{i}", op="aten.relu.default", per_sample_bytes=per_sample // 2)
    for j in range(layers):
        add(nbytes=param_bytes, dtype="float32", shape=(param_bytes // 4,), category=Category.GRADIENT,
            birth=layers + j, death=n - 1, per_sample_bytes=0)
    for i in range(1, layers):
        g.add_edge(f"n{i}", f"n{i - 1}")
    return Trace(Timeline(ops, tensors), g, {"model": "chain", "batch_size": batch_size, "optimizer": "sgd"})
