"""``plan`` applied for real: budgets below what ``recompute`` needs, so the plan checkpoints blocks on top of
its encodings and recomputation. Per model and budget: the plan's mix, the measured step peak (profiler
allocator events) beside the simulator's prediction, the step time against plain training (median of
per-round ratios, runs interleaved), and whether losses, gradients, weights and buffers after three SGD steps
equal plain training's to the bit.

Run: ``python -m memsim.cli.bench.runtime_plan [--models resnet50] [--batches 8,32] [--fractions 0.9,0.8]``
(CPU, 224x224, SGD with momentum; about 5 minutes for ResNet-50 at batch 8 on 2 cores; not part of the tests).
A fraction is the budget for tensors as a share of the simulator's ``recompute`` peak (no runtime or OS
reserve, no uncertainty band).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses

import click
import torch

import memsim
import models_zoo
from memsim.cli.bench.runtime import _batches, _models, interleaved_step_times, overhead
from memsim.measure.profiler import measure_step_peak
from memsim.simulation import devices
from memsim.tracing import step as step_mod


def _budget_device(budget_bytes: int):
    return dataclasses.replace(devices.from_budget(budget_bytes, runtime_bytes=0), uncertainty=0)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8) if t.is_floating_point() else t


def _train(model, x, loss_fn, steps: int, context=None):
    """Losses, gradients, weights and buffers after ``steps`` SGD steps (a copy of ``model``)."""
    model = copy.deepcopy(model)
    opt = step_mod.make_optimizer("sgd", model.parameters())
    out: list[torch.Tensor] = []
    for s in range(steps):
        torch.manual_seed(s)
        with (context() if context else contextlib.nullcontext()):
            loss = loss_fn(model(x))
            loss.backward()
        out += [loss.detach(), *(p.grad.clone() for p in model.parameters())]
        opt.step()
        opt.zero_grad(set_to_none=True)
    return out + [p.detach() for p in model.parameters()] + list(model.buffers())


def _overhead(model, x, loss_fn, context, repeats: int) -> float:
    work = copy.deepcopy(model)
    opt = step_mod.make_optimizer("sgd", work.parameters())
    return overhead(interleaved_step_times(work, x, loss_fn, opt, {"plan": context}, repeats), "plan")


def measure(name: str, batch: int, fraction: float, repeats: int = 3) -> dict:
    """One row: the plan for ``fraction`` of the recompute peak, measured (bytes, fractions, seconds)."""
    spec = models_zoo.spec(name)
    model = models_zoo.create(name, seed=0)
    x = torch.randn((batch, 3, 224, 224), generator=torch.Generator().manual_seed(0))
    loss_fn = spec.loss_fn or step_mod.default_loss
    tr = memsim.trace(model, x, loss_fn=spec.loss_fn, optimizer="sgd")
    sparsity = memsim.measure_sparsity(model, x[:8])
    res = memsim.simulate(tr, device=None, policy=["none", "recompute"], sparsity=sparsity, max_batch=False).results
    planned = memsim.simulate(tr, device=_budget_device(int(res["recompute"].peak_bytes * fraction)), policy="plan",
                              sparsity=sparsity, max_batch=False).results["plan"]
    plan = planned.plan
    context = lambda: memsim.compressed_activations(plan)   # noqa: E731
    base = measure_step_peak(model, x, spec.loss_fn, "sgd").peak_bytes
    peak = measure_step_peak(model, x, spec.loss_fn, "sgd", context=context).peak_bytes
    same = all(torch.equal(_bits(a), _bits(b)) for a, b in zip(_train(model, x, loss_fn, 3),
                                                               _train(model, x, loss_fn, 3, context)))
    return {"model": name, "batch": batch, "fraction": fraction, "rung": plan.rung, "fits": plan.fits,
            "blocks": len(plan.checkpoint_blocks), "peak_without": base, "peak": peak,
            "measured": 1 - peak / base, "predicted": 1 - planned.peak_bytes / res["none"].peak_bytes,
            "extra_flops": planned.extra_flops, "overhead": _overhead(model, x, spec.loss_fn, context, repeats),
            "bit_identical": same}


def _fractions(ctx, param, value):
    try:
        out = [float(v) for v in value.split(",")]
    except ValueError:
        out = []
    if not out or not all(0 < f <= 1 for f in out):
        raise click.BadParameter(f"bad fractions {value!r}: comma-separated numbers in (0, 1], e.g. 0.9,0.8")
    return out


@click.command()
@click.option("--models", default="resnet50", show_default=True, callback=_models,
              help="comma-separated zoo image models")
@click.option("--batches", default="8", show_default=True, callback=_batches, help="comma-separated batch sizes")
@click.option("--fractions", default="0.9,0.8", show_default=True, callback=_fractions,
              help="budgets as shares of the recompute peak, comma-separated")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 20), help="interleaved timing rounds")
def main(models: list[str], batches: list[int], fractions: list[float], repeats: int) -> None:
    from memsim.output.tables import table

    rows = []
    for name in models:
        for batch in batches:
            for fraction in fractions:
                r = measure(name, batch, fraction, repeats)
                click.echo(f"{name} batch {batch} budget {fraction:.0%} of recompute: {r['measured']:.1%}", err=True)
                rows.append([name, batch, f"{fraction:.0%}", r["rung"], "yes" if r["fits"] else "no", r["blocks"],
                             f"{r['peak_without'] / 2**20:.1f}", f"{r['peak'] / 2**20:.1f}", f"{r['measured']:.1%}",
                             f"{r['predicted']:.1%}", f"{100 * abs(r['measured'] - r['predicted']):.1f}",
                             f"{r['overhead']:+.1%}", "yes" if r["bit_identical"] else "NO"])
    click.echo(f"memsim plan, applied: CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, 224x224, "
               "SGD; peaks from torch.profiler allocator events")
    click.echo(table(["model", "batch", "budget", "rung", "fits", "ckpt blocks", "peak w/o MiB", "peak with MiB",
                      "reduction", "predicted", "gap pp", "step time", "bit-identical"], rows,
                     right={1, 2, 5, 6, 7, 8, 9, 10, 11}))


if __name__ == "__main__":
    main()
