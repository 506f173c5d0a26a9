"""A Report as readable terminal text: the policy table, the breakdown at the peak, the largest tensors.

Category colours come from :data:`memsim.core.categories.CATEGORY_ANSI` (the same palette as the plots).
"""
from __future__ import annotations

import click

from memsim.core.categories import CATEGORY_ANSI, Category
from memsim.core.units import format_bytes


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(click.unstyle(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def fmt(cells):
        out = []
        for i, c in enumerate(cells):
            pad = widths[i] - len(click.unstyle(c))
            out.append(" " * pad + c if i in right else c + " " * pad)
        return "  ".join(out).rstrip()

    return [fmt(headers), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def _flops(n: int) -> str:
    if not n:
        return "-"
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} FLOP"


def render(report, *, color: bool = False, top: int = 8) -> str:
    """The text ``memsim profile`` prints for ``report`` (sizes in binary units)."""
    meta = report.trace.meta
    dev = report.device
    lines = [
        f"memsim {meta.get('memsim_version', '')} — {meta.get('model', '?')}, batch {report.batch_size}, "
        f"optimizer {meta.get('optimizer', '?')}, sparsity {report.sparsity}",
        f"device: {dev.display_name} ({dev.name}): {format_bytes(dev.total_bytes)} total, "
        f"OS {format_bytes(dev.os_reserved_bytes)}, runtime {format_bytes(dev.runtime_bytes)}, "
        f"allocator {getattr(dev.allocator, 'value', dev.allocator)}"
        + (f", margin {report.margin:.0%}" if report.margin else ""),
        "",
    ]
    total_flops = sum(o.flops for o in report.trace.timeline.ops)
    rows = []
    for r in report.results.values():
        fits = click.style("yes", fg="green") if r.fits else click.style("NO", fg="red")
        extra = _flops(r.extra_flops)
        if r.extra_flops and total_flops:
            extra += f" (+{r.extra_flops / total_flops:.0%})"
        rows.append([
            str(r.policy), format_bytes(r.peak_bytes), format_bytes(r.device_peak_bytes), fits,
            format_bytes(r.headroom_bytes),
            "-" if r.max_batch_size is None else str(r.max_batch_size),
            extra, f"{r.codec_seconds * 1e3:.0f} ms" if r.codec_seconds else "-",
            "lossy" if r.lossy else "lossless",
        ])
    lines += _table(["policy", "tensor peak", "device peak", "fits", "headroom", "max batch", "extra compute",
                     "codec time", "accuracy"], rows, right={1, 2, 4, 5})
    none = report.results.get("none")
    if none is not None and len(report.results) > 1:
        best = min(report.results.values(), key=lambda r: r.peak_bytes)
        if best.peak_bytes < none.peak_bytes:
            lines.append(f"best: {best.policy} saves {1 - best.peak_bytes / none.peak_bytes:.1%} of the tensor peak")
    bd = report.breakdown
    lines += ["", f"live at the peak ({report.policy}, op {bd.index} of {report.trace.timeline.n_ops}: "
              f"{_op_label(report, bd.index)}):"]
    cat_rows = []
    for c in Category:
        b = bd.by_category.get(c, 0)
        if b:
            name = click.style(str(c), fg=CATEGORY_ANSI[c]) if color else str(c)
            cat_rows.append([name, format_bytes(b), f"{b / max(bd.total_bytes, 1):.1%}"])
    lines += ["  " + s for s in _table(["category", "bytes", "share"], cat_rows, right={1, 2})]
    lines += ["", "largest modules at the peak:"]
    lines += ["  " + s for s in _table(["module", "bytes"], [[m, format_bytes(b)] for m, b in bd.top_modules[:top]],
                                       right={1})]
    lines += ["", "largest tensors at the peak:"]
    trows = [[t.name or t.op or "?", t.module or "-", str(t.category), "x".join(map(str, t.shape)) or "scalar",
              format_bytes(t.nbytes)] for t in bd.top_tensors[:top]]
    lines += ["  " + s for s in _table(["tensor", "module", "category", "shape", "bytes"], trows, right={4})]
    return "\n".join(lines)


def _op_label(report, index: int) -> str:
    op = report.trace.timeline.ops[index] if index < report.trace.timeline.n_ops else None
    if op is None:
        return "-"
    return f"{op.phase} {op.name}" + (f" in {op.module}" if op.module else "")


def check_line(report) -> str:
    """The one line ``memsim check`` prints."""
    verdict = "fits" if report.fits else "does NOT fit"
    mb = "" if report.max_batch_size is None else f", max batch {report.max_batch_size}"
    return (f"{report.trace.meta.get('model', '?')} batch {report.batch_size} ({report.policy}) {verdict} on "
            f"{report.device.name}: needs {format_bytes(report.device_peak_bytes)} of "
            f"{format_bytes(report.usable_bytes)} usable "
            f"(headroom {format_bytes(report.headroom_bytes)}{mb})")
