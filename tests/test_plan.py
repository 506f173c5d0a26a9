"""The simulator's side of recompute and plan, and the rules it shares with the runtime (core.saved_rules)."""
import collections
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import memsim
from memsim.core import saved_rules
from memsim.simulation import devices
from memsim.simulation.plan import make_plan
from memsim.simulation.policies import (KIND_CODEC, KIND_DENSE, KIND_MASK, KIND_RECOMPUTE, _context,
                                        apply_policy)


class Block(nn.Module):
    """A residual block as ResNet writes it: conv-BN-ReLU, conv-BN, += identity, ReLU (all in place)."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def small_resnet():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2), Block(16), Block(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10))


@pytest.fixture(scope="module")
def trace():
    torch.manual_seed(0)
    return memsim.trace(small_resnet(), torch.randn(4, 3, 32, 32))


def _by_op(tr, kinds, op):
    return [int(kinds[t.id]) for t in tr.timeline.tensors if t.op.startswith(op) and t.output_index == 0
            and _context(tr).activation[t.id]]


def test_recompute_keeps_conv_outputs_and_rebuilds_the_cheap_ops(trace):
    costed = apply_policy(trace, "recompute", sparsity=0.5)
    assert set(_by_op(trace, costed.kinds, "aten.convolution")) == {KIND_DENSE}  # anchors, dense (no zeros)
    # every BN output (made ReLU'd or residual in place) and the max-pool values are rebuilt
    assert set(_by_op(trace, costed.kinds, "aten.native_batch_norm")) == {KIND_RECOMPUTE}
    assert set(_by_op(trace, costed.kinds, "aten.max_pool2d_with_indices")) == {KIND_RECOMPUTE}
    assert costed.extra_flops > 0
    base = apply_policy(trace, "bitmap+mask+indices", sparsity=0.5)
    assert costed.stored_bytes.sum() < base.stored_bytes.sum()
    assert costed.peak_bytes < apply_policy(trace, "none").peak_bytes


def test_residual_chain_is_recomputed_through_the_previous_block(trace):
    ctx = _context(trace)
    outs = [t for t in trace.timeline.tensors if t.op.startswith("aten.native_batch_norm") and t.output_index == 0
            and any(trace.timeline.ops[w].name.startswith("aten.add_") for w in t.writes)]
    assert len(outs) == 2
    # the second block's output is computed from the first block's (its identity), itself recomputed
    assert outs[0].id in ctx.recompute_inputs[outs[1].id]
    assert ctx.recompute_flops[outs[1].id] > ctx.recompute_flops[outs[0].id]


class InPlaceAfter(nn.Module):
    """A BN output changed by an op that is not cheap (mul_) before it is saved: it must be stored."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.lin = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8 * 30 * 30, 2)

    def forward(self, x):
        y = self.bn(self.conv(x))
        y.mul_(torch.ones(()) * 2)
        return self.lin(torch.relu(y).flatten(1))


def test_an_input_written_by_an_expensive_op_is_not_recomputed():
    tr = memsim.trace(InPlaceAfter(), torch.randn(2, 3, 32, 32))
    costed = apply_policy(tr, "recompute", sparsity=0.5)
    bn_out = [t for t in tr.timeline.tensors if t.op.startswith("aten.native_batch_norm") and t.output_index == 0]
    assert any(tr.timeline.ops[w].name.startswith("aten.mul_") for w in bn_out[0].writes)
    assert costed.kinds[bn_out[0].id] != KIND_RECOMPUTE


def test_mask_cost_is_the_runtime_s():
    """A ReLU result saved only by the ReLU is a mask on both sides, at the same bytes."""
    model = nn.Sequential(nn.Linear(64, 4096), nn.ReLU())
    x = torch.randn(16, 64)
    tr = memsim.trace(model, x, loss_fn=lambda out: out.sum())
    costed = apply_policy(tr, "bitmap+mask", sparsity=0.5)
    relu = [t for t in tr.timeline.tensors if t.op.startswith("aten.relu")]
    assert costed.kinds[relu[0].id] == KIND_MASK
    with memsim.compressed_activations(policy="bitmap+mask", min_bytes=0, collect_stats=True) as ctx:
        model(x).sum().backward()
    runtime = [r for r in ctx.stats.records if r.producer == "ReluBackward0"]
    assert runtime[0].kind == "bits"
    assert runtime[0].stored_bytes == costed.stored_bytes[relu[0].id] == saved_rules.mask_bytes(16 * 4096, 4)


def test_leaky_relu_is_not_a_mask_on_either_side():
    model = nn.Sequential(nn.Linear(64, 4096), nn.LeakyReLU())
    tr = memsim.trace(model, torch.randn(16, 64), loss_fn=lambda out: out.sum())
    costed = apply_policy(tr, "bitmap+mask", sparsity=0.5)
    assert KIND_MASK not in set(costed.kinds.tolist())


def _no_band(budget):
    return dataclasses.replace(devices.from_budget(budget), uncertainty=0)


@pytest.fixture(scope="module")
def mobilenet_trace():
    import models_zoo

    torch.manual_seed(0)
    return memsim.trace(models_zoo.create("mobilenet_v2"), torch.randn(4, 3, 96, 96))


def test_plan_climbs_the_ladder_only_as_far_as_the_budget_needs(mobilenet_trace):
    tr = mobilenet_trace
    peak = {p: memsim.simulate(tr, device=_no_band("64GB"), policy=p, sparsity=0.5, max_batch=False)
            .results[p].device_peak_bytes for p in ("none", "bitmap+mask+indices", "recompute")}
    assert peak["recompute"] < peak["bitmap+mask+indices"] < peak["none"]
    roomy = make_plan(tr, _no_band("64GB"), 0.5)
    assert roomy.rung == "none" and roomy.fits and not roomy.entries

    budget = peak["recompute"] + 1024
    tight = make_plan(tr, _no_band(budget), 0.5)
    assert tight.fits and tight.rung in ("encode", "recompute")
    planned = apply_policy(tr, "plan", 0.5, kinds=tight.kinds)
    assert memsim.simulate(tr, device=_no_band(budget), policy="plan", sparsity=0.5,
                           max_batch=False).results["plan"].device_peak_bytes <= budget
    # never more recomputation than the recompute policy itself
    assert planned.extra_flops <= apply_policy(tr, "recompute", 0.5).extra_flops
    assert not make_plan(tr, _no_band(peak["none"] // 4), 0.5).fits


@pytest.mark.slow
def test_profile_plan_reports_the_mix_and_its_max_batch():
    rep = memsim.profile("small_cnn", device="jetson-nano", batch_size=4, policy="plan,none", sparsity=0.5,
                         cache=False)
    res = rep.results["plan"]
    assert res.plan is not None and res.plan.device == "jetson-nano" and res.plan.batch_size == 4
    assert res.row()["plan"]["rung"] == "none"  # it fits dense: the plan adds no work
    assert res.max_batch_size == rep.results["none"].max_batch_size
    assert res.extra_flops == 0


def test_rules_are_one_module():
    from memsim.runtime import hooks, store
    from memsim.simulation import policies

    assert hooks.MASK_RESULT_NODES is saved_rules.MASK_RESULT_NODES
    assert store.Bits.encoded_size(torch.zeros(1000)) == saved_rules.mask_bytes(1000, 4)
    assert policies.mask_bytes is saved_rules.mask_bytes
    assert np.all(saved_rules.mask_bytes(np.array([8, 9]), 4) == np.array([9, 10]))


def _train_step(model, x, ctx=None):
    import contextlib

    torch.manual_seed(1)  # the same dropout draws in both steps
    with ctx or contextlib.nullcontext():
        model(x).sum().backward()
    return [p.grad.clone() for p in model.parameters()]


def test_a_plan_applies_for_real_tensor_by_tensor_and_bit_identically(mobilenet_trace):
    import models_zoo

    from memsim.simulation.policies import KIND_NAMES

    tr = mobilenet_trace
    peak = memsim.simulate(tr, device=_no_band("64GB"), policy="recompute", sparsity=0.5,
                           max_batch=False).results["recompute"].device_peak_bytes
    plan = make_plan(tr, _no_band(peak + 2 * 1024 * 1024), 0.5)
    assert plan.fits and plan.entries
    planned = {}
    for e in plan.entries:
        planned.setdefault(e["kind"], 0)
        planned[e["kind"]] += 1
    torch.manual_seed(0)
    model = models_zoo.create("mobilenet_v2")
    x = torch.randn(4, 3, 96, 96)
    reference = _train_step(model, x)
    model.zero_grad(set_to_none=True)
    ctx = memsim.compressed_activations(plan, min_bytes=0, collect_stats=True, exclude=[model, x])
    grads = _train_step(model, x, ctx)
    assert all(torch.equal(a.view(torch.int32), b.view(torch.int32)) for a, b in zip(reference, grads))
    kinds = collections.Counter(r.kind for r in ctx.stats.records if r.reason != "parameter")
    assert planned.get("recompute", 0) > 0 and kinds["recompute"] == planned["recompute"]
    # what the plan leaves dense is kept dense: no more encoded than planned
    assert kinds["bitmap"] + kinds["bits"] + kinds["narrow-int"] <= sum(
        planned.get(k, 0) for k in ("bitmap", "mask", "narrow-int"))
    assert any(r.reason == "planned dense" for r in ctx.stats.records)
    assert set(KIND_NAMES.values()) >= set(planned)


def test_plan_policy_without_a_plan_is_a_clear_error():
    with pytest.raises(memsim.core.errors.InputError, match="needs the plan"):
        memsim.compressed_activations(policy="plan")
    with pytest.raises(memsim.core.errors.InputError, match="expected a memsim plan"):
        memsim.compressed_activations(policy="plan", plan=42)


def deep_resnet():
    """Two stages of four residual blocks: activations dominate, and the sqrt(n) blocks are the residual ones."""
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                       nn.ReLU(inplace=True)),
                         nn.Sequential(*[Block(16) for _ in range(4)]), nn.Sequential(*[Block(16) for _ in range(4)]),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


@pytest.fixture(scope="module")
def deep_trace():
    torch.manual_seed(0)
    return memsim.trace(deep_resnet(), torch.randn(8, 3, 32, 32), optimizer="sgd")


def _cpu_budget(budget):
    return dataclasses.replace(devices.from_budget(budget, runtime_bytes=0), uncertainty=0)


def test_plan_checkpoints_the_fewest_blocks_when_recompute_is_not_enough(deep_trace):
    tr = deep_trace
    rec = apply_policy(tr, "recompute", 0.5)
    plans = {f: make_plan(tr, _cpu_budget(int(rec.peak_bytes * f)), 0.5) for f in (0.95, 0.7)}
    blocks = set(_context(tr).blocks.values())
    for f, plan in plans.items():
        assert plan.rung == "checkpoint" and plan.fits, f
        assert set(plan.checkpoint_blocks) <= blocks and plan.checkpoint_blocks
        costed = apply_policy(tr, "plan", 0.5, kinds=plan.kinds)
        assert costed.peak_bytes <= rec.peak_bytes * f
        assert costed.extra_flops > rec.extra_flops   # the blocks' forward runs again
        # encodings and recompute stay where checkpointing is not needed
        assert {"recompute", "checkpoint"} <= {row["kind"] for row in plan.summary()}
    assert len(plans[0.7].checkpoint_blocks) > len(plans[0.95].checkpoint_blocks)
    assert len(plans[0.95].checkpoint_blocks) < len(blocks)   # not all blocks: the fewest that fit
    # what cannot fit says so, with the plan that comes closest
    hopeless = make_plan(tr, _cpu_budget(rec.peak_bytes // 10), 0.5)
    assert not hopeless.fits and hopeless.rung == "checkpoint"


def test_profile_text_lists_the_checkpointed_blocks(deep_trace):
    from memsim.output.text import render

    rec = apply_policy(deep_trace, "recompute", 0.5).peak_bytes
    rep = memsim.simulate(deep_trace, device=_cpu_budget(int(rec * 0.7)), policy="plan", sparsity=0.5,
                          max_batch=False)
    text = render(rep)
    plan = rep.results["plan"].plan
    assert f"checkpointed blocks ({len(plan.checkpoint_blocks)}): {', '.join(plan.checkpoint_blocks)}" in text
    assert "block checkpointing where still needed; fits" in text


def _bits(t):
    return t.reshape(-1).view(torch.uint8) if t.is_floating_point() else t


def _train(model, x, steps, ctx=None):
    import contextlib

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses, grads = [], []
    for s in range(steps):
        with (ctx() if ctx else contextlib.nullcontext()):
            loss = model(x).square().mean()
            loss.backward()
        losses.append(loss.detach())
        grads += [p.grad.clone() for p in model.parameters()]
        opt.step()
        opt.zero_grad(set_to_none=True)
    return losses, grads, [p.detach() for p in model.parameters()], [b for b in model.buffers()]


def test_a_checkpointing_plan_applies_for_real_bit_identically(deep_trace):
    from memsim.measure.profiler import measure_step_peak

    torch.manual_seed(0)
    model, x = deep_resnet(), torch.randn(8, 3, 32, 32)
    sparsity = memsim.measure_sparsity(model, x)
    tr = memsim.trace(model, x, optimizer="sgd")
    res = memsim.simulate(tr, device=None, policy="none", sparsity=sparsity, max_batch=False).results["none"]
    rec = apply_policy(tr, "recompute", sparsity).peak_bytes
    planned = memsim.simulate(tr, device=_cpu_budget(int(rec * 0.7)), policy="plan", sparsity=sparsity,
                              max_batch=False).results["plan"]
    plan = planned.plan
    assert plan.rung == "checkpoint" and "1.0" in plan.checkpoint_blocks and "2.3" not in plan.checkpoint_blocks

    calls = collections.Counter()
    blocks = {f"{i}.{j}": model[i][j] for i in (1, 2) for j in range(4)}
    hooks = [b.conv1.register_forward_hook(lambda *_, name=name: calls.update([name])) for name, b in blocks.items()]
    reference = _train(copy_of(model), x, 3)
    calls.clear()
    ours = _train(model, x, 3, lambda: memsim.compressed_activations(plan))
    for h in hooks:
        h.remove()
    for a, b in zip(reference, ours):
        assert len(a) == len(b) and all(torch.equal(_bits(u), _bits(v)) for u, v in zip(a, b))
    assert int(model[1][0].bn1.num_batches_tracked) == 3   # running statistics updated once per step
    # a checkpointed block runs twice a step (forward, then once in backward: never to answer a probe)
    assert calls == {name: 6 if name in plan.checkpoint_blocks else 3 for name in blocks}
    assert all("forward" not in m.__dict__ for m in model.modules())   # the blocks are left as they were

    measured = 1 - (measure_step_peak(model, x, None, "sgd",
                                      context=lambda: memsim.compressed_activations(plan)).peak_bytes
                    / measure_step_peak(model, x, None, "sgd").peak_bytes)
    predicted = 1 - planned.peak_bytes / res.peak_bytes
    assert measured > 0.5 and abs(measured - predicted) < 0.02


def copy_of(model):
    import copy

    return copy.deepcopy(model)


def test_a_plan_for_another_model_is_a_clear_error(deep_trace):
    plan = {"rung": "checkpoint", "entries": [], "checkpoint_blocks": ["encoder.7"]}
    model = deep_resnet()
    with pytest.raises(memsim.core.errors.InputError, match="'encoder.7'.*modules include: 0, 0.0"):
        with memsim.compressed_activations(plan, exclude=model):
            model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all("forward" not in m.__dict__ for m in model.modules())
