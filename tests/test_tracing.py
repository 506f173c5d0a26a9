"""memsim.trace: what it records (storages, categories, lifetimes, phases, graph) and how it treats the
user's model and mistakes."""
import pytest
import torch
import torch.nn as nn

import memsim
from memsim.core.categories import Category, Phase
from memsim.core.errors import InputError, ModelError
from memsim.core.trace import Trace


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.act(self.bn(self.conv(x))).flatten(1))


def _bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


def test_categories_and_lifetimes_of_a_small_net():
    model, x = Net(), torch.randn(2, 3, 8, 8)
    tr = memsim.trace(model, x, optimizer="adam")
    tl = tr.timeline
    last = tl.n_ops - 1
    by_cat = {}
    for t in tl.tensors:
        by_cat.setdefault(t.category, []).append(t)
    params = _bytes(model.parameters())
    assert sum(t.nbytes for t in by_cat[Category.PARAMETER]) == params
    assert sum(t.nbytes for t in by_cat[Category.BUFFER]) == _bytes(model.buffers())
    # Adam: exp_avg + exp_avg_sq per parameter, plus a 4-byte step counter each
    n_params = len(list(model.parameters()))
    assert sum(t.nbytes for t in by_cat[Category.OPTIMIZER_STATE]) == 2 * params + 4 * n_params
    assert sum(t.nbytes for t in by_cat[Category.GRADIENT]) == params
    assert {t.name for t in by_cat[Category.GRADIENT]} == {f"grad:{n}" for n, _ in model.named_parameters()}
    assert [t.name for t in by_cat[Category.INPUT]] == ["input[0]"]
    for t in by_cat[Category.PARAMETER] + by_cat[Category.OPTIMIZER_STATE] + by_cat[Category.INPUT]:
        assert (t.birth, t.death) == (0, last)
    for t in by_cat[Category.GRADIENT]:          # born in backward, freed by zero_grad(set_to_none=True)
        assert tl.ops[t.birth].phase == Phase.BACKWARD and t.death == last
    for t in by_cat[Category.ACTIVATION]:        # saved in forward, freed in backward
        assert tl.ops[t.birth].phase == Phase.FORWARD and tl.ops[t.death].phase == Phase.BACKWARD
        assert t.saved_by and all(n in tr.graph for n in t.saved_by)
    # phases appear once each, in order
    assert [p for p, _, _ in tl.phase_spans()] == [Phase.FORWARD, Phase.LOSS, Phase.BACKWARD, Phase.OPTIMIZER]
    # module paths and FLOPs
    assert {o.module for o in tl.ops if o.phase == Phase.FORWARD} >= {"conv", "bn", "act", "fc"}
    addmm = [o for o in tl.ops if o.name == "aten.addmm.default"][0]
    assert addmm.flops == 2 * 2 * 512 * 10


def test_inplace_relu_shares_the_storage_of_its_input():
    tr = memsim.trace(Net(), torch.randn(2, 3, 8, 8))
    relu = [i for i, o in enumerate(tr.timeline.ops) if o.name == "aten.relu_.default"]
    assert len(relu) == 1
    made_by_relu = [t for t in tr.timeline.tensors if t.birth == relu[0] and t.category != Category.WORKSPACE]
    assert made_by_relu == []
    bn_out = [t for t in tr.timeline.tensors if t.op == "aten.native_batch_norm.default"
              and t.shape == (2, 8, 8, 8)]
    assert len(bn_out) == 1 and relu[0] in bn_out[0].uses


def test_graph_nodes_edges_and_saved_tensors():
    tr = memsim.trace(Net(), torch.randn(2, 3, 8, 8))
    g = tr.graph
    names = {d["name"] for _, d in g.nodes(data=True)}
    assert {"AddmmBackward0", "ConvolutionBackward0", "AccumulateGrad"} <= names
    conv = [n for n, d in g.nodes(data=True) if d["name"] == "ConvolutionBackward0"][0]
    assert g.nodes[conv]["module"] == "conv"
    saved = {tr.timeline.tensors[i].name for i in g.nodes[conv]["saved"]}
    assert {"input[0]", "conv.weight"} <= saved
    acc = [n for n, d in g.nodes(data=True) if d["name"] == "AccumulateGrad"]
    assert all(g.out_degree(n) == 0 for n in acc)          # gradients flow into the leaves last
    assert {g.nodes[n]["param"] for n in acc} == {n for n, _ in Net().named_parameters()}


def test_user_model_is_not_modified():
    model, x = Net(), torch.randn(2, 3, 8, 8)
    model.eval()
    model.fc.weight.requires_grad_(False)
    calls = []
    model.fc.register_forward_hook(lambda *a: calls.append(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    memsim.trace(model, x, optimizer="momentum")
    assert not model.training and not model.fc.weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert len(model.fc._forward_hooks) == 1 and calls == [1]    # the copy ran the user's hook once
    assert x.device.type == "cpu" and not x.requires_grad


def test_meta_model_and_meta_inputs_trace_like_real_ones():
    torch.manual_seed(0)
    real = memsim.trace(Net(), torch.randn(2, 3, 8, 8), optimizer="adam")
    with torch.device("meta"):
        meta_model = Net()
    meta = memsim.trace(meta_model, torch.empty(2, 3, 8, 8, device="meta"), optimizer="adam")
    assert meta.peak_bytes == real.peak_bytes
    assert meta.meta["batch_size"] == 2 and meta.meta["host"]["threads"] >= 1
    assert meta.meta["inputs"] == [{"shape": [2, 3, 8, 8], "dtype": "float32"}]
    assert meta.meta["optimizer"] == "adam" and meta.meta["model"] == "Net"


def test_integer_token_inputs_and_tied_embeddings():
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)
            self.head = nn.Linear(16, 50, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, idx):
            return self.head(self.emb(idx))

    tr = memsim.trace(LM(), torch.randint(0, 50, (3, 7)), optimizer="momentum")
    params = [t for t in tr.timeline.tensors if t.category == Category.PARAMETER]
    assert len(params) == 1 and params[0].nbytes == 50 * 16 * 4        # tied: one storage
    grads = [t for t in tr.timeline.tensors if t.category == Category.GRADIENT]
    assert len(grads) == 1
    assert [t.dtype for t in tr.timeline.tensors if t.category == Category.INPUT] == ["int64"]


def test_unknown_optimizer_lists_the_choices():
    with pytest.raises(InputError, match="sgd, momentum, adam, adamw"):
        memsim.trace(Net(), torch.randn(1, 3, 8, 8), optimizer="lion")
    with pytest.raises(InputError, match="torch.nn.Module"):
        memsim.trace(lambda x: x, torch.randn(1))


def test_failing_forward_names_module_and_op():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 2))

        def forward(self, x):
            return self.block(x)

    with pytest.raises(ModelError, match=r"forward pass failed at aten\.\w+\.default in module 'block\.1'"):
        memsim.trace(Bad(), torch.randn(2, 4))


def test_data_dependent_shapes_get_a_clear_error():
    class Sel(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            return y[y > 0]

    with pytest.raises(ModelError, match="depends on tensor values"):
        memsim.trace(Sel(), torch.randn(2, 4))


def test_item_reads_one_and_non_scalar_loss_is_rejected():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) * float(x.abs().max())     # .item() on a fake tensor reads 1

    assert memsim.trace(Scaled(), torch.randn(2, 4)).peak_bytes > 0
    with pytest.raises(ModelError, match="scalar"):
        memsim.trace(Scaled(), torch.randn(2, 4), loss_fn=lambda out: out * 2)


def test_trace_saves_and_loads(tmp_path):
    tr = memsim.trace(Net(), torch.randn(2, 3, 8, 8), optimizer="adamw")
    path = tmp_path / "t.json.gz"
    tr.save(path)
    back = Trace.load(path)
    assert back.peak_bytes == tr.peak_bytes
    assert back.meta == tr.meta
    assert sorted(back.graph.nodes) == sorted(tr.graph.nodes)
    assert back.timeline.tensors[5] == tr.timeline.tensors[5]


def test_traces_at_two_batch_sizes_scale_even_when_kernels_differ():
    """Batch 1 takes ATen's im2col convolution, batch 3 oneDNN: same storages, so scaling works."""
    small, big = (memsim.trace(Net(), torch.randn(b, 3, 8, 8), optimizer="momentum") for b in (1, 3))
    big.attach_scaling(small)
    weights = [t for t in big.timeline.tensors if t.category == Category.PARAMETER]
    assert all(t.per_sample_bytes == 0 for t in weights)
    inputs = [t for t in big.timeline.tensors if t.category == Category.INPUT]
    assert inputs[0].per_sample_bytes == 3 * 8 * 8 * 4
