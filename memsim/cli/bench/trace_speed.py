"""``memsim bench trace``: how fast memsim traces a step, next to PyTorch's MemTracker in the same run.

* ResNet-50 (default batch 8, SGD-momentum): ``memsim.trace`` end to end (fake copy of the model, optimizer
  state, the traced step, graph walk, timeline, kernel probes) against MemTracker's one tracked steady-state
  step under FakeTensorMode (its model building and warm-up step are not counted). memsim runs twice per
  round: with a cold probe cache (a fresh cache directory: every distinct convolution runs once for real)
  and warm (the probes come from disk). Median of ``--repeat`` rounds after one untimed warm-up run of each
  (imports, FakeTensorMode caches), the three measured back to back in each round.
* GPT-2 XL (1.5B parameters, built on the meta device, batch 1 × 1024 tokens, Adam): trace time and the
  traced process's peak resident memory, in a fresh subprocess so nothing else counts.

Example:
    memsim bench trace
    memsim bench trace --batch 16 --repeat 5 --no-gpt2-xl
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import click


def _time_memsim(model, x, loss_fn, optimizer, cache_dir: str) -> tuple[float, float, int, int]:
    """(wall s, CPU s, peak bytes, ops) of one ``memsim.trace`` with its probe cache in ``cache_dir``."""
    import memsim

    old = os.environ.get("MEMSIM_CACHE_DIR")
    os.environ["MEMSIM_CACHE_DIR"] = cache_dir
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        tr = memsim.trace(model, x, loss_fn=loss_fn, optimizer=optimizer)
        return time.perf_counter() - start, time.process_time() - cpu_start, tr.peak_bytes, tr.timeline.n_ops
    finally:
        if old is None:
            os.environ.pop("MEMSIM_CACHE_DIR", None)
        else:
            os.environ["MEMSIM_CACHE_DIR"] = old


def _gpt2_xl_child(optimizer: str, seq_len: int) -> None:
    """Runs in a subprocess: trace GPT-2 XL on meta and print time, peak and max RSS as JSON."""
    import resource

    import models_zoo

    import memsim

    spec = models_zoo.spec("gpt2_xl")
    t0 = time.perf_counter()
    model = models_zoo.create("gpt2_xl", device="meta")
    x = spec.example_inputs(1, device="meta", seq_len=seq_len)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = memsim.trace(model, x, loss_fn=spec.loss_fn, optimizer=optimizer)
    trace_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux: KiB
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"build_s": build_s, "trace_s": trace_s, "peak_bytes": tr.peak_bytes,
                      "max_rss_bytes": rss, "n_ops": tr.timeline.n_ops, "n_params": n_params}))


@click.command(name="trace")
@click.option("--batch", type=int, default=8, show_default=True, help="ResNet-50 batch size.")
@click.option("--repeat", type=int, default=3, show_default=True, help="Timed runs of each (median shown).")
@click.option("--optimizer", default="momentum", show_default=True)
@click.option("--gpt2-xl/--no-gpt2-xl", default=True, show_default=True, help="Also trace GPT-2 XL.")
@click.option("--seq-len", type=int, default=1024, show_default=True, help="GPT-2 XL sequence length.")
def command(batch, repeat, optimizer, gpt2_xl, seq_len):
    """Trace time of ResNet-50 vs MemTracker, and GPT-2 XL trace time and memory."""
    import models_zoo

    from memsim.tracing import step as step_mod
    from memsim.cli.bench.memtracker import memtracker_peak
    from memsim.core.errors import InputError

    if batch < 1 or repeat < 1:
        raise InputError("--batch and --repeat must be positive integers")
    step_mod.validate_optimizer(optimizer)
    spec = models_zoo.spec("resnet50")
    model = models_zoo.create("resnet50", seed=0)
    x = spec.example_inputs(batch, seed=0)

    def make_model():
        return models_zoo.create("resnet50", device="meta")

    def make_inputs():
        return spec.example_inputs(batch, device="meta")

    with tempfile.TemporaryDirectory() as tmp:
        _time_memsim(model, x, spec.loss_fn, optimizer, os.path.join(tmp, "warm-up"))     # untimed
        memtracker_peak(make_model, make_inputs, spec.loss_fn, optimizer)
        runs: dict[str, list] = {"memsim.trace, cold probes": [], "memsim.trace, warm probes": [], "MemTracker": []}
        for i in range(repeat):
            cold = os.path.join(tmp, f"cold{i}")
            runs["memsim.trace, cold probes"].append(_time_memsim(model, x, spec.loss_fn, optimizer, cold))
            runs["memsim.trace, warm probes"].append(_time_memsim(model, x, spec.loss_fn, optimizer, cold))
            mt = memtracker_peak(make_model, make_inputs, spec.loss_fn, optimizer)
            runs["MemTracker"].append((mt.seconds, mt.cpu_seconds, mt.peak_bytes, None))
    from memsim.output.tables import table

    base_wall = statistics.median(r[0] for r in runs["MemTracker"])
    base_cpu = statistics.median(r[1] for r in runs["MemTracker"])
    rows = []
    for name, rs in runs.items():
        wall, cpu = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)
        rows.append([name, f"{wall:.3f}", f"{cpu:.3f}", f"{rs[-1][2] / 2**20:.1f}", f"{wall / base_wall:.2f}",
                     f"{cpu / base_cpu:.2f}"])
    n_ops = runs["memsim.trace, warm probes"][-1][3]
    click.echo(f"ResNet-50, batch {batch}, {optimizer}: {n_ops} ops traced; median of {repeat} rounds")
    click.echo(table(["tracer", "wall s", "CPU s", "peak MiB", "× MemTracker wall", "× MemTracker CPU"], rows,
                     right={1, 2, 3, 4, 5}))
    click.echo("target: memsim.trace at most 0.20 × MemTracker")
    if gpt2_xl:
        code = ("from memsim.cli.bench.trace_speed import _gpt2_xl_child; "
                f"_gpt2_xl_child({'adam'!r}, {int(seq_len)})")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode != 0 or not lines:
            click.echo(f"GPT-2 XL: failed ({out.stderr.strip().splitlines()[-1:] or out.returncode})")
            return
        r = json.loads(lines[-1])
        click.echo(f"GPT-2 XL ({r['n_params'] / 1e9:.2f}B params, meta), batch 1 x {seq_len} tokens, adam: "
                   f"{r['n_ops']} ops")
        click.echo(f"  trace {r['trace_s']:.1f} s (target < 30 s), process max RSS "
                   f"{r['max_rss_bytes'] / 2**30:.2f} GiB (target < 2 GB), predicted peak "
                   f"{r['peak_bytes'] / 2**30:.1f} GiB; model built on meta in {r['build_s']:.1f} s")
