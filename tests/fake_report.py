"""Small hand-built traces and a report stand-in for the figure, HTML and graph-export tests.

The report implements the interface ``memsim.simulation.simulate.Report`` promises (policy, device, budgets,
``memory_curve(policy)``, ``category_curves(policy)``, ``table_rows()``, ``breakdown``), with one policy,
``bitmap``, that halves every activation. The numbers are chosen so the tests can check them by hand.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from memsim.core.categories import Category, Phase
from memsim.core.timeline import OpRecord, TensorRecord, Timeline
from memsim.core.trace import Trace

MiB = 1024**2


def small_trace() -> Trace:
    """A 3-layer step: 12 forward ops, 2 loss ops, 12 backward ops, 4 optimizer ops (30 ops)."""
    layers = ["features.conv1", "features.conv2", "classifier.fc"]
    ops: list[OpRecord] = []
    for k in range(12):
        ops.append(OpRecord(["aten.convolution.default", "aten.relu.default"][k % 2], Phase.FORWARD, layers[k // 4]))
    ops += [OpRecord("aten._log_softmax.default", Phase.LOSS), OpRecord("aten.nll_loss_forward.default", Phase.LOSS)]
    for k in range(12):
        ops.append(OpRecord("aten.convolution_backward.default", Phase.BACKWARD, layers[2 - k // 4]))
    ops += [OpRecord("aten._foreach_add_.List", Phase.OPTIMIZER)] * 4
    n = len(ops)
    tensors: list[TensorRecord] = []

    def add(nbytes, cat, birth, death, module="", name="", shape=(1,), op=""):
        tensors.append(TensorRecord(len(tensors), int(nbytes), "float32", shape, cat, birth, death,
                                    module=module, name=name, op=op))
        return len(tensors) - 1

    for layer in layers:
        add(4 * MiB, Category.PARAMETER, 0, n - 1, layer, f"{layer}.weight", (1024, 1024))
        add(4 * MiB, Category.OPTIMIZER_STATE, 0, n - 1, layer, f"momentum:{layer}.weight", (1024, 1024))
    add(2 * MiB, Category.INPUT, 0, n - 1, "", "input[0]", (2, 3, 256, 341))
    saved = []
    for k in range(12):  # each forward op saves an activation until its mirrored backward op
        death = 14 + (11 - k)
        saved.append(add((k + 1) * MiB, Category.ACTIVATION, k, death, layers[k // 4], "", (k + 1, 512, 512),
                         ops[k].name))
        add(MiB // 2, Category.TEMPORARY, k, k, layers[k // 4], "", (128, 1024), ops[k].name)
    add(1024, Category.OUTPUT, 11, 13, "classifier.fc", "output", (2, 128))
    add(3 * MiB, Category.WORKSPACE, 20, 20, "features.conv2")
    for j, layer in enumerate(reversed(layers)):
        add(4 * MiB, Category.GRADIENT, 14 + 4 * j, n - 1, layer, f"{layer}.weight.grad", (1024, 1024))
    graph = nx.DiGraph()
    for k in range(12):
        graph.add_node(k, name=["ConvolutionBackward0", "ReluBackward0"][k % 2], module=layers[k // 4],
                       saved=[saved[k]])
    graph.add_node(12, name="NllLossBackward0", module="", saved=[])
    graph.add_edge(12, 11)
    for k in range(11, 0, -1):
        graph.add_edge(k, k - 1)
    graph.add_edge(6, 3)  # a skip connection, so the layout has a node with two parents
    meta = {"model": "tiny_cnn", "batch_size": 2, "optimizer": "momentum"}
    return Trace(timeline=Timeline(ops=ops, tensors=tensors), graph=graph, meta=meta)


def large_trace(n_ops: int = 120_000, n_tensors: int = 40_000, seed: int = 0) -> Trace:
    """A long random step (GPT-2-XL-sized op count) with one sharp, one-op peak planted in the middle."""
    rng = np.random.default_rng(seed)
    phases = [Phase.FORWARD] * (n_ops * 4 // 10) + [Phase.LOSS] * 10
    phases += [Phase.BACKWARD] * (n_ops * 5 // 10)
    phases += [Phase.OPTIMIZER] * (n_ops - len(phases))
    ops = [OpRecord("aten.mm.default", p, f"transformer.h.{i * 48 // n_ops}.mlp") for i, p in enumerate(phases)]
    birth = rng.integers(0, n_ops, n_tensors)
    death = np.minimum(birth + rng.integers(0, n_ops // 20, n_tensors), n_ops - 1)
    size = rng.integers(1, 8 * MiB, n_tensors)
    cats = [Category.ACTIVATION, Category.TEMPORARY, Category.GRADIENT]
    tensors = [TensorRecord(i, int(size[i]), "float16", (int(size[i]) // 2,), cats[i % 3], int(birth[i]),
                            int(death[i]), module=ops[int(birth[i])].module) for i in range(n_tensors)]
    spike_at = n_ops // 2 + 7
    tensors.append(TensorRecord(n_tensors, 2048 * MiB, "float32", (512, 1024, 1024), Category.WORKSPACE,
                                spike_at, spike_at, module="transformer.h.24.attn", name="spike"))
    return Trace(timeline=Timeline(ops=ops, tensors=tensors), meta={"model": "synthetic_xl", "batch_size": 1})


@dataclass
class FakeDevice:
    name: str = "jetson-nano"
    display_name: str = "NVIDIA Jetson Nano 4GB"


@dataclass
class FakeBreakdown:
    index: int
    total_bytes: int
    by_category: dict
    top_modules: list
    top_tensors: list


@dataclass
class FakeCosted:
    """Storages as intervals after a policy (like memsim.simulation.policies.CostedTimeline)."""

    n_ops: int
    birth: np.ndarray
    death: np.ndarray
    nbytes: np.ndarray
    category: list
    source: np.ndarray

    def memory_curve(self, mask=None) -> np.ndarray:
        diff = np.zeros(self.n_ops + 1, dtype=np.int64)
        size = self.nbytes if mask is None else np.where(mask, self.nbytes, 0)
        np.add.at(diff, self.birth, size)
        np.add.at(diff, self.death + 1, -size)
        return np.cumsum(diff[:-1])

    def live_at(self, index: int) -> list:
        m = np.nonzero((self.birth <= index) & (self.death >= index))[0]
        return sorted(((int(self.source[i]), int(self.nbytes[i]), self.category[i]) for i in m), key=lambda r: -r[1])


@dataclass
class FakeResult:
    costed: FakeCosted


class FakeReport:
    """Duck-typed stand-in for ``memsim.simulation.simulate.Report``.

    Policy ``bitmap`` keeps an activation dense at the op that makes it and encoded at half its size from the
    next op until it dies, so one storage gives two intervals, as real policies do.
    """

    policies = ["none", "bitmap"]

    def __init__(self, trace: Trace, policy: str = "bitmap", tensor_budget_bytes: int = 100 * MiB,
                 device: FakeDevice | None = None):
        self.trace = trace
        self.policy = policy
        self.device = device or FakeDevice()
        self.tensor_budget_bytes = tensor_budget_bytes
        self.budget_bytes = tensor_budget_bytes + 300 * MiB
        self.peak_bytes = int(self.memory_curve().max())
        self.device_peak_bytes = self.peak_bytes + 300 * MiB
        self.fits = self.peak_bytes <= tensor_budget_bytes
        self.headroom_bytes = tensor_budget_bytes - self.peak_bytes

    def costed(self, policy: str | None = None) -> FakeCosted:
        policy = policy or self.policy
        cache = self.__dict__.setdefault("_costed", {})
        if policy not in cache:
            cache[policy] = self._cost(policy)
        return cache[policy]

    def _cost(self, policy: str) -> FakeCosted:
        rows = []
        for t in self.trace.timeline.tensors:
            if policy == "bitmap" and t.category == Category.ACTIVATION and t.death > t.birth:
                rows.append((t.birth, t.birth, t.nbytes, t.category, t.id))
                rows.append((t.birth + 1, t.death, t.nbytes // 2, t.category, t.id))
            else:
                rows.append((t.birth, t.death, t.nbytes, t.category, t.id))
        b, d, nb, cat, src = zip(*rows)
        return FakeCosted(self.trace.timeline.n_ops, np.array(b), np.array(d), np.array(nb, dtype=np.int64),
                          list(cat), np.array(src))

    @property
    def main(self) -> FakeResult:
        return FakeResult(self.costed())

    def memory_curve(self, policy: str | None = None) -> np.ndarray:
        return self.costed(policy).memory_curve()

    def category_curves(self, policy: str | None = None) -> dict:
        c = self.costed(policy)
        cats = np.array([str(x) for x in c.category])
        return {cat: c.memory_curve(cats == str(cat)) for cat in Category if (cats == str(cat)).any()}

    def table_rows(self) -> list[dict]:
        rows = []
        for p in self.policies:
            peak = int(self.memory_curve(p).max())
            rows.append(dict(policy=p, peak_bytes=peak, device_peak_bytes=peak + 300 * MiB,
                             fits=peak <= self.tensor_budget_bytes,
                             headroom_bytes=self.tensor_budget_bytes - peak, max_batch_size=4 if p == "none" else 7,
                             extra_flops=0 if p == "none" else 1_000_000, codec_seconds=0.0 if p == "none" else 0.012,
                             lossy=False))
        return rows
