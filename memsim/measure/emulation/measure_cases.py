"""Measurements with the real kernels, for the aarch64 emulator (also runs natively, for comparison).

Run it with the emulated aarch64 python (:func:`memsim.measure.emulation.runner.run_python`), or natively with
``python -m memsim.measure.emulation.measure_cases``. One process measures everything at one thread count (``import
torch`` alone takes 11-20 s under emulation). Each result is one JSON object per line on ``--out`` (appended
and flushed as it comes, so a long run that is stopped keeps what it measured).

Modes:

``steps``: the measured peak of one steady-state training step (:func:`memsim.measure.profiler.measure_step_peak`)
    for each case of :mod:`memsim.measure.emulation.cases` and each optimizer. Line:
    ``{"kind": "step", "case", "optimizer", "batch", "threads", "peak_bytes", "baseline_bytes", "seconds",
    "torch", "machine", "cpu"}``.
``convs``: the scratch of ``aten.convolution`` / ``aten.convolution_backward`` calls over a grid of shapes
    (:func:`conv_grid`): each call runs on real random tensors under the profiler; ``peak`` is the largest bytes
    above the op's start, ``net`` what is still allocated at its end (its outputs), ``scratch = peak - net``
    (the convention of memsim's workspace records: inputs + outputs + scratch = the largest live bytes inside
    the op). ``children`` names the ops the call ran (which kernel ATen chose). Line:
    ``{"kind": "conv_fwd"|"conv_bwd", "x", "w", "bias", "stride", "padding", "dilation", "transposed",
    "output_padding", "groups", "mask", "threads", "peak", "net", "scratch", "children", "allocs"}``.
``matmuls``: addmm/mm/bmm with contiguous and transposed operands (which layouts the aarch64 build copies).
``ops``: other ops that could allocate scratch (linear/addmm/mm/bmm, batch_norm fwd/bwd, max_pool fwd/bwd,
    sdpa fwd/bwd, layer_norm, embedding backward, LSTM/GRU fwd+bwd): for each, which aten ops ran and the
    scratch of each top-level op of the step, so the aarch64 run can be compared with the x86 one.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time

import torch

from memsim.measure.profiler import event_allocations, peak_and_net


def _threads() -> int:
    return int(os.environ.get("MEMSIM_EMULATED_THREADS", torch.get_num_threads()))


def _emit(out, record: dict) -> None:
    record.setdefault("threads", torch.get_num_threads())
    record.setdefault("torch", torch.__version__)
    record.setdefault("machine", platform.machine())
    record.setdefault("cpu", os.environ.get("MEMSIM_EMULATED_CPU", os.environ.get("QEMU_CPU", "native")))
    line = json.dumps(record, sort_keys=True)
    out.write(line + "\n")
    out.flush()


# ---- allocation events inside an op ----

def _names(e, acc, depth=0):
    from torch._C._profiler import _EventType

    for c in e.children:
        if c.typed[0] == _EventType.TorchOp:
            acc.add(c.name)
            _names(c, acc, depth + 1)


def op_allocations(prof, op_name: str) -> list[dict]:
    """For each call of ``op_name`` (outermost only): peak above the start, net at the end, the ops it ran,
    and its allocation sizes in order (positive = malloc, negative = free)."""
    out = []

    def visit(e):
        if e.name == op_name:
            sizes = event_allocations(e)
            peak, live = peak_and_net(sizes)
            kids: set = set()
            _names(e, kids)
            out.append({"peak": peak, "net": live, "scratch": peak - live, "children": sorted(kids),
                        "allocs": sizes if len(sizes) <= 64 else None})
            return
        for c in e.children:
            visit(c)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        visit(root)
    return out


def profiled(fn):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return prof


# ---- steps ----

def run_steps(out, names, optimizers) -> None:
    from memsim.measure.emulation.cases import CASES, build
    try:
        from memsim.measure.profiler import measure_step_peak
    except ImportError:  # the layout before the package restructuring
        from memsim.measure import measure_step_peak

    for name in names:
        for opt in optimizers:
            model, x, loss_fn = build(name)
            t0 = time.time()
            try:
                m = measure_step_peak(model, x, loss_fn=loss_fn, optimizer=opt)
            except Exception as e:  # noqa: BLE001 - record and go on
                _emit(out, {"kind": "step", "case": name, "optimizer": opt, "error": f"{type(e).__name__}: {e}"})
                continue
            _emit(out, {"kind": "step", "case": name, "optimizer": opt, "batch": CASES[name].batch,
                        "peak_bytes": m.peak_bytes, "baseline_bytes": m.baseline_bytes,
                        "seconds": round(time.time() - t0, 2)})


# ---- convolutions ----

def conv_grid(size: str = "full") -> list[dict]:
    """Convolution configurations: dicts of x/w shapes, stride, padding, dilation, groups, bias."""
    cfgs = []

    def add(n, ic, oc, hw, k, s=1, p=0, g=1, d=1, bias=True, dims=2):
        if dims == 2:
            x = (n, ic, hw, hw)
            w = (oc, ic // g, k, k)
            st, pa, di = (s, s), (p, p), (d, d)
        else:
            x = (n, ic, hw)
            w = (oc, ic // g, k)
            st, pa, di = (s,), (p,), (d,)
        cfgs.append({"x": x, "w": w, "bias": bias, "stride": st, "padding": pa, "dilation": di,
                     "groups": g})

    # the cases' convolutions (exact shapes) at batch 1 / 2 / 4 / 8
    for n in (1, 2, 4, 8):
        add(n, 3, 16, 32, 3, 1, 1)            # conv_bn_relu3 c1 / unet e1 / depthwise c1 (32 ch)
        add(n, 16, 32, 32, 3, 2, 1)           # conv_bn_relu3 c2
        add(n, 32, 64, 16, 3, 2, 1)           # conv_bn_relu3 c3
        add(n, 3, 16, 16, 3, 1, 1)            # conv_relu_inplace c1
        add(n, 16, 16, 16, 3, 1, 1)           # conv_relu_inplace c2
        add(n, 32, 32, 32, 3, 1, 1, g=32)     # depthwise
        add(n, 32, 16, 32, 1)                 # pointwise
        add(n, 3, 96, 64, 16, 16)             # patchify
        add(n, 48, 16, 32, 3, 1, 1)           # unet d1
        add(n, 16, 2, 32, 1)                  # unet out
        add(n, 8, 32, 100, 5, 1, 2, dims=1)   # conv1d
        add(n, 32, 32, 100, 3, 1, 0, g=4, dims=1)
    if size == "quick":
        return cfgs
    # a grid to learn the formulas from
    for n, (ic, oc), hw, k in itertools.product((1, 2, 4), ((3, 8), (8, 8), (16, 24), (24, 40), (64, 64)),
                                                (8, 17), (1, 3, 5)):
        add(n, ic, oc, hw, k, 1, k // 2)
    for n, (ic, oc, hw, k, s, p) in itertools.product((1, 4), [(16, 32, 16, 3, 2, 1), (16, 32, 16, 3, 2, 0),
                                                             (8, 16, 15, 3, 2, 1), (3, 64, 32, 7, 2, 3),
                                                             (64, 128, 8, 1, 2, 0), (32, 32, 9, 3, 1, 0),
                                                             (32, 32, 9, 3, 1, 2), (8, 8, 12, 5, 3, 1),
                                                             (3, 24, 24, 4, 4, 0), (3, 24, 24, 8, 8, 0)]):
        add(n, ic, oc, hw, k, s, p)
    for n, (c, hw, k, s, g) in itertools.product((1, 4), [(16, 16, 3, 1, 16), (32, 8, 3, 2, 32), (96, 8, 3, 1, 96),
                                                        (64, 8, 5, 1, 64), (32, 16, 3, 1, 4), (32, 16, 3, 1, 2),
                                                        (24, 8, 1, 1, 3)]):
        add(n, c, c, hw, k, s, k // 2, g=g)
    for n in (1, 4):
        add(n, 16, 16, 16, 3, 1, 1, bias=False)
        add(n, 16, 16, 16, 3, 1, 2, d=2)
        add(n, 3, 8, 16, 3, 1, 1, bias=False)
        add(n, 16, 32, 64, 3, 1, 1, dims=1)
        add(n, 16, 16, 64, 1, 1, 0, dims=1)
        add(n, 4, 16, 64, 7, 2, 3, dims=1)
    return cfgs


def _marker(kind: str, cfg: dict) -> None:
    """With ONEDNN_VERBOSE set, a line on stdout before each measured call, so that oneDNN's verbose lines
    (which name the implementation it picked) can be matched to the call (written with os.write, unbuffered,
    like oneDNN's own fflush-ed lines)."""
    if os.environ.get("ONEDNN_VERBOSE") or os.environ.get("DNNL_VERBOSE"):
        os.write(1, ("@@ " + json.dumps({"kind": kind, **cfg}) + "\n").encode())


MASKS = ((True, True, True), (False, True, True), (True, False, False), (True, True, False), (False, True, False))


def run_convs(out, size: str, masks=MASKS) -> None:
    aten = torch.ops.aten
    torch.manual_seed(0)
    for cfg in conv_grid(size):
        x = torch.randn(cfg["x"])
        w = torch.randn(cfg["w"])
        b = torch.randn(cfg["w"][0]) if cfg["bias"] else None
        nd = len(cfg["stride"])
        outpad = (0,) * nd
        args = (cfg["stride"], cfg["padding"], cfg["dilation"], False, outpad, cfg["groups"])
        base = {"x": cfg["x"], "w": cfg["w"], "bias": cfg["bias"], "stride": cfg["stride"],
                "padding": cfg["padding"], "dilation": cfg["dilation"], "transposed": False,
                "output_padding": outpad, "groups": cfg["groups"]}
        y = aten.convolution(x, w, b, *args)      # warm-up (first calls may initialise caches)
        res = {}
        _marker("conv_fwd", base)
        prof = profiled(lambda: res.setdefault("y", aten.convolution(x, w, b, *args)))
        calls = op_allocations(prof, "aten::convolution")
        _emit(out, {"kind": "conv_fwd", **base, "y": tuple(y.shape), **calls[0]})
        g = torch.randn(y.shape)
        bias_sizes = [cfg["w"][0]] if cfg["bias"] else None
        for mask in masks:
            if mask[2] and not cfg["bias"]:
                continue
            aten.convolution_backward(g, x, w, bias_sizes, *args, list(mask))
            _marker("conv_bwd", {**base, "mask": mask})
            prof = profiled(lambda: res.setdefault("g", aten.convolution_backward(g, x, w, bias_sizes, *args,
                                                                                  list(mask))))
            res.pop("g", None)
            calls = op_allocations(prof, "aten::convolution_backward")
            _emit(out, {"kind": "conv_bwd", **base, "y": tuple(y.shape), "mask": mask, **calls[0]})
        res.clear()


# ---- other ops ----

def _op_table(prof) -> list[dict]:
    """Top-level aten ops of a profile with their scratch (peak - net) and children, in order."""
    from torch._C._profiler import _EventType

    rows = []

    def visit(e, top):
        if e.typed[0] == _EventType.TorchOp and e.name.startswith("aten::") and top:
            peak, live = peak_and_net(event_allocations(e))
            kids: set = set()
            _names(e, kids)
            rows.append({"op": e.name, "peak": peak, "net": live, "scratch": peak - live,
                         "children": sorted(kids)})
            return
        for c in e.children:
            visit(c, top)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        visit(root, True)
    return rows


def run_ops(out) -> None:
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)

    def fwd_bwd(name, make, inputs):
        mod = make()
        xs = [t.requires_grad_(t.is_floating_point()) for t in inputs()]
        o = mod(*xs)
        o = o[0] if isinstance(o, tuple) else o
        o.sum().backward()                              # warm-up

        def step():
            ys = mod(*xs)
            y = ys[0] if isinstance(ys, tuple) else ys
            y.sum().backward()
        prof = profiled(step)
        rows = [r for r in _op_table(prof) if r["scratch"] or r["op"] not in ("aten::empty", "aten::zeros_like",
                                                                              "aten::ones_like")]
        _emit(out, {"kind": "ops", "case": name, "rows": rows})

    class Sdpa(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    fwd_bwd("linear", lambda: nn.Linear(64, 96), lambda: [torch.randn(8, 64)])
    fwd_bwd("linear3d", lambda: nn.Linear(64, 96), lambda: [torch.randn(4, 7, 64)])
    fwd_bwd("bmm", lambda: (lambda a, b: torch.bmm(a, b)), lambda: [torch.randn(4, 16, 32), torch.randn(4, 32, 8)])
    fwd_bwd("batch_norm", lambda: nn.BatchNorm2d(16), lambda: [torch.randn(4, 16, 8, 8)])
    fwd_bwd("group_norm", lambda: nn.GroupNorm(4, 16), lambda: [torch.randn(4, 16, 8, 8)])
    fwd_bwd("layer_norm", lambda: nn.LayerNorm(64), lambda: [torch.randn(4, 7, 64)])
    fwd_bwd("max_pool", lambda: nn.MaxPool2d(2), lambda: [torch.randn(4, 16, 8, 8)])
    fwd_bwd("avg_pool", lambda: nn.AdaptiveAvgPool2d(1), lambda: [torch.randn(4, 16, 8, 8)])
    fwd_bwd("interpolate", lambda: (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")),
            lambda: [torch.randn(4, 16, 8, 8)])
    fwd_bwd("sdpa", Sdpa, lambda: [torch.randn(4, 4, 32, 16) for _ in range(3)])
    fwd_bwd("mha", lambda: nn.MultiheadAttention(64, 4, batch_first=True),
            lambda: [torch.randn(4, 32, 64)] * 3)
    fwd_bwd("embedding", lambda: nn.Embedding(100, 64), lambda: [torch.randint(0, 100, (4, 32))])
    fwd_bwd("lstm", lambda: nn.LSTM(32, 64, num_layers=2, batch_first=True), lambda: [torch.randn(4, 6, 32)])
    fwd_bwd("bilstm", lambda: nn.LSTM(16, 32, bidirectional=True), lambda: [torch.randn(7, 4, 16)])
    fwd_bwd("gru", lambda: nn.GRU(32, 64, num_layers=2, batch_first=True), lambda: [torch.randn(4, 6, 32)])
    fwd_bwd("cross_entropy", lambda: (lambda x: F.cross_entropy(x, torch.zeros(x.shape[0], dtype=torch.long))),
            lambda: [torch.randn(8, 100)])
    fwd_bwd("dropout", lambda: nn.Dropout(0.2), lambda: [torch.randn(4, 16, 8, 8)])
    fwd_bwd("gelu_silu", lambda: (lambda x: F.silu(F.gelu(x))), lambda: [torch.randn(4, 16, 8, 8)])


def run_matmuls(out) -> None:
    """addmm/mm/bmm with contiguous and transposed operands: which layouts make the kernel copy one."""
    aten = torch.ops.aten
    torch.manual_seed(0)

    def one(name, fn, op, **shape):
        fn()
        calls = op_allocations(profiled(fn), op)
        _emit(out, {"kind": "matmul", "case": name, "op": op, **shape, "scratch": calls[0]["scratch"],
                    "net": calls[0]["net"]})

    for m, k, n in [(8, 64, 96), (2, 8, 8), (16, 16, 16), (15, 16, 16), (4, 16, 16), (8, 512, 10), (32, 64, 64),
                    (64, 128, 256), (1, 256, 256), (100, 32, 8)]:
        a, w, b, wc = torch.randn(m, k), torch.randn(n, k), torch.randn(n), torch.randn(k, n)
        at = torch.randn(k, m)
        shape = {"m": m, "k": k, "n": n}
        one("addmm_mat2_transposed", lambda: aten.addmm(b, a, w.t()), "aten::addmm", **shape)
        one("addmm_contiguous", lambda: aten.addmm(b, a, wc), "aten::addmm", **shape)
        one("mm_mat2_transposed", lambda: aten.mm(a, w.t()), "aten::mm", **shape)
        one("mm_contiguous", lambda: aten.mm(a, wc), "aten::mm", **shape)
        one("mm_mat1_transposed", lambda: aten.mm(at.t(), wc), "aten::mm", **shape)
    for bb, m, k, n in [(4, 16, 32, 8), (16, 32, 16, 32)]:
        a, c, ct = torch.randn(bb, m, k), torch.randn(bb, k, n), torch.randn(bb, n, k)
        shape = {"b": bb, "m": m, "k": k, "n": n}
        one("bmm_contiguous", lambda: aten.bmm(a, c), "aten::bmm", **shape)
        one("bmm_mat2_transposed", lambda: aten.bmm(a, ct.transpose(1, 2)), "aten::bmm", **shape)


def main(argv=None) -> int:
    from memsim.measure.emulation.cases import CASES, OPTIMIZERS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["steps", "convs", "ops", "matmuls"])
    ap.add_argument("--out", required=True, help="JSON-lines file to append to")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    ap.add_argument("--grid", default="full", choices=["quick", "full"])
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    threads = a.threads or _threads()
    torch.set_num_threads(threads)
    with open(a.out, "a") as out:
        t0 = time.time()
        if a.mode == "steps":
            run_steps(out, [c for c in a.cases.split(",") if c], [o for o in a.optimizers.split(",") if o])
        elif a.mode == "convs":
            run_convs(out, a.grid)
        elif a.mode == "ops":
            run_ops(out)
        else:
            run_matmuls(out)
        print(f"{a.mode}: {threads} threads, {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
