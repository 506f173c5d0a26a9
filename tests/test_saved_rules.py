"""One rule set: for every zoo model, the bytes the simulator predicts as stored equal the bytes the runtime
records, tensor by tensor (same sparsity: measured on the same weights and batch)."""
import collections

import pytest
import torch

import memsim
import models_zoo
from memsim.simulation.policies import KIND_NAMES, SparsityModel, _context, apply_policy

RUNTIME_KIND = {"bitmap": "bitmap", "bits": "mask", "narrow-int": "narrow-int", "dense": "dense",
                "recompute": "recompute"}
#: Models the test runs at reduced size (fast), and the big ones marked slow.
FAST = ["small_cnn", "resnet18", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1", "vgg11",
        "efficientnet_b0", "densenet121"]
SLOW = ["resnet50", "mobilenet_v3_large", "vgg16_bn", "vit_tiny", "gpt2"]


def _inputs(name):
    spec = models_zoo.spec(name)
    if name == "gpt2":
        return spec.example_inputs(1, seq_len=32, seed=0)
    if name.startswith("vit"):
        return spec.example_inputs(1, seed=0)  # ViTs take their native 224 px only
    if name == "small_cnn":
        return spec.example_inputs(2, seed=0)
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64)


def _model(name):
    if name == "gpt2":  # GPT-2 small with two layers: the same blocks, a fraction of the time
        from models_zoo.gpt2 import GPT2LMHeadModel

        return GPT2LMHeadModel(n_layer=2, n_positions=64)
    return models_zoo.create(name)


def _sorted_by_kind(pairs):
    out = collections.defaultdict(list)
    for kind, dense, stored in pairs:
        out[kind].append((dense, stored))
    return {k: sorted(v) for k, v in out.items() if k != "dense"}


def compare(name, policy):
    torch.manual_seed(0)
    model = _model(name)
    x = _inputs(name)
    tr = memsim.trace(model, x)
    torch.manual_seed(1)  # the same dropout draws in both forward passes
    costed = apply_policy(tr, policy, SparsityModel(memsim.measure_sparsity(model, x)))
    ctx = _context(tr)
    predicted = _sorted_by_kind((KIND_NAMES[int(costed.kinds[t.id])], t.nbytes, int(costed.stored_bytes[t.id]))
                                for t in tr.timeline.tensors if ctx.activation[t.id])
    run = _model(name)
    run.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    with memsim.compressed_activations(policy=policy, min_bytes=0, collect_stats=True, exclude=[run, x]) as c:
        out = run(x)
        (out if out.dim() == 0 else out.float().sum()).backward()
    recorded = _sorted_by_kind((RUNTIME_KIND[r.kind], r.dense_bytes, r.stored_bytes) for r in c.stats.records
                               if r.reason not in ("parameter", "excluded")
                               and not (r.producer.startswith("leaf") and r.kind == "dense"))
    return predicted, recorded


#: What the trace cannot see, so the simulator cannot predict: an in-place op on a view is wrapped by
#: autograd in a CopySlices node, which hides the saved tensors of the node inside it (EfficientNet's
#: classifier applies in-place dropout to a flattened view: its noise, a mask at run time, is missed).
#: Under recompute, MobileNetV2's last inverted residual: in some runs (not all: it depends on which storage
#: addresses the allocator reuses) one ReLU6 output the simulator predicts recomputed is held as a bitmap by
#: the runtime (the cause was not found; the other recomputed tensors always agree).
KNOWN_GAPS = {("efficientnet_b0", "bitmap+mask+indices"): {"mask": 1}, ("efficientnet_b0", "recompute"): {"mask": 1},
              ("mobilenet_v2", "recompute"): {"bitmap": 1, "recompute": -1}}


def _check(name, policy):
    predicted, recorded = compare(name, policy)
    for kind in sorted(set(predicted) | set(recorded)):
        p, r = predicted.get(kind, []), recorded.get(kind, [])
        gap = KNOWN_GAPS.get((name, policy), {}).get(kind, 0)
        assert len(r) - len(p) in {0, gap}, f"{name} {kind}: {len(p)} predicted, {len(r)} recorded"
        if len(r) != len(p):
            continue
        for (pd, ps), (rd, rs) in zip(p, r):
            assert pd == rd, f"{name} {kind}: dense bytes {pd} predicted, {rd} recorded"
            # exact but for the sparsity, which the simulator takes per module rounded to 1e-4
            assert abs(ps - rs) <= 16 + pd * 2e-4, f"{name} {kind}: {ps} predicted, {rs} recorded"
    return predicted


POLICIES = ["bitmap+mask+indices", "recompute"]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", FAST)
def test_prediction_equals_runtime_tensor_by_tensor(name, policy):
    assert _check(name, policy), f"{name}: nothing stored differently: the test is vacuous"


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", SLOW)
def test_prediction_equals_runtime_tensor_by_tensor_large(name, policy):
    _check(name, policy)
