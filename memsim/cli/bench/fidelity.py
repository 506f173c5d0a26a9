"""``memsim bench fidelity``: predicted vs measured peak of one training step for the zoo models.

For each model × batch × optimizer it prints memsim's prediction (``memsim.trace``), the peak measured with
the profiler on the real CPU step (``memsim.measure.profiler.measure_step_peak``), the error, and next to it PyTorch's
MemTracker under FakeTensorMode (its prediction, error and time).

Example:
    memsim bench fidelity --models resnet18,mobilenet_v2 --batches 2,8
    memsim bench fidelity --models gpt2 --batches 1,2 --seq-len 128 --optimizers adam
"""
from __future__ import annotations

import gc
import json
import time

import click

from memsim.core.choices import one_of, split_list
from memsim.core.errors import InputError
from memsim.core.units import format_bytes

#: Measurements whose predicted peak exceeds this many bytes are skipped unless --max-measure says otherwise
#: (the real step must fit in this machine's memory next to the profiler's own bookkeeping).
DEFAULT_MAX_MEASURE = "8GiB"


def _validate(models: list[str], optimizers: list[str], batches: str) -> list[int]:
    import models_zoo

    from memsim.tracing import step as step_mod

    for m in models:
        one_of(m, models_zoo.names(), "zoo model")
    for o in optimizers:
        step_mod.validate_optimizer(o)
    try:
        out = [int(b) for b in split_list(batches)]
    except ValueError:
        raise InputError(f"--batches must be comma-separated positive integers, got {batches!r}") from None
    if not out or any(b < 1 for b in out):
        raise InputError(f"--batches must be comma-separated positive integers, got {batches!r}")
    return out


def _inputs(spec, batch: int, seq_len: int | None, device: str = "cpu"):
    if spec.max_seq_len is not None:
        return spec.example_inputs(batch, device=device, seq_len=seq_len, seed=0)
    return spec.example_inputs(batch, device=device, seed=0)


def run_row(name: str, batch: int, optimizer: str, seq_len: int | None, max_measure: int,
            memtracker: bool) -> dict:
    """One table row (a dict of plain numbers; ``None`` where a column was skipped)."""
    import models_zoo

    import memsim
    from memsim.measure.profiler import measure_step_peak

    spec = models_zoo.spec(name)
    meta_model = models_zoo.create(name, device="meta")
    meta_x = _inputs(spec, batch, seq_len, "meta")
    t0 = time.perf_counter()
    tr = memsim.trace(meta_model, meta_x, loss_fn=spec.loss_fn, optimizer=optimizer)
    row = {"model": name, "batch": batch, "optimizer": optimizer, "predicted": tr.peak_bytes,
           "trace_s": time.perf_counter() - t0, "measured": None, "error_pct": None, "note": ""}
    del meta_model, tr
    if memtracker:
        from memsim.cli.bench.memtracker import memtracker_peak

        try:
            mt = memtracker_peak(lambda: models_zoo.create(name, device="meta"),
                                 lambda: _inputs(spec, batch, seq_len, "meta"),
                                 spec.loss_fn, optimizer)
            row["memtracker"], row["memtracker_s"] = mt.peak_bytes, mt.seconds
        except Exception as e:  # noqa: BLE001 - a comparison column; report and go on
            row["memtracker"], row["memtracker_s"] = None, None
            row["note"] += f"MemTracker failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}; "
    if row["predicted"] > max_measure:
        row["note"] += f"not measured: predicted peak above --max-measure {format_bytes(max_measure)}"
        return row
    model = models_zoo.create(name, seed=0)
    x = _inputs(spec, batch, seq_len)
    m = measure_step_peak(model, x, loss_fn=spec.loss_fn, optimizer=optimizer)
    del model, x
    gc.collect()
    row["measured"] = m.peak_bytes
    row["error_pct"] = 100.0 * (row["predicted"] - m.peak_bytes) / m.peak_bytes
    if memtracker and row.get("memtracker"):
        row["memtracker_error_pct"] = 100.0 * (row["memtracker"] - m.peak_bytes) / m.peak_bytes
    return row


def _cells(row: dict) -> list[str]:
    def mb(v):
        return "-" if v is None else f"{v / 2**20:,.1f}"

    def pct(v):
        return "-" if v is None else f"{v:+.2f}%"

    def sec(v):
        return "-" if v is None else f"{v:.2f}"

    return [row["model"], str(row["batch"]), row["optimizer"], mb(row["predicted"]), mb(row["measured"]),
            pct(row["error_pct"]), sec(row["trace_s"]), mb(row.get("memtracker")),
            pct(row.get("memtracker_error_pct")), sec(row.get("memtracker_s")), row["note"]]


HEADERS = ["model", "batch", "optimizer", "predicted MiB", "measured MiB", "error", "trace s", "MemTracker MiB",
           "MemTracker error", "MemTracker s", "note"]


@click.command(name="fidelity")
@click.option("--models", default=None, help="Comma-separated zoo models (default: all).")
@click.option("--batches", default=None,
              help="Comma-separated batch sizes (default: 2,8 for image models, 1,2 for language models).")
@click.option("--optimizers", default="momentum,adam", show_default=True, help="Comma-separated optimizers.")
@click.option("--seq-len", type=int, default=128, show_default=True, help="Sequence length of language models.")
@click.option("--max-measure", default=DEFAULT_MAX_MEASURE, show_default=True,
              help="Skip measuring steps whose predicted peak is larger (e.g. 8GiB).")
@click.option("--memtracker/--no-memtracker", default=True, show_default=True,
              help="Also run PyTorch's MemTracker under FakeTensorMode.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the rows as JSON to this file.")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (for README).")
@click.option("--backend", "mode", type=click.Choice(["host", "aarch64-emulated", "cuda"]), default="host",
              show_default=True, help="host: this CPU's profiler; aarch64-emulated: PyTorch's aarch64 wheel under "
                                      "qemu-user; cuda: the GPU present (torch.cuda peak statistics).")
@click.option("--threads", default="1,2,4", show_default=True, help="aarch64-emulated: thread counts.")
@click.option("--emulation-root", default=None, help="aarch64-emulated: the directory setup_aarch64.sh "
                                                     "prepared (default $MEMSIM_EMULATION_DIR).")
def command(models, batches, optimizers, seq_len, max_measure, memtracker, json_path, markdown, mode, threads,
            emulation_root):
    """Predicted vs measured peak of one training step: on this CPU (profiler, next to PyTorch's MemTracker),
    on aarch64 under emulation, or on the GPU present."""
    import models_zoo

    from memsim.cli.bench import fidelity_backends as other
    from memsim.core.units import parse_size

    names = split_list(models) if models else models_zoo.names()
    opts = split_list(optimizers)
    limit = parse_size(max_measure)
    _validate(names, opts, batches or "1")
    if mode != "host":
        if mode == "aarch64-emulated":
            rows = other.aarch64_rows(other.check_threads(threads), emulation_root)
            click.echo(other.format_aarch64(rows, markdown))
        else:
            rows = other.cuda_rows(names, batches, opts, seq_len)
            click.echo(other.format_cuda(rows, markdown))
        if json_path:
            with open(json_path, "w") as f:
                json.dump(rows, f, indent=1)
        return
    rows = []
    for name in names:
        spec = models_zoo.spec(name)
        default = "1,2" if spec.max_seq_len is not None else "2,8"
        for batch in _validate([name], opts, batches or default):
            for opt in opts:
                row = run_row(name, batch, opt, seq_len, limit, memtracker)
                rows.append(row)
                err = "-" if row["error_pct"] is None else f"{row['error_pct']:+.2f}%"
                click.echo(f"{name} batch {batch} {opt}: {err}", err=True)   # progress: rows take seconds each
    from memsim.output.tables import table

    click.echo(table(HEADERS, [_cells(r) for r in rows], right={1, 3, 4, 5, 6, 7, 8, 9}, markdown=markdown))
    measured = [abs(r["error_pct"]) for r in rows if r["error_pct"] is not None]
    if measured:
        click.echo(f"\nmax |error| {max(measured):.2f}% over {len(measured)} measured rows "
                   f"({sum(e <= 1.0 for e in measured)} within 1%)")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rows, f, indent=1)
