"""``memsim profile``, ``memsim check`` and ``memsim devices``.

Flow: MODEL → workload (model factory, inputs, loss) → trace at the batch size and at a second one (to learn
what scales with the batch) → sparsity → simulate (every requested policy) → text / JSON / HTML / exit code.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import click

from memsim.cli import params
from memsim.core.errors import InputError


def _device_option(f):
    f = click.option("--device", "device", type=params.DEVICE, default=None,
                     help="Device from the catalog (see `memsim devices`).")(f)
    f = click.option("--device-file", type=click.Path(dir_okay=False), default=None,
                     help="Your own device description (TOML; see `memsim devices --template`).")(f)
    f = click.option("--budget", type=params.SIZE, default=None,
                     help="Memory budget instead of a device, e.g. 3.5GiB or 4GB.")(f)
    f = click.option("--backend", type=params.BACKEND, default=None,
                     help="Kernels to predict for: the device's own (default), 'cpu' for its CPU side (a "
                          "Jetson's Arm cores), or x86, aarch64, cuda.")(f)
    return f


def _workload_options(f):
    for opt in reversed([
        click.option("--batch-size", "-b", type=params.BATCH, default=None,
                     help="Batch size (default: the model's default)."),
        click.option("--input-shape", type=params.SHAPE, default=None,
                     help="Per-sample input shape, e.g. 3,224,224 (default: the model's)."),
        click.option("--optimizer", type=params.OPTIMIZER, default="momentum", show_default=True,
                     help="sgd, momentum, adam or adamw."),
        click.option("--weights", type=click.Path(dir_okay=False), default=None,
                     help="state_dict for a zoo model (used by --sparsity measured)."),
        click.option("--cache/--no-cache", default=True, show_default=True,
                     help="Reuse a cached trace of a zoo model (see memsim.workflow.cache; MEMSIM_CACHE_DIR)."),
    ]):
        f = opt(f)
    return f


def _resolve_device(device, device_file, budget):
    from memsim.simulation import devices

    given = [x for x in (device, device_file, budget) if x is not None]
    if len(given) > 1:
        raise InputError("give one of --device, --device-file or --budget, not several")
    if device_file is not None:
        return devices.load_file(device_file)
    if budget is not None:
        return devices.from_budget(budget)
    return device


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _write_json(data: dict, target: str) -> None:
    text = json.dumps(data, indent=2)
    if target == "-":
        click.echo(text)
    else:
        Path(target).write_text(text + "\n")


@click.command()
@click.argument("model")
@_device_option
@_workload_options
@click.option("--policy", type=params.POLICIES, default="all", show_default=True,
              help="none, bitmap, bitmap+mask+indices, fp16, bf16, checkpoint, a comma-separated list, or all.")
@click.option("--sparsity", type=params.SPARSITY, default="0.5", show_default=True,
              help="Zero fraction of ReLU/Dropout activations (0.5, 50%), 'measured' (real forward on random "
                   "data with the codec), 'none', or a saved measurement file.")
@click.option("--margin", type=params.FRACTION, default="0", help="Keep this share of the budget free, e.g. 10%.")
@click.option("--json", "json_out", default=None, metavar="PATH|-", help="Write the report as JSON ('-' = stdout).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), default=None,
              help="Write a standalone HTML report with interactive figures.")
@click.option("--save-trace", type=click.Path(dir_okay=False), default=None,
              help="Save the trace (JSON, .gz to compress) for `memsim check` without tracing again.")
@click.option("--color/--no-color", default=None, help="Colour the category names (default: on a terminal).")
def profile(model, device, device_file, budget, backend, batch_size, input_shape, optimizer, weights, cache, policy,
            sparsity, margin, json_out, html_out, save_trace, color):
    """Predict the peak memory of one training step of MODEL and what would make it fit.

    MODEL is a zoo name (resnet50), package.module:factory or path/to/file.py:factory.
    """
    import memsim

    start = time.perf_counter()
    dev = _resolve_device(device, device_file, budget) or "jetson-nano"
    rep = memsim.profile(model, device=dev, batch_size=batch_size, policy=policy, sparsity=sparsity,
                         optimizer=optimizer, input_shape=input_shape, weights=weights, margin=margin, cache=cache,
                         backend=backend, warn=_warn)
    if rep.cache == "hit":
        click.echo("(trace from cache; --no-cache traces again)", err=True)
    if save_trace:
        rep.trace.save(save_trace)
    if json_out == "-":
        _write_json(rep.to_dict(), "-")
    else:
        color = sys.stdout.isatty() if color is None else color
        click.echo(_render(rep, color))
        if json_out:
            _write_json(rep.to_dict(), json_out)
    if html_out:
        from memsim.output import html_report

        html_report.write_html(rep, html_out)
        click.echo(f"wrote {html_out}", err=True)
    click.echo(f"\n(profiled in {time.perf_counter() - start:.2f} s)", err=True)


def _render(rep, color):
    from memsim.output import text as report_text

    return report_text.render(rep, color=color)


@click.command()
@click.argument("model")
@_device_option
@_workload_options
@click.option("--policy", type=params.POLICIES, default="none", show_default=True,
              help="The policy to gate on (one name).")
@click.option("--sparsity", type=params.SPARSITY, default="0.5", show_default=True,
              help="As for profile.")
@click.option("--margin", type=params.FRACTION, default="0", help="Fail unless this share of the budget stays free.")
@click.option("--json", "json_out", default=None, metavar="PATH|-", help="Also write the report as JSON.")
def check(model, device, device_file, budget, backend, batch_size, input_shape, optimizer, weights, cache, policy,
          sparsity, margin, json_out):
    """Exit 0 if one training step of MODEL fits the device, 1 if it does not, 2 on bad input.

    MODEL may also be a trace saved by `memsim profile --save-trace` (no tracing again).
    """
    import memsim

    dev = _resolve_device(device, device_file, budget)
    if dev is None:
        raise InputError("check needs --device, --device-file or --budget")
    if len(policy) != 1:
        raise InputError("check gates on one policy; give --policy NAME")
    if _looks_like_trace(model):
        if input_shape or weights or sparsity == "measured":
            raise InputError("--input-shape, --weights and --sparsity measured need a model, not a saved trace")
        tr = memsim.Trace.load(model)
        sp = None if sparsity == "none" else sparsity
        rep = memsim.simulate(tr, device=dev, policy=policy, sparsity=sp, margin=margin, batch_size=batch_size,
                              backend=backend)
    else:
        rep = memsim.profile(model, device=dev, batch_size=batch_size, policy=policy, sparsity=sparsity,
                             optimizer=optimizer, input_shape=input_shape, weights=weights, margin=margin,
                             cache=cache, backend=backend, warn=_warn)
        if rep.cache == "hit":
            click.echo("(trace from cache; --no-cache traces again)", err=True)
    from memsim.output import text as report_text

    if json_out:
        _write_json(rep.to_dict(), json_out)
    click.echo(report_text.check_line(rep), err=json_out == "-")
    click.get_current_context().exit(0 if rep.fits else 1)


def _looks_like_trace(arg: str) -> bool:
    return arg.endswith((".json", ".json.gz")) or (Path(arg).is_file() and ":" not in arg and not arg.endswith(".py"))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@click.option("--template", is_flag=True, help="Print a device file template for --device-file.")
def devices(as_json, template):
    """List the device catalog (memory, what the OS and runtime take, allocator)."""
    from memsim.simulation import devices as catalog
    from memsim.output.tables import table
    from memsim.core.units import format_bytes

    if template:
        click.echo(catalog.template())
        return
    devs = [catalog.get(n) for n in catalog.names()]
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in devs], indent=2))
        return
    rows = [[d.name, d.display_name, format_bytes(d.total_bytes), format_bytes(d.os_reserved_bytes),
             format_bytes(d.runtime_bytes), format_bytes(d.budget_bytes), str(getattr(d.allocator, "value", d.allocator))]
            for d in devs]
    click.echo(table(["name", "device", "memory", "OS", "runtime", "for tensors", "allocator"], rows,
                     right={2, 3, 4, 5}))
