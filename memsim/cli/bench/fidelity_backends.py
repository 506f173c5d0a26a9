"""``memsim bench fidelity --backend aarch64-emulated | cuda``: predictions for another backend against that
backend's own measurements.

* ``aarch64-emulated``: the training steps of :mod:`memsim.measure.emulation.cases` run by PyTorch 2.13's
  aarch64 wheel under qemu-user (set up once with ``memsim/measure/emulation/setup_aarch64.sh``; the
  directory is ``--emulation-root`` or ``$MEMSIM_EMULATION_DIR``), measured with the profiler at each thread
  count, against memsim's aarch64 prediction from a trace made on this machine. Exact for memory, slow
  (minutes per thread count).
* ``cuda``: zoo steps run on the GPU present (``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``
  of one steady-state step) against memsim's allocated and reserved peaks for that GPU
  (:func:`memsim.measure.cuda.gpu_device`). Needs a CUDA build of torch and a GPU; without one it exits 2.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import click

from memsim.core.errors import InputError


def aarch64_rows(threads: list[int], root: str | None) -> list[dict]:
    """Measure the emulation cases at each thread count under qemu and compare with the predictions."""
    from memsim.measure.emulation import regenerate_fixtures as regen
    from memsim.measure.emulation.validate import predict

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in threads:
            out = Path(tmp) / f"steps_t{t}.jsonl"
            click.echo(f"emulating the steps at {t} threads (several minutes)...", err=True)
            regen._emulate("steps", t, out, root)
            measured = regen._jsonl(out)
            by_case: dict = {}
            for m in measured:
                by_case.setdefault((m["case"], m["optimizer"]), m)
            for (case, opt), m in by_case.items():
                p = predict(case, opt, [t])[t]
                rows.append({"case": case, "optimizer": opt, "threads": t, "predicted": p,
                             "measured": m["peak_bytes"], "error": (p - m["peak_bytes"]) / m["peak_bytes"]})
    return rows


def cuda_rows(names: list[str], batches: str | None, optimizers: list[str], seq_len: int) -> list[dict]:
    """One row per zoo model × batch × optimizer: predicted and measured allocated/reserved peaks (bytes)."""
    import models_zoo

    import memsim
    from memsim.cli.bench.fidelity import _inputs, _validate
    from memsim.measure.cuda import gpu_device, measure_cuda_step, require_cuda

    require_cuda()
    gpu = gpu_device()
    rows = []
    for name in names:
        spec = models_zoo.spec(name)
        default = "1,2" if spec.max_seq_len is not None else "2,8"
        for batch in _validate([name], optimizers, batches or default):
            for opt in optimizers:
                tr = memsim.trace(models_zoo.create(name, device="meta"), _inputs(spec, batch, seq_len, "meta"),
                                  loss_fn=spec.loss_fn, optimizer=opt)
                rep = memsim.simulate(tr, device=gpu, policy="none", max_batch=False)
                row = {"model": name, "batch": batch, "optimizer": opt,
                       "predicted_allocated": rep.main.allocated_bytes, "predicted_reserved": rep.main.reserved_bytes}
                try:
                    m = measure_cuda_step(models_zoo.create(name, seed=0), _inputs(spec, batch, seq_len),
                                          loss_fn=spec.loss_fn, optimizer=opt)
                except Exception as e:  # noqa: BLE001 - an out-of-memory GPU row is reported, not fatal
                    row["note"] = f"not measured: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
                    rows.append(row)
                    continue
                row.update(measured_allocated=m.max_allocated_bytes, measured_reserved=m.max_reserved_bytes,
                           gpu=m.gpu, torch=m.torch_version, cudnn=m.cudnn_version)
                row["allocated_error"] = (row["predicted_allocated"] - m.max_allocated_bytes) / m.max_allocated_bytes
                row["reserved_error"] = (row["predicted_reserved"] - m.max_reserved_bytes) / m.max_reserved_bytes
                rows.append(row)
                click.echo(f"{name} batch {batch} {opt}: allocated {100 * row['allocated_error']:+.2f}%, "
                           f"reserved {100 * row['reserved_error']:+.2f}%", err=True)
    return rows


def format_aarch64(rows: list[dict], markdown: bool) -> str:
    from memsim.measure.emulation.validate import format_table

    return format_table(rows, markdown=markdown)


def format_cuda(rows: list[dict], markdown: bool) -> str:
    from memsim.output.tables import table

    def mib(v):
        return "-" if v is None else f"{v / 2**20:,.1f}"

    def pct(v):
        return "-" if v is None else f"{100 * v:+.2f}%"

    body = [[r["model"], r["batch"], r["optimizer"], mib(r.get("predicted_allocated")),
             mib(r.get("measured_allocated")), pct(r.get("allocated_error")), mib(r.get("predicted_reserved")),
             mib(r.get("measured_reserved")), pct(r.get("reserved_error")), r.get("note", "")] for r in rows]
    text = table(["model", "batch", "optimizer", "pred. allocated MiB", "max_memory_allocated MiB", "error",
                  "pred. reserved MiB", "max_memory_reserved MiB", "error", "note"], body,
                 right=set(range(1, 9)) - {2}, markdown=markdown)
    gpus = sorted({r["gpu"] for r in rows if "gpu" in r})
    return text + (f"\nGPU: {', '.join(gpus)}" if gpus else "")


def check_threads(threads: str) -> list[int]:
    from memsim.core.choices import split_list

    try:
        out = [int(t) for t in split_list(threads)]
    except ValueError:
        out = []
    if not out or any(t < 1 for t in out):
        raise InputError(f"--threads must be comma-separated positive integers, got {threads!r}")
    return out
