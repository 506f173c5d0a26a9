"""``memsim bench runtime``: real training with compressed saved activations, measured.

For each model, batch and policy it prints, side by side from one run:

- the measured peak of one steady-state training step without and with
  :func:`memsim.compressed_activations` (torch.profiler allocator events, :mod:`memsim.measure.profiler`), and the
  reduction;
- the reduction the simulator predicts for the same configuration (:func:`memsim.trace`,
  :func:`memsim.measure_sparsity` on the same inputs, :func:`memsim.simulate`), and the gap in percentage
  points (target: within 2);
- the step time without and with (median of ``--repeats`` rounds outside the profiler; each round runs
  the plain step and one step per policy back to back) and the overhead, the median of the per-round
  ratios, so that load from other processes hits both sides alike (target: at most 25% on the CPU);

then, per model, what the hooks stored (per producing op: dense bytes, stored bytes, bytes kept dense) so
the gap to the paper's 34% can be read off.

Example:
    $ memsim bench runtime --models resnet18 --batches 8 --policies bitmap,bitmap+mask+indices
"""
from __future__ import annotations

import contextlib
import copy
import statistics
import time

import click

from memsim.core.choices import choose, one_of, split_list
from memsim.core.errors import InputError

ALL_MODELS = ("resnet18", "mobilenet_v2", "resnet50", "vgg16")
#: vgg16 is left out of the default run: one profiled batch-8 step takes ~30 s on 2 cores (~8 min in all)
DEFAULT_MODELS = ("resnet18", "mobilenet_v2", "resnet50")
ALL_BATCHES = (8, 32)
DEFAULT_BATCHES = (8,)
DEFAULT_POLICIES = ("bitmap", "bitmap+mask+indices")
MIB = 1024 * 1024


def _models(ctx, param, value):
    import models_zoo

    valid = [n for n in models_zoo.names() if models_zoo.spec(n).task.value == "image_classification"]
    try:
        return [one_of(n, valid, "image model") for n in split_list(value)]
    except InputError as e:
        raise click.BadParameter(str(e)) from None


def _batches(ctx, param, value):
    out = []
    for v in split_list(value):
        if not v.isdigit() or int(v) <= 0:
            raise click.BadParameter(f"bad batch size {v!r}: must be a positive integer, e.g. 8,32")
        out.append(int(v))
    return out


def _policies(ctx, param, value):
    from memsim.runtime.hooks import Policy

    try:
        return [choose(Policy, v, "policy") for v in split_list(value)]
    except InputError as e:
        raise click.BadParameter(str(e)) from None


def measure_config(name: str, batch: int, policies, repeats: int = 3, image_size: int = 224,
                   optimizer: str = "sgd", predict: bool = True) -> dict:
    """Measure one model at one batch size without and with each policy.

    Returns a dict with ``peak_without`` (bytes), ``time_without`` (seconds) and, per policy value,
    ``{"peak": bytes, "time": seconds, "overhead": fraction, "predicted": fraction or None,
    "stats": CompressionStats}``.

    Example:
        >>> r = measure_config("resnet18", 8, ["bitmap"])     # doctest: +SKIP
        >>> 1 - r["bitmap"]["peak"] / r["peak_without"]    # doctest: +SKIP
    """
    import torch

    import models_zoo
    from memsim.tracing import step as step_mod
    from memsim.measure.profiler import measure_step_peak
    from memsim.runtime.hooks import compressed_activations

    spec = models_zoo.spec(name)
    model = models_zoo.create(name, seed=0)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn((batch, 3, image_size, image_size), generator=gen)
    loss_fn = spec.loss_fn
    out: dict = {"peak_without": measure_step_peak(model, inputs, loss_fn, optimizer).peak_bytes}
    for policy in policies:
        out[str(policy)] = {"peak": measure_step_peak(
            model, inputs, loss_fn, optimizer, context=lambda p=policy: compressed_activations(p)).peak_bytes}

    work = copy.deepcopy(model)
    opt = step_mod.make_optimizer(optimizer, work.parameters())
    times = interleaved_step_times(work, inputs, loss_fn, opt,
                                   {str(p): lambda p=p: compressed_activations(p) for p in policies}, repeats)
    out["time_without"] = statistics.median(times["plain"])
    for policy in policies:
        out[str(policy)]["time"] = statistics.median(times[str(policy)])
        out[str(policy)]["overhead"] = overhead(times, str(policy))
        with compressed_activations(policy, collect_stats=True) as ctx:
            step_mod.run_step(work, (inputs,), loss_fn, opt)
        out[str(policy)]["stats"] = ctx.stats
    del work, opt

    predicted = predict_reductions(model, inputs, loss_fn, optimizer, policies) if predict else {}
    for policy in policies:
        out[str(policy)]["predicted"] = predicted.get(str(policy))
    return out


def interleaved_step_times(model, inputs, loss_fn, optimizer, contexts: dict, repeats: int) -> dict:
    """Seconds per training step of ``model`` (warmed up once, then trained in place), plain and under each
    of ``contexts`` (label -> zero-argument callable returning a context manager), run interleaved: plain,
    context 1, context 2, ..., plain, ... ``repeats`` rounds. Returns ``{"plain": [s, ...], label: [s, ...]}``.

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(8, 8); opt = torch.optim.SGD(m.parameters(), lr=0.1)
        >>> t = interleaved_step_times(m, torch.randn(4, 8), None, opt, {"again": contextlib.nullcontext}, 2)
        >>> sorted(t), len(t["again"])
        (['again', 'plain'], 2)
    """
    from memsim.tracing import step as step_mod

    step_mod.warm_up(model, (inputs,), loss_fn, optimizer, 1)
    runs = [("plain", contextlib.nullcontext), *contexts.items()]
    times: dict[str, list[float]] = {label: [] for label, _ in runs}
    for _ in range(repeats):
        for label, make in runs:
            t0 = time.perf_counter()
            with make():
                step_mod.run_step(model, (inputs,), loss_fn, optimizer)
            times[label].append(time.perf_counter() - t0)
    return times


def overhead(times: dict, label: str) -> float:
    """Extra step time of ``label`` over plain (fraction): the median of per-round ratios. A round's steps
    run back to back, so load from other processes on a shared machine hits both sides of each ratio alike.

    >>> round(overhead({"plain": [1.0, 2.0, 1.0], "x": [1.5, 2.2, 1.2]}, "x"), 6)
    0.2
    """
    return statistics.median(t / p for t, p in zip(times[label], times["plain"])) - 1.0


def predict_reductions(model, inputs, loss_fn, optimizer, policies) -> dict:
    """The simulator's predicted peak reduction (fraction) per runtime policy value (the same
    policy names on both sides); empty when the simulator is not available."""
    try:
        import memsim
        from memsim.simulation import simulate as _sim  # noqa: F401
    except ImportError:
        return {}
    sim_policies = [str(p) for p in policies]    # one Policy enum: the simulator models every runtime policy
    tr = memsim.trace(model, inputs, loss_fn=loss_fn, optimizer=optimizer)
    sparsity = memsim.measure_sparsity(model, inputs[: min(len(inputs), 8)])
    report = memsim.simulate(tr, device=None, policy=["none", *sim_policies], sparsity=sparsity,
                             max_batch=False)
    base = report.results["none"].peak_bytes
    return {p: 1.0 - report.results[p].peak_bytes / base for p in sim_policies}


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


@click.command(name="runtime")
@click.option("--models", "models", default=",".join(DEFAULT_MODELS), show_default=True, callback=_models,
              help="Comma-separated zoo models (image classifiers); the issue's set adds vgg16.")
@click.option("--batches", default=",".join(map(str, DEFAULT_BATCHES)), show_default=True, callback=_batches,
              help="Comma-separated batch sizes (the issue's full set is 8,32; batch 32 of vgg16/resnet50 "
                   "under the profiler takes minutes on 2 cores, so the default skips it).")
@click.option("--policies", default=",".join(DEFAULT_POLICIES), show_default=True, callback=_policies,
              help="Comma-separated runtime policies: bitmap, bitmap+mask, bitmap+indices, bitmap+mask+indices, recompute.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Timed rounds per configuration (medians are reported).")
@click.option("--image-size", default=224, show_default=True, type=click.IntRange(16, 1024),
              help="Input height and width in pixels.")
@click.option("--no-predict", is_flag=True, help="Skip the simulator's prediction (faster).")
@click.option("--breakdown/--no-breakdown", default=True, show_default=True,
              help="Print per producing op what was stored dense and compressed.")
def command(models, batches, policies, repeats, image_size, no_predict, breakdown):
    """Measured peak memory and step time of real training with compressed saved activations."""
    import torch

    skipped = [b for b in ALL_BATCHES if b not in batches]
    skipped_models = [m for m in ALL_MODELS if m not in models]
    click.echo(f"memsim bench runtime: CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, "
               f"{image_size}x{image_size} inputs, SGD; peaks from torch.profiler allocator events")
    if skipped or skipped_models:
        click.echo(f"(skipped: {', '.join([*skipped_models, *(f'batch {b}' for b in skipped)])}; the full table "
                   f"is --models {','.join(ALL_MODELS)} --batches {','.join(map(str, ALL_BATCHES))}, "
                   f"which takes more than an hour on 2 cores)")
    from memsim.output.tables import table

    rows, breakdowns = [], []
    for name in models:
        for batch in batches:
            r = measure_config(name, batch, policies, repeats=repeats, image_size=image_size,
                               predict=not no_predict)
            for policy in policies:
                p = r[str(policy)]
                measured = 1.0 - p["peak"] / r["peak_without"]
                gap = "n/a" if p["predicted"] is None else f"{100 * abs(p['predicted'] - measured):.1f}"
                rows.append([name, batch, str(policy), f"{r['peak_without'] / MIB:.1f}", f"{p['peak'] / MIB:.1f}",
                             _pct(measured), _pct(p["predicted"]), gap, f"{r['time_without']:.2f}",
                             f"{p['time']:.2f}", _pct(p["overhead"])])
                click.echo(f"{name} batch {batch} {policy}: {_pct(measured)}", err=True)   # progress
            if batch == batches[0]:
                breakdowns.append((name, batch, policies[-1], r[str(policies[-1])]["stats"]))
    click.echo(table(["model", "batch", "policy", "peak w/o MiB", "peak with MiB", "reduction", "predicted",
                      "gap pp", "step w/o s", "step with s", "overhead"], rows, right=set(range(3, 11)) | {1}))
    if breakdown:
        for name, batch, policy, stats in breakdowns:
            click.echo(f"\n{name} batch {batch}, {policy}: saved tensors by producing op (unique storages)")
            click.echo(stats.table())
            reasons = ", ".join(f"{k}: {v / MIB:.1f} MiB" for k, v in sorted(stats.by_reason().items()))
            click.echo(f"dense bytes by outcome: {reasons}")
